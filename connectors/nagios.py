"""Nagios notifications -> events, source "nagios".

Input: the decoded JSON body that `config/nagios/bridge-notify` POSTs for one Nagios host or
service notification (one flat object: `object_type` plus macro names without `$`, every value
a string), and `now`. Output: `Parsed` with one event, two for a downtime that ends on a
healthy object; a `BodyError` (422) when the body is not an object, `object_type` is not
host/service, a value is not a string, or a key the bridge needs is missing or unknown. No rule
section drives this module; the shell counts the rejects.

What the sender does, proven by the captures in `shared/fixtures/captured/nagios/`:

| notification type              | events (`kind`, `status`)                                   |
|--------------------------------|-------------------------------------------------------------|
| PROBLEM                        | STATE firing (a repeat, NOTIFICATIONNUMBER > 1, as well)    |
| RECOVERY                       | STATE resolved                                              |
| ACKNOWLEDGEMENT                | ACKNOWLEDGE; actor/message from the author and comment      |
| CUSTOM                         | COMMENT; actor/message from the author and comment          |
| FLAPPINGSTART                  | FLAPPING_START                                              |
| FLAPPINGSTOP, FLAPPINGDISABLED | FLAPPING_STOP, then STATE resolved if the state is OK/UP    |
| DOWNTIMESTART                  | MAINTENANCE_START; actor/message from the downtime          |
| DOWNTIMEEND, DOWNTIMECANCELLED | MAINTENANCE_END, then STATE resolved if the state is OK/UP  |

For kinds other than STATE, `status` is firing when the object's current state is a problem
(not OK/UP). A service that recovers inside its downtime sends no RECOVERY, only DOWNTIMEEND
with state OK, and Nagios suppresses the RECOVERY of a flapping service, so its FLAPPINGSTOP
with state OK is the only word that it recovered: in both cases the second event resolves it.
Actor and message are NOTIFICATIONAUTHOR and NOTIFICATIONCOMMENT (for acknowledgements falling
back to HOST/SERVICEACKAUTHOR and -COMMENT).

Fields of the events:
* fingerprint: `host:<HOSTNAME>` or `service:<HOSTNAME>/<SERVICEDESC>`. A Nagios object is one
  alert; problem ids change with every occurrence and are kept as a label instead.
* severity: `SEVERITIES`, by object type and state.

  | object  | state       | severity |
  |---------|-------------|----------|
  | host    | DOWN        | critical |
  | host    | UNREACHABLE | major    |
  | service | CRITICAL    | critical |
  | service | WARNING     | warning  |
  | service | UNKNOWN     | minor    |
  | both    | UP / OK     | info     |

* labels (empty ones left out):

  | label            | from                                                               |
  |------------------|--------------------------------------------------------------------|
  | `alertname`      | SERVICEDESC; `HostDown` for every host notification, UNREACHABLE   |
  |                  | too: it must stay the same from problem to recovery (the `state`   |
  |                  | annotation and the severity tell DOWN from UNREACHABLE)            |
  | `host`           | HOSTNAME                                                           |
  | `service`        | SERVICEDESC (services only)                                        |
  | `nagios_object`  | `object_type`: host or service                                     |
  | `hostgroups`     | HOSTGROUPNAMES, the comma list as given                            |
  | `servicegroups`  | SERVICEGROUPNAMES, the comma list as given (services only)         |
  | `problem_id`     | HOST/SERVICEPROBLEMID when not 0, else LASTHOST/-SERVICEPROBLEMID  |
  |                  | (a host RECOVERY, a DOWNTIMEEND in state OK and FLAPPINGSTOP move  |
  |                  | the id there)                                                      |
  | custom variables | `_HOSTTEAM` -> `team`, `_SERVICETIER` -> `tier`: lower case, other |
  |                  | characters than `[a-z0-9_]` -> `_`, leading `_` dropped; a         |
  |                  | service's variable wins over its host's, the labels above win over |
  |                  | both; RUNBOOK and RUNBOOK_URL become the `runbook_url` annotation  |

* annotations (empty ones left out): `summary` (first line of the output), `description`
  (long output, Nagios' `\\n` and `\\\\` escapes undone), `display_name`, `state` (DOWN,
  CRITICAL...), `state_type` (HARD/SOFT), `check_command`, `perfdata`, `address`,
  `notes_url`, `action_url`, `runbook_url`.
* starts_at: `now` - HOST/SERVICEDURATIONSEC (how long the object is in its state), else `now`;
  ends_at: `now` for resolved events, else None; expires_at: None (edge-triggered).
* generator_url: ACTIONURL, else NOTESURL, else "".
* digest: a hash of kind, object, type, state, NOTIFICATIONNUMBER, problem id, notification
  id, output, author and comment: a retried POST of one notification repeats it, a repeat
  notification (NOTIFICATIONNUMBER 2, 3...) does not.

Argument mode loses `` `~$&|'"<> `` from output and comments (Nagios strips them before it
builds the command line); environment mode keeps them; the events are otherwise the same.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

import orjson

from connectors.alertmanager import json_type
from connectors.labels import label_name
from connectors.parsed import BodyError, Parsed, Reject, RejectReason, require_unicode
from rules.model import AlertStatus, Event, EventKind, Severity

SOURCE = "nagios"
BODY_FIELD = "body"
OBJECT_FIELD = "object_type"
HOST_ALERTNAME = "HostDown"

# Nagios' state names per object type, and what each means on the bridge's scale.
SEVERITIES: dict[str, dict[str, Severity]] = {
    "host": {
        "UP": Severity.INFO,
        "DOWN": Severity.CRITICAL,
        "UNREACHABLE": Severity.MAJOR,
    },
    "service": {
        "OK": Severity.INFO,
        "WARNING": Severity.WARNING,
        "CRITICAL": Severity.CRITICAL,
        "UNKNOWN": Severity.MINOR,
    },
}
OK_STATES = frozenset({"UP", "OK"})

KINDS: dict[str, EventKind] = {
    "PROBLEM": EventKind.STATE,
    "RECOVERY": EventKind.STATE,
    "ACKNOWLEDGEMENT": EventKind.ACKNOWLEDGE,
    "CUSTOM": EventKind.COMMENT,
    "FLAPPINGSTART": EventKind.FLAPPING_START,
    "FLAPPINGSTOP": EventKind.FLAPPING_STOP,
    "FLAPPINGDISABLED": EventKind.FLAPPING_STOP,
    "DOWNTIMESTART": EventKind.MAINTENANCE_START,
    "DOWNTIMEEND": EventKind.MAINTENANCE_END,
    "DOWNTIMECANCELLED": EventKind.MAINTENANCE_END,
}
# Notification types after which the object's own state is reported as well when it is OK/UP.
_RESOLVING_END = frozenset({"DOWNTIMEEND", "DOWNTIMECANCELLED", "FLAPPINGSTOP", "FLAPPINGDISABLED"})

# Custom variables that are documentation rather than identity: annotations, not labels.
ANNOTATION_VARIABLES = {"runbook": "runbook_url", "runbook_url": "runbook_url"}
_ESCAPE = re.compile(r"\\(\\|n)")
_PREFIXES = {"host": "HOST", "service": "SERVICE"}
_MAX_DURATION_DIGITS = 10


@dataclass(frozen=True, slots=True)
class Notification:
    """A validated body: the object type and every macro as a string."""

    object_type: str
    macros: dict[str, str]

    def get(self, key: str) -> str:
        return self.macros.get(key, "")

    def own(self, suffix: str) -> str:
        """The host's or the service's macro: `own("STATE")` is SERVICESTATE for a service."""
        return self.get(_PREFIXES[self.object_type] + suffix)

    def last(self, suffix: str) -> str:
        return self.get("LAST" + _PREFIXES[self.object_type] + suffix)

    @property
    def is_service(self) -> bool:
        return self.object_type == "service"

    @property
    def state(self) -> str:
        return self.own("STATE")

    @property
    def notification_type(self) -> str:
        return self.get("NOTIFICATIONTYPE")


def fingerprint(object_type: str, host: str, service: str = "") -> str:
    """The identity of a Nagios object; `connectors.nagios_status` uses it too."""
    return f"service:{host}/{service}" if object_type == "service" else f"host:{host}"


def parse(body: object, now: datetime) -> Parsed:
    notification = validate(body)
    kind = KINDS[notification.notification_type]
    events = [_event(notification, kind, _status(notification, kind), now)]
    if notification.notification_type in _RESOLVING_END and notification.state in OK_STATES:
        events.append(_event(notification, EventKind.STATE, AlertStatus.RESOLVED, now))
    return Parsed(events=events, items=1)


def validate(body: object) -> Notification:
    """The body as a `Notification`, or a `BodyError` naming the first bad field."""
    if not isinstance(body, dict):
        _fail(BODY_FIELD, f"must be a JSON object (a Nagios notification), got {json_type(body)}")
    require_unicode(body)
    for key, value in body.items():
        if not isinstance(value, str):
            _fail(str(key), f"must be a string, got {json_type(value)}")
    object_type = body.get(OBJECT_FIELD)
    if object_type not in SEVERITIES:
        _fail(OBJECT_FIELD, f"must be 'host' or 'service', got {_shown(object_type)}")
    notification = Notification(str(object_type), body)
    _require(notification, "NOTIFICATIONTYPE", KINDS)
    _require(notification, "HOSTNAME", None)
    if notification.is_service:
        _require(notification, "SERVICEDESC", None)
    _require(notification, _PREFIXES[object_type] + "STATE", SEVERITIES[object_type])
    return notification


def _require(notification: Notification, key: str, allowed: Mapping[str, object] | None) -> None:
    value = notification.macros.get(key)
    if value is None:
        _fail(key, f"is required in a {notification.object_type} notification")
    if not value:
        _fail(key, "must not be empty")
    if allowed is not None and value not in allowed:
        _fail(key, f"must be one of {', '.join(allowed)}, got {_shown(value)}")


def _fail(field: str, message: str) -> NoReturn:
    raise BodyError(Reject(None, field, message, RejectReason.INVALID_BODY))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _status(notification: Notification, kind: EventKind) -> AlertStatus:
    if kind is EventKind.STATE:
        resolved = notification.notification_type == "RECOVERY"
    else:
        resolved = notification.state in OK_STATES
    return AlertStatus.RESOLVED if resolved else AlertStatus.FIRING


def _event(n: Notification, kind: EventKind, status: AlertStatus, now: datetime) -> Event:
    actor, message = ("", "") if kind is EventKind.STATE else _actor_and_message(n, kind)
    return Event(
        source=SOURCE,
        fingerprint=fingerprint(n.object_type, n.get("HOSTNAME"), n.get("SERVICEDESC")),
        status=status,
        labels=event_labels(n),
        annotations=event_annotations(n),
        severity=SEVERITIES[n.object_type][n.state],
        starts_at=_start_time(n, now),
        ends_at=now if status is AlertStatus.RESOLVED else None,
        expires_at=None,
        generator_url=n.own("ACTIONURL") or n.own("NOTESURL"),
        group_key=None,
        receiver=None,
        digest=_digest(n, kind),
        kind=kind,
        actor=actor,
        message=message,
    )


def _actor_and_message(n: Notification, kind: EventKind) -> tuple[str, str]:
    actor, message = n.get("NOTIFICATIONAUTHOR"), n.get("NOTIFICATIONCOMMENT")
    if kind is EventKind.ACKNOWLEDGE:
        return actor or n.own("ACKAUTHOR"), message or n.own("ACKCOMMENT")
    return actor, message


def problem_id(n: Notification) -> str:
    """The current problem's id; recoveries and the like carry it in the LAST... macro."""
    for value in (n.own("PROBLEMID"), n.last("PROBLEMID")):
        if value not in ("", "0"):
            return value
    return ""


