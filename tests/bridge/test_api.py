"""Operator actions, status, health and metrics."""

from __future__ import annotations

import asyncio
import json
import shutil
from asyncio.subprocess import PIPE, STDOUT
from typing import Any

import pytest

from tests.bridge.conftest import CAPTURED, Bridge

WEBHOOK = "/api/v1/webhooks/alertmanager"


async def open_one(bridge: Bridge) -> int:
    name = "am-01-firing-bridge-critical-hostdown-1alerts.json"
    body = json.loads((CAPTURED / "alertmanager" / name).read_text())
    status, _ = await bridge.post_json(WEBHOOK, body)
    assert status == 200
    incidents = (await bridge.get_json("/api/v1/incidents"))["incidents"]
    incident_id: int = incidents[0]["id"]
    return incident_id


async def test_acknowledge_and_resolve_are_on_the_timeline_with_who_and_why(
    bridge: Bridge,
) -> None:
    incident_id = await open_one(bridge)
    bridge.clock.advance(60)
    ack = {"actor": "alice", "comment": "looking at web-01"}
    status, answer = await bridge.post_json(f"/api/v1/incidents/{incident_id}/acknowledge", ack)
    assert (status, answer["status"]) == (200, "acknowledged")
    done = {"actor": "bob", "comment": "rebooted"}
    status, answer = await bridge.post_json(f"/api/v1/incidents/{incident_id}/resolve", done)
    assert (status, answer["status"]) == (200, "resolved")
    incident = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    entries = [(e["kind"], e["actor"], e["message"]) for e in incident["timeline"]]
    assert entries[1:] == [
        ("acknowledged", "alice", "looking at web-01"),
        ("resolved", "bob", "rebooted"),
    ]
    status, answer = await bridge.post_json(f"/api/v1/incidents/{incident_id}/acknowledge", ack)
    assert status == 409
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_incidents_resolved_total{by="operator",rule="host-down"} 1.0' in metrics


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/api/v1/incidents/999/acknowledge", {"actor": "a"}, 404),
        ("/api/v1/incidents/abc/resolve", {"actor": "a"}, 404),
        ("/api/v1/incidents/1/acknowledge", {"comment": "who?"}, 422),
        ("/api/v1/incidents/1/acknowledge", ["actor"], 422),
    ],
)
async def test_bad_actions_are_refused_clearly(
    bridge: Bridge, path: str, payload: Any, status: int
) -> None:
    await open_one(bridge)
    got, answer = await bridge.post_json(path, payload)
    assert got == status
    assert answer["error"]


async def test_list_filters_are_validated(bridge: Bridge) -> None:
    response = await bridge.client.get("/api/v1/incidents?status=sleeping")
    assert response.status == 400
    response = await bridge.client.get("/api/v1/alerts?limit=0")
    assert response.status == 400


async def test_health_ready_and_status(bridge: Bridge) -> None:
    assert (await bridge.client.get("/-/healthy")).status == 200
    assert (await bridge.client.get("/-/ready")).status == 200
    await open_one(bridge)
    status = await bridge.get_json("/api/v1/status")
    assert status["database"]["backend"] in {"sqlite", "postgresql"}
    assert status["rules"]["files"] == [
        "10-normalize.yaml",
        "20-correlate.yaml",
        "30-operations.yaml",
    ]
    assert status["rules"]["sections"]["correlate"] == 3
    assert status["rules"]["last_reload_error"] is None
    assert len(status["rules"]["hash"]) == 64
    assert status["counts"]["incidents"] == {"new": 1}
    assert status["counts"]["alerts"] == {"firing": 1}
    assert status["counts"]["alerts_by_source"] == {"alertmanager": {"firing": 1}}
    assert set(status["last_event_at"]) == {"alertmanager"}


async def test_metrics_count_the_pipeline_and_pass_promtool(bridge: Bridge) -> None:
    await open_one(bridge)
    response = await bridge.client.get("/metrics")
    text = await response.text()
    assert 'bridge_incidents_opened_total{rule="host-down"} 1.0' in text
    assert 'bridge_incidents{status="new"} 1.0' in text
    assert 'bridge_events_received_total{source="alertmanager"} 1.0' in text
    assert "bridge_ingest_duration_seconds_count" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus"
    lint = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    output, _ = await lint.communicate(text.encode())
    assert lint.returncode == 0, output.decode()
    assert output.decode().strip() == ""
