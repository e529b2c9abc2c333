"""Domain values shared by the connectors, the rule stages and the shell.

Frozen dataclasses only: connectors build `Event`s from wire payloads, the rule stages turn an
event plus the stored `AlertState`/`IncidentState` into new states and `TimelineEntry`s, and the
shell (`bridge/`) converts them to and from database rows. Nothing here does I/O or reads the
clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


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
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"

    @property
    def is_active(self) -> bool:
        return self is not IncidentStatus.RESOLVED


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
    # Set by what the sender reports (Nagios flapping and downtime notices); what they do to
    # incidents is the rule engine's `flapping` and `maintenance` stages.
    flapping: bool = False
    maintenance: bool = False


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


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    incident_id: int
    at: datetime
    kind: TimelineKind
    actor: str
    message: str
    fingerprint: str | None = None
