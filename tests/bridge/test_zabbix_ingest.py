"""The captured Zabbix 6.0 webhooks through the real app: problems, updates and recoveries."""

from __future__ import annotations

import json
from typing import Any

from tests.bridge.conftest import CAPTURED, Bridge

ZABBIX = CAPTURED / "zabbix"
WEBHOOK = "/api/v1/webhooks/zabbix"


async def send(bridge: Bridge, *names: str) -> None:
    for name in names:
        bridge.clock.advance(5)
        body = json.loads((ZABBIX / f"webhook-{name}.json").read_text())
        status, answer = await bridge.post_json(WEBHOOK, body)
        assert status == 200, (name, answer)
        assert answer["rejected"] == []


async def incident_of(bridge: Bridge, event_id: int) -> dict[str, Any]:
    alerts = (await bridge.get_json("/api/v1/alerts?source=zabbix&limit=100"))["alerts"]
    (alert,) = [a for a in alerts if a["fingerprint"] == f"zabbix:{event_id}"]
    found: dict[str, Any] = await bridge.get_json(f"/api/v1/incidents/{alert['incident_id']}")
    return found


def kinds(incident: dict[str, Any]) -> list[str]:
    return [entry["kind"] for entry in incident["timeline"]]


async def test_problem_acknowledge_unacknowledge_resolve(bridge: Bridge) -> None:
    await send(bridge, "problem-sev2-warning", "update-acknowledged-sev2-warning")
    incident = await incident_of(bridge, 3)
    assert incident["status"] == "acknowledged"
    assert incident["severity"] == "warning"
    assert incident["timeline"][-1]["actor"].startswith("zabbix:")
    await send(bridge, "update-unacknowledged-sev2-warning", "resolved-sev2-warning")
    incident = await incident_of(bridge, 3)
    assert kinds(incident) == [
        "opened",
        "acknowledged",
        "unacknowledged",
        "alert_resolved",
        "resolved",
    ]


async def test_a_severity_change_raises_the_incident_severity(bridge: Bridge) -> None:
    await send(bridge, "problem-sev3-average")
    assert (await incident_of(bridge, 4))["severity"] == "minor"
    await send(bridge, "update-severity-changed-sev3-average")
    incident = await incident_of(bridge, 4)
    assert incident["severity"] == "major"
    assert kinds(incident) == ["opened", "alert_changed"]


async def test_a_manual_close_is_noted_and_the_recovery_resolves(bridge: Bridge) -> None:
    await send(bridge, "problem-sev4-high", "update-closed-sev4-high")
    incident = await incident_of(bridge, 5)
    assert kinds(incident) == ["opened", "comment"]
    assert "closed" in incident["timeline"][-1]["message"]
    await send(bridge, "resolved-manual-close-sev4-high")
    assert (await incident_of(bridge, 5))["status"] == "resolved"


async def test_every_severity_opens_and_resolves(bridge: Bridge) -> None:
    severities = {
        "sev0-not-classified": "info",
        "sev1-information": "info",
        "sev2-warning": "warning",
        "sev5-disaster": "critical",
    }
    event_ids = {"sev0-not-classified": 1, "sev1-information": 2, "sev2-warning": 3}
    event_ids["sev5-disaster"] = 6
    for name, severity in severities.items():
        await send(bridge, f"problem-{name}")
        assert (await incident_of(bridge, event_ids[name]))["severity"] == severity
        await send(bridge, f"resolved-{name}")
        assert (await incident_of(bridge, event_ids[name]))["status"] == "resolved"


async def test_a_retried_message_is_a_duplicate(bridge: Bridge) -> None:
    await send(bridge, "retry-flaky503-problem-sev2-warning", "retry-flaky503-problem-sev2-warning")
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_dedup_outcomes_total{outcome="duplicate",source="zabbix"} 1.0' in metrics
