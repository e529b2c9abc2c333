"""Nagios -> bridge, all real (Nagios Core 4.4.6, the shipped `bridge.cfg` and `bridge-notify`).

A private Nagios (see `tests/e2e/nagios.py`) checks one host and one service every second with
the real `check_dummy`, fed by state files this test writes, and notifies `bridge run` through
the shipped commands in environment mode. One stack serves the module; the service test and
the host test use different alerts (`HTTP`, `HostDown`), so their order does not matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import open_peers
from tests.e2e.harness import BridgeAPI, Json, Service, metric_value, wait_until
from tests.e2e.nagios import (
    CRITICAL,
    HOST,
    OK,
    SERVICE,
    Nagios,
    start_nagios,
)

pytestmark = pytest.mark.e2e

# A check runs every second and the sender posts at once; the margin is for a loaded machine.
WITHIN = 20.0
ACK_AUTHOR = "alice"
# Characters argument mode would strip: the shipped environment mode must keep them.
ACK_COMMENT = 'looking at it (it\'s the "lb-02" pool & <eu-west>)'


@dataclass(frozen=True)
class Pipeline:
    nagios: Nagios
    bridge: BridgeAPI
    processes: list[Service]


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    directory = tmp_path_factory.mktemp("nagios-pipeline")
    with open_peers(directory, request.config) as peers:
        bridge = peers.start_bridge()
        nagios = start_nagios(peers.stack, bridge)
        yield Pipeline(nagios, BridgeAPI(bridge.url), [bridge, nagios.process])


def timeline_kinds(incident: Json) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


def test_service_problem_acknowledgement_and_recovery(pipeline: Pipeline) -> None:
    bridge, nagios, watch = pipeline.bridge, pipeline.nagios, pipeline.processes
    nagios.set_service_state(CRITICAL, "connect to address 127.0.0.1 port 80: Connection refused")

    incident = wait_until(
        lambda: bridge.incident_of(SERVICE),
        WITHIN,
        f"an incident holding the {SERVICE} alert after the service went CRITICAL",
        watch=watch,
    )
    assert incident["status"] == "new"
    assert incident["severity"] == "critical"
    assert incident["title"] == "CRITICAL: connect to address 127.0.0.1 port 80: Connection refused"
    assert incident["resolved_at"] is None
    [alert] = incident["alerts"]
    assert alert["source"] == "nagios"
    assert alert["status"] == "firing"
    assert alert["fingerprint"] == f"service:{HOST}/{SERVICE}"
    assert alert["labels"]["alertname"] == SERVICE
    assert alert["labels"]["host"] == HOST
    assert alert["labels"]["service"] == SERVICE
    assert alert["annotations"]["state"] == "CRITICAL"
    assert timeline_kinds(incident)[0] == "opened"

    nagios.external_command(
        f"ACKNOWLEDGE_SVC_PROBLEM;{HOST};{SERVICE};1;1;1;{ACK_AUTHOR};{ACK_COMMENT}"
    )
    acknowledged = wait_until(
        lambda: bridge.incident_of(SERVICE, lambda i: i["status"] == "acknowledged"),
        WITHIN,
        f"the {SERVICE} incident to be acknowledged after ACKNOWLEDGE_SVC_PROBLEM",
        watch=watch,
    )
    assert acknowledged["id"] == incident["id"]
    assert acknowledged["acknowledged_at"] is not None
    [entry] = [e for e in acknowledged["timeline"] if e["kind"] == "acknowledged"]
    assert entry["actor"] == f"nagios:{ACK_AUTHOR}"
    assert entry["message"] == ACK_COMMENT

    nagios.set_service_state(OK, "HTTP OK: HTTP/1.1 200 OK - 512 bytes in 0.001 second")
    resolved = wait_until(
        lambda: bridge.incident_of(SERVICE, lambda i: i["status"] == "resolved"),
        WITHIN,
        f"the {SERVICE} incident to resolve after the service recovered",
        watch=watch,
    )
    assert resolved["id"] == incident["id"]
    assert resolved["resolved_at"] is not None
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    kinds = timeline_kinds(resolved)
    assert (kinds[0], kinds[-1]) == ("opened", "resolved"), kinds

    # PROBLEM, ACKNOWLEDGEMENT, RECOVERY
    assert metric_value(bridge.metrics(), "bridge_events_received_total", source="nagios") >= 3
    assert nagios.failed_notifications() == [], "bridge-notify exited non-zero"


def test_host_down_and_up(pipeline: Pipeline) -> None:
    bridge, nagios, watch = pipeline.bridge, pipeline.nagios, pipeline.processes
    nagios.set_host_state(CRITICAL, "CRITICAL - Host Unreachable (127.0.0.1)")

    incident = wait_until(
        lambda: bridge.incident_of("HostDown"),
        WITHIN,
        f"a HostDown incident after {HOST} went DOWN",
        watch=watch,
    )
    assert incident["status"] == "new"
    assert incident["severity"] == "critical"
    [alert] = incident["alerts"]
    assert alert["source"] == "nagios"
    assert alert["status"] == "firing"
    assert alert["fingerprint"] == f"host:{HOST}"
    assert alert["labels"]["alertname"] == "HostDown"
    assert alert["labels"]["host"] == HOST
    assert "service" not in alert["labels"]
    assert alert["annotations"]["state"] == "DOWN"

    nagios.set_host_state(OK, "PING OK - Packet loss = 0%, RTA = 0.05 ms")
    resolved = wait_until(
        lambda: bridge.incident_of("HostDown", lambda i: i["status"] == "resolved"),
        WITHIN,
        f"the HostDown incident to resolve after {HOST} came back UP",
        watch=watch,
    )
    assert resolved["id"] == incident["id"]
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    kinds = timeline_kinds(resolved)
    assert (kinds[0], kinds[-1]) == ("opened", "resolved"), kinds

    # PROBLEM, RECOVERY
    assert metric_value(bridge.metrics(), "bridge_events_received_total", source="nagios") >= 2
    assert nagios.failed_notifications() == [], "bridge-notify exited non-zero"
