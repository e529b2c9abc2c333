"""SLA deadlines: time to acknowledge and time to resolve, per incident priority.

Input: an incident and the SLA targets of the settings (`SlaPolicy`: priority -> targets).
Output: the incident with its deadlines set, and the breaches that are due at `now`, each as
the incident with the breach recorded plus its timeline entry. The scheduled SLA job and the
writer call these; `bridge_sla_breaches_total{priority,kind}` counts the breaches.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rules.model import IncidentState, IncidentStatus, TimelineEntry, TimelineKind, evolve


class SlaKind(enum.StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class SlaTarget:
    acknowledge: timedelta | None = None
    resolve: timedelta | None = None


SlaPolicy = Mapping[int, SlaTarget]  # priority 1..5 -> targets


def with_deadlines(
    incident: IncidentState, policy: SlaPolicy, since: datetime, *, fresh: bool = True
) -> IncidentState:
    """The incident with deadlines counted from `since` (its opening or reopening) for its
    priority; `fresh`: no breach recorded yet (a reopen), else the breaches recorded stay (a
    priority change does not make a missed deadline count twice)."""
    target = policy.get(incident.priority, SlaTarget())
    updated = evolve(
        incident,
        ack_due_at=since + target.acknowledge if target.acknowledge is not None else None,
        resolve_due_at=since + target.resolve if target.resolve is not None else None,
    )
    if fresh:
        updated = evolve(updated, ack_breached_at=None, resolve_breached_at=None)
    return updated


def due(incident: IncidentState, now: datetime) -> list[SlaKind]:
    """The deadlines this incident missed at `now` and that were not recorded yet: not
    acknowledged in time (still new), not resolved in time (still active)."""
    found: list[SlaKind] = []
    ack = incident.ack_due_at
    if (
        incident.status is IncidentStatus.NEW
        and ack is not None
        and ack <= now
        and incident.ack_breached_at is None
    ):
        found.append(SlaKind.ACKNOWLEDGE)
    done = incident.resolve_due_at
    if (
        incident.status.is_active
        and done is not None
        and done <= now
        and incident.resolve_breached_at is None
    ):
        found.append(SlaKind.RESOLVE)
    return found


def breach(
    incident: IncidentState, kind: SlaKind, now: datetime
) -> tuple[IncidentState, TimelineEntry]:
    if kind is SlaKind.ACKNOWLEDGE:
        updated = evolve(incident, ack_breached_at=now)
        deadline = incident.ack_due_at
    else:
        updated = evolve(incident, resolve_breached_at=now)
        deadline = incident.resolve_due_at
    when = deadline.isoformat() if deadline is not None else "?"
    message = f"P{incident.priority} SLA breached: not {kind}d by {when}"
    return updated, TimelineEntry(incident.id, now, TimelineKind.SLA_BREACHED, "rule:sla", message)
