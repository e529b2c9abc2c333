"""The contract between the outbox dispatcher and the channels.

The dispatcher hands a channel one `Message` (a notification with its text rendered and what
the target told the bridge earlier about this incident) and gets back an `Outcome`: delivered
(with the target's own id for the incident, such as a ServiceNow `sys_id`, where it has one),
retry (with the wait the target asked for, if any), or rejected (a retry cannot help). Channels
never raise for a delivery failure; an exception that escapes one is a bug, and the dispatcher
counts it and retries.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rules.model import Transition

__all__ = [
    "Channel",
    "Delivered",
    "ItsmState",
    "ItsmUpdate",
    "Message",
    "Outcome",
    "Rejected",
    "Rendered",
    "Retry",
    "Transition",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One notification as a channel sends it.

    `incident` is the incident as the API shows it (id, title, status, severity, service, ci,
    labels, timestamps as ISO 8601 strings, assignment), except that `priority` is the number
    1..5; `alerts` its member alerts (API shape, at most a few dozen). `title` and `body` are
    the rendered templates.
    `external_id` is what the target returned for an earlier notification of this incident
    (a ticket's sys_id, a Jira issue key, a Slack `channel:ts`), None before the first one.
    """

    key: str  # stable idempotency key: incident, target, transition (and its generation)
    target: str
    transition: Transition
    incident: Mapping[str, Any]
    alerts: Sequence[Mapping[str, Any]]
    title: str
    body: str
    url: str  # the incident in the bridge's API
    created_at: datetime  # when the incident change happened
    external_id: str | None = None
    reason: str = ""  # why, for escalations and SLA breaches ("not acknowledged after 10m")


@dataclass(frozen=True, slots=True)
class Delivered:
    external_id: str | None = None  # the target's id for the incident, to keep for updates
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str
    after: float | None = None  # seconds the target asked to wait (Retry-After)


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str


Outcome = Delivered | Retry | Rejected


class Channel(Protocol):
    async def send(self, message: Message) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Rendered:
    """Title and body, as `bridge.notify.templates` renders them for one message."""

    title: str
    body: str
    extra: Mapping[str, str] = field(default_factory=dict)


class ItsmState(enum.StrEnum):
    """What an ITSM system reports about its ticket, in the bridge's lifecycle terms."""

    OPEN = "open"  # new, or any state the bridge has no transition for
    ACKNOWLEDGED = "acknowledged"  # someone works on it (ServiceNow "In Progress", "On Hold")
    RESOLVED = "resolved"
    CLOSED = "closed"  # also cancelled


@dataclass(frozen=True, slots=True)
class ItsmUpdate:
    """A ticket's state as its ITSM system reports it (inbound call or poll).

    `correlation_id` is the bridge's own key the ticket was created with (the notification
    key's incident part, `bridge-incident-<id>`), `external_id` the ticket's id there."""

    external_id: str
    correlation_id: str
    state: ItsmState
    actor: str = ""
    comment: str = ""
    number: str = ""  # the ticket number people see (INC0010001)
