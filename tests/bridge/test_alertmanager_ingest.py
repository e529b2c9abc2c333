"""The captured Alertmanager scenario through the real app and database."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.bridge.conftest import CAPTURED, Bridge

AM = CAPTURED / "alertmanager"
WEBHOOK = "/api/v1/webhooks/alertmanager"
# Arrival times from the capture README, so the fake clock replays the scenario.
SCENARIO = [
    ("am-01-firing-bridge-critical-hostdown-1alerts.json", "19:59:36.699"),
    ("am-02-firing-bridge-default-prometheusselfscrapeup-1alerts.json", "19:59:36.704"),
    ("am-03-firing-bridge-warning-highlatency-1alerts.json", "19:59:36.705"),
    ("am-04-firing-bridge-warning-diskfull-3alerts.json", "19:59:38.703"),
    ("am-05-resolved-bridge-critical-hostdown-1alerts.json", "19:59:46.699"),
    ("am-06-firing-bridge-warning-highlatency-2alerts.json", "19:59:46.703"),
    ("am-07-firing-bridge-warning-diskfull-3alerts-2firing-1resolved.json", "19:59:48.705"),
    ("am-08-resolved-bridge-warning-highlatency-2alerts.json", "19:59:56.705"),
    ("am-09-resolved-bridge-default-prometheusselfscrapeup-1alerts.json", "19:59:56.706"),
    ("am-10-resolved-bridge-warning-diskfull-3alerts.json", "19:59:58.706"),
]


def body(name: str) -> Any:
    return json.loads((AM / name).read_text())


def arrival(hms: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-23T{hms}+00:00")


async def replay(bridge: Bridge, upto: int) -> None:
    for name, hms in SCENARIO[:upto]:
        bridge.clock.set(arrival(hms))
        status, answer = await bridge.post_json(WEBHOOK, body(name))
        assert status == 200, answer
        assert answer["rejected"] == []


async def incidents(bridge: Bridge, status: str | None = None) -> list[dict[str, Any]]:
    query = f"?status={status}" if status else ""
    found: list[dict[str, Any]] = (await bridge.get_json(f"/api/v1/incidents{query}"))["incidents"]
    return sorted(found, key=lambda i: i["id"])


async def test_fire_phase_opens_one_incident_per_alertmanager_group(bridge: Bridge) -> None:
    await replay(bridge, 4)
    opened = await incidents(bridge, "open")
    assert [i["rule"] for i in opened] == [
        "host-down",
        "alertmanager-group",
        "alertmanager-group",
        "alertmanager-group",
    ]
    # The shipped `normalize` rules shorten host names to what the CMDB uses.
    assert opened[0]["title"] == "HostDown on web-01"
    assert opened[0]["severity"] == "critical"
    disk = await bridge.get_json(f"/api/v1/incidents/{opened[3]['id']}")
    assert disk["firing_alerts"] == 3
    assert sorted(a["labels"]["instance"] for a in disk["alerts"]) == [
        "db-01.e2e.example:9100",
        "db-02.e2e.example:9100",
        "db-03.e2e.example:9100",
    ]
    assert {a["fingerprint"] for a in disk["alerts"]} == {
        a["fingerprint"] for a in body(SCENARIO[3][0])["alerts"]
    }


async def test_partial_phase_resolves_per_alert_inside_a_firing_notification(
    bridge: Bridge,
) -> None:
    await replay(bridge, 7)
    all_incidents = await incidents(bridge)
    host, _info, latency, disk = all_incidents
    assert host["status"] == "resolved"
    assert latency["status"] == "new"
    assert latency["alert_count"] == 2  # web-01 joined once its inhibition ended
    assert disk["status"] == "new"
    assert disk["firing_alerts"] == 2  # db-03 resolved inside a "firing" notification


async def test_whole_scenario_ends_with_every_incident_resolved_and_a_timeline(
    bridge: Bridge,
) -> None:
    await replay(bridge, len(SCENARIO))
    assert await incidents(bridge, "open") == []
    resolved = await incidents(bridge, "resolved")
    assert len(resolved) == 4
    disk = await bridge.get_json(f"/api/v1/incidents/{resolved[3]['id']}")
    kinds = [entry["kind"] for entry in disk["timeline"]]
    assert kinds == [
        "opened",
        "alert_attached",
        "alert_attached",
        "alert_resolved",
        "alert_resolved",
        "alert_resolved",
        "resolved",
    ]
    assert {a["status"] for a in disk["alerts"]} == {"resolved"}


async def test_the_same_webhook_delivered_twice_changes_nothing(bridge: Bridge) -> None:
    await replay(bridge, 4)
    before = await incidents(bridge)
    alerts_before = (await bridge.get_json("/api/v1/alerts"))["alerts"]
    bridge.clock.advance(2)  # an HA replica delivers the same notification 2 s later
    for name, _ in SCENARIO[:4]:
        status, _answer = await bridge.post_json(WEBHOOK, body(name))
        assert status == 200
    assert await incidents(bridge) == before
    assert (await bridge.get_json("/api/v1/alerts"))["alerts"] == alerts_before
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_dedup_outcomes_total{outcome="duplicate",source="alertmanager"} 6.0' in metrics


async def test_truncated_notifications_keep_what_they_show(bridge: Bridge) -> None:
    bridge.clock.set(arrival("20:00:12.381"))
    name = "am-maxalerts2-04-firing-bridge-warning-diskfull-2alerts-truncated1.json"
    status, answer = await bridge.post_json(WEBHOOK, body(name))
    assert (status, answer["accepted"], answer["truncated"]) == (200, 2, 1)
    bridge.clock.set(arrival("20:00:32.383"))
    name = "am-maxalerts2-10-resolved-bridge-warning-diskfull-2alerts-truncated1.json"
    status, _ = await bridge.post_json(WEBHOOK, body(name))
    assert status == 200
    assert [i["status"] for i in await incidents(bridge)] == ["resolved"]
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_alerts_truncated_total{source="alertmanager"} 2.0' in metrics