def event_labels(n: Notification) -> dict[str, str]:
    own = {
        "alertname": n.get("SERVICEDESC") if n.is_service else HOST_ALERTNAME,
        "host": n.get("HOSTNAME"),
        "service": n.get("SERVICEDESC") if n.is_service else "",
        "nagios_object": n.object_type,
        "hostgroups": n.get("HOSTGROUPNAMES"),
        "servicegroups": n.get("SERVICEGROUPNAMES") if n.is_service else "",
        "problem_id": problem_id(n),
    }
    merged = {**custom_variables(n, labels=True), **own}
    return {name: value for name, value in merged.items() if value}


def custom_variables(n: Notification, *, labels: bool) -> dict[str, str]:
    """Custom variables as labels (`labels=True`) or as the annotations they map to."""
    found: dict[str, str] = {}
    prefixes = ("_HOST", "_SERVICE") if n.is_service else ("_HOST",)
    for prefix in prefixes:  # host first: the service's own variable wins
        for key, value in n.macros.items():
            if not key.startswith(prefix) or not value:
                continue
            name = label_name(key[len(prefix) :])
            annotation = ANNOTATION_VARIABLES.get(name)
            if name and labels and annotation is None:
                found[name] = value
            elif annotation is not None and not labels:
                found[annotation] = value
    return found


