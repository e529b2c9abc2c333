"""Domain values shared by the connectors, the rule stages and the shell.

Frozen dataclasses only: connectors build `Event`s from wire payloads, the rule stages turn an
event plus the stored `AlertState`/`IncidentState` into new states and `TimelineEntry`s, and the
shell (`bridge/`) converts them to and from database rows. Nothing here does I/O or reads the
clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar


class Severity(enum.StrEnum):
    """The bridge's own severity scale; connectors map their sender's levels onto it."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.CRITICAL: 5,
    Severity.MAJOR: 4,
    Severity.MINOR: 3,
    Severity.WARNING: 2,
    Severity.INFO: 1,
}


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class IncidentStatus(enum.StrEnum):
    """new -> acknowledged -> resolved -> closed. A resolved incident reopens when an alert of
    its key fires again within the reopen window; a closed one never does (the next alert of
    its key opens a new incident)."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def is_active(self) -> bool:
        return self not in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)


class Hold(enum.StrEnum):
    """Why a firing alert is not in an incident. The value is also the `stage` label of
    `bridge_alerts_held_total`; `AlertState.held_by` names the rule or window."""

    NONE = "none"
    PENDING = "pending"  # correlate: fewer than `min_alerts` alerts of its group so far
    INHIBITED = "inhibited"  # inhibit: a firing source alert with the same `equal` labels
    MAINTENANCE = "maintenance"  # maintenance: a window (rule file, API) or a sender's downtime
    HEARTBEAT = "heartbeat"  # heartbeats: the event is a heartbeat (e.g. Watchdog), not a fault


class JoinReason(enum.StrEnum):
    """Why an alert joined its incident (shown per alert, and the `reason` metric label)."""

    OPENED = "opened"  # it opened the incident
    GROUPED = "grouped"  # same rule and group_by values as the incident
    SYMPTOM = "symptom"  # topology: its CI's ancestor is the incident's root cause CI
    CONTINUED = "continued"  # a later matching rule after one with `continue: true`
    RELEASED = "released"  # it was held (pending, inhibited, maintenance) and now joins


class ProblemStatus(enum.StrEnum):
    OPEN = "open"
    KNOWN_ERROR = "known_error"
    RESOLVED = "resolved"

    @property
    def is_active(self) -> bool:
        return self is not ProblemStatus.RESOLVED


class EventKind(enum.StrEnum):
    """What an event reports. `state` carries a firing or resolved status through dedup; the
    others act on the incident of the alert they name (edge-triggered senders such as Nagios and
    Zabbix report them), and leave the alert's firing/resolved state alone."""

    STATE = "state"
    ACKNOWLEDGE = "acknowledge"
    UNACKNOWLEDGE = "unacknowledge"
    COMMENT = "comment"
    FLAPPING_START = "flapping_start"
    FLAPPING_STOP = "flapping_stop"
    MAINTENANCE_START = "maintenance_start"
    MAINTENANCE_END = "maintenance_end"


# Pseudo-labels that rules can match and group on besides an event's own labels. Prometheus
# reserves names that start with "__", so they never collide with a real label.
SOURCE_LABEL = "__source__"
GROUP_KEY_LABEL = "__group_key__"
RECEIVER_LABEL = "__receiver__"


@dataclass(frozen=True, slots=True)
class Event:
    """One observation decoded from one webhook item or poll result.

    `expires_at` is set for level-triggered senders (Prometheus): a firing alert that is not
    re-sent by then resolves. For a `kind` other than `state`, `status` is the alert's state as
    the sender saw it when it reported the action. `digest` identifies the exact content of the
    item, so that a redelivery of the same notification can be told from a later re-send.
    """

    source: str
    fingerprint: str
    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    severity: Severity
    starts_at: datetime
    ends_at: datetime | None
    expires_at: datetime | None
    generator_url: str
    group_key: str | None
    receiver: str | None
    digest: str
    kind: EventKind = EventKind.STATE
    # Who did it and what they said, for kinds other than `state` (an acknowledgement's author
    # and comment, a downtime's author, a custom notification's text).
    actor: str = ""
    message: str = ""
    # False for a state the bridge infers without hearing from the sender (a level-triggered
    # alert's expiry): such an event shows no sign of life and beats no heartbeat.
    from_sender: bool = True

    def match_labels(self) -> dict[str, str]:
        """The labels that rules see: the event's own plus the pseudo-labels."""
        view = dict(self.labels)
        view[SOURCE_LABEL] = self.source
        view[GROUP_KEY_LABEL] = self.group_key or ""
        view[RECEIVER_LABEL] = self.receiver or ""
        return view


@dataclass(frozen=True, slots=True)
class AlertState:
    """The deduplicated record of one fingerprint from one source."""

    source: str
    fingerprint: str
    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    severity: Severity
    starts_at: datetime
    ends_at: datetime | None
    expires_at: datetime | None
    generator_url: str
    group_key: str | None
    first_seen: datetime
    last_seen: datetime
    count: int
    digest: str
    incident_id: int | None
    rule: str | None
    # Set by what the sender reports (Nagios flapping and downtime notices); the `flapping`
    # stage also sets `flapping` from the alert's own state history.
    flapping: bool = False
    maintenance: bool = False
    # The sender itself reports the alert flapping (Nagios FLAPPINGSTART until FLAPPINGSTOP):
    # it stays flapping whatever the engine's own detection says.
    flap_reported: bool = False
    hold: Hold = Hold.NONE
    held_by: str = ""
    # The incident key the correlate stage routed the alert to (held alerts keep it, so that
    # pending alerts of one group can be found when the group reaches `min_alerts`).
    incident_key: str | None = None
    reason: JoinReason | None = None
    # Incidents the alert joined besides `incident_id` (rules after one with `continue`).
    also: tuple[int, ...] = ()
    # The flapping stage's record of observed states ('F'/'R', oldest first) and when the
    # state last changed.
    history: str = ""
    changed_at: datetime | None = None

    @property
    def counts_firing(self) -> bool:
        """Whether the alert keeps its incidents open: firing, or flapping (a flapping alert
        that resolves keeps its incident open and quiet instead of resolve/reopen cycles)."""
        return self.status is AlertStatus.FIRING or self.flapping

    @property
    def incident_ids(self) -> tuple[int, ...]:
        return ((self.incident_id,) if self.incident_id is not None else ()) + self.also


