"""Zabbix webhook messages -> events, proven by the captured Zabbix 6.0.14 request bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors import zabbix
from connectors.parsed import BodyError, RejectReason
from rules.model import AlertStatus, Event, EventKind, Severity

ZABBIX = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured" / "zabbix"
WEBHOOK_FILES = sorted(path.name for path in ZABBIX.glob("webhook-*.json"))
NOW = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)
Change = Callable[[dict[str, Any]], object]

FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
STATE, ACK, UNACK, COMMENT = (
    EventKind.STATE,
    EventKind.ACKNOWLEDGE,
    EventKind.UNACKNOWLEDGE,
    EventKind.COMMENT,
)
# What every capture becomes: kind, status, severity, problem event id.
EXPECTED: dict[str, tuple[EventKind, AlertStatus, Severity, str]] = {
    "webhook-failure-http500-problem-sev1-information.json": (STATE, FIRING, Severity.INFO, "13"),
    "webhook-problem-sev0-not-classified.json": (STATE, FIRING, Severity.INFO, "1"),
    "webhook-problem-sev1-information.json": (STATE, FIRING, Severity.INFO, "2"),
    "webhook-problem-sev2-warning.json": (STATE, FIRING, Severity.WARNING, "3"),
    "webhook-problem-sev3-average.json": (STATE, FIRING, Severity.MINOR, "4"),
    "webhook-problem-sev4-high.json": (STATE, FIRING, Severity.MAJOR, "5"),
    "webhook-problem-sev5-disaster.json": (STATE, FIRING, Severity.CRITICAL, "6"),
    "webhook-resolved-manual-close-sev4-high.json": (STATE, RESOLVED, Severity.MAJOR, "5"),
    "webhook-resolved-sev0-not-classified.json": (STATE, RESOLVED, Severity.INFO, "1"),
    "webhook-resolved-sev1-information.json": (STATE, RESOLVED, Severity.INFO, "2"),
    "webhook-resolved-sev2-warning.json": (STATE, RESOLVED, Severity.WARNING, "3"),
    # The Average problem was raised to High before it recovered.
    "webhook-resolved-sev3-average.json": (STATE, RESOLVED, Severity.MAJOR, "4"),
    "webhook-resolved-sev5-disaster.json": (STATE, RESOLVED, Severity.CRITICAL, "6"),
    "webhook-retry-flaky503-problem-sev2-warning.json": (STATE, FIRING, Severity.WARNING, "14"),
    "webhook-timeout-problem-sev0-not-classified.json": (STATE, FIRING, Severity.INFO, "15"),
    "webhook-update-acknowledged-sev2-warning.json": (ACK, FIRING, Severity.WARNING, "3"),
    "webhook-update-acknowledged-sev5-disaster.json": (ACK, FIRING, Severity.CRITICAL, "6"),
    "webhook-update-closed-sev4-high.json": (COMMENT, RESOLVED, Severity.MAJOR, "5"),
    "webhook-update-severity-changed-sev3-average.json": (STATE, FIRING, Severity.MAJOR, "4"),
    "webhook-update-unacknowledged-sev2-warning.json": (UNACK, FIRING, Severity.WARNING, "3"),
}


def load(name: str) -> Any:
    return json.loads((ZABBIX / name).read_text(encoding="utf-8"))


def event_of(body: object) -> Event:
    parsed = zabbix.parse(body, NOW)
    assert parsed.items == 1
    assert parsed.rejects == []
    [event] = parsed.events
    return event


def at(hour: int, minute: int, second: int) -> datetime:
    return datetime(2026, 11, 23, hour, minute, second, tzinfo=UTC)


def test_the_captures_are_there() -> None:
    assert sorted(EXPECTED) == WEBHOOK_FILES


@pytest.mark.parametrize("name", WEBHOOK_FILES)
def test_every_capture_becomes_one_event(name: str) -> None:
    body = load(name)
    event = event_of(body)
    kind, status, severity, problem_id = EXPECTED[name]
    assert (event.kind, event.status, event.severity) == (kind, status, severity)
    assert event.source == "zabbix"
    assert event.fingerprint == f"zabbix:{problem_id}" == f"zabbix:{body['event_id']}"
    assert event.labels["alertname"] == body["trigger_name"]
    assert event.labels["host"] == "bridge-test-host"
    assert event.labels["host_name"] == "Bridge Test Host"
    assert event.labels["severity"] == severity.value
    assert event.labels["zabbix_trigger_id"] == body["trigger_id"]
    assert event.labels["zabbix_event_id"] == problem_id
    assert event.labels["env"] == "acceptance"
    assert event.annotations["summary"] == body["event_name"]
    assert event.starts_at == datetime.strptime(
        f"{body['event_date']} {body['event_time']}", "%Y.%m.%d %H:%M:%S"
    ).replace(tzinfo=UTC)
    assert event.expires_at is None  # Zabbix sends the recovery itself
    assert event.generator_url == (
        f"http://127.0.0.1:28080/tr_events.php?triggerid={body['trigger_id']}&eventid={problem_id}"
    )
    assert (event.group_key, event.receiver) == (None, None)
    assert all(not zabbix.is_macro(value) for value in event.annotations.values())


@pytest.mark.parametrize("name", WEBHOOK_FILES)
def test_a_retry_of_the_same_body_has_the_same_digest(name: str) -> None:
    # Zabbix resends the byte-identical body; key order must not matter either.
    body = load(name)
    reordered = dict(reversed(list(load(name).items())))
    assert event_of(body).digest == event_of(reordered).digest


def test_every_message_of_one_problem_has_its_own_digest() -> None:
    names = [name for name in WEBHOOK_FILES if EXPECTED[name][3] in {"3", "4", "5", "6"}]
    digests = {event_of(load(name)).digest for name in names}
    assert len(digests) == len(names)


def test_problem_update_and_recovery_share_the_fingerprint() -> None:
    names = [
        "webhook-problem-sev4-high.json",
        "webhook-update-closed-sev4-high.json",
        "webhook-resolved-manual-close-sev4-high.json",
    ]
    assert {event_of(load(name)).fingerprint for name in names} == {"zabbix:5"}


def test_a_recovery_ends_at_the_recovery_time() -> None:
    event = event_of(load("webhook-resolved-sev5-disaster.json"))
    assert event.starts_at == at(19, 46, 28)
    assert event.ends_at == at(19, 46, 59)
    assert event.annotations["recovery_event_id"] == "12"


def test_a_problem_has_no_end_and_its_literal_macros_count_as_absent() -> None:
    event = event_of(load("webhook-problem-sev5-disaster.json"))
    assert event.ends_at is None
    assert "recovery_event_id" not in event.annotations  # "{EVENT.RECOVERY.ID}"
    assert "update_action" not in event.annotations
    assert event.annotations["trigger_url"] == "https://runbooks.example.invalid/db-down"
    assert (event.actor, event.message) == ("", "")


def test_a_recovery_without_its_time_ends_now() -> None:
    body = load("webhook-resolved-sev0-not-classified.json")
    body["event_recovery_date"] = "{EVENT.RECOVERY.DATE}"
    body["event_recovery_time"] = "{EVENT.RECOVERY.TIME}"
    assert event_of(body).ends_at == NOW


def test_an_acknowledgement_names_its_author_and_comment() -> None:
    event = event_of(load("webhook-update-acknowledged-sev5-disaster.json"))
    assert event.kind is EventKind.ACKNOWLEDGE
    assert event.actor == "Bridge Operator (bridge-operator)"
    assert event.message == "Acknowledged by the bridge harness: DBA paged"
    assert event.annotations["update_action"] == "acknowledged and commented"
    assert event.annotations["acknowledged"] == "Yes"


def test_an_unacknowledgement() -> None:
    event = event_of(load("webhook-update-unacknowledged-sev2-warning.json"))
    assert (event.kind, event.status) == (EventKind.UNACKNOWLEDGE, AlertStatus.FIRING)
    assert event.message == "Wrong host, unacknowledging"


def test_a_severity_change_is_a_state_change_with_the_new_severity() -> None:
    problem = event_of(load("webhook-problem-sev3-average.json"))
    changed = event_of(load("webhook-update-severity-changed-sev3-average.json"))
    assert (problem.severity, changed.severity) == (Severity.MINOR, Severity.MAJOR)
    assert changed.kind is EventKind.STATE
    assert changed.status is AlertStatus.FIRING
    assert changed.labels["severity"] == "major"
    assert changed.annotations["zabbix_severity"] == "High"
    assert changed.actor == "Bridge Operator (bridge-operator)"
    assert changed.message == "Backlog keeps growing, raising to High"
    assert changed.digest != problem.digest


def test_a_manual_close_is_a_comment_and_the_recovery_follows() -> None:
    closed = event_of(load("webhook-update-closed-sev4-high.json"))
    assert (closed.kind, closed.status) == (EventKind.COMMENT, AlertStatus.RESOLVED)
    assert closed.actor == "Bridge Operator (bridge-operator)"
    assert closed.message == (
        "closed in Zabbix by Bridge Operator (bridge-operator): "
        "Closing manually: false positive during load test"
    )
    recovery = event_of(load("webhook-resolved-manual-close-sev4-high.json"))
    assert (recovery.kind, recovery.status) == (EventKind.STATE, AlertStatus.RESOLVED)
    assert recovery.ends_at == closed.ends_at == at(19, 46, 55)


def test_labels_come_from_the_problem_tags_not_the_recovery_tags() -> None:
    # The manual-close recovery event lost the trigger tag `scope`; the labels keep it.
    problem = event_of(load("webhook-problem-sev4-high.json"))
    recovery = event_of(load("webhook-resolved-manual-close-sev4-high.json"))
    assert recovery.labels == problem.labels
    assert recovery.labels["scope"] == "availability"


def test_an_empty_tag_value_is_kept() -> None:
    event = event_of(load("webhook-problem-sev5-disaster.json"))
    assert event.labels["pager"] == ""
    assert event.labels["service"] == "db"


def test_tags_are_read_from_the_json_string_without_the_parsed_array() -> None:
    body = load("webhook-problem-sev5-disaster.json")
    expected = event_of(body).labels
    del body["event_tags_parsed"]
    assert event_of(body).labels == expected


@pytest.mark.parametrize(
    ("tags", "labels"),
    [
        ([("Team-Name", "sre")], {"team_name": "sre"}),
        ([("app.kubernetes.io/name", "db")], {"app_kubernetes_io_name": "db"}),
        ([("9lives", "x")], {"_9lives": "x"}),
        ([("__source__", "x")], {"source__": "x"}),
        ([("---", "x")], {}),
        ([("env", "a"), ("ENV", "b"), ("env", "a")], {"env": "a,b"}),
        ([("severity", "pager"), ("host", "other")], {"severity": "warning", "host": "h"}),
        ([("scope", "x, y")], {"scope": "x, y"}),
    ],
)
def test_tag_labels(tags: list[tuple[str, str]], labels: dict[str, str]) -> None:
    own = {"severity": "warning", "host": "h", "host_name": ""}
    found = zabbix.alert_labels(tags, own)
    assert found == {**labels, "severity": "warning", "host": "h"}


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("acknowledged and commented", EventKind.ACKNOWLEDGE),
        ("acknowledged", EventKind.ACKNOWLEDGE),
        ("unacknowledged and commented", EventKind.UNACKNOWLEDGE),
        ("unacknowledged", EventKind.UNACKNOWLEDGE),
        ("commented and changed severity from Average to High", EventKind.STATE),
        (
            "acknowledged, commented and changed severity from Warning to High",
            EventKind.ACKNOWLEDGE,
        ),
        ("commented and closed", EventKind.COMMENT),
        ("acknowledged and closed", EventKind.COMMENT),
        ("commented", EventKind.COMMENT),
        ("", EventKind.COMMENT),
        ("something new in 7.0", EventKind.COMMENT),
    ],
)
def test_update_kind(action: str, kind: EventKind) -> None:
    assert zabbix.update_kind(action) is kind


def test_an_update_without_an_action_text_is_a_comment() -> None:
    body = load("webhook-update-acknowledged-sev2-warning.json")
    body["event_update_action"] = "{EVENT.UPDATE.ACTION}"
    event = event_of(body)
    assert event.kind is EventKind.COMMENT
    assert event.message == "Looking at the CPU"


def test_a_close_by_an_unknown_user_without_a_message() -> None:
    body = load("webhook-update-closed-sev4-high.json")
    body["event_update_user_fullname"] = "{USER.FULLNAME}"
    body["event_update_message"] = ""
    event = event_of(body)
    assert (event.actor, event.message) == ("", "closed in Zabbix by an unknown user")


@pytest.mark.parametrize(
    ("value", "macro"),
    [
        ("{EVENT.RECOVERY.ID}", True),
        ("{$ZABBIX.URL}", True),
        ('{$MACRO:"context"}', True),
        ("{?last(/host/key)}", True),
        ("{ITEM.VALUE1}", True),
        ("", False),
        ("{}", False),
        ("{event.id}", False),
        ("x {EVENT.ID}", False),
        ('[{"tag":"a","value":"b"}]', False),
    ],
)
def test_is_macro(value: str, macro: bool) -> None:
    assert zabbix.is_macro(value) is macro


@pytest.mark.parametrize("url", ["{$ZABBIX.URL}", "", "zabbix.example", "ftp://x"])
def test_no_generator_url_without_an_http_frontend_url(url: str) -> None:
    body = load("webhook-problem-sev2-warning.json")
    body["zabbix_url"] = url
    assert event_of(body).generator_url == ""


def test_a_trailing_slash_of_the_frontend_url_is_dropped() -> None:
    body = load("webhook-problem-sev2-warning.json")
    body["zabbix_url"] = "https://zabbix.example/"
    assert event_of(body).generator_url.startswith("https://zabbix.example/tr_events.php?")


def test_times_are_read_in_the_server_time_zone() -> None:
    body = load("webhook-resolved-sev2-warning.json")
    cet = timezone(timedelta(hours=1))
    event = zabbix.parse(body, NOW, server_tz=cet).events[0]
    assert event.starts_at == at(18, 46, 28)
    assert event.ends_at == at(18, 46, 59)


def test_unknown_keys_are_ignored() -> None:
    body = load("webhook-problem-sev2-warning.json")
    expected = event_of(body)
    body["added_by_an_admin"] = "whatever"
    assert event_of(body) == expected


def _drop(key: str) -> Change:
    return lambda body: {k: v for k, v in body.items() if k != key}


def _set(key: str, value: object) -> Change:
    return lambda body: {**body, key: value}


def _tag(index: int, key: str, value: object) -> Change:
    def change(body: dict[str, Any]) -> object:
        tags = [dict(tag) for tag in body["event_tags_parsed"]]
        tags[index][key] = value
        return {**body, "event_tags_parsed": tags}

    return change


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda body: None, "body", "webhook message), got null"),
        (lambda body: [body], "body", "webhook message), got array"),
        (lambda body: "x", "body", "webhook message), got string"),
        (_drop("event_recovery_date"), "event_recovery_date", "like 2026.11.23"),
        (_drop("event_id"), "event_id", "required"),
        (_drop("event_value"), "event_value", "required"),
        (_drop("event_nseverity"), "event_nseverity", "required"),
        (_drop("event_date"), "event_date", "required"),
        (_drop("event_time"), "event_time", "required"),
        (_drop("trigger_id"), "trigger_id", "required"),
        (_drop("trigger_name"), "trigger_name", "required"),
        (_drop("host_host"), "host_host", "required"),
        (_set("event_id", "{EVENT.ID}"), "event_id", "unresolved macro"),
        (_set("event_id", ""), "event_id", "must not be empty"),
        (_set("event_id", "12a"), "event_id", "decimal id"),
        (_set("event_id", 12), "event_id", "string, got number"),
        (_set("trigger_id", "-1"), "trigger_id", "decimal id"),
        (_set("event_value", "2"), "event_value", "one of 0, 1"),
        (_set("event_update_status", "yes"), "event_update_status", "one of 0, 1"),
        (_set("event_nseverity", "6"), "event_nseverity", "one of 0, 1, 2, 3, 4, 5"),
        (_set("event_nseverity", 4), "event_nseverity", "string, got number"),
        (_set("event_date", "23.11.2026"), "event_date", "like 2026.11.23 19:46:28"),
        (_set("event_time", "7pm"), "event_date", "like 2026.11.23 19:46:28"),
        (_set("event_recovery_date", "tomorrow"), "event_recovery_date", "like 2026.11.23"),
        (_set("event_update_time", "25:00:00"), "event_update_date", "like 2026.11.23"),
        (_set("host_name", None), "host_name", "string, got null"),
        (_set("payload_format", "zabbix-bridge-webhook/2"), "payload_format", "must be"),
        (_set("event_tags_parsed", "[]"), "event_tags_parsed", "array of {tag, value}"),
        (_set("event_tags_parsed", [1]), "event_tags_parsed[0]", "JSON object, got number"),
        (_tag(2, "tag", None), "event_tags_parsed[2].tag", "string, got null"),
        (_tag(0, "value", 1), "event_tags_parsed[0].value", "string, got number"),
        (
            lambda body: {**_drop("event_tags_parsed")(body), "event_tagsjson": "[{"},  # type: ignore[dict-item]
            "event_tagsjson",
            "JSON array",
        ),
        (
            lambda body: {**_drop("event_tags_parsed")(body), "event_tagsjson": "{}"},  # type: ignore[dict-item]
            "event_tagsjson",
            "got object",
        ),
    ],
)
def test_an_unusable_body_is_a_body_error(change: Change, field: str, says: str) -> None:
    body = change(load("webhook-resolved-sev2-warning.json"))
    with pytest.raises(BodyError) as caught:
        zabbix.parse(body, NOW)
    reject = caught.value.reject
    assert (reject.index, reject.field, reject.reason) == (None, field, RejectReason.INVALID_BODY)
    assert says in reject.message


@pytest.mark.parametrize(
    "change",
    [
        _set("event_tags_parsed", None),
        _set("event_recovery_tags_parsed", None),
        _set("event_update_status", "{EVENT.UPDATE.STATUS}"),
        _drop("payload_format"),
        _drop("event_update_status"),
        _drop("host_name"),
        _drop("zabbix_url"),
    ],
)
def test_optional_keys_may_be_absent_or_null(change: Change) -> None:
    event = event_of(change(load("webhook-problem-sev2-warning.json")))
    assert (event.kind, event.status) == (EventKind.STATE, AlertStatus.FIRING)
