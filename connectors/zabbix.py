"""Zabbix webhook messages -> events, source "zabbix".

Input: the decoded JSON body that the media type `config/zabbix/media_type_bridge.yaml` POSTs
for one Zabbix trigger-event message (one flat object: `payload_format`, one key per media type
parameter holding the macro as Zabbix resolved it, plus the parsed tag arrays), and `now`.
Output: `Parsed` with one event; a `BodyError` (422) when the body is not an object, a value
has the wrong type, or a key the bridge needs is missing, empty, an unresolved macro or out of
range. No rule section drives this module; the shell counts the rejects. `connectors.zabbix_api`
(polling mode) reuses the severities, labels, fingerprint and digest defined here.

What the sender does, proven by the captures in `shared/fixtures/captured/zabbix/` (6.0.14):

| message (`event_update_status`, `event_value`) | event (`kind`, `status`)                |
|------------------------------------------------|-----------------------------------------|
| "0", "1": PROBLEM                              | STATE firing                            |
| "0", "0": RECOVERY                             | STATE resolved, `ends_at` recovery time |
| "1": update, action text has "closed"          | COMMENT "closed in Zabbix by <actor>: ..." |
|                                                | (the recovery comes as its own message) |
| "1": update, action has "unacknowledged"       | UNACKNOWLEDGE                           |
| "1": update, action has "acknowledged"         | ACKNOWLEDGE                             |
| "1": update, action has "changed severity"     | STATE with the new severity: a change   |
| "1": update, anything else ("commented")       | COMMENT                                 |

The kind of an update comes from `event_update_action` (`{EVENT.UPDATE.ACTION}`): Zabbix joins
the words "acknowledged", "unacknowledged", "commented", "changed severity from X to Y" and
"closed" with ", " and " and "; one update can do several things, and the first row above that
matches wins. `event_ack_status` is not used for this: it is the state after the update, not
what the update did. `{EVENT.UPDATE.SEVERITY}` is never resolved by 6.0, so the new severity
is read from `event_nseverity`. For updates, `status` is the problem's state when Zabbix sent
it (`event_value`: a closing update already says resolved), `actor` is
`event_update_user_fullname` and `message` is `event_update_message` (`{USER.USERNAME}` is
never resolved by 6.0).

| field         | from                                                                     |
|---------------|--------------------------------------------------------------------------|
| fingerprint   | `zabbix:<event_id>`: `{EVENT.ID}` is the PROBLEM event's id in problem,  |
|               | update and recovery messages alike (the recovery's is `event_recovery_id`) |
| labels        | the problem's tags (`event_tags_parsed`, else `event_tagsjson`): names   |
|               | lower-cased, characters outside `[a-z0-9_]` -> `_`; values as given,     |
|               | empty ones too; a repeated name joins its distinct values with ","; the  |
|               | labels below win over tags                                               |
| `alertname`   | `trigger_name` (expanded; `event_name` can differ, it is the summary)    |
| `host`        | `host_host` (technical name); `host_name` is the visible name            |
| `severity`    | the bridge severity below                                                |
| `zabbix_trigger_id`, `zabbix_event_id` | `trigger_id`, `event_id`                        |
| annotations   | `summary` (event_name), `description` (trigger_description),             |
|               | `operational_data`, `trigger_url`, `trigger_expression`, `host_groups`,  |
|               | `zabbix_severity` (name), `acknowledged` (Yes/No), `update_action`,      |
|               | `recovery_event_id`; empty ones left out                                 |
| severity      | `SEVERITIES[event_nseverity]`, the current severity (`trigger_nseverity` |
|               | keeps the original one after a severity change)                         |
| starts_at     | `event_date` + `event_time` (`2026.11.23`, `19:46:28`), server time zone |
| ends_at       | resolved: `event_recovery_date` + `_time`, else `now`; firing: None      |
| expires_at    | None: Zabbix is edge-triggered, it sends the recovery itself            |
| generator_url | `<zabbix_url>/tr_events.php?triggerid=<trigger_id>&eventid=<event_id>`   |
|               | when `zabbix_url` (`{$ZABBIX.URL}`) is an http(s) URL, else ""           |
| digest        | hash of kind, status, fingerprint, severity, labels, annotations, times, |
|               | actor, message and the update's date and time: a retry (Zabbix resends   |
|               | the byte-identical body) repeats it                                      |

Values that are still a literal macro (`{EVENT.RECOVERY.ID}`, `{$ZABBIX.URL}`, `{?expr}`) count
as absent: Zabbix leaves macros that do not apply to a message unresolved. The macros carry
no time zone and 6.0 has no epoch macro: times are read in `server_tz`, UTC unless the caller
says otherwise (the captures come from a server running in UTC). Recovery tags are not used:
a manually closed problem's recovery event lacks the trigger's own tags, and the labels must
stay the same from problem to recovery.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import NoReturn

import orjson

from connectors.alertmanager import json_type
from connectors.labels import label_name
from connectors.parsed import BodyError, Parsed, Reject, RejectReason, require_unicode
from rules.model import AlertStatus, Event, EventKind, Severity

SOURCE = "zabbix"
BODY_FIELD = "body"
PAYLOAD_FORMAT = "zabbix-bridge-webhook/1"

# Zabbix trigger severities (0..5) on the bridge's scale.
SEVERITIES: dict[str, Severity] = {
    "0": Severity.INFO,  # Not classified
    "1": Severity.INFO,  # Information
    "2": Severity.WARNING,  # Warning
    "3": Severity.MINOR,  # Average
    "4": Severity.MAJOR,  # High
    "5": Severity.CRITICAL,  # Disaster
}

# Keys holding arrays of {"tag", "value"} (or null) rather than strings.
TAG_KEYS = ("event_tags_parsed", "event_recovery_tags_parsed")
REQUIRED = (
    "event_id",
    "event_value",
    "event_nseverity",
    "event_date",
    "event_time",
    "trigger_id",
    "trigger_name",
    "host_host",
)
_CHOICES: dict[str, tuple[str, ...]] = {
    "event_value": ("0", "1"),
    "event_update_status": ("0", "1"),
    "event_nseverity": tuple(SEVERITIES),
}
_DIGITS = ("event_id", "trigger_id")

# A macro Zabbix left unresolved: built-in `{EVENT.ID}`, user `{$MACRO}` / `{$MACRO:"ctx"}`,
# expression `{?last(/host/key)}`.
_LITERAL_MACRO = re.compile(r"\{(?:[A-Z0-9_.]+|\$[A-Z0-9_.]+(?::[^{}]*)?|\?[^{}]+)\}")
_UPDATE_KINDS = (
    (re.compile(r"\bclosed\b"), EventKind.COMMENT),
    (re.compile(r"\bunacknowledged\b"), EventKind.UNACKNOWLEDGE),
    (re.compile(r"\backnowledged\b"), EventKind.ACKNOWLEDGE),
    (re.compile(r"\bchanged severity\b"), EventKind.STATE),
)
_CLOSED = _UPDATE_KINDS[0][0]
_DATE_FORMAT = "%Y.%m.%d %H:%M:%S"
_HTTP_URL = re.compile(r"^https?://", re.IGNORECASE)


def is_macro(value: str) -> bool:
    return _LITERAL_MACRO.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Message:
    """A validated body: every resolved string value, and the problem's tags."""

    values: dict[str, str]
    tags: list[tuple[str, str]]

    def get(self, key: str) -> str:
        return self.values.get(key, "")

    @property
    def is_update(self) -> bool:
        return self.get("event_update_status") == "1"

    @property
    def status(self) -> AlertStatus:
        return AlertStatus.FIRING if self.get("event_value") == "1" else AlertStatus.RESOLVED


