"""The captured Nagios 4 scenario through the real app: problems, acknowledgements, downtime,
flapping and recoveries become incident changes."""

from __future__ import annotations

import json
from typing import Any

from tests.bridge.conftest import CAPTURED, Bridge

NAGIOS = CAPTURED / "nagios"
WEBHOOK = "/api/v1/webhooks/nagios"
SCENARIO = sorted(p.name for p in NAGIOS.glob("nagios-[0-9][0-9]-*.json"))


async def replay(bridge: Bridge, names: list[str]) -> None:
    for name in names:
        bridge.clock.advance(2)
        status, answer = await bridge.post_json(WEBHOOK, json.loads((NAGIOS / name).read_text()))
        assert status == 200, (name, answer)
        assert answer["rejected"] == []


async def incident_for(bridge: Bridge, fingerprint: str) -> dict[str, Any]:
    incidents = (await bridge.get_json("/api/v1/incidents?limit=100"))["incidents"]
    for summary in incidents:
        found: dict[str, Any] = await bridge.get_json(f"/api/v1/incidents/{summary['id']}")
        if any(a["fingerprint"] == fingerprint for a in found["alerts"]):
            return found
    raise AssertionError(f"no incident holds {fingerprint}")


def kinds(incident: dict[str, Any]) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


async def test_acknowledgement_in_nagios_acknowledges_the_incident(bridge: Bridge) -> None:
    await replay(bridge, SCENARIO[:4])  # ... 03 HTTP CRITICAL, 04 its acknowledgement
    http = await incident_for(bridge, "service:e2e-web-01/HTTP")
    assert http["status"] == "acknowledged"
    ack = http["timeline"][-1]
    assert (ack["kind"], ack["actor"], ack["source"]) == (
        "acknowledged",
        "nagios:alice",
        "connector",
    )
    assert ack["message"].startswith("Investigating: web-01 refuses connections")


async def test_custom_notification_and_downtime_go_on_the_timeline(bridge: Bridge) -> None:
    await replay(bridge, SCENARIO[:6])
    postgres = await incident_for(bridge, "service:e2e-db-01/PostgreSQL")
    assert kinds(postgres) == ["opened", "comment", "maintenance_started"]
    assert postgres["status"] == "new"


async def alert(bridge: Bridge, fingerprint: str) -> dict[str, Any]:
    alerts = (await bridge.get_json("/api/v1/alerts?source=nagios&limit=100"))["alerts"]
    (found,) = [a for a in alerts if a["fingerprint"] == fingerprint]
    result: dict[str, Any] = found
    return result


async def test_downtime_and_flapping_mark_the_alert(bridge: Bridge) -> None:
    await replay(bridge, SCENARIO[:10])  # 06 PostgreSQL downtime starts, 10 queue flapping
    assert (await alert(bridge, "service:e2e-db-01/PostgreSQL"))["maintenance"] is True
    assert (await alert(bridge, "service:e2e-web-01/Queue consumer"))["flapping"] is True
    await replay(bridge, SCENARIO[10:])  # 18 downtime ends, 21 flapping stops
    assert (await alert(bridge, "service:e2e-db-01/PostgreSQL"))["maintenance"] is False
    assert (await alert(bridge, "service:e2e-web-01/Queue consumer"))["flapping"] is False


async def test_host_problems_open_and_recoveries_resolve(bridge: Bridge) -> None:
    await replay(bridge, SCENARIO[:15])  # ... 12 db-01 DOWN, 13 its ack, 14/15 host recoveries
    db_host = await incident_for(bridge, "host:e2e-db-01")
    assert db_host["rule"] == "host-down"
    assert db_host["title"] == "HostDown on e2e-db-01"
    assert db_host["severity"] == "critical"
    assert kinds(db_host) == ["opened", "acknowledged", "alert_resolved", "resolved"]
    app_host = await incident_for(bridge, "host:e2e-app-01")
    assert app_host["status"] == "resolved"
    assert app_host["id"] != db_host["id"]  # one incident per host


async def test_the_whole_scenario_ends_with_every_incident_resolved(bridge: Bridge) -> None:
    await replay(bridge, SCENARIO)
    assert (await bridge.get_json("/api/v1/incidents?status=open"))["incidents"] == []
    # The queue consumer flapped: Nagios suppressed its RECOVERY, so FLAPPINGSTOP in state OK
    # is what resolved it.
    queue = await incident_for(bridge, "service:e2e-web-01/Queue consumer")
    assert kinds(queue)[-3:] == ["flapping_stopped", "alert_resolved", "resolved"]
    postgres = await incident_for(bridge, "service:e2e-db-01/PostgreSQL")
    assert postgres["status"] == "resolved"
    assert "maintenance_ended" in kinds(postgres)


async def test_a_retried_notification_is_a_duplicate(bridge: Bridge) -> None:
    await replay(bridge, SCENARIO[:1])
    await replay(bridge, SCENARIO[:1])
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_dedup_outcomes_total{outcome="duplicate",source="nagios"} 1.0' in metrics
