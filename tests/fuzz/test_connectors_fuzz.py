"""Every connector, fed arbitrary JSON and mutated captured payloads: it returns a `Parsed` of
well-formed events or raises `BodyError`, nothing else; a bad item never costs a good one.

The parsers are called the way `bridge.payloads.Decoder.decode`, the webhooks and the Zabbix
poll call them. Bodies are what a JSON decoder returns: orjson (the daemon's) and the standard
library's `json`, which also lets NaN, infinities, integers beyond 64 bits and lone surrogates
(`"\\ud800"`) through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors import alertmanager, generic, nagios, prometheus, zabbix, zabbix_api
from connectors.labels import LABEL_NAME_PATTERN
from connectors.parsed import BodyError, Parsed, Reject, RejectReason
from rules.model import AlertStatus, Event, EventKind, Severity
from tests.connectors.test_generic import GRAFANA_BODY, solarwinds_body
from tests.fuzz.strategies import (
    EXTREMES,
    OUT_OF_RANGE_TIMESTAMPS,
    duplicate_key_text,
    json_values,
    load_captured,
    mutated,
)

NOW = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)
RESOLVE_TIMEOUT = timedelta(minutes=5)
# Local mean time +12:13 before 1867, -10 later: year 1 and year 9999 both leave the calendar.
ADAK = ZoneInfo("America/Adak")
MAPPINGS = generic.load_mappings(Path(__file__).resolve().parents[2] / "config" / "generic")
LABEL_NAME = re.compile(LABEL_NAME_PATTERN)
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def _event_get(stage: str) -> dict[str, Any]:
    """event.get as the poller asks for it: the problem and the recovery events in one result."""
    [problems] = load_captured("zabbix", f"api-{stage}-event-get-value1.json")
    [recoveries] = load_captured("zabbix", f"api-{stage}-event-get-value0.json")
    return {**problems, "result": problems["result"] + recoveries["result"]}


PROBLEM_GET = load_captured("zabbix", "api-2-updated-problem-get.json")[0]
TRIGGER_GET = load_captured("zabbix", "api-2-updated-trigger-get.json")[0]


def _zabbix_problems(body: object) -> Parsed:
    zabbix_api.api_error(body)
    zabbix_api.problem_trigger_ids(body)
    return zabbix_api.problems_from_response(
        body, NOW, triggers=TRIGGER_GET, frontend_url="http://zabbix.example"
    )


Parse = Callable[[object], Parsed]
PARSERS: dict[str, Parse] = {
    "alertmanager": lambda body: alertmanager.parse(body, NOW),
    "prometheus": lambda body: prometheus.parse(body, NOW, RESOLVE_TIMEOUT),
    "nagios": lambda body: nagios.parse(body, NOW),
    "zabbix": lambda body: zabbix.parse(body, NOW),
    "zabbix_adak": lambda body: zabbix.parse(body, NOW, server_tz=ADAK),
    "zabbix_api_problems": _zabbix_problems,
    "zabbix_api_recoveries": lambda body: zabbix_api.recoveries_from_response(body, NOW),
    "zabbix_api_triggers": lambda body: zabbix_api.problems_from_response(
        PROBLEM_GET, NOW, triggers=body
    ),
    "grafana": lambda body: generic.parse(MAPPINGS["grafana"], "grafana", body, NOW),
    "solarwinds": lambda body: generic.parse(MAPPINGS["solarwinds"], "solarwinds", body, NOW),
}
SAMPLES: dict[str, list[Any]] = {
    "alertmanager": load_captured("alertmanager"),
    "prometheus": load_captured("prometheus"),
    "nagios": load_captured("nagios"),
    "zabbix": load_captured("zabbix", "webhook-*.json"),
    "zabbix_adak": load_captured("zabbix", "webhook-*.json"),
    "zabbix_api_problems": load_captured("zabbix", "api-*-problem-get.json"),
    # The open stage has no recovery yet, so no event.
    "zabbix_api_recoveries": [_event_get(stage) for stage in ("2-updated", "3-resolved")],
    "zabbix_api_triggers": load_captured("zabbix", "api-*-trigger-get.json"),
    "grafana": [GRAFANA_BODY],
    "solarwinds": [solarwinds_body("triggered"), solarwinds_body("reset")],
}
# Where the items of a batch are: a key of the body, or None for a bare array.
BATCHES: dict[str, str | None] = {
    "alertmanager": "alerts",
    "prometheus": None,
    "grafana": "alerts",
    "zabbix_api_problems": "result",
}


def _text(value: object) -> None:
    assert isinstance(value, str), value
    value.encode()  # the store writes UTF-8: no lone surrogates


def _time(value: object, *, optional: bool) -> None:
    if optional and value is None:
        return
    assert isinstance(value, datetime), value
    assert value.utcoffset() is not None, value
    value.astimezone(UTC)  # representable in UTC, as the store keeps it


def check_event(event: object) -> None:
    """Fully formed: every field of its type, times aware, labels and annotations str -> str."""
    assert isinstance(event, Event)
    for value in (event.source, event.fingerprint, event.generator_url, event.digest):
        _text(value)
    for value in (event.actor, event.message):
        _text(value)
    assert event.fingerprint
    assert event.digest
    assert isinstance(event.status, AlertStatus)
    assert isinstance(event.severity, Severity)
    assert isinstance(event.kind, EventKind)
    for mapping in (event.labels, event.annotations):
        assert isinstance(mapping, dict)
        for key, value in mapping.items():
            _text(key)
            _text(value)
    for name in event.labels:
        assert LABEL_NAME.fullmatch(name), name
    _time(event.starts_at, optional=False)
    _time(event.ends_at, optional=True)
    _time(event.expires_at, optional=True)
    for optional in (event.group_key, event.receiver):
        if optional is not None:
            _text(optional)


def check_reject(reject: object, items: int) -> None:
    assert isinstance(reject, Reject)
    assert reject.index is None or 0 <= reject.index < max(items, 1)
    _text(reject.field)
    _text(reject.message)
    assert isinstance(reject.reason, RejectReason)


def run(name: str, body: object) -> Parsed | None:
    """The parse, checked; None for a `BodyError`. Any other exception fails the test."""
    try:
        parsed = PARSERS[name](body)
    except BodyError as exc:
        reject: Reject | None = exc.reject
    else:
        reject = None
    if reject is not None:
        check_reject(reject, 0)
        assert reject.index is None
        return None
    assert isinstance(parsed, Parsed)
    for event in parsed.events:
        check_event(event)
    for reject in parsed.rejects:
        check_reject(reject, parsed.items)
    assert parsed.truncated >= 0
    return parsed


def test_every_decoder_sample_is_valid() -> None:
    """The fuzzing starts from bodies each connector accepts whole."""
    for name, bodies in SAMPLES.items():
        for body in bodies:
            parsed = run(name, body)
            assert parsed is not None, name
            assert parsed.events, name


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(FUZZ, max_examples=200)
@given(body=json_values)
@example(body=None)
@example(body=[[[]]])
@example(body={"alerts": [{}], "result": [{}]})
def test_arbitrary_json(name: str, body: Any) -> None:
    run(name, body)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(data=st.data())
def test_mutated_captured_payloads(name: str, data: st.DataObject) -> None:
    body = data.draw(mutated(SAMPLES[name]), label="body")
    run(name, body)
    # As the daemon reads it: what orjson makes of the same text (a refusal is a 400 there).
    try:
        decoded = orjson.loads(json.dumps(body, allow_nan=True))
    except (orjson.JSONDecodeError, UnicodeEncodeError):
        return
    run(name, decoded)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(FUZZ, max_examples=100)
@given(data=st.data(), junk=json_values | st.sampled_from(EXTREMES + OUT_OF_RANGE_TIMESTAMPS))
def test_duplicate_keys(name: str, data: st.DataObject, junk: Any) -> None:
    """Raw JSON text with one key of an object twice: of the body, or of an item of an array."""
    body = data.draw(st.sampled_from(SAMPLES[name]), label="body")
    if isinstance(body, dict):
        key = data.draw(st.sampled_from([*body, "unknown"]), label="key")
        text = duplicate_key_text(body, key, junk)
        known = key in body
    else:
        at = data.draw(st.integers(min_value=0, max_value=len(body) - 1), label="item")
        key = data.draw(st.sampled_from([*body[at], "unknown"]), label="key")
        items = [json.dumps(item) for item in body]
        items[at] = duplicate_key_text(body[at], key, junk)
        text = "[" + ", ".join(items) + "]"
        known = key in body[at]
    for loads in (json.loads, orjson.loads):
        try:
            decoded = loads(text)
        except (ValueError, UnicodeEncodeError):
            continue  # orjson refuses NaN and lone surrogates: the daemon answers 400
        parsed = run(name, decoded)
        if known:  # the last one wins: the captured value, the body stays valid
            assert parsed is not None, (name, key)
            assert parsed.events, (name, key)


def _wrapped(name: str, template: Any, items: list[Any]) -> Any:
    where = BATCHES[name]
    return items if where is None else {**template, where: items}


def _garbage(name: str, template: Any) -> st.SearchStrategy[Any]:
    """Items the connector rejects on their own: random JSON and mutated real items."""
    where = BATCHES[name]
    real = template if where is None else template[where]
    candidates = json_values | mutated(real).flatmap(
        lambda items: st.sampled_from(items) if isinstance(items, list) and items else st.none()
    )

    def rejected_alone(item: Any) -> bool:
        parsed = run(name, _wrapped(name, template, [item]))
        return parsed is not None and not parsed.events

    return candidates.filter(rejected_alone)


@pytest.mark.parametrize("name", sorted(BATCHES))
@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_valid_items_survive_invalid_neighbours(name: str, data: st.DataObject) -> None:
    template = data.draw(st.sampled_from(SAMPLES[name]), label="template")
    where = BATCHES[name]
    valid = list(template if where is None else template[where])
    garbage = data.draw(st.lists(_garbage(name, template), min_size=1, max_size=4), label="bad")
    batch: list[Any] = list(valid)
    positions: list[int] = []
    for item in garbage:
        at = data.draw(st.integers(min_value=0, max_value=len(batch)), label="at")
        positions = [p + 1 if p >= at else p for p in positions] + [at]
        batch.insert(at, item)
    alone = run(name, template)
    mixed = run(name, _wrapped(name, template, batch))
    assert alone is not None
    assert mixed is not None
    assert alone.rejects == []
    assert mixed.events == alone.events
    assert sorted(r.index for r in mixed.rejects if r.index is not None) == sorted(positions)
    assert mixed.items == len(batch)


def _captured(source: str, name: str, **changes: Any) -> Any:
    [body] = load_captured(source, name)
    return {**body, **changes}


def _zabbix_api_result(name: str, **changes: Any) -> Any:
    [body] = load_captured("zabbix", name)
    first = {**body["result"][0], **changes}
    return {**body, "result": [first, *body["result"][1:]]}


HUGE_INT = 10**400  # what the standard library's json makes of 1 followed by 400 zeros
GRAFANA_ITEM = GRAFANA_BODY["alerts"][0]
# Bodies that crashed a connector before the fix (found by the tests above), and how many of
# their items must still become events.
REGRESSIONS: list[tuple[str, Any, int | None]] = [
    # A lone surrogate broke the fingerprint (UnicodeEncodeError) and digest (orjson TypeError).
    (
        "alertmanager",
        json.loads('{"alerts": [{"status": "firing", "labels": {"a": "\\ud800"}}]}'),
        None,
    ),
    ("prometheus", json.loads('[{"labels": {"a": "x"}, "annotations": {"b": "\\udfff"}}]'), None),
    ("nagios", _captured("nagios", "nagios-01-*.json", SERVICEOUTPUT="\ud800"), None),
    ("zabbix", _captured("zabbix", "webhook-problem-sev1-*.json", event_name="\ud800"), None),
    ("grafana", {**GRAFANA_BODY, "groupKey": "\ud800"}, None),
    # Integers past 64 bits: epoch overflow in the division, orjson refusing to write them.
    ("grafana", {**GRAFANA_BODY, "alerts": [{**GRAFANA_ITEM, "startsAt": HUGE_INT}]}, 0),
    ("grafana", {**GRAFANA_BODY, "alerts": [{**GRAFANA_ITEM, "fingerprint": HUGE_INT}]}, 0),
    # A duration of 20 digits overflowed timedelta; 12 digits went before year 1.
    ("nagios", _captured("nagios", "nagios-01-*.json", SERVICEDURATIONSEC="9" * 20), 1),
    ("nagios", _captured("nagios", "nagios-01-*.json", SERVICEDURATIONSEC="9" * 12), 1),
    # Clocks past year 9999 and 38-digit nanoseconds overflowed fromtimestamp / timedelta.
    (
        "zabbix_api_problems",
        _zabbix_api_result("api-2-updated-problem-get.json", clock="9" * 20),
        5,
    ),
    (
        "zabbix_api_problems",
        _zabbix_api_result("api-2-updated-problem-get.json", clock="253402300800"),
        5,
    ),
    ("zabbix_api_problems", _zabbix_api_result("api-2-updated-problem-get.json", ns="9" * 38), 5),
    (
        "zabbix_api_problems",
        _zabbix_api_result("api-2-updated-problem-get.json", r_eventid="7", r_clock="9" * 20),
        5,
    ),
]
# A local time that is not a time in UTC (year 1 or 9999 in a zone west or east of it).
for _date, _time_of_day in (("0001.01.01", "00:00:00"), ("9999.12.31", "23:59:59")):
    REGRESSIONS.append(
        (
            "zabbix_adak",
            _captured(
                "zabbix", "webhook-problem-sev1-*.json", event_date=_date, event_time=_time_of_day
            ),
            None,
        )
    )


@pytest.mark.parametrize(("name", "body", "events"), REGRESSIONS)
def test_regressions(name: str, body: Any, events: int | None) -> None:
    parsed = run(name, body)
    if events is None:  # the whole body is refused
        assert parsed is None
    else:
        assert parsed is not None
        assert len(parsed.events) == events
