"""Prometheus alert batches (Alertmanager API v2 body) -> events, proven by captured bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors import prometheus
from connectors.labels import with_host
from connectors.parsed import BodyError, Parsed, RejectReason
from rules.model import AlertStatus, Severity

CAPTURED = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured"
PROM = CAPTURED / "prometheus"
AM = CAPTURED / "alertmanager"
RESOLVE_TIMEOUT = timedelta(minutes=5)
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
Change = Callable[[dict[str, Any]], object]

# Arrival times from the capture README: the `now` each body was received at.
ARRIVALS = {
    "prom-01-firing-hostdown-1alerts.json": "20:00:43.912052",
    "prom-02-firing-highlatency-prometheusselfscrapeup-3alerts.json": "20:00:43.913652",
    "prom-03-firing-diskfull-3alerts.json": "20:00:45.911360",
    "prom-04-firing-highlatency-hostdown-3alerts.json": "20:00:46.912856",
    "prom-05-firing-prometheusselfscrapeup-1alerts.json": "20:00:46.914378",
    "prom-10-firing-hostdown-1alerts-resend.json": "20:00:52.910400",
    "prom-12-resolved-diskfull-hostdown-2alerts.json": "20:00:53.911188",
    "prom-13-firing-diskfull-2alerts.json": "20:00:54.911860",
    "prom-14-firing-highlatency-2alerts.json": "20:00:55.917138",
    "prom-24-resolved-hostdown-1alerts.json": "20:01:02.910253",
    "prom-25-resolved-diskfull-1alerts.json": "20:01:02.917323",
    "prom-26-resolved-diskfull-highlatency-4alerts.json": "20:01:03.914157",
    "prom-27-resolved-prometheusselfscrapeup-1alerts.json": "20:01:03.915704",
    "prom-37-resolved-diskfull-2alerts.json": "20:01:12.909374",
    "prom-38-resolved-highlatency-prometheusselfscrapeup-3alerts.json": "20:01:12.913574",
    "prom-apiv1-01-firing-highlatency-hostdown-3alerts.json": "20:01:22.569782",
    "prom-apiv1-20-resolved-hostdown-1alerts.json": "20:01:38.566276",
    "extra-prom-mixed-diskfull-hostdown-4alerts.json": "19:53:56.680",
    "extra-prom-mixed-diskfull-3alerts.json": "19:53:59.680",
}
MIXED = {
    "extra-prom-mixed-diskfull-hostdown-4alerts.json": [RESOLVED, FIRING, FIRING, RESOLVED],
    "extra-prom-mixed-diskfull-3alerts.json": [FIRING, RESOLVED, FIRING],
}
NOW = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)
BASE = [
    {"labels": {"alertname": "A", "instance": "a:9100"}, "endsAt": "2026-11-23T20:00:08Z"},
    {"labels": {"alertname": "B", "instance": "b:9100"}, "endsAt": "2026-11-23T20:00:08Z"},
    {"labels": {"alertname": "C", "instance": "c:9100"}, "endsAt": "2026-11-23T20:00:08Z"},
]


def load(name: str) -> Any:
    return json.loads((PROM / name).read_text())


def arrival(name: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-23T{ARRIVALS[name]}+00:00")


def received(name: str) -> Parsed:
    return prometheus.parse(load(name), arrival(name), RESOLVE_TIMEOUT)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def one(item: dict[str, Any], now: datetime = NOW) -> Any:
    parsed = prometheus.parse([item], now, RESOLVE_TIMEOUT)
    assert parsed.rejects == []
    return parsed.events[0]


def test_every_capture_has_an_arrival_time() -> None:
    assert sorted(path.name for path in PROM.glob("*.json")) == sorted(ARRIVALS)


@pytest.mark.parametrize("name", sorted(ARRIVALS))
def test_every_capture_parses_with_the_status_its_arrival_implies(name: str) -> None:
    body = load(name)
    parsed = received(name)
    assert parsed.rejects == []
    assert parsed.items == len(body) == len(parsed.events)
    expected = MIXED.get(name) or [RESOLVED if "-resolved-" in name else FIRING] * len(body)
    assert [e.status for e in parsed.events] == expected
    for event, item in zip(parsed.events, body, strict=True):
        assert event.source == "prometheus"
        assert (event.group_key, event.receiver) == (None, None)
        host = item["labels"]["instance"].rsplit(":", 1)[0]
        assert event.labels == {**item["labels"], "host": host}  # host added for correlation
        assert event.annotations == item["annotations"]
        assert event.generator_url == item["generatorURL"]
        assert event.starts_at == at(item["startsAt"])
        if event.status is FIRING:
            assert (event.ends_at, event.expires_at) == (None, at(item["endsAt"]))
        else:
            assert (event.ends_at, event.expires_at) == (at(item["endsAt"]), None)


def test_a_firing_item_expires_at_its_end_time() -> None:
    (event,) = received("prom-01-firing-hostdown-1alerts.json").events
    assert event.status is FIRING
    assert event.ends_at is None
    assert event.expires_at == at("2026-11-23T20:00:51.907+00:00")
    assert event.starts_at == at("2026-11-23T20:00:43.907+00:00")
    assert event.severity is Severity.CRITICAL


def test_a_resolved_item_ends_at_its_end_time() -> None:
    host_down, disk_full = received("prom-12-resolved-diskfull-hostdown-2alerts.json").events
    assert (host_down.status, disk_full.status) == (RESOLVED, RESOLVED)
    assert host_down.ends_at == disk_full.ends_at == at("2026-11-23T20:00:53.907+00:00")
    assert host_down.expires_at is None


def test_a_resend_keeps_the_fingerprint_but_changes_the_digest() -> None:
    (first,) = received("prom-01-firing-hostdown-1alerts.json").events
    (resend,) = received("prom-10-firing-hostdown-1alerts-resend.json").events
    assert resend.fingerprint == first.fingerprint == "a5ce1ae33da654f1"
    assert resend.digest != first.digest
    assert resend.expires_at == at("2026-11-23T20:01:00.907+00:00")


def test_a_repeated_resolution_has_the_same_digest() -> None:
    host_down, _ = received("prom-12-resolved-diskfull-hostdown-2alerts.json").events
    (again,) = received("prom-24-resolved-hostdown-1alerts.json").events
    assert again.digest == host_down.digest


def test_a_resolution_reusing_the_firing_end_time_still_gets_a_new_digest() -> None:
    # Prometheus announced db-03 firing until 20:00:53.907, then resolved it at that instant:
    # the two items are byte for byte the same, only the arrival time tells them apart.
    firing = received("prom-03-firing-diskfull-3alerts.json").events[2]
    _, resolved = received("prom-12-resolved-diskfull-hostdown-2alerts.json").events
    assert (
        load("prom-03-firing-diskfull-3alerts.json")[2]
        == load("prom-12-resolved-diskfull-hostdown-2alerts.json")[1]
    )
    assert (firing.status, resolved.status) == (FIRING, RESOLVED)
    assert firing.fingerprint == resolved.fingerprint
    assert firing.digest != resolved.digest


def _alertmanager_fingerprints() -> dict[tuple[str, str], tuple[dict[str, str], str]]:
    known = {}
    for path in AM.glob("*.json"):
        for alert in json.loads(path.read_text())["alerts"]:
            key = (alert["labels"]["alertname"], alert["labels"]["instance"])
            known[key] = (dict(with_host(alert["labels"])), alert["fingerprint"])
    return known


@pytest.mark.parametrize("name", sorted(ARRIVALS))
def test_fingerprints_equal_what_alertmanager_gave_the_same_labels(name: str) -> None:
    known = _alertmanager_fingerprints()
    for event in received(name).events:
        labels, fingerprint = known[(event.labels["alertname"], event.labels["instance"])]
        assert event.labels == labels
        assert event.fingerprint == fingerprint


def test_nanosecond_timestamps_are_cut_to_microseconds() -> None:
    name = "prom-apiv1-01-firing-highlatency-hostdown-3alerts.json"
    assert load(name)[0]["startsAt"] == "2026-11-23T20:01:22.558293249Z"
    event = received(name).events[0]
    assert event.starts_at == datetime(2026, 11, 23, 20, 1, 22, 558293, tzinfo=UTC)
    assert event.expires_at == datetime(2026, 11, 23, 20, 1, 30, 558293, tzinfo=UTC)


def test_without_end_time_a_firing_item_expires_after_resolve_timeout() -> None:
    event = one({"labels": {"alertname": "X"}, "startsAt": "2026-11-23T19:59:00Z"})
    assert (event.status, event.ends_at) == (FIRING, None)
    assert event.expires_at == NOW + RESOLVE_TIMEOUT
    assert event.starts_at == at("2026-11-23T19:59:00+00:00")


def test_minimal_item_gets_defaults() -> None:
    event = one({"labels": {"alertname": "X"}})
    assert event.starts_at == NOW
    assert event.annotations == {}
    assert event.generator_url == ""
    assert event.severity is Severity.WARNING


def test_without_start_time_a_resolved_item_starts_at_its_end() -> None:
    event = one({"labels": {"alertname": "X"}, "endsAt": "2026-11-23T19:58:00Z"})
    assert event.status is RESOLVED
    assert event.starts_at == event.ends_at == at("2026-11-23T19:58:00+00:00")


@pytest.mark.parametrize(
    ("ends_at", "status"),
    [
        ("2026-11-23T19:59:59.999999Z", RESOLVED),
        ("2026-11-23T20:00:00Z", RESOLVED),
        ("2026-11-23T20:00:00.000001Z", FIRING),
        ("2026-11-23T21:00:00+02:00", RESOLVED),  # 19:00 UTC
        ("0001-01-01T00:00:00Z", FIRING),  # Go's zero time: no end
    ],
)
def test_status_compares_end_time_with_now(ends_at: str, status: AlertStatus) -> None:
    assert one({"labels": {"alertname": "X"}, "endsAt": ends_at}).status is status


def test_timestamps_are_utc() -> None:
    event = one({"labels": {"alertname": "X"}, "startsAt": "2026-11-23T21:00:00+01:00"})
    assert event.starts_at == NOW
    assert event.starts_at.tzinfo is UTC


def test_digest_ignores_mapping_order_and_is_repeatable() -> None:
    item = {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "1", "y": "2"}}
    swapped = {"annotations": {"y": "2", "x": "1"}, "labels": {"b": "2", "a": "1"}}
    assert one(item).digest == one(swapped).digest == one(item).digest
    assert one(item).fingerprint == one(swapped).fingerprint


def test_digest_does_not_depend_on_arrival_time_alone() -> None:
    item = {"labels": {"alertname": "X"}}
    assert one(item, NOW).digest == one(item, NOW + timedelta(seconds=30)).digest


@pytest.mark.parametrize(
    ("value", "severity"),
    [
        ("critical", Severity.CRITICAL),
        ("CRIT", Severity.CRITICAL),
        ("fatal", Severity.CRITICAL),
        ("page", Severity.CRITICAL),
        ("Disaster", Severity.CRITICAL),
        ("major", Severity.MAJOR),
        ("high", Severity.MAJOR),
        ("error", Severity.MAJOR),
        ("err", Severity.MAJOR),
        ("minor", Severity.MINOR),
        ("average", Severity.MINOR),
        ("warning", Severity.WARNING),
        ("warn", Severity.WARNING),
        ("info", Severity.INFO),
        ("informational", Severity.INFO),
        ("information", Severity.INFO),
        ("none", Severity.INFO),
        ("notice", Severity.INFO),
        ("low", Severity.INFO),
        ("debug", Severity.INFO),
        ("OK", Severity.INFO),
        (" Critical ", Severity.CRITICAL),
        ("sev1", Severity.WARNING),
        (None, Severity.WARNING),
    ],
)
def test_severity_table(value: str | None, severity: Severity) -> None:
    labels = {"alertname": "X"} if value is None else {"alertname": "X", "severity": value}
    assert one({"labels": labels}).severity is severity


@pytest.mark.parametrize("body", [{"labels": {"alertname": "X"}}, None, "[]", 3, True])
def test_a_body_that_is_not_an_array_is_a_body_error(body: object) -> None:
    with pytest.raises(BodyError) as caught:
        prometheus.parse(body, NOW, RESOLVE_TIMEOUT)
    reject = caught.value.reject
    assert (reject.index, reject.field, reject.reason) == (None, "body", RejectReason.INVALID_BODY)
    assert "JSON array" in reject.message


def test_an_empty_array_is_an_empty_batch() -> None:
    assert prometheus.parse([], NOW, RESOLVE_TIMEOUT) == Parsed(events=[], rejects=[], items=0)


def _drop(key: str) -> Change:
    return lambda item: {k: v for k, v in item.items() if k != key}


def _set(key: str, value: object) -> Change:
    return lambda item: {**item, key: value}


def _label(name: str, value: object) -> Change:
    return lambda item: {**item, "labels": {**item["labels"], name: value}}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (_drop("labels"), "[1].labels", "required"),
        (_set("labels", {}), "[1].labels", "at least one label"),
        (_set("labels", {"alertname": "", "job": ""}), "[1].labels", "at least one label"),
        (_set("labels", None), "[1].labels", "JSON object, got null"),
        (_label("severity", 2), "[1].labels.severity", "string, got number"),
        (_label("team-name", "x"), "[1].labels.team-name", "invalid label name 'team-name'"),
        (_label("", "x"), "[1].labels.", "invalid label name"),
        (_label("läbel", "x"), "[1].labels.läbel", "invalid label name"),
        (_set("startsAt", "yesterday"), "[1].startsAt", "'yesterday' is not an RFC 3339"),
        (_set("startsAt", "2026-11-23"), "[1].startsAt", "RFC 3339"),
        (_set("startsAt", 1795464000), "[1].startsAt", "RFC 3339"),
        (_set("endsAt", 12), "[1].endsAt", "RFC 3339"),
        (_set("endsAt", "0001-01-01T00:00:00+01:00"), "[1].endsAt", "RFC 3339"),
        (_set("startsAt", "2026-11-23T20:00:09Z"), "[1].endsAt", "endsAt is before startsAt"),
        (_set("annotations", "summary"), "[1].annotations", "JSON object, got string"),
        (_set("annotations", {"summary": ["x"]}), "[1].annotations.summary", "string"),
        (lambda item: "x", "[1]", "JSON object, got string"),
        (lambda item: 42, "[1]", "JSON object, got number"),
    ],
)
def test_a_bad_item_is_rejected_and_its_neighbours_survive(
    change: Change, field: str, says: str
) -> None:
    batch: list[object] = [BASE[0], change(BASE[1]), BASE[2]]
    parsed = prometheus.parse(batch, NOW, RESOLVE_TIMEOUT)
    assert parsed.items == 3
    assert [(r.index, r.field, r.reason) for r in parsed.rejects] == [
        (1, field, RejectReason.INVALID_ITEM)
    ]
    assert says in parsed.rejects[0].message
    assert [e.labels["alertname"] for e in parsed.events] == ["A", "C"]


def test_a_batch_of_only_bad_items_rejects_each() -> None:
    parsed = prometheus.parse([{"labels": {}}, "x"], NOW, RESOLVE_TIMEOUT)
    assert parsed.events == []
    assert [(r.index, r.field) for r in parsed.rejects] == [(0, "[0].labels"), (1, "[1]")]
    assert parsed.items == 2


def test_empty_label_values_are_dropped_before_fingerprinting() -> None:
    event = one({"labels": {"alertname": "X", "team": ""}})
    assert event.labels == {"alertname": "X"}
    assert event.fingerprint == one({"labels": {"alertname": "X"}}).fingerprint


def test_a_long_bad_value_is_not_echoed_in_full() -> None:
    parsed = prometheus.parse(
        [{"labels": {"a": "b"}, "startsAt": "x" * 100_000}], NOW, RESOLVE_TIMEOUT
    )
    assert len(parsed.rejects[0].message) < 200
