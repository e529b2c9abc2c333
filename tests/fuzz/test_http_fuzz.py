"""Raw bytes at every webhook and every API body: never a 5xx, the app keeps answering, and a
batch with one valid item among garbage stores that item and nothing of the garbage.

One app per test, on SQLite and on PostgreSQL; hypothesis runs its examples inside it on the
test's event loop.
"""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.bridge.conftest import Bridge
from tests.connectors.test_generic import GRAFANA_BODY, solarwinds_body
from tests.fuzz.conftest import SERVICENOW_TOKEN
from tests.fuzz.strategies import (
    DEEP,
    EXTREMES,
    OUT_OF_RANGE_TIMESTAMPS,
    as_text,
    json_values,
    load_captured,
    mutated,
)
from tests.fuzz.test_connectors_fuzz import run

HTTP = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
MAX_BODY = 10 * 1024 * 1024  # the default `max_body_bytes`

# Each webhook with the captured bodies its sender posts.
WEBHOOKS: dict[str, list[Any]] = {
    "/api/v1/webhooks/alertmanager": load_captured("alertmanager"),
    "/api/v2/alerts": load_captured("prometheus"),
    "/api/v1/alerts": load_captured("prometheus"),
    "/api/v1/webhooks/nagios": load_captured("nagios"),
    "/api/v1/webhooks/zabbix": load_captured("zabbix", "webhook-*.json"),
    "/api/v1/webhooks/generic/grafana": [GRAFANA_BODY],
    "/api/v1/webhooks/generic/solarwinds": [solarwinds_body("triggered")],
}
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json-rpc",
    "",
]
INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]
# Bodies too big to draw: built once, posted as explicit examples or sampled.
BIG: list[bytes] = [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b"[" * DEEP,
    b'{"alerts": [' + b",".join([b"{}"] * 200_000) + b"]}",
    b'{"alerts": [{"status": "firing", "labels": {"a": "' + b"x" * (MAX_BODY - 100) + b'"}}]}',
    b'"' + b"\\ud800" * 100_000 + b'"',
]
TOO_BIG = b"[" + b" " * MAX_BODY + b"]"


def _with_bytes(text: bytes, junk: bytes, at: int) -> bytes:
    at = min(at, len(text))
    return text[:at] + junk + text[at:]


def raw_bodies(samples: list[Any]) -> st.SearchStrategy[bytes]:
    texts = [orjson.dumps(body) for body in samples]
    sample = st.sampled_from(texts)
    return st.one_of(
        st.binary(max_size=512),
        json_values.map(lambda value: as_text(value).encode()),
        mutated(samples).map(lambda body: as_text(body).encode()),
        st.builds(lambda text, cut: text[:cut], sample, st.integers(min_value=0, max_value=4000)),
        st.builds(_with_bytes, sample, st.sampled_from(INVALID_UTF8), st.integers(min_value=0)),
        st.sampled_from(BIG),
    )


def _payload(body: bytes) -> bytes | io.BytesIO:
    # aiohttp warns (an error here) when a big body is given as bytes.
    return io.BytesIO(body) if len(body) > 1024 * 1024 else body


async def _healthy(bridge: Bridge) -> None:
    response = await bridge.client.get("/-/healthy")
    assert response.status == 200


@pytest.mark.parametrize("path", sorted(WEBHOOKS))
@settings(HTTP, max_examples=200)
@given(data=st.data(), content_type=st.sampled_from(["application/json"] * 8 + CONTENT_TYPES))
@example(data=None, content_type="application/json")
async def test_webhook_raw_bodies(
    bridge: Bridge, path: str, data: st.DataObject | None, content_type: str
) -> None:
    # The explicit example (data None) posts a body over the size limit.
    body = TOO_BIG if data is None else data.draw(raw_bodies(WEBHOOKS[path]), label="body")
    headers = {"Content-Type": content_type} if content_type else {}
    response = await bridge.client.post(path, data=_payload(body), headers=headers)
    text = await response.text()
    event(f"HTTP {response.status}")
    assert response.status < 500, text
    if len(body) > MAX_BODY:
        assert response.status == 413, text
    await _healthy(bridge)


