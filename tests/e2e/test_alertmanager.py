"""Prometheus -> Alertmanager -> bridge, all real (Prometheus 2.42, Alertmanager 0.25).

Prometheus evaluates `E2E_RULES` every second on a switch this test flips; Alertmanager,
configured from the shipped `config/alertmanager/bridge-receiver.yml`, sends its webhook
notifications to `bridge run`. One stack serves the whole module; each test uses its own
alert name, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import (
    ALERTMANAGER_SNIPPET,
    INSTALL,
    alerting_to,
    open_peers,
)
from tests.e2e.harness import (
    AlertmanagerAPI,
    BridgeAPI,
    Json,
    Service,
    SwitchExporter,
    metric_value,
    require_binary,
    wait_until,
)

pytestmark = pytest.mark.e2e

HOST = "web-01.e2e.example:9100"
DISKS = ("db-01.e2e.example:9100", "db-02.e2e.example:9100")
OPEN_WITHIN = 45.0  # Prometheus finds Alertmanager up to 5s after start, then 1s + group_wait
RESOLVE_WITHIN = 30.0


@dataclass(frozen=True)
class Pipeline:
    exporter: SwitchExporter
    bridge: BridgeAPI
    alertmanager: AlertmanagerAPI
    processes: list[Service]
    run_id: str  # Prometheus's external label `e2e_run`: the alerts come from this run


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    directory = tmp_path_factory.mktemp("alertmanager-pipeline")
    with SwitchExporter() as exporter, open_peers(directory, request.config) as peers:
        # The bridge wants a token from Alertmanager, which sends it through `http_config`.
        bridge = peers.start_bridge(BRIDGE_INBOUND_TOKENS='{"alertmanager": ["e2e-am-token"]}')
        alertmanager = peers.start_alertmanager(bridge, token="e2e-am-token")
        prometheus = peers.start_prometheus(exporter, alerting_to(alertmanager))
        yield Pipeline(
            exporter,
            BridgeAPI(bridge.url),
            AlertmanagerAPI(alertmanager.url),
            [bridge, alertmanager, prometheus],
            peers.run_id,
        )


def timeline_kinds(incident: Json) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


def test_receiver_snippet_is_a_valid_alertmanager_config() -> None:
    amtool = require_binary("amtool", install=INSTALL)
    checked = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_SNIPPET)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_opens_an_incident_and_its_end_resolves_it(pipeline: Pipeline) -> None:
    bridge, watch = pipeline.bridge, pipeline.processes
    pipeline.exporter.set("hostdown", [HOST], 1)

    incident = wait_until(
        lambda: bridge.incident_of("E2EHostDown"),
        OPEN_WITHIN,
        "an incident holding the E2EHostDown alert",
        watch=watch,
    )
    assert incident["status"] == "new"
    assert incident["severity"] == "critical"
    assert incident["title"] == f"Host {HOST} is down"
    assert incident["rule"] == "e2e-alertmanager-group"
    assert incident["resolved_at"] is None
    assert (incident["firing_alerts"], incident["alert_count"]) == (1, 1)
    [alert] = incident["alerts"]
    assert alert["source"] == "alertmanager"
    assert alert["status"] == "firing"
    assert alert["labels"]["alertname"] == "E2EHostDown"
    assert alert["labels"]["instance"] == HOST
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["e2e_run"] == pipeline.run_id
    assert timeline_kinds(incident)[0] == "opened"

    [in_alertmanager] = pipeline.alertmanager.alerts("E2EHostDown")
    assert alert["fingerprint"] == in_alertmanager["fingerprint"], (
        "the bridge must keep Alertmanager's fingerprint of the alert"
    )

    metrics = bridge.metrics()
    assert metric_value(metrics, "bridge_events_received_total", source="alertmanager") >= 1
    assert metric_value(metrics, "bridge_incidents_opened_total", rule=incident["rule"]) >= 1

    pipeline.exporter.set("hostdown", [HOST], 0)

    resolved = wait_until(
        lambda: bridge.incident_of("E2EHostDown", lambda i: i["status"] == "resolved"),
        RESOLVE_WITHIN,
        "the E2EHostDown incident to resolve after the rule stopped firing",
        watch=watch,
    )
    assert resolved["id"] == incident["id"]
    assert resolved["resolved_at"] is not None
    assert resolved["firing_alerts"] == 0
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    assert resolved["alerts"][0]["fingerprint"] == in_alertmanager["fingerprint"]
    kinds = timeline_kinds(resolved)
    assert (kinds[0], kinds[-1]) == ("opened", "resolved"), kinds


def test_one_alertmanager_group_is_one_incident(pipeline: Pipeline) -> None:
    bridge, watch = pipeline.bridge, pipeline.processes
    pipeline.exporter.set("diskfull", DISKS, 1)

    incident = wait_until(
        lambda: bridge.incident_of("DiskFull", lambda i: i["firing_alerts"] == len(DISKS)),
        OPEN_WITHIN,
        f"one incident with the {len(DISKS)} firing DiskFull alerts",
        watch=watch,
    )
    assert incident["status"] == "new"
    assert incident["rule"] == "e2e-alertmanager-group"
    assert incident["title"] == "Disk almost full"
    assert incident["severity"] == "warning"
    assert incident["alert_count"] == len(DISKS)
    assert sorted(a["labels"]["instance"] for a in incident["alerts"]) == sorted(DISKS)
    assert {a["source"] for a in incident["alerts"]} == {"alertmanager"}

    # Alertmanager holds both alerts in one group (group_by alertname, job), and their
    # fingerprints are the bridge's.
    [group] = pipeline.alertmanager.groups("DiskFull")
    assert len(group["alerts"]) == len(DISKS)
    assert sorted(a["fingerprint"] for a in group["alerts"]) == sorted(
        a["fingerprint"] for a in incident["alerts"]
    )

    # One disk recovers: Alertmanager sends a "firing" notification holding one resolved alert.
    pipeline.exporter.set("diskfull", DISKS[1:], 0)
    partial = wait_until(
        lambda: bridge.incident_of("DiskFull", lambda i: i["firing_alerts"] == 1),
        RESOLVE_WITHIN,
        f"the DiskFull alert of {DISKS[1]} to resolve while {DISKS[0]} still fires",
        watch=watch,
    )
    assert partial["status"] == "new"
    statuses = {a["labels"]["instance"]: a["status"] for a in partial["alerts"]}
    assert statuses == {DISKS[0]: "firing", DISKS[1]: "resolved"}

    pipeline.exporter.set("diskfull", DISKS[:1], 0)
    resolved = wait_until(
        lambda: bridge.incident_of("DiskFull", lambda i: i["status"] == "resolved"),
        RESOLVE_WITHIN,
        "the DiskFull incident to resolve once both disks recovered",
        watch=watch,
    )
    assert resolved["id"] == incident["id"]
    assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
    kinds = timeline_kinds(resolved)
    assert (kinds[0], kinds[-1]) == ("opened", "resolved"), kinds
    assert (
        metric_value(bridge.metrics(), "bridge_incidents_opened_total", rule=incident["rule"]) >= 1
    )