def parse(body: object, now: datetime, *, server_tz: tzinfo = UTC) -> Parsed:
    message = validate(body, server_tz)
    return Parsed(events=[_event(message, now, server_tz)], items=1)


def validate(body: object, server_tz: tzinfo = UTC) -> Message:
    """The body as a `Message`, or a `BodyError` naming the first bad field."""
    if not isinstance(body, dict):
        _fail(
            BODY_FIELD, f"must be a JSON object (a Zabbix webhook message), got {json_type(body)}"
        )
    require_unicode(body)
    for key, value in body.items():
        if key not in TAG_KEYS and not isinstance(value, str):
            _fail(str(key), f"must be a string, got {json_type(value)}")
    if body.get("payload_format", PAYLOAD_FORMAT) != PAYLOAD_FORMAT:
        _fail("payload_format", f"must be {PAYLOAD_FORMAT!r}, got {_shown(body['payload_format'])}")
    values = {key: value for key, value in body.items() if key not in TAG_KEYS}
    for key in REQUIRED:
        _require(values, key)
    values = {key: value for key, value in values.items() if not is_macro(value)}
    _check_values(values, server_tz)
    return Message(values, _tags(body))


def _require(values: Mapping[str, str], key: str) -> None:
    value = values.get(key)
    if value is None:
        _fail(key, "is required in a Zabbix webhook message")
    if not value:
        _fail(key, "must not be empty")
    if is_macro(value):
        _fail(key, f"is the unresolved macro {_shown(value)}")