@dataclass(frozen=True, slots=True)
class IncidentState:
    """An incident as the rule stages see it.

    A negative `id` is a placeholder the engine hands out for an incident it opened in the
    current batch; the shell swaps it for the database id when it inserts the row.
    """

    id: int
    key: str
    rule: str
    title: str
    severity: Severity
    status: IncidentStatus
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    first_alert_at: datetime
    last_alert_at: datetime
    firing_alerts: int
    alert_count: int
    reopen_count: int
    priority: int = 3
    # The configuration item the incident is about (topology: the probable root cause), and
    # the business service it serves.
    ci: str | None = None
    service: str | None = None
    problem_id: int | None = None
    closed_at: datetime | None = None
    assignment_group: str = ""
    assignee: str = ""
    # The generation of this incident for its key: a correlate rule's `window` closes an
    # incident to new alerts, and the next alert of the key opens generation + 1.
    seq: int = 0
    # The labels of the alert that opened it and its source: what notification routes match.
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    # SLA deadlines (from the incident's priority, see `rules.sla`) and when each was missed.
    ack_due_at: datetime | None = None
    resolve_due_at: datetime | None = None
    ack_breached_at: datetime | None = None
    resolve_breached_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProblemState:
    """An ITIL problem: the cause behind recurring incidents or incidents on one root CI."""

    id: int
    key: str
    rule: str
    title: str
    status: ProblemStatus
    opened_at: datetime
    updated_at: datetime
    incident_count: int
    ci: str | None = None
    root_cause: str = ""
    workaround: str = ""


class TimelineKind(enum.StrEnum):
    OPENED = "opened"
    ALERT_ATTACHED = "alert_attached"
    ALERT_CHANGED = "alert_changed"
    ALERT_RESOLVED = "alert_resolved"
    REOPENED = "reopened"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    COMMENT = "comment"
    FLAPPING_STARTED = "flapping_started"
    FLAPPING_STOPPED = "flapping_stopped"
    MAINTENANCE_STARTED = "maintenance_started"
    MAINTENANCE_ENDED = "maintenance_ended"
    PRIORITY_CHANGED = "priority_changed"
    ASSIGNED = "assigned"
    CLOSED = "closed"
    PROBLEM_LINKED = "problem_linked"
    ESCALATED = "escalated"
    SLA_BREACHED = "sla_breached"
    NOTIFIED = "notified"


class Transition(enum.StrEnum):
    """What happened to an incident that people are told about: the `transition` of a
    notification and the values a route's `send` lists."""

    OPENED = "opened"
    REOPENED = "reopened"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    CLOSED = "closed"
    SLA_BREACH = "sla_breach"
    REPEAT = "repeat"

    @property
    def is_trigger(self) -> bool:
        """Whether the target should (re)open its alert or ticket for it."""
        return self in (Transition.OPENED, Transition.REOPENED, Transition.REPEAT)

    @property
    def is_end(self) -> bool:
        return self in (Transition.RESOLVED, Transition.CLOSED)


class TimelineSource(enum.StrEnum):
    """Where a change on an incident's timeline came from."""

    RULE = "rule"  # the rule engine (and its scheduled jobs: expiry, recheck, auto-close)
    CONNECTOR = "connector"  # a sender reported it (a Nagios or Zabbix acknowledgement...)
    API = "api"  # an operator through the API
    ITSM = "itsm"  # an ITSM system synchronised it back


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    incident_id: int
    at: datetime
    kind: TimelineKind
    actor: str
    message: str
    fingerprint: str | None = None
    source: TimelineSource = TimelineSource.RULE


_T = TypeVar("_T")
_EVOLVERS: dict[type, Callable[[Any, dict[str, object]], Any]] = {}


def evolve(value: _T, **changes: object) -> _T:
    """`dataclasses.replace` for the frozen, slotted values of this module, without its
    per-call introspection (it dominated the engine's profile). Unknown names raise."""
    cls = type(value)
    evolver = _EVOLVERS.get(cls)
    if evolver is None:
        evolver = _EVOLVERS[cls] = _evolver(cls)
    result: _T = evolver(value, changes)
    return result


def _evolver(cls: type) -> Callable[[Any, dict[str, object]], Any]:
    """A copy function generated for `cls`: one attribute store per field, no loop."""
    names = tuple(f.name for f in fields(cls))
    lines = [
        "def evolve(value, changes):",
        "    if not changes.keys() <= NAMES:",
        "        unknown = sorted(changes.keys() - NAMES)",
        "        raise TypeError(f'{CLS.__name__} has no field(s) {unknown}')",
        "    new = NEW(CLS)",
    ]
    for name in names:
        lines.append(
            f"    SET(new, {name!r}, changes[{name!r}] if {name!r} in changes else value.{name})"
        )
    lines.append("    return new")
    scope: dict[str, Any] = {
        "NAMES": frozenset(names),
        "CLS": cls,
        "NEW": object.__new__,
        "SET": object.__setattr__,
    }
    exec("\n".join(lines), scope)  # generated from the class's own field names only
    made: Callable[[Any, dict[str, object]], Any] = scope["evolve"]
    return made
