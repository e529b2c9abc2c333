"""Zabbix JSON-RPC responses -> events (polling mode), proven by the captured 6.0.14 answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import zabbix, zabbix_api
from connectors.parsed import BodyError, Parsed, RejectReason
from rules.model import AlertStatus, Severity

ZABBIX = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured" / "zabbix"
API_FILES = sorted(path.name for path in ZABBIX.glob("api-*.json"))
NOW = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)
FRONTEND = "http://127.0.0.1:28080"
Change = Callable[[dict[str, Any]], object]


def load(name: str) -> Any:
    return json.loads((ZABBIX / name).read_text(encoding="utf-8"))


def combined(*names: str) -> dict[str, Any]:
    """One event.get answer holding the results of several captured ones."""
    return {
        "jsonrpc": "2.0",
        "result": [e for name in names for e in load(name)["result"]],
        "id": 1,
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def summary(parsed: Parsed) -> list[tuple[str, AlertStatus, Severity]]:
    return [(e.fingerprint, e.status, e.severity) for e in parsed.events]


FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
INFO, WARNING, MINOR, MAJOR, CRITICAL = (
    Severity.INFO,
    Severity.WARNING,
    Severity.MINOR,
    Severity.MAJOR,
    Severity.CRITICAL,
)
OPEN = [
    ("zabbix:1", FIRING, INFO),
    ("zabbix:2", FIRING, INFO),
    ("zabbix:3", FIRING, WARNING),
    ("zabbix:4", FIRING, MINOR),
    ("zabbix:5", FIRING, MAJOR),
    ("zabbix:6", FIRING, CRITICAL),
]
UPDATED = [
    ("zabbix:1", FIRING, INFO),
    ("zabbix:2", FIRING, INFO),
    ("zabbix:3", FIRING, WARNING),
    ("zabbix:4", FIRING, MAJOR),  # severity raised from Average to High
    ("zabbix:5", RESOLVED, MAJOR),  # closed by hand
    ("zabbix:6", FIRING, CRITICAL),
]
RESOLVED_ALL = [(fingerprint, RESOLVED, severity) for fingerprint, _, severity in UPDATED]


# What each capture gives as problem.get input and as event.get input: (events, rejects).
@pytest.mark.parametrize(
    ("name", "as_problems", "as_recoveries"),
    [
        ("api-0-apiinfo-version.json", None, None),
        ("api-0-user-login.json", None, None),
        ("api-1-open-alert-get.json", (0, 6), (0, 6)),
        ("api-1-open-event-get-value0.json", (0, 0), (0, 0)),
        ("api-1-open-event-get-value1.json", (6, 0), (0, 0)),
        ("api-1-open-problem-get.json", (6, 0), (0, 6)),
        ("api-1-open-trigger-get.json", (0, 6), (0, 6)),
        ("api-2-updated-alert-get.json", (0, 12), (0, 12)),
        ("api-2-updated-event-get-value0.json", (1, 0), (0, 1)),
        ("api-2-updated-event-get-value1.json", (6, 0), (1, 0)),
        ("api-2-updated-problem-get.json", (6, 0), (0, 6)),
        ("api-2-updated-trigger-get.json", (0, 6), (0, 6)),
        ("api-3-resolved-alert-get.json", (0, 17), (0, 17)),
        ("api-3-resolved-event-get-value0.json", (6, 0), (0, 6)),
        ("api-3-resolved-event-get-value1.json", (6, 0), (6, 0)),
        ("api-3-resolved-problem-get.json", (6, 0), (0, 6)),
        ("api-3-resolved-trigger-get.json", (0, 6), (0, 6)),
        ("api-failure-A-status500-alert-get.json", (0, 1), (0, 1)),
        ("api-failure-B-flaky503-alert-get.json", (0, 1), (0, 1)),
        ("api-failure-C-timeout-alert-get.json", (0, 1), (0, 1)),
    ],
)
def test_every_capture(
    name: str, as_problems: tuple[int, int] | None, as_recoveries: tuple[int, int] | None
) -> None:
    response = load(name)
    assert zabbix_api.api_error(response) is None  # the failure cases are failed deliveries
    for convert, expected in (
        (zabbix_api.problems_from_response, as_problems),
        (zabbix_api.recoveries_from_response, as_recoveries),
    ):
        if expected is None:  # a scalar result (version string, session token)
            with pytest.raises(BodyError) as caught:
                convert(response, NOW)
            assert caught.value.reject.field == "result"
            assert "JSON array, got string" in caught.value.reject.message
            continue
        parsed = convert(response, NOW)
        assert (len(parsed.events), len(parsed.rejects)) == expected
        assert parsed.items == len(response["result"])


def test_all_api_captures_are_covered() -> None:
    assert len(API_FILES) == 20


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("api-1-open-problem-get.json", OPEN),
        ("api-2-updated-problem-get.json", UPDATED),
        ("api-3-resolved-problem-get.json", RESOLVED_ALL),
    ],
)
def test_problem_get(name: str, expected: list[tuple[str, AlertStatus, Severity]]) -> None:
    parsed = zabbix_api.problems_from_response(load(name), NOW)
    assert parsed.rejects == []
    assert summary(parsed) == expected
    for event in parsed.events:
        assert event.source == "zabbix"
        assert event.expires_at is None
        assert event.starts_at.date() == NOW.date()


def test_problem_get_times_keep_the_nanoseconds_to_the_microsecond() -> None:
    events = zabbix_api.problems_from_response(load("api-2-updated-problem-get.json"), NOW).events
    closed = events[4]
    assert closed.starts_at == at("2026-11-23T19:46:28.469521+00:00")
    assert closed.ends_at == at("2026-11-23T19:46:55.369143+00:00")
    assert closed.annotations["recovery_event_id"] == "7"
    assert events[0].ends_at is None


def test_a_resolved_problem_without_its_recovery_clock_ends_now() -> None:
    response = load("api-2-updated-problem-get.json")
    response["result"][4]["r_clock"] = "0"
    event = zabbix_api.problems_from_response(response, NOW).events[4]
    assert (event.status, event.ends_at) == (AlertStatus.RESOLVED, NOW)


def test_problem_get_without_triggers_names_the_alert_after_the_event() -> None:
    event = zabbix_api.problems_from_response(load("api-1-open-problem-get.json"), NOW).events[3]
    assert event.labels["alertname"] == "Queue backlog of 250 jobs on Bridge Test Host"
    assert "host" not in event.labels
    assert event.labels["zabbix_trigger_id"] == "23136"
    assert event.generator_url == ""


@pytest.mark.parametrize(
    ("webhook", "index"),
    [
        ("webhook-problem-sev0-not-classified.json", 0),
        ("webhook-problem-sev1-information.json", 1),
        ("webhook-problem-sev2-warning.json", 2),
        ("webhook-problem-sev3-average.json", 3),
        ("webhook-problem-sev4-high.json", 4),
        ("webhook-problem-sev5-disaster.json", 5),
    ],
)
def test_polling_and_the_webhook_agree(webhook: str, index: int) -> None:
    pushed = zabbix.parse(load(webhook), NOW).events[0]
    polled = zabbix_api.problems_from_response(
        load("api-1-open-problem-get.json"),
        NOW,
        triggers=load("api-1-open-trigger-get.json"),
        frontend_url=FRONTEND,
    ).events[index]
    assert polled.fingerprint == pushed.fingerprint
    assert polled.labels == pushed.labels
    assert polled.severity is pushed.severity
    assert polled.generator_url == pushed.generator_url
    assert polled.starts_at.replace(microsecond=0) == pushed.starts_at
    assert polled.annotations["summary"] == pushed.annotations["summary"]


def test_event_get_resolves_each_problem_with_a_recovery() -> None:
    response = combined(
        "api-3-resolved-event-get-value1.json", "api-3-resolved-event-get-value0.json"
    )
    parsed = zabbix_api.recoveries_from_response(response, NOW, frontend_url=FRONTEND)
    assert parsed.rejects == []
    assert summary(parsed) == RESOLVED_ALL
    ends = [event.ends_at for event in parsed.events]
    assert ends[4] == at("2026-11-23T19:46:55.369143+00:00")  # closed by hand, event 7
    assert ends[0] == at("2026-11-23T19:46:59.461632+00:00")  # recovered, event 8
    assert [e.annotations["recovery_event_id"] for e in parsed.events] == [
        "8", "9", "10", "11", "7", "12",
    ]  # fmt: skip


def test_event_get_labels_match_the_webhook_recovery() -> None:
    # relatedObject's name is not expanded ("... on {HOST.NAME}"): the host fills it in.
    response = combined(
        "api-3-resolved-event-get-value1.json", "api-3-resolved-event-get-value0.json"
    )
    polled = zabbix_api.recoveries_from_response(response, NOW, frontend_url=FRONTEND).events
    for index, name in [
        (0, "webhook-resolved-sev0-not-classified.json"),
        (3, "webhook-resolved-sev3-average.json"),
        (4, "webhook-resolved-manual-close-sev4-high.json"),
        (5, "webhook-resolved-sev5-disaster.json"),
    ]:
        pushed = zabbix.parse(load(name), NOW).events[0]
        assert polled[index].fingerprint == pushed.fingerprint
        assert polled[index].labels == pushed.labels
        polled_end, pushed_end = polled[index].ends_at, pushed.ends_at
        assert polled_end is not None
        assert polled_end.replace(microsecond=0) == pushed_end


def test_a_problem_event_whose_recovery_is_not_in_the_result_ends_now() -> None:
    parsed = zabbix_api.recoveries_from_response(load("api-2-updated-event-get-value1.json"), NOW)
    assert summary(parsed) == [("zabbix:5", RESOLVED, MAJOR)]
    assert parsed.events[0].ends_at == NOW


def test_a_recovery_event_no_problem_names_is_rejected() -> None:
    parsed = zabbix_api.recoveries_from_response(load("api-2-updated-event-get-value0.json"), NOW)
    assert parsed.events == []
    [reject] = parsed.rejects
    assert (reject.index, reject.field, reject.reason) == (
        0,
        "result[0].eventid",
        RejectReason.INVALID_ITEM,
    )
    assert "recovery event 7" in reject.message


def test_triggers_given_to_the_recoveries_win() -> None:
    response = combined(
        "api-3-resolved-event-get-value1.json", "api-3-resolved-event-get-value0.json"
    )
    triggers = load("api-1-open-trigger-get.json")
    triggers["result"][0]["description"] = "Renamed"
    events = zabbix_api.recoveries_from_response(response, NOW, triggers=triggers).events
    assert events[0].labels["alertname"] == "Renamed"


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("t0k3n", {"jsonrpc": "2.0", "method": "problem.get", "params": {"recent": True},
                   "auth": "t0k3n", "id": 7}),
        (None, {"jsonrpc": "2.0", "method": "problem.get", "params": {"recent": True}, "id": 7}),
    ],
)  # fmt: skip
def test_request(auth: str | None, expected: dict[str, Any]) -> None:
    assert zabbix_api.request("problem.get", {"recent": True}, auth, 7) == expected


@pytest.mark.parametrize("method", ["apiinfo.version", "user.login"])
def test_login_and_version_requests_go_without_auth(method: str) -> None:
    assert "auth" not in zabbix_api.request(method, {}, None, 1)
    with pytest.raises(ValueError, match=method):
        zabbix_api.request(method, {}, "t0k3n", 1)


def test_the_request_does_not_share_the_params() -> None:
    params: dict[str, Any] = {"output": "extend"}
    request = zabbix_api.request("event.get", params, "t", 1)
    request["params"]["output"] = "count"
    assert params == {"output": "extend"}


PROBLEMS = load("api-1-open-problem-get.json")
ERROR = {"code": -32602, "message": "Invalid params.", "data": "Not authorised."}


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"jsonrpc": "2.0", "error": ERROR}, "Invalid params. Not authorised. (code -32602)"),
        ({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error.", "data": ""}},
         "Parse error. (code -32700)"),
        ({"jsonrpc": "2.0", "error": {"code": 1}}, "JSON-RPC error (code 1)"),
        ({"jsonrpc": "2.0", "error": {"message": "Odd."}}, "Odd."),
        ({"jsonrpc": "2.0", "error": "boom"}, "JSON-RPC error: 'boom'"),
        ({"jsonrpc": "2.0", "id": 1}, "not a JSON-RPC response: no result or error"),
        ([], "not a JSON-RPC response: got array"),
        (None, "not a JSON-RPC response: got null"),
        ("<html>", "not a JSON-RPC response: got string"),
        ({"jsonrpc": "2.0", "result": [], "id": 1}, None),
        ({"jsonrpc": "2.0", "result": "6.0.14", "id": 1}, None),
    ],
)  # fmt: skip
def test_api_error(response: object, message: str | None) -> None:
    assert zabbix_api.api_error(response) == message


@pytest.mark.parametrize(
    "convert", [zabbix_api.problems_from_response, zabbix_api.recoveries_from_response]
)
def test_an_error_response_is_a_body_error(convert: Callable[[object, datetime], Parsed]) -> None:
    with pytest.raises(BodyError) as caught:
        convert({"jsonrpc": "2.0", "error": ERROR, "id": 1}, NOW)
    reject = caught.value.reject
    assert (reject.index, reject.field, reject.reason) == (
        None,
        "result",
        RejectReason.INVALID_BODY,
    )
    assert "Not authorised." in reject.message


@pytest.mark.parametrize(
    ("triggers", "field"),
    [
        ({"jsonrpc": "2.0", "error": ERROR, "id": 1}, "triggers.result"),
        ({"jsonrpc": "2.0", "result": {}, "id": 1}, "triggers.result"),
        ({"jsonrpc": "2.0", "result": [{"triggerid": "1"}]}, "triggers.result[0].description"),
        ({"jsonrpc": "2.0", "result": [{"triggerid": 1, "description": "x"}], "id": 1},
         "triggers.result[0].triggerid"),
    ],
)  # fmt: skip
def test_unusable_triggers_are_a_body_error(triggers: object, field: str) -> None:
    with pytest.raises(BodyError) as caught:
        zabbix_api.problems_from_response(
            load("api-1-open-problem-get.json"), NOW, triggers=triggers
        )
    assert caught.value.reject.field == field


def _set(key: str, value: object) -> Change:
    return lambda entry: {**entry, key: value}


def _drop(key: str) -> Change:
    return lambda entry: {k: v for k, v in entry.items() if k != key}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (_drop("eventid"), "result[2].eventid", "required"),
        (_set("eventid", 3), "result[2].eventid", "string"),
        (_set("eventid", "3a"), "result[2].eventid", "pattern"),
        (_drop("objectid"), "result[2].objectid", "required"),
        (_set("clock", "yesterday"), "result[2].clock", "pattern"),
        (_set("ns", None), "result[2].ns", "string"),
        (_set("severity", "6"), "result[2].severity", "'0', '1', '2', '3', '4' or '5'"),
        (_set("severity", 2), "result[2].severity", "'0', '1'"),
        (_drop("name"), "result[2].name", "required"),
        (_set("tags", {"tag": "x"}), "result[2].tags", "array"),
        (_set("tags", [{"tag": "x"}]), "result[2].tags[0].value", "required"),
        (_set("acknowledged", "2"), "result[2].acknowledged", "'0' or '1'"),
        (lambda entry: [entry], "result[2]", "JSON object, got array"),
        (lambda entry: None, "result[2]", "JSON object, got null"),
    ],
)
def test_a_bad_problem_is_rejected_and_its_neighbours_survive(
    change: Change, field: str, says: str
) -> None:
    response = load("api-1-open-problem-get.json")
    response["result"][2] = change(response["result"][2])
    parsed = zabbix_api.problems_from_response(response, NOW)
    assert parsed.items == 6
    assert [(r.index, r.field, r.reason) for r in parsed.rejects] == [
        (2, field, RejectReason.INVALID_ITEM)
    ]
    assert says in parsed.rejects[0].message
    assert [e.fingerprint for e in parsed.events] == [
        "zabbix:1", "zabbix:2", "zabbix:4", "zabbix:5", "zabbix:6",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set("value", "2"), "result[4].value"),
        (_drop("value"), "result[4].value"),
        (_set("hosts", [{"name": "x"}]), "result[4].hosts[0].host"),
        (_set("relatedObject", {"triggerid": "1"}), "result[4].relatedObject.description"),
        (_set("r_eventid", ""), "result[4].r_eventid"),
    ],
)
def test_a_bad_event_is_rejected(change: Change, field: str) -> None:
    response = combined(
        "api-3-resolved-event-get-value1.json", "api-3-resolved-event-get-value0.json"
    )
    response["result"][4] = change(response["result"][4])
    parsed = zabbix_api.recoveries_from_response(response, NOW)
    assert [(r.index, r.field) for r in parsed.rejects][:1] == [(4, field)]
    assert "zabbix:5" not in {e.fingerprint for e in parsed.events}
    assert len(parsed.events) == 5