def _check_values(values: Mapping[str, str], server_tz: tzinfo) -> None:
    for key, allowed in _CHOICES.items():
        if key in values and values[key] not in allowed:
            _fail(key, f"must be one of {', '.join(allowed)}, got {_shown(values[key])}")
    for key in _DIGITS:
        if not (values[key].isascii() and values[key].isdigit()):
            _fail(key, f"must be a decimal id, got {_shown(values[key])}")
    for prefix in ("event", "event_recovery", "event_update"):
        if f"{prefix}_date" in values or f"{prefix}_time" in values:
            _local_time(values, prefix, server_tz)


def _local_time(values: Mapping[str, str], prefix: str, server_tz: tzinfo) -> datetime:
    date, time = values.get(f"{prefix}_date", ""), values.get(f"{prefix}_time", "")
    try:
        local = datetime.strptime(f"{date} {time}", _DATE_FORMAT).replace(tzinfo=server_tz)
        local.astimezone(UTC)  # near year 1 or 9999 a zone's offset can leave the calendar
    except (ValueError, OverflowError):
        shown = _shown(f"{date} {time}")
        _fail(f"{prefix}_date", f"with {prefix}_time must be like 2026.11.23 19:46:28, got {shown}")
    return local


def _tags(body: Mapping[str, object]) -> list[tuple[str, str]]:
    parsed = body.get("event_tags_parsed")
    if parsed is not None:
        return tag_pairs(parsed, "event_tags_parsed")
    text = body.get("event_tagsjson", "")
    if not isinstance(text, str) or not text or is_macro(text):
        return []
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        _fail("event_tagsjson", "must be a JSON array of {tag, value} objects")
    return tag_pairs(decoded, "event_tagsjson")


def tag_pairs(tags: object, field: str) -> list[tuple[str, str]]:
    """Zabbix's `[{"tag": ..., "value": ...}]` as pairs, or a `BodyError` naming the entry."""
    if not isinstance(tags, list):
        _fail(field, f"must be an array of {{tag, value}} objects, got {json_type(tags)}")
    pairs: list[tuple[str, str]] = []
    for index, entry in enumerate(tags):
        if not isinstance(entry, dict):
            _fail(f"{field}[{index}]", f"must be a JSON object, got {json_type(entry)}")
        for key in ("tag", "value"):
            if not isinstance(entry.get(key), str):
                got = json_type(entry.get(key))
                _fail(f"{field}[{index}].{key}", f"must be a string, got {got}")
        pairs.append((entry["tag"], entry["value"]))
    return pairs


def _fail(field: str, message: str) -> NoReturn:
    raise BodyError(Reject(None, field, message, RejectReason.INVALID_BODY))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def update_kind(action: str) -> EventKind:
    """What an update did, from `{EVENT.UPDATE.ACTION}`; COMMENT when nothing else matches."""
    for pattern, kind in _UPDATE_KINDS:
        if pattern.search(action):
            return kind
    return EventKind.COMMENT


def fingerprint(problem_event_id: str) -> str:
    """The identity of one Zabbix problem; the polling path uses it too."""
    return f"zabbix:{problem_event_id}"


