"""Zabbix JSON-RPC API responses -> events, source "zabbix" (polling mode).

Input: decoded JSON-RPC responses of a Zabbix 6.0 server (`{"jsonrpc": "2.0", "result": ...,
"id": N}`), `now`, optionally the `trigger.get` response and the frontend URL. Output: `Parsed`
with one event per usable result entry and one `Reject` per invalid one; a `BodyError` when the
response is an error or has no result list. No I/O: the shell (`bridge/`) sends the requests
that `request` builds and hands the answers here. No rule section drives this module; the shell
counts the rejects.

The events match the webhook path (`connectors.zabbix`): same fingerprint `zabbix:<problem
event id>`, severities, tag labels and `generator_url`. Proven by `shared/fixtures/captured/
zabbix/api-*.json` (6.0.14):

| call                                | events                                               |
|-------------------------------------|------------------------------------------------------|
| problem.get (`selectTags`,          | STATE firing per open problem; STATE resolved        |
| `selectAcknowledges`, `recent`)     | (`ends_at` = `r_clock`) per recently resolved one    |
| event.get with the problem events   | STATE resolved per problem event whose `r_eventid`   |
| (value 1) and the recovery events   | is set; `ends_at` the recovery event's clock when it |
| (value 0) in one result             | is in the result, else `now`                         |

* A recovery event does not name its problem: only the problem event's `r_eventid` links the
  two. So `recoveries_from_response` needs the problem events in the same result (event.get
  without a `value` filter, or both results concatenated); a recovery event no problem event
  names is rejected.
* problem.get carries neither the host nor the trigger's name, only `objectid` (the trigger id)
  and the event name. Pass the `trigger.get` response (`expandDescription`, `selectHosts`) as
  `triggers` for the `alertname`, `host` and `host_name` labels the webhook path sets; without
  it `alertname` is the event name and there are no host labels. event.get brings its hosts and
  the trigger (`selectRelatedObject`), whose name is not expanded: `{HOST.NAME}` and
  `{HOST.HOST}` in it are filled in here.
* `severity` is the current one (after a severity change). The manual-close recovery event
  lacks the trigger's own tags, so labels always come from the problem event.
* `acknowledges` entries (action bitmask 1 close, 2 ack, 4 message, 8 severity, 16 unack) are
  not turned into events here: the webhook path reports updates. The `acknowledged` flag is
  the `acknowledged` annotation, so the digest (same recipe as the webhook's) changes with it
  and a poll that finds nothing new repeats it.
* Every scalar is a string. Times are `clock` (Unix seconds, UTC) plus `ns`.
* `api_error` turns a JSON-RPC `error` member into one line; `request` builds a 6.0 request
  with the token in its `auth` member (6.0 has no Bearer header for the API).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connectors.alertmanager import json_type, reject_from_error
from connectors.parsed import BodyError, Parsed, Reject, RejectReason, require_unicode
from connectors.zabbix import (
    SEVERITIES,
    SOURCE,
    alert_labels,
    digest,
    event_url,
    fingerprint,
)
from rules.dedup import ended
from rules.model import AlertState, AlertStatus, Event, Severity

JSONRPC_VERSION = "2.0"
# Methods Zabbix refuses when the request carries `auth`.
UNAUTHENTICATED_METHODS = frozenset({"apiinfo.version", "user.login"})
NO_EVENT = "0"

# Zabbix ids, clocks and nanoseconds: strings of digits. A clock has at most 10 digits (Unix
# seconds up to the year 2286) and nanoseconds 9: longer ones would overflow the date.
Digits = Annotated[str, StringConstraints(pattern=r"^\d+$")]
Clock = Annotated[str, StringConstraints(pattern=r"^\d{1,10}$")]
Nanos = Annotated[str, StringConstraints(pattern=r"^\d{1,9}$")]
ZabbixSeverity = Literal["0", "1", "2", "3", "4", "5"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class Tag(_Wire):
    tag: str
    value: str


class Host(_Wire):
    host: str
    name: str = ""


class Trigger(_Wire):
    """A `trigger.get` entry, or an event's `relatedObject`."""

    triggerid: Digits
    description: str
    url: str = ""
    comments: str = ""
    hosts: list[Host] = Field(default_factory=list)


