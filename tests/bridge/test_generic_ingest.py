"""Generic JSON webhooks through the real app: each mapping file is a source of its own."""

from __future__ import annotations

import copy

from tests.bridge.conftest import Bridge
from tests.connectors.test_generic import GRAFANA_BODY, solarwinds_body


async def test_grafana_alerts_open_and_resolve_incidents(bridge: Bridge) -> None:
    status, answer = await bridge.post_json(
        "/api/v1/webhooks/generic/grafana", copy.deepcopy(GRAFANA_BODY)
    )
    assert status == 200, answer
    assert answer["rejected"] == []
    alerts = (await bridge.get_json("/api/v1/alerts?source=grafana"))["alerts"]
    assert sorted(a["status"] for a in alerts) == ["firing", "resolved"]
    status_doc = await bridge.get_json("/api/v1/status")
    assert "grafana" in status_doc["last_event_at"]


async def test_solarwinds_trigger_then_reset(bridge: Bridge) -> None:
    path = "/api/v1/webhooks/generic/solarwinds"
    status, _ = await bridge.post_json(path, solarwinds_body("triggered"))
    assert status == 200
    opened = (await bridge.get_json("/api/v1/incidents?status=open"))["incidents"]
    assert len(opened) == 1
    bridge.clock.advance(60)
    status, _ = await bridge.post_json(path, solarwinds_body("reset"))
    assert status == 200
    assert (await bridge.get_json("/api/v1/incidents?status=open"))["incidents"] == []


async def test_an_unknown_mapping_is_404(bridge: Bridge) -> None:
    response = await bridge.client.post("/api/v1/webhooks/generic/nosuch", json={})
    assert response.status == 404
    assert "nosuch" in (await response.json())["error"]


async def test_an_item_the_mapping_cannot_read_is_rejected_by_path(bridge: Bridge) -> None:
    body = solarwinds_body("pending")
    status, answer = await bridge.post_json("/api/v1/webhooks/generic/solarwinds", body)
    assert status == 422
    assert answer["rejected"][0]["field"] == "status"
