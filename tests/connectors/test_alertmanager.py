"""Alertmanager webhook notifications -> events, proven by the captured request bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import alertmanager
from connectors.labels import label_set_fingerprint
from connectors.parsed import BodyError, RejectReason
from rules.model import AlertStatus, Severity

CAPTURED = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured"
AM = CAPTURED / "alertmanager"
AM_FILES = sorted(path.name for path in AM.glob("*.json"))
TRUNCATED = [name for name in AM_FILES if name.startswith("am-maxalerts2-")]
NOW = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)
Change = Callable[[dict[str, Any]], object]
DISK_FULL = "am-04-firing-bridge-warning-diskfull-3alerts.json"
PARTIAL = "am-07-firing-bridge-warning-diskfull-3alerts-2firing-1resolved.json"
FINAL = "am-10-resolved-bridge-warning-diskfull-3alerts.json"


def load(name: str) -> Any:
    return json.loads((AM / name).read_text())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_captures_are_there() -> None:
    assert len(AM_FILES) == 14
    assert len(TRUNCATED) == 3


@pytest.mark.parametrize("name", AM_FILES)
def test_every_capture_parses_into_one_event_per_alert(name: str) -> None:
    body = load(name)
    parsed = alertmanager.parse(body, NOW)
    assert parsed.rejects == []
    assert parsed.items == len(body["alerts"]) == len(parsed.events)
    for event, alert in zip(parsed.events, body["alerts"], strict=True):
        assert event.source == "alertmanager"
        assert event.fingerprint == alert["fingerprint"]
        assert event.status == alert["status"]
        host = alert["labels"]["instance"].rsplit(":", 1)[0]
        assert event.labels == {**alert["labels"], "host": host}  # host added for correlation
        assert event.annotations == alert["annotations"]
        assert event.generator_url == alert["generatorURL"]
        assert event.group_key == body["groupKey"]
        assert event.receiver == body["receiver"]
        assert event.expires_at is None  # Alertmanager sends resolutions itself


@pytest.mark.parametrize("name", AM_FILES)
def test_label_set_fingerprint_reproduces_every_captured_fingerprint(name: str) -> None:
    for alert in load(name)["alerts"]:
        assert label_set_fingerprint(alert["labels"]) == alert["fingerprint"]


def test_disk_full_db01_fingerprint() -> None:
    labels = load(DISK_FULL)["alerts"][0]["labels"]
    assert labels["instance"] == "db-01.e2e.example:9100"
    assert label_set_fingerprint(labels) == "8d2696b996872ba6"


def test_a_firing_notification_can_carry_a_resolved_alert() -> None:
    body = load(PARTIAL)
    events = alertmanager.parse(body, NOW).events
    assert body["status"] == "firing"
    assert [e.status for e in events] == [
        AlertStatus.FIRING,
        AlertStatus.FIRING,
        AlertStatus.RESOLVED,
    ]
    assert events[2].labels["instance"] == "db-03.e2e.example:9100"
    assert events[2].ends_at == at("2026-11-23T19:59:44.689+00:00")


def test_go_zero_end_time_means_no_end() -> None:
    firing = alertmanager.parse(load(DISK_FULL), NOW).events[0]
    assert firing.ends_at is None
    assert firing.starts_at == datetime(2026, 11, 23, 19, 59, 36, 689000, tzinfo=UTC)
    assert firing.starts_at.utcoffset() is not None


def test_the_fingerprint_is_stable_from_firing_to_resolved() -> None:
    firing = alertmanager.parse(load(DISK_FULL), NOW).events
    resolved = alertmanager.parse(load(FINAL), NOW).events
    assert [e.fingerprint for e in firing] == [e.fingerprint for e in resolved]
    assert {e.status for e in resolved} == {AlertStatus.RESOLVED}


def test_digest_tells_a_repeat_from_a_change() -> None:
    first, partial, final = (
        alertmanager.parse(load(n), NOW).events for n in (DISK_FULL, PARTIAL, FINAL)
    )
    assert first[0].digest == partial[0].digest  # db-01 still firing, nothing changed
    assert partial[2].digest == final[2].digest  # db-03's resolution listed again
    assert partial[2].digest != first[2].digest  # db-03 firing -> resolved
    assert final[0].digest != partial[0].digest  # db-01 firing -> resolved


@pytest.mark.parametrize("name", TRUNCATED)
def test_truncated_notifications_parse_what_they_list(name: str) -> None:
    body = load(name)
    parsed = alertmanager.parse(body, NOW)
    assert parsed.truncated == 1
    assert parsed.rejects == []
    assert [e.labels["instance"] for e in parsed.events] == [
        "db-01.e2e.example:9100",
        "db-02.e2e.example:9100",
    ]


@pytest.mark.parametrize("value", [-1, "1", None])
def test_a_bad_truncated_alerts_count_is_a_body_error(value: object) -> None:
    body = load(TRUNCATED[0])
    body["truncatedAlerts"] = value
    with pytest.raises(BodyError) as raised:
        alertmanager.parse(body, NOW)
    assert raised.value.reject.field == "truncatedAlerts"


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("am-01-firing-bridge-critical-hostdown-1alerts.json", Severity.CRITICAL),
        ("am-02-firing-bridge-default-prometheusselfscrapeup-1alerts.json", Severity.INFO),
        ("am-03-firing-bridge-warning-highlatency-1alerts.json", Severity.WARNING),
    ],
)
def test_severity_comes_from_the_severity_label(name: str, severity: Severity) -> None:
    assert alertmanager.parse(load(name), NOW).events[0].severity is severity


def test_missing_fingerprint_is_computed_from_the_labels() -> None:
    body = load(DISK_FULL)
    captured = [alert.pop("fingerprint") for alert in body["alerts"]]
    assert [e.fingerprint for e in alertmanager.parse(body, NOW).events] == captured


def test_other_versions_and_unknown_fields_are_accepted_when_the_shape_matches() -> None:
    body = load(DISK_FULL)
    body["version"] = "5"
    body["somethingNew"] = {"x": 1}
    body["alerts"][0]["silencedBy"] = ["abc"]
    parsed = alertmanager.parse(body, NOW)
    assert parsed.rejects == []
    assert len(parsed.events) == 3


def test_optional_item_fields_have_defaults() -> None:
    alert = {"status": "firing", "labels": {"alertname": "X", "team": ""}}
    event = alertmanager.parse({"alerts": [alert]}, NOW).events[0]
    assert event.annotations == {}
    assert event.generator_url == ""
    assert event.starts_at == NOW
    assert event.labels == {"alertname": "X"}  # empty values dropped, as Alertmanager does
    assert event.fingerprint == label_set_fingerprint({"alertname": "X"})
    assert event.group_key is None
    assert event.receiver is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "body"),
        ([], "body"),
        ("alerts", "body"),
        (3, "body"),
        ({}, "alerts"),
        ({"alerts": "not a list"}, "alerts"),
        ({"alerts": {"0": {}}}, "alerts"),
        ({"alerts": [], "groupKey": 7}, "groupKey"),
        ({"alerts": [], "receiver": ["r"]}, "receiver"),
    ],
)
def test_an_unusable_body_is_a_body_error(body: object, field: str) -> None:
    with pytest.raises(BodyError) as caught:
        alertmanager.parse(body, NOW)
    reject = caught.value.reject
    assert (reject.index, reject.field, reject.reason) == (None, field, RejectReason.INVALID_BODY)
    assert reject.message


def _drop(key: str) -> Change:
    return lambda alert: {k: v for k, v in alert.items() if k != key}


def _set(key: str, value: object) -> Change:
    return lambda alert: {**alert, key: value}


def _label(name: str, value: object) -> Change:
    return lambda alert: {**alert, "labels": {**alert["labels"], name: value}}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (_drop("labels"), "alerts[1].labels", "required"),
        (_set("labels", {}), "alerts[1].labels", "at least one label"),
        (_set("labels", {"alertname": ""}), "alerts[1].labels", "at least one label"),
        (_set("labels", ["alertname"]), "alerts[1].labels", "JSON object, got array"),
        (_label("severity", 5), "alerts[1].labels.severity", "string, got number"),
        (_label("severity", None), "alerts[1].labels.severity", "string, got null"),
        (_label("team-name", "dba"), "alerts[1].labels.team-name", "invalid label name"),
        (_label("1st", "x"), "alerts[1].labels.1st", "invalid label name"),
        (_set("startsAt", "yesterday"), "alerts[1].startsAt", "'yesterday' is not an RFC 3339"),
        (_set("startsAt", "2026-11-23T19:59:36"), "alerts[1].startsAt", "RFC 3339"),
        (_set("startsAt", 1795463976), "alerts[1].startsAt", "RFC 3339"),
        (_set("endsAt", "soon"), "alerts[1].endsAt", "RFC 3339"),
        (_set("status", "burning"), "alerts[1].status", "'firing' or 'resolved'"),
        (_drop("status"), "alerts[1].status", "required"),
        (_set("annotations", {"summary": 1}), "alerts[1].annotations.summary", "string"),
        (_set("generatorURL", None), "alerts[1].generatorURL", "string"),
        (lambda alert: "x", "alerts[1]", "JSON object, got string"),
        (lambda alert: None, "alerts[1]", "JSON object, got null"),
        (lambda alert: [alert], "alerts[1]", "JSON object, got array"),
    ],
)
def test_a_bad_item_is_rejected_and_its_neighbours_survive(
    change: Change, field: str, says: str
) -> None:
    body = load(DISK_FULL)
    body["alerts"][1] = change(body["alerts"][1])
    parsed = alertmanager.parse(body, NOW)
    assert parsed.items == 3
    assert [(r.index, r.field, r.reason) for r in parsed.rejects] == [
        (1, field, RejectReason.INVALID_ITEM)
    ]
    assert says in parsed.rejects[0].message
    assert [e.labels["instance"] for e in parsed.events] == [
        "db-01.e2e.example:9100",
        "db-03.e2e.example:9100",
    ]


def test_each_bad_item_gets_one_reject() -> None:
    body = load(DISK_FULL)
    body["alerts"][1]["labels"]["severity"] = 5
    body["alerts"][1]["startsAt"] = "later"
    body["alerts"][2]["startsAt"] = "yesterday"
    parsed = alertmanager.parse(body, NOW)
    assert [(r.index, r.field) for r in parsed.rejects] == [
        (1, "alerts[1].labels.severity"),
        (2, "alerts[2].startsAt"),
    ]
    assert "1 more problem" in parsed.rejects[0].message
    assert len(parsed.events) == 1