# Batch webhooks: where the items are, and how to make one captured item unique.
def _alertmanager_item(case: int) -> dict[str, Any]:
    [body] = load_captured("alertmanager", "am-01-*.json")
    item = dict(body["alerts"][0])
    del item["fingerprint"]  # computed from the labels, made unique below
    item["labels"] = {**item["labels"], "fuzz_case": str(case)}
    return item


def _prometheus_item(case: int) -> dict[str, Any]:
    [body] = load_captured("prometheus", "prom-01-*.json")
    return {**body[0], "labels": {**body[0]["labels"], "fuzz_case": str(case)}}


def _grafana_item(case: int) -> dict[str, Any]:
    item = GRAFANA_BODY["alerts"][0]
    return {
        **item,
        "fingerprint": f"fuzz-{case}",
        "labels": {**item["labels"], "fuzz_case": str(case)},
    }


BATCHES = {
    "alertmanager": ("/api/v1/webhooks/alertmanager", _alertmanager_item),
    "prometheus": ("/api/v2/alerts", _prometheus_item),
    "grafana": ("/api/v1/webhooks/generic/grafana", _grafana_item),
}


def _envelope(source: str, items: list[Any]) -> Any:
    if source == "prometheus":
        return items
    [template] = (
        load_captured("alertmanager", "am-01-*.json")
        if source == "alertmanager"
        else [GRAFANA_BODY]
    )
    return {**template, "alerts": items}


def _sent_as_is(item: Any) -> bool:
    """Garbage the daemon's decoder reads back unchanged (no NaN, no lone surrogate)."""
    try:
        return bool(orjson.loads(as_text(item)) == item)
    except (orjson.JSONDecodeError, UnicodeEncodeError):
        return False


def garbage(source: str) -> st.SearchStrategy[Any]:
    real = _envelope(source, [BATCHES[source][1](0)])
    items = real if source == "prometheus" else real["alerts"]
    candidates = st.one_of(
        json_values,
        st.sampled_from(EXTREMES + OUT_OF_RANGE_TIMESTAMPS),
        mutated(items).flatmap(
            lambda found: st.sampled_from(found) if isinstance(found, list) and found else st.none()
        ),
    )

    def rejected_alone(item: Any) -> bool:
        parsed = run(source, _envelope(source, [item]))
        return parsed is not None and not parsed.events

    return candidates.filter(_sent_as_is).filter(rejected_alone)


CASES = itertools.count(1)
STORED: dict[int, set[str]] = {}  # per app: the cases whose valid item was stored


@pytest.mark.parametrize("source", sorted(BATCHES))
@HTTP
@given(data=st.data(), at=st.integers(min_value=0))
async def test_valid_item_among_garbage_is_stored_alone(
    bridge: Bridge, source: str, data: st.DataObject, at: int
) -> None:
    path, valid_item = BATCHES[source]
    bad = data.draw(st.lists(garbage(source), min_size=1, max_size=4), label="garbage")
    case = next(CASES)
    items = list(bad)
    items.insert(at % (len(items) + 1), valid_item(case))
    body = as_text(_envelope(source, items)).encode()
    response = await bridge.client.post(
        path, data=_payload(body), headers={"Content-Type": "application/json"}
    )
    answer = await response.json()
    assert response.status == 200, answer
    assert answer["accepted"] == 1, answer
    assert len(answer["rejected"]) == len(bad), answer
    stored = STORED.setdefault(id(bridge.runtime), set())
    stored.add(str(case))
    found = await bridge.get_json(f"/api/v1/alerts?source={source}&limit=1000")
    cases_found = {alert["labels"].get("fuzz_case") for alert in found["alerts"]}
    assert cases_found == stored  # the valid item is there, nothing of the garbage


