"""Bad input gets a clear 4xx, never a 500, and never takes good items down with it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.bridge.conftest import CAPTURED, Bridge

WEBHOOK = "/api/v1/webhooks/alertmanager"


def am_body() -> dict[str, Any]:
    name = "am-04-firing-bridge-warning-diskfull-3alerts.json"
    loaded: dict[str, Any] = json.loads((CAPTURED / "alertmanager" / name).read_text())
    return loaded


async def metrics_text(bridge: Bridge) -> str:
    return await (await bridge.client.get("/metrics")).text()


async def test_invalid_json_is_400_and_counted(bridge: Bridge) -> None:
    response = await bridge.client.post(
        WEBHOOK, data=b'{"alerts": [', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert "invalid JSON" in (await response.json())["error"]
    text = await metrics_text(bridge)
    expected = 'bridge_requests_rejected_total{reason="invalid_json",source="alertmanager"} 1.0'
    assert expected in text


async def test_wrong_content_type_is_415(bridge: Bridge) -> None:
    response = await bridge.client.post(WEBHOOK, data=b"alerts=1")
    assert response.status == 415
    assert "application/json" in (await response.json())["error"]


@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 2048}])
async def test_body_over_the_limit_is_413(bridge: Bridge) -> None:
    response = await bridge.client.post(WEBHOOK, json=am_body())  # about 3.8 KB
    assert response.status == 413
    text = await metrics_text(bridge)
    assert 'reason="body_too_large",source="alertmanager"} 1.0' in text


async def test_wrong_top_level_shape_is_422_naming_the_field(bridge: Bridge) -> None:
    status, answer = await bridge.post_json(WEBHOOK, {"alerts": "not a list"})
    assert status == 422
    assert answer["rejected"][0]["field"] == "alerts"


async def test_bad_items_are_listed_and_good_ones_beside_them_are_stored(bridge: Bridge) -> None:
    body = am_body()
    body["alerts"][1]["labels"]["severity"] = 5
    body["alerts"][2]["startsAt"] = "yesterday"
    status, answer = await bridge.post_json(WEBHOOK, body)
    assert status == 200
    assert answer["accepted"] == 1
    rejected = {(r["index"], r["field"]) for r in answer["rejected"]}
    assert rejected == {(1, "alerts[1].labels.severity"), (2, "alerts[2].startsAt")}
    stored = (await bridge.get_json("/api/v1/alerts"))["alerts"]
    assert [a["labels"]["instance"] for a in stored] == ["db-01.e2e.example:9100"]
    text = await metrics_text(bridge)
    assert 'bridge_events_rejected_total{reason="invalid_item",source="alertmanager"} 2.0' in text


async def test_a_batch_with_no_valid_item_is_422_with_every_reject(bridge: Bridge) -> None:
    status, answer = await bridge.post_json("/api/v2/alerts", [{"labels": {}}, "x"])
    assert status == 422
    assert [r["index"] for r in answer["rejected"]] == [0, 1]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        (WEBHOOK, None),
        (WEBHOOK, []),
        (WEBHOOK, {"alerts": [None]}),
        (WEBHOOK, {"alerts": [{"labels": {"a": "b"}, "status": "burning"}]}),
        ("/api/v2/alerts", {"labels": {}}),
        ("/api/v2/alerts", [{"labels": {"alertname": "X"}, "endsAt": 12}]),
        ("/api/v2/alerts", [{"labels": {"alertname": "x" * 100_000}}]),
    ],
)
async def test_malformed_bodies_never_get_a_5xx(bridge: Bridge, path: str, payload: Any) -> None:
    response = await bridge.client.post(path, json=payload)
    assert 400 <= response.status < 500 or response.status == 200
    assert "error" in await response.json() or response.status == 200
