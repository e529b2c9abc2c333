"""Input limits: items per request, labels per alert and their length, and a rate per source
with 429 and `Retry-After`; every refusal counted."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.api.limits import RateLimiter
from tests.bridge.conftest import Bridge


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limiter_grants_bursts_and_says_how_long_to_wait() -> None:
    ticks = Ticks()
    limiter = RateLimiter(rate=10, burst=20, clock=ticks)
    assert limiter.take("a", 20) is None  # a full burst
    assert limiter.take("a", 5) == pytest.approx(0.5)  # 5 items at 10/s
    assert limiter.take("b", 20) is None  # each source its own bucket
    ticks.now += 0.5
    assert limiter.take("a", 5) is None
    assert limiter.take("a", 100) == pytest.approx(2.0)  # at most a full burst is waited for
    assert RateLimiter(rate=0, burst=0).take("a", 10**9) is None  # 0: no limit


def alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "instance": "h:1", **labels},
        "endsAt": "2099-01-01T00:00:00Z",
    }


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_batch_items": 3, "max_labels": 5, "max_label_length": 32, "rate_limit": 2.0}


async def test_a_batch_over_the_item_limit_is_refused_whole(bridge: Bridge) -> None:
    status, answer = await bridge.post_json("/api/v2/alerts", [alert(f"A{i}") for i in range(4)])
    assert status == 413
    assert answer["reason"] == "too_many_items"
    metrics = await (await bridge.client.get("/metrics")).text()
    assert (
        'bridge_requests_rejected_total{reason="too_many_items",source="prometheus"} 1.0' in metrics
    )


async def test_an_alert_over_the_label_limits_is_refused_alone(bridge: Bridge) -> None:
    crowded = alert("Crowded", a="1", b="2", c="3", d="4")
    long = alert("Long", team="x" * 33)
    status, answer = await bridge.post_json("/api/v2/alerts", [alert("Fine"), crowded, long])
    assert status == 200, answer
    assert answer["accepted"] == 1
    messages = sorted(r["message"] for r in answer["rejected"])
    # 4 of its own, alertname, instance and the `host` the connector derives from instance
    assert "7 labels, at most 5 allowed" in messages[0] + messages[1]
    assert "longer than 32 characters" in messages[0] + messages[1]
    stored = (await bridge.get_json("/api/v1/alerts"))["alerts"]
    assert [a["labels"]["alertname"] for a in stored] == ["Fine"]
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_events_rejected_total{reason="label_limit",source="prometheus"} 2.0' in metrics


async def test_a_source_over_its_rate_gets_429_with_retry_after(bridge: Bridge) -> None:
    # rate 2 items/s, bursts of 4
    first = await bridge.client.post("/api/v2/alerts", json=[alert("R1"), alert("R2"), alert("R3")])
    assert first.status == 200
    second = await bridge.client.post("/api/v2/alerts", json=[alert("R4"), alert("R5")])
    assert second.status == 429
    assert second.headers["Retry-After"] == "1"
    assert (await second.json())["reason"] == "rate_limited"
    # Another source has its own budget.
    nagios = await bridge.client.post("/api/v1/webhooks/nagios", json={"HOSTNAME": "x"})
    assert nagios.status != 429
    metrics = await (await bridge.client.get("/metrics")).text()
    assert (
        'bridge_requests_rejected_total{reason="rate_limited",source="prometheus"} 1.0' in metrics
    )
    stored = {a["labels"]["alertname"] for a in (await bridge.get_json("/api/v1/alerts"))["alerts"]}
    assert stored == {"R1", "R2", "R3"}


async def test_an_alert_with_a_nul_character_is_refused_alone(bridge: Bridge) -> None:
    # PostgreSQL cannot store NUL in text: without this the whole batch failed with a 500.
    status, answer = await bridge.post_json(
        "/api/v2/alerts", [alert("Fine"), alert("Nul", team="a\x00b")]
    )
    assert status == 200, answer
    assert answer["accepted"] == 1
    assert "NUL" in answer["rejected"][0]["message"]
    assert answer["rejected"][0]["field"] == "labels"
    # In an annotation's name or value: refused alone too, naming the annotations.
    for notes in ({"summary": "a\x00b"}, {"sum\x00mary": "ok"}):
        body = [alert("Fine2"), {**alert("Nul2"), "annotations": notes}]
        status, answer = await bridge.post_json("/api/v2/alerts", body)
        assert (status, answer["accepted"]) == (200, 1), answer
        assert answer["rejected"][0]["field"] == "annotations", answer
    window = {"name": "w", "matchers": ['host="a"'], "created_by": "a\x00", "reason": "x",
              "start": "2026-11-23T00:00:00Z", "end": "2026-11-24T00:00:00Z"}  # fmt: skip
    status, answer = await bridge.post_json("/api/v1/maintenance", window)
    assert status == 422, answer
