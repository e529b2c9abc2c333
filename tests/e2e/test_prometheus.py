"""Prometheus -> bridge with no Alertmanager: the bridge is listed as Prometheus's alertmanager.

Prometheus 2.42 is configured with the shipped `config/prometheus/alerting.yml` (`api_version:
v2`, so it POSTs to `/api/v2/alerts`) and `--rules.alert.resend-delay=1s`: it re-sends each
firing alert every second with an `endsAt` 4s ahead, and sends it with an `endsAt` in the past
once the rule stops. Each test starts its own bridge and Prometheus.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import INSTALL, PROMETHEUS_SNIPPET, Peers, from_snippet
from tests.e2e.harness import (
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
OPEN_WITHIN = 45.0  # Prometheus finds its alertmanagers up to 5s after start
RESOLVE_WITHIN = 30.0


def start(peers: Peers, exporter: SwitchExporter, check_interval: str) -> tuple[BridgeAPI, Service]:
    bridge = peers.start_bridge(BRIDGE_RESOLVE_CHECK_INTERVAL=check_interval)
    prometheus = peers.start_prometheus(exporter, from_snippet(PROMETHEUS_SNIPPET, bridge))
    return BridgeAPI(bridge.url), prometheus


def open_incident(peers: Peers, bridge: BridgeAPI, exporter: SwitchExporter) -> Json:
    """Turn E2EHostDown on; the incident it opens, checked against what Prometheus sent."""
    exporter.set("hostdown", [HOST], 1)
    incident = wait_until(
        lambda: bridge.incident_of("E2EHostDown"),
        OPEN_WITHIN,
        "an incident holding the E2EHostDown alert sent by Prometheus",
        watch=peers.stack.services,
    )
    assert incident["status"] == "new"
    assert incident["severity"] == "critical"
    assert incident["title"] == f"Host {HOST} is down"
    assert incident["rule"] == "e2e-per-alert"
    assert (incident["firing_alerts"], incident["alert_count"]) == (1, 1)
    [alert] = incident["alerts"]
    assert (alert["source"], alert["status"]) == ("prometheus", "firing")
    assert alert["labels"]["alertname"] == "E2EHostDown"
    assert alert["labels"]["instance"] == HOST
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["e2e_run"] == peers.run_id  # external label: sent by this run
    assert timeline_kinds(incident)[0] == "opened"
    metrics = bridge.metrics()
    assert metric_value(metrics, "bridge_events_received_total", source="prometheus") >= 1
    assert metric_value(metrics, "bridge_incidents_opened_total", rule=incident["rule"]) >= 1
    return incident


def timeline_kinds(incident: Json) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


def check_resolved(resolved: Json, opened: Json) -> None:
    assert resolved["id"] == opened["id"]
    assert resolved["resolved_at"] is not None
    assert resolved["firing_alerts"] == 0
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    assert resolved["alerts"][0]["fingerprint"] == opened["alerts"][0]["fingerprint"]
    kinds = timeline_kinds(resolved)
    assert (kinds[0], kinds[-1]) == ("opened", "resolved"), kinds


def test_alerting_snippet_is_a_valid_prometheus_config() -> None:
    promtool = require_binary("promtool", install=INSTALL)
    checked = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_SNIPPET)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_resolved_alert_from_prometheus_resolves_the_incident(
    peers: Peers, exporter: SwitchExporter
) -> None:
    # Expiry checks far apart: whatever resolves the alert here is Prometheus's message.
    bridge, prometheus = start(peers, exporter, check_interval="5m")
    watch = peers.stack.services
    incident = open_incident(peers, bridge, exporter)

    exporter.set("hostdown", [HOST], 0)
    resolved = wait_until(
        lambda: bridge.incident_of("E2EHostDown", lambda i: i["status"] == "resolved"),
        RESOLVE_WITHIN,
        "the incident to resolve once Prometheus sends the alert with an endsAt in the past",
        watch=watch,
    )
    check_resolved(resolved, incident)
    metrics = bridge.metrics()
    assert metric_value(metrics, "bridge_alerts_expired_total", source="prometheus") == 0
    assert prometheus.alive()


def test_alert_of_a_dead_prometheus_resolves_when_its_ends_at_passes(
    peers: Peers, exporter: SwitchExporter
) -> None:
    bridge, prometheus = start(peers, exporter, check_interval="1s")
    incident = open_incident(peers, bridge, exporter)

    # Prometheus dies while the alert fires: it never sends the resolve. The last endsAt it
    # sent lies at most 4s (4 x resend delay) ahead; then the bridge must resolve the alert.
    prometheus.kill()
    killed_at = datetime.now(UTC)
    survivors = [s for s in peers.stack.services if s is not prometheus]
    resolved = wait_until(
        lambda: bridge.incident_of("E2EHostDown", lambda i: i["status"] == "resolved"),
        RESOLVE_WITHIN,
        "the bridge to resolve the alert of the killed Prometheus once its endsAt passed",
        watch=survivors,
    )
    check_resolved(resolved, incident)
    assert datetime.fromisoformat(resolved["resolved_at"]) > killed_at
    metrics = bridge.metrics()
    assert metric_value(metrics, "bridge_alerts_expired_total", source="prometheus") >= 1