class ZabbixEvent(_Wire):
    """The fields problem.get and event.get share."""

    eventid: Digits
    objectid: Digits
    clock: Clock
    ns: Nanos = "0"
    r_eventid: Digits = NO_EVENT
    name: str
    severity: ZabbixSeverity
    acknowledged: Literal["0", "1"] = "0"
    opdata: str = ""
    tags: list[Tag] = Field(default_factory=list)


class Problem(ZabbixEvent):
    r_clock: Clock = "0"
    r_ns: Nanos = "0"


class EventGetItem(ZabbixEvent):
    value: Literal["0", "1"]
    userid: Digits = "0"
    hosts: list[Host] = Field(default_factory=list)
    related_object: Trigger | None = Field(default=None, alias="relatedObject")


def request(
    method: str, params: Mapping[str, Any], auth: str | None, request_id: int
) -> dict[str, Any]:
    """A Zabbix 6.0 JSON-RPC request; the session or API token goes in `auth` (6.0 has no
    Bearer header for the API). `apiinfo.version` and `user.login` must go without it."""
    if auth is not None and method in UNAUTHENTICATED_METHODS:
        raise ValueError(f"Zabbix refuses {method} with an auth token")
    body: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method, "params": dict(params)}
    if auth is not None:
        body["auth"] = auth
    body["id"] = request_id
    return body


def api_error(response: object) -> str | None:
    """The JSON-RPC error as one line ("<message> <data> (code <code>)"); None for a result."""
    if not isinstance(response, dict):
        return f"not a JSON-RPC response: got {json_type(response)}"
    error = response.get("error")
    if error is None:
        return None if "result" in response else "not a JSON-RPC response: no result or error"
    if not isinstance(error, dict):
        return f"JSON-RPC error: {error!r}"
    text = " ".join(str(error[key]) for key in ("message", "data") if error.get(key))
    code = error.get("code")
    return f"{text or 'JSON-RPC error'} (code {code})" if code is not None else text


def problems_from_response(
    problem_get: object, now: datetime, *, triggers: object = None, frontend_url: str = ""
) -> Parsed:
    """problem.get -> STATE firing per open problem, STATE resolved per recently resolved one."""
    entries = _result(problem_get, "result")
    known = trigger_index(triggers)
    events: list[Event] = []
    rejects: list[Reject] = []
    for index, entry in enumerate(entries):
        try:
            problem = Problem.model_validate(entry)
        except ValidationError as exc:
            rejects.append(reject_from_error(exc, index, f"result[{index}]"))
            continue
        ends_at = None if problem.r_eventid == NO_EVENT else _recovery_time(problem, now)
        trigger = known.get(problem.objectid)
        events.append(_event(problem, trigger, [], ends_at, frontend_url))
    return Parsed(events=events, rejects=rejects, items=len(entries))


def recoveries_from_response(
    event_get: object, now: datetime, *, triggers: object = None, frontend_url: str = ""
) -> Parsed:
    """event.get -> STATE resolved per problem event with a recovery (see the module doc)."""
    entries = _result(event_get, "result")
    known = trigger_index(triggers)
    valid: list[tuple[int, EventGetItem]] = []
    rejects: list[Reject] = []
    for index, entry in enumerate(entries):
        try:
            valid.append((index, EventGetItem.model_validate(entry)))
        except ValidationError as exc:
            rejects.append(reject_from_error(exc, index, f"result[{index}]"))
    recoveries = {item.eventid: item for _, item in valid if item.value == "0"}
    linked = {item.r_eventid for _, item in valid if item.value == "1"}
    events: list[Event] = []
    for index, item in valid:
        if item.value == "0" and item.eventid not in linked:
            rejects.append(_unlinked(index, item.eventid))
        elif item.value == "1" and item.r_eventid != NO_EVENT:
            recovery = recoveries.get(item.r_eventid)
            ends_at = now if recovery is None else _time(recovery.clock, recovery.ns)
            trigger = known.get(item.objectid) or _related_trigger(item)
            events.append(_event(item, trigger, item.hosts, ends_at, frontend_url))
    return Parsed(events=events, rejects=rejects, items=len(entries))


def _unlinked(index: int, eventid: str) -> Reject:
    message = (
        f"recovery event {eventid}: no problem event (value 1) in this result names it in"
        " r_eventid; request the problem events too"
    )
    return Reject(index, f"result[{index}].eventid", message)