# --- the action API -------------------------------------------------------------------------

ACTIONS = ("acknowledge", "unacknowledge", "resolve", "close", "comment", "assign", "priority")
BODY_KEYS = [
    "actor", "comment", "assignment_group", "assignee", "priority", "status", "root_cause",
    "workaround", "name", "created_by", "reason", "change_ref", "matchers", "match", "start",
    "end", "weekly", "cron", "duration", "timezone", "sys_id", "number", "correlation_id",
    "state", "sys_updated_by", "work_notes", "close_notes",
]  # fmt: skip
SPECIAL_VALUES = [
    *EXTREMES[3:9],
    *OUT_OF_RANGE_TIMESTAMPS,
    "P0", "P1", "p5", "P99999999999999999999", "5", "0", "open", "known_error", "resolved",
    "Europe/Berlin", "Not/AZone", "../../etc/passwd", "* * * * *", "61 25 * * *", "1h",
    "99999999999h", "-1s", 'host="a"', "a=~(", "x" * 100_000, "\x00", "bridge-incident-1",
    "2026-11-23T20:00:00Z", "2026-11-23T21:00:00Z", "9999-12-31T23:59:59+14:00",
]  # fmt: skip
body_values = st.one_of(json_values, st.sampled_from(SPECIAL_VALUES))
api_bodies = st.one_of(
    st.dictionaries(st.sampled_from(BODY_KEYS), body_values, max_size=8).map(
        lambda body: as_text(body).encode()
    ),
    st.binary(max_size=256),
    json_values.map(lambda value: as_text(value).encode()),
    st.sampled_from([*BIG[:3], b"", b"{", b'{"actor": "a", "actor": 1}', b'{"actor": "\\ud800"}']),
)
ids = st.one_of(
    st.just("{real}"),
    st.sampled_from(["0", "-1", "999999", "9" * 30, "1e3", " 1", "\u0661", "abc", "%00", "1.5"]),
)
ENDPOINTS: list[tuple[str, str]] = [
    *(("POST", f"/api/v1/incidents/{{id}}/{verb}") for verb in ACTIONS),
    ("POST", "/api/v1/maintenance"),
    ("DELETE", "/api/v1/maintenance/{id}?by=fuzz"),
    ("PATCH", "/api/v1/problems/{id}"),
    ("POST", "/api/v1/notifications/{id}/resend"),
    ("POST", "/api/v1/itsm/servicenow/x"),
]


async def _an_incident(bridge: Bridge) -> str:
    [body] = load_captured("alertmanager", "am-01-*.json")
    status, _ = await bridge.post_json("/api/v1/webhooks/alertmanager", body)
    assert status == 200
    incidents = (await bridge.get_json("/api/v1/incidents"))["incidents"]
    return str(incidents[0]["id"]) if incidents else "1"


INCIDENTS: dict[int, str] = {}  # per app: the id of a real incident


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@settings(HTTP, max_examples=60)
@given(body=api_bodies, record=ids, content_type=st.sampled_from(CONTENT_TYPES[:5]))
@example(
    body=b'{"actor": "fuzz", "priority": "P1"}', record="{real}", content_type="application/json"
)
# Regressions (500 before): an id past 64 bits overflowed SQLite's INTEGER (DELETE maintenance,
# resend); a duration of -2**63 overflowed timedelta in `rules.duration` (POST maintenance).
@example(
    body=b'{"name": "w", "created_by": "a", "cron": "* * * * *", "duration": -9223372036854775808}',
    record="9" * 30,
    content_type="application/json",
)
async def test_api_bodies(
    bridge: Bridge, method: str, path: str, body: bytes, record: str, content_type: str
) -> None:
    if id(bridge.runtime) not in INCIDENTS:
        INCIDENTS[id(bridge.runtime)] = await _an_incident(bridge)
    real = INCIDENTS[id(bridge.runtime)]
    url = path.replace("{id}", record.replace("{real}", real))
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {SERVICENOW_TOKEN}"}
    response = await bridge.client.request(method, url, data=_payload(body), headers=headers)
    text = await response.text()
    event(f"HTTP {response.status}")
    assert response.status < 500, text
    await _healthy(bridge)


