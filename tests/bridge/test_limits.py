"""Input limits: items per request, labels per alert and their length, what a database index
can hold (fingerprints; keys made of long label values are bounded by the rules, identically
on SQLite and PostgreSQL), NUL in any text, and a rate per source with 429 and `Retry-After`;
every refusal counted."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.api.limits import MAX_ACTOR_CHARS, MAX_FINGERPRINT_BYTES, Limits, RateLimiter
from bridge.api.limits import within_label_limits as within_limits
from connectors.parsed import Parsed
from rules.keys import MAX_KEY_BYTES
from rules.model import AlertStatus, Event, Severity
from tests.bridge.conftest import CAPTURED, Bridge


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


def test_a_full_bucket_admits_a_batch_larger_than_the_burst_and_the_debt_is_waited_for() -> None:
    # RATE_LIMIT=5: bursts of 10. An 11-item batch used to get 429 Retry-After: 1 forever.
    ticks = Ticks()
    limiter = RateLimiter(rate=5, burst=10, clock=ticks)
    assert limiter.take("am", 11) is None  # the bucket is full: admitted, 1 item in debt
    assert limiter.take("am", 1) == pytest.approx(0.4)  # the debt and this item, at 5/s
    ticks.now += 0.4
    assert limiter.take("am", 1) is None
    assert limiter.take("am", 0) is None  # nothing to take (a batch of rejects only)
    # Another large batch waits until the bucket is full again: 2s for 10 tokens at 5/s.
    assert limiter.take("am", 40) == pytest.approx(2.0)
    ticks.now += 1.0
    assert limiter.take("am", 40) == pytest.approx(1.0)
    ticks.now += 1.0
    assert limiter.take("am", 40) is None  # 30 in debt: 6.2s until one more item
    assert limiter.take("am", 1) == pytest.approx(6.2)
    assert limiter.take("other", 40) is None  # each source its own bucket


def test_large_batches_get_through_at_the_configured_average_rate() -> None:
    ticks = Ticks()
    limiter = RateLimiter(rate=5, burst=10, clock=ticks)
    start, admitted = ticks.now, 0
    while admitted < 500:
        wait = limiter.take("am", 50)
        if wait is None:
            admitted += 50
        else:
            assert wait > 0
            ticks.now += wait  # as a sender honouring Retry-After (unrounded) would
    # 500 items at 5/s: the first batch rides on the burst, the other 450 items wait 90s.
    assert ticks.now - start == pytest.approx(90.0)


def test_a_burst_below_one_item_still_admits_single_items() -> None:
    ticks = Ticks()
    limiter = RateLimiter(rate=0.25, burst=0.5, clock=ticks)  # RATE_LIMIT=0.25
    assert limiter.take("a", 1) is None
    assert limiter.take("a", 1) == pytest.approx(4.0)  # until full again: 1 token at 0.25/s


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


# What a database index can hold. PostgreSQL refuses an index row over ~2,704 bytes; SQLite
# takes anything, so the same input must get the same answer from both (the `bridge` fixture
# runs each test on both). PostgreSQL compresses repetitive values, hence incompressible text.


def noise(seed: str, chars: int) -> str:
    blocks = (hashlib.sha256(f"{seed}{i}".encode()).hexdigest() for i in range(chars // 64 + 1))
    return "".join(blocks)[:chars]


def size(text: str) -> int:
    return len(text.encode())


# The default label limits (4,096 characters per value), with room for a few items per batch.
default_label_limits = pytest.mark.parametrize("settings_overrides", [{"max_batch_items": 10}])


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@default_label_limits
async def test_a_long_label_value_the_rules_group_by_is_stored(bridge: Bridge) -> None:
    # The shipped `per-alert` rule groups by alertname, instance and host (host: the instance
    # without its port): a 4,000-character instance made an 8 KB incident key, and PostgreSQL
    # answered "index row size ... exceeds btree version 4 maximum 2704 for index
    # ix_incidents_key" with a 500, forever retried.
    instance = noise("instance", 4000)
    firing: dict[str, Any] = {}

    async def send(*, ended: bool) -> None:
        nonlocal firing
        if not ended:
            firing = {**alert("DiskFull", instance=instance), "startsAt": iso(bridge.clock.now())}
        item = {**firing, "endsAt": iso(bridge.clock.now())} if ended else firing
        status, answer = await bridge.post_json("/api/v2/alerts", [item])
        assert (status, answer["accepted"], answer["rejected"]) == (200, 1, []), answer
        bridge.clock.advance(60)

    # Fires, resolves, fires again (a reopen) twice: the shipped `recurring` problem rule
    # (3 occurrences of a key within 24h) opens a problem at the third.
    for ended in (False, True, False, True, False):
        await send(ended=ended)
    [incident] = (await bridge.get_json("/api/v1/incidents"))["incidents"]
    assert (incident["status"], incident["reopen_count"]) == ("new", 2)
    assert size(incident["key"]) <= MAX_KEY_BYTES
    assert incident["key"].startswith("per-alert{alertname='DiskFull',instance='")
    [stored] = (await bridge.get_json("/api/v1/alerts"))["alerts"]
    assert (stored["labels"]["instance"], stored["incident_id"]) == (instance, incident["id"])
    [problem] = (await bridge.get_json("/api/v1/problems"))["problems"]
    assert size(problem["key"]) <= MAX_KEY_BYTES
    assert problem["key"].startswith("recurring:per-alert{alertname='DiskFull',instance='")
    assert incident["problem_id"] == problem["id"]
    # Past the reopen window the key opens a new incident, found under the same bounded key
    # and linked to the same problem (the store is asked for the keys the rules write).
    await send(ended=True)
    bridge.clock.advance(2 * 3600)
    await send(ended=False)
    newer, older = (await bridge.get_json("/api/v1/incidents"))["incidents"]
    assert (newer["key"], newer["seq"], newer["problem_id"]) == (older["key"], 1, problem["id"])
    [problem] = (await bridge.get_json("/api/v1/problems"))["problems"]
    assert problem["incident_count"] == 2


def alertmanager_webhook(group_key: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    path = CAPTURED / "alertmanager" / "am-01-firing-bridge-critical-hostdown-1alerts.json"
    body: dict[str, Any] = json.loads(path.read_text())
    template = body["alerts"][0]
    body["groupKey"] = group_key
    body["alerts"] = [{**copy.deepcopy(template), **a} for a in alerts]
    return body


@default_label_limits
async def test_long_group_keys_equal_labels_and_fingerprints_at_the_limit_are_stored(
    bridge: Bridge,
) -> None:
    # The worst case: an inhibitor's primary key holds the rule, the bounded `equal` values
    # (host), the source and a fingerprint of the longest length allowed; the Alertmanager
    # group's incident key holds a 6,000-character group key.
    host = noise("host", 4000)
    down = {
        "labels": {"alertname": "HostDown", "host": host, "severity": "critical"},
        "fingerprint": noise("down", MAX_FINGERPRINT_BYTES),
    }
    disk = {
        "labels": {"alertname": "DiskFull", "host": host, "severity": "warning"},
        "fingerprint": noise("disk", MAX_FINGERPRINT_BYTES),
    }
    group_key = noise("group", 6000)
    status, answer = await bridge.post_json(
        "/api/v1/webhooks/alertmanager", alertmanager_webhook(group_key, down, disk)
    )
    assert (status, answer["accepted"], answer["rejected"]) == (200, 2, []), answer
    [incident] = (await bridge.get_json("/api/v1/incidents"))["incidents"]
    assert incident["rule"] == "host-down"
    assert size(incident["key"]) <= MAX_KEY_BYTES
    [held] = (await bridge.get_json("/api/v1/alerts?hold=inhibited"))["alerts"]
    assert held["fingerprint"] == disk["fingerprint"]
    # The same group again, with an alert the `alertmanager-group` rule takes: grouped by the
    # (bounded) group key, twice into one incident.
    other = {"labels": {"alertname": "QueueSlow", "host": "q-1"}, "fingerprint": "q1"}
    again = {"labels": {"alertname": "QueueFull", "host": "q-1"}, "fingerprint": "q2"}
    for item in (other, again):
        bridge.clock.advance(30)
        webhook = alertmanager_webhook(group_key, item)
        status, answer = await bridge.post_json("/api/v1/webhooks/alertmanager", webhook)
        assert (status, answer["accepted"]) == (200, 1), answer
    grouped = [
        i
        for i in (await bridge.get_json("/api/v1/incidents"))["incidents"]
        if i["rule"] == "alertmanager-group"
    ]
    assert [(size(i["key"]) <= MAX_KEY_BYTES, i["alert_count"]) for i in grouped] == [(True, 2)]


@default_label_limits
async def test_a_fingerprint_over_the_limit_is_refused_alone(bridge: Bridge) -> None:
    long = {"labels": {"alertname": "Long"}, "fingerprint": noise("fp", MAX_FINGERPRINT_BYTES + 1)}
    fine = {"labels": {"alertname": "Fine"}, "fingerprint": "f1"}
    webhook = alertmanager_webhook("{}:{}", long, fine)
    status, answer = await bridge.post_json("/api/v1/webhooks/alertmanager", webhook)
    assert (status, answer["accepted"]) == (200, 1), answer
    [refused] = answer["rejected"]
    assert refused["field"] == "fingerprint"
    assert refused["message"].endswith(
        f"1025 bytes, at most {MAX_FINGERPRINT_BYTES} (UTF-8) allowed"
    )
    assert len(refused["message"]) < 200  # the fingerprint is not echoed whole
    stored = (await bridge.get_json("/api/v1/alerts"))["alerts"]
    assert [a["fingerprint"] for a in stored] == ["f1"]
    # A generic mapping's `fingerprint_path` (SolarWinds' alert object id), 6,000 characters:
    # the body's one item refused, so 422 (a 500 on PostgreSQL before).
    orion = {"status": "triggered", "alert_object_id": noise("orion", 6000), "alert_name": "Vol",
             "severity": "Serious", "object": "C:", "node": "fs-03", "message": "full",
             "details_url": "https://orion.example/x"}  # fmt: skip
    status, answer = await bridge.post_json("/api/v1/webhooks/generic/solarwinds", orion)
    assert status == 422, answer
    assert [r["field"] for r in answer["rejected"]] == ["fingerprint"]
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_events_rejected_total{reason="label_limit",source="solarwinds"} 1.0' in metrics


@default_label_limits
async def test_a_nul_in_the_group_key_or_receiver_refuses_the_items(bridge: Bridge) -> None:
    item = {"labels": {"alertname": "A"}, "fingerprint": "a1"}
    for field, body in [
        ("groupKey", alertmanager_webhook("{}:{a=\x00}", item)),
        ("receiver", {**alertmanager_webhook("{}:{}", item), "receiver": "b\x00"}),
    ]:
        status, answer = await bridge.post_json("/api/v1/webhooks/alertmanager", body)
        assert status == 422, answer  # the notification's only item: none is valid
        assert [(r["field"], "NUL" in r["message"]) for r in answer["rejected"]] == [(field, True)]
    assert (await bridge.get_json("/api/v1/alerts"))["alerts"] == []


@default_label_limits
async def test_an_actor_over_the_limit_is_refused(bridge: Bridge) -> None:
    # The timeline keeps `nagios:<author>` in 200 characters: a longer acknowledgement author
    # was a 500 on PostgreSQL.
    nagios = CAPTURED / "nagios"
    problem = json.loads(
        (nagios / "nagios-03-service-problem-e2e-web-01-http-critical.json").read_text()
    )
    ack = json.loads(
        (nagios / "nagios-04-service-acknowledgement-e2e-web-01-http-critical.json").read_text()
    )
    status, answer = await bridge.post_json("/api/v1/webhooks/nagios", problem)
    assert status == 200, answer
    bridge.clock.advance(5)
    long_ack = {k: "a" * (MAX_ACTOR_CHARS + 1) if "AUTHOR" in k else v for k, v in ack.items()}
    status, answer = await bridge.post_json("/api/v1/webhooks/nagios", long_ack)
    assert status == 422, answer
    [refused] = answer["rejected"]
    assert refused["field"] == "actor"
    assert refused["message"].endswith("129 characters, at most 128 allowed")
    fits = {k: "a" * MAX_ACTOR_CHARS if "AUTHOR" in k else v for k, v in ack.items()}
    status, answer = await bridge.post_json("/api/v1/webhooks/nagios", fits)
    assert (status, answer["accepted"]) == (200, 1), answer
    [incident] = (await bridge.get_json("/api/v1/incidents"))["incidents"]
    assert incident["status"] == "acknowledged"


def test_a_nul_in_any_text_field_of_an_event_refuses_it() -> None:
    # Every text the connectors can put in an `Event` (a field added later too).
    event = Event(
        source="alertmanager", fingerprint="fp", status=AlertStatus.FIRING,
        labels={"alertname": "A"}, annotations={"summary": "s"}, severity=Severity.WARNING,
        starts_at=datetime(2026, 1, 1, tzinfo=UTC), ends_at=None, expires_at=None,
        generator_url="http://x", group_key="{}:{}", receiver="r", digest="d", actor="alice",
        message="m",
    )  # fmt: skip
    limits = Limits(max_batch_items=10, max_labels=10, max_label_length=100)
    assert within_limits(Parsed(events=[event], items=1), limits).events == [event]
    texts = [f.name for f in dataclasses.fields(Event) if f.type in ("str", "str | None")]
    assert len(texts) == 8
    for name in texts:
        changes: dict[str, Any] = {name: "a\x00b"}
        spoiled = dataclasses.replace(event, **changes)
        checked = within_limits(Parsed(events=[spoiled], items=1), limits)
        assert checked.events == [], name
        assert "NUL" in checked.rejects[0].message, name