def event_annotations(n: Notification) -> dict[str, str]:
    output = n.own("OUTPUT")
    found = {
        "summary": _unescape(output).split("\n", 1)[0],
        "description": _unescape(n.get("LONG" + _PREFIXES[n.object_type] + "OUTPUT")),
        "display_name": n.own("DISPLAYNAME"),
        "state": n.state,
        "state_type": n.own("STATETYPE"),
        "check_command": n.own("CHECKCOMMAND"),
        "perfdata": n.own("PERFDATA"),
        "address": n.get("HOSTADDRESS"),
        "notes_url": n.own("NOTESURL"),
        "action_url": n.own("ACTIONURL"),
        **custom_variables(n, labels=False),
    }
    return {name: value for name, value in found.items() if value}


def _unescape(text: str) -> str:
    # Nagios escapes plugin output for macros: a newline as `\n`, a backslash as `\\`.
    return _ESCAPE.sub(lambda found: "\n" if found.group(1) == "n" else "\\", text)


def _start_time(n: Notification, now: datetime) -> datetime:
    seconds = n.own("DURATIONSEC")
    # Ten digits are 300 years: more cannot be a duration, and would overflow the date.
    if seconds.isascii() and seconds.isdigit() and len(seconds) <= _MAX_DURATION_DIGITS:
        return now - timedelta(seconds=int(seconds))
    return now


def _digest(n: Notification, kind: EventKind) -> str:
    canonical = orjson.dumps(
        [
            kind.value,
            fingerprint(n.object_type, n.get("HOSTNAME"), n.get("SERVICEDESC")),
            n.notification_type,
            n.state,
            n.get("NOTIFICATIONNUMBER"),
            problem_id(n),
            n.own("NOTIFICATIONID"),
            n.own("OUTPUT"),
            n.get("NOTIFICATIONAUTHOR"),
            n.get("NOTIFICATIONCOMMENT"),
        ]
    )
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()