@HTTP
@given(
    query=st.sampled_from(["limit", "offset", "status", "hold", "incident_id"]),
    value=st.one_of(st.text(max_size=30), st.sampled_from(["9" * 30, "-1", "1e3", "\u0661"])),
)
@example(query="offset", value="9" * 30)  # overflowed SQLite's INTEGER: a 500 before
@example(query="incident_id", value="9" * 30)
async def test_read_api_query_parameters(bridge: Bridge, query: str, value: str) -> None:
    for path in (
        "/api/v1/alerts",
        "/api/v1/incidents",
        "/api/v1/problems",
        "/api/v1/notifications",
    ):
        response = await bridge.client.get(path, params={query: value})
        event(f"HTTP {response.status}")
        assert response.status < 500, await response.text()


def test_big_bodies_are_what_they_say() -> None:
    assert len(BIG[4]) < MAX_BODY < len(TOO_BIG)
    json.loads(BIG[4])


TIMESTAMP_FIELDS = {
    "/api/v1/webhooks/alertmanager": ("alertmanager", ["startsAt", "endsAt"]),
    "/api/v2/alerts": ("prometheus", ["startsAt", "endsAt"]),
    "/api/v1/webhooks/generic/grafana": ("grafana", ["startsAt", "endsAt"]),
}
EPOCHS = [0, -1, -(2**63), 2**64 - 1, 1e308, -1e308, 253402300799, 253402300800, 1e11, 1e17]


@pytest.mark.parametrize("path", sorted(TIMESTAMP_FIELDS))
async def test_timestamps_out_of_range(bridge: Bridge, path: str) -> None:
    """Every edge timestamp in every time field, one item at a time, through the pipeline."""
    source, fields = TIMESTAMP_FIELDS[path]
    values: list[Any] = [*OUT_OF_RANGE_TIMESTAMPS, *(EPOCHS if source == "grafana" else [])]
    case = 0
    for field in fields:
        for other in ("2026-11-23T19:00:00Z", None):
            for value in values:
                case += 1
                item = BATCHES[source][1](case)
                other_field = "endsAt" if field == "startsAt" else "startsAt"
                item = {**item, field: value}
                if other is None:
                    item.pop(other_field, None)
                else:
                    item[other_field] = other
                status, answer = await bridge.post_json(path, _envelope(source, [item]))
                assert status < 500, (field, value, answer)
    await _healthy(bridge)
    # A second pass finds the stored alerts with their edge times and updates them.
    status, _ = await bridge.post_json(path, _envelope(source, [BATCHES[source][1](1)]))
    assert status == 200


@pytest.mark.parametrize(
    ("source", "changes"),
    [
        ("nagios", {"SERVICEDURATIONSEC": "9" * 20}),
        ("nagios", {"SERVICEDURATIONSEC": "9" * 10}),
        ("zabbix", {"event_date": "0001.01.01", "event_time": "00:00:00"}),
        ("zabbix", {"event_date": "9999.12.31", "event_time": "23:59:59"}),
        ("zabbix", {"event_value": "0", "event_recovery_date": "0001.01.01"}),
        ("zabbix", {"event_value": "0", "event_recovery_date": "9999.12.31"}),
    ],
)
async def test_edge_times_of_nagios_and_zabbix(
    bridge: Bridge, source: str, changes: dict[str, str]
) -> None:
    pattern = "nagios-01-*.json" if source == "nagios" else "webhook-problem-sev4-*.json"
    [body] = load_captured(source, pattern)
    status, answer = await bridge.post_json(f"/api/v1/webhooks/{source}", {**body, **changes})
    assert status < 500, answer
    await _healthy(bridge)