def trigger_index(triggers: object) -> dict[str, Trigger]:
    """A `trigger.get` response by trigger id; {} for None; a `BodyError` when unusable."""
    if triggers is None:
        return {}
    found: dict[str, Trigger] = {}
    for index, entry in enumerate(_result(triggers, "triggers.result")):
        try:
            trigger = Trigger.model_validate(entry)
        except ValidationError as exc:
            raise BodyError(reject_from_error(exc, None, f"triggers.result[{index}]")) from None
        found[trigger.triggerid] = trigger
    return found


def _result(response: object, field: str) -> list[Any]:
    require_unicode(response)
    error = api_error(response)
    if error is not None or not isinstance(response, dict):
        raise BodyError(Reject(None, field, str(error), RejectReason.INVALID_BODY))
    result = response["result"]
    if not isinstance(result, list):
        message = f"must be a JSON array, got {json_type(result)}"
        raise BodyError(Reject(None, field, message, RejectReason.INVALID_BODY))
    return result


def _related_trigger(item: EventGetItem) -> Trigger | None:
    """The event's trigger with the host macros of its name filled in from the event's host."""
    trigger = item.related_object
    if trigger is None or not item.hosts:
        return trigger
    host = item.hosts[0]
    name = trigger.description
    for macro, value in (("{HOST.NAME}", host.name), ("{HOST.HOST}", host.host)):
        name = name.replace(macro, value).replace(macro[:-1] + "1}", value)
    return trigger.model_copy(update={"description": name, "hosts": item.hosts})


def _recovery_time(problem: Problem, now: datetime) -> datetime:
    return now if problem.r_clock == "0" else _time(problem.r_clock, problem.r_ns)


def _time(clock: str, ns: str) -> datetime:
    return datetime.fromtimestamp(int(clock), UTC) + timedelta(microseconds=int(ns) // 1000)


def _event(
    problem: ZabbixEvent,
    trigger: Trigger | None,
    hosts: list[Host],
    ends_at: datetime | None,
    frontend_url: str,
) -> Event:
    severity = SEVERITIES[problem.severity]
    event = Event(
        source=SOURCE,
        fingerprint=fingerprint(problem.eventid),
        status=AlertStatus.FIRING if ends_at is None else AlertStatus.RESOLVED,
        labels=_labels(problem, trigger, hosts, severity),
        annotations=_annotations(problem, trigger),
        severity=severity,
        starts_at=_time(problem.clock, problem.ns),
        ends_at=ends_at,
        expires_at=None,
        generator_url=event_url(frontend_url, problem.objectid, problem.eventid),
        group_key=None,
        receiver=None,
        digest="",
    )
    return replace(event, digest=digest(event))


def _labels(
    problem: ZabbixEvent, trigger: Trigger | None, hosts: list[Host], severity: Severity
) -> dict[str, str]:
    hosts = trigger.hosts if trigger is not None and trigger.hosts else hosts
    own = {
        "alertname": problem.name if trigger is None else trigger.description,
        "host": hosts[0].host if hosts else "",
        "host_name": hosts[0].name if hosts else "",
        "severity": severity.value,
        "zabbix_trigger_id": problem.objectid,
        "zabbix_event_id": problem.eventid,
    }
    return alert_labels(((tag.tag, tag.value) for tag in problem.tags), own)


def _annotations(problem: ZabbixEvent, trigger: Trigger | None) -> dict[str, str]:
    found = {
        "summary": problem.name,
        "description": "" if trigger is None else trigger.comments,
        "operational_data": problem.opdata,
        "trigger_url": "" if trigger is None else trigger.url,
        "acknowledged": "Yes" if problem.acknowledged == "1" else "No",
        "recovery_event_id": "" if problem.r_eventid == NO_EVENT else problem.r_eventid,
    }
    return {name: value for name, value in found.items() if value}


def vanished(alerts: Iterable[AlertState], now: datetime) -> list[Event]:
    """Resolved events for alerts the bridge has firing that problem.get no longer lists at
    all (resolved longer ago than Zabbix keeps "recent" problems, or deleted), built from what
    the bridge stored about them."""
    return [ended(alert, now, "vanished") for alert in alerts]


def problem_trigger_ids(problem_get: object) -> list[str]:
    """The trigger ids (`objectid`) of a problem.get answer, for the trigger.get that names them."""
    return sorted(
        {
            entry["objectid"]
            for entry in _result(problem_get, "result")
            if isinstance(entry, dict) and isinstance(entry.get("objectid"), str)
        }
    )