def tag_labels(tags: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Tags as labels: sanitized names, values as given, a repeated name's values joined."""
    found: dict[str, list[str]] = {}
    for tag, value in tags:
        name = label_name(tag)
        if name and value not in found.setdefault(name, []):
            found[name].append(value)
    return {name: ",".join(values) for name, values in found.items()}


def alert_labels(tags: Iterable[tuple[str, str]], own: Mapping[str, str]) -> dict[str, str]:
    """The tags' labels overlaid with the connector's own (`alertname`...), empty ones left out."""
    return {**tag_labels(tags), **{name: value for name, value in own.items() if value}}


def event_url(frontend_url: str, trigger_id: str, event_id: str) -> str:
    """The frontend's page of one event, "" without an http(s) frontend URL."""
    if not _HTTP_URL.match(frontend_url):
        return ""
    return f"{frontend_url.rstrip('/')}/tr_events.php?triggerid={trigger_id}&eventid={event_id}"


def digest(event: Event, *extra: str) -> str:
    """A short hash of an event's content plus `extra` (e.g. the update's time)."""
    canonical = orjson.dumps(
        [
            event.kind.value,
            event.status.value,
            event.fingerprint,
            event.severity.value,
            event.labels,
            event.annotations,
            event.starts_at,
            event.ends_at,
            event.actor,
            event.message,
            *extra,
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def _event(m: Message, now: datetime, server_tz: tzinfo) -> Event:
    kind = update_kind(m.get("event_update_action")) if m.is_update else EventKind.STATE
    actor, message = _actor_and_message(m) if m.is_update else ("", "")
    severity = SEVERITIES[m.get("event_nseverity")]
    event = Event(
        source=SOURCE,
        fingerprint=fingerprint(m.get("event_id")),
        status=m.status,
        labels=_labels(m, severity),
        annotations=_annotations(m),
        severity=severity,
        starts_at=_local_time(m.values, "event", server_tz),
        ends_at=None if m.status is AlertStatus.FIRING else _end_time(m, now, server_tz),
        expires_at=None,
        generator_url=event_url(m.get("zabbix_url"), m.get("trigger_id"), m.get("event_id")),
        group_key=None,
        receiver=None,
        digest="",
        kind=kind,
        actor=actor,
        message=message,
    )
    update_at = (m.get("event_update_date"), m.get("event_update_time"))
    return replace(event, digest=digest(event, *update_at))


def _actor_and_message(m: Message) -> tuple[str, str]:
    actor = m.get("event_update_user_fullname") or m.get("event_update_user_username")
    message = m.get("event_update_message")
    if _CLOSED.search(m.get("event_update_action")):
        closed = f"closed in Zabbix by {actor or 'an unknown user'}"
        message = f"{closed}: {message}" if message else closed
    return actor, message


def _end_time(m: Message, now: datetime, server_tz: tzinfo) -> datetime:
    if m.get("event_recovery_date") and m.get("event_recovery_time"):
        return _local_time(m.values, "event_recovery", server_tz)
    return now


def _labels(m: Message, severity: Severity) -> dict[str, str]:
    own = {
        "alertname": m.get("trigger_name"),
        "host": m.get("host_host"),
        "host_name": m.get("host_name"),
        "severity": severity.value,
        "zabbix_trigger_id": m.get("trigger_id"),
        "zabbix_event_id": m.get("event_id"),
    }
    return alert_labels(m.tags, own)


def _annotations(m: Message) -> dict[str, str]:
    found = {
        "summary": m.get("event_name"),
        "description": m.get("trigger_description"),
        "operational_data": m.get("event_opdata"),
        "trigger_url": m.get("trigger_url"),
        "trigger_expression": m.get("trigger_expression"),
        "host_groups": m.get("trigger_hostgroup_name"),
        "zabbix_severity": m.get("event_severity"),
        "acknowledged": m.get("event_ack_status"),
        "update_action": m.get("event_update_action") if m.is_update else "",
        "recovery_event_id": m.get("event_recovery_id"),
    }
    return {name: value for name, value in found.items() if value}
