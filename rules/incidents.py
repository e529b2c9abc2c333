"""The incident lifecycle as pure transitions: open, take an alert, count alerts that stop
firing, reopen, resolve, and the operator actions (acknowledge, unacknowledge, resolve).

Input: an `IncidentState` and what happened. Output: the new state and its timeline entry.
Which incident an alert joins is the `correlate` stage's decision; these functions only say
what joining, leaving or an operator action does to the incident. The `IncidentAction` values
are the `decision` label of `bridge_rule_decisions_total{stage="incidents"}` and the `action`
label of `bridge_incident_actions_total`.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from rules.effects import Effects
from rules.model import (
    AlertState,
    IncidentState,
    IncidentStatus,
    Severity,
    TimelineEntry,
    TimelineKind,
    evolve,
)
from rules.ruleset import ResolveOn


class IncidentAction(enum.StrEnum):
    OPENED = "opened"
    ATTACHED = "attached"
    REOPENED = "reopened"
    ALERT_RESOLVED = "alert_resolved"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    NOTED = "noted"
    NONE = "none"


def opened(
    incident_id: int,
    key: str,
    seq: int,
    rule: str,
    title: str,
    severity: Severity,
    now: datetime,
) -> IncidentState:
    return IncidentState(
        id=incident_id,
        key=key,
        rule=rule,
        title=title,
        severity=severity,
        status=IncidentStatus.NEW,
        opened_at=now,
        acknowledged_at=None,
        resolved_at=None,
        first_alert_at=now,
        last_alert_at=now,
        firing_alerts=0,
        alert_count=0,
        reopen_count=0,
        seq=seq,
    )


def with_member(
    incident: IncidentState,
    alert: AlertState,
    now: datetime,
    *,
    returning: bool,
    counted: bool = False,
) -> IncidentState:
    """The incident after `alert` joined it firing (again); `returning`: it was a member
    before, so it is no new member; `counted`: it already counts there as firing."""
    return evolve(
        incident,
        severity=max_severity(incident.severity, alert.severity),
        last_alert_at=now,
        firing_alerts=incident.firing_alerts + (0 if counted else 1),
        alert_count=incident.alert_count + (0 if returning else 1),
    )


def reopened(incident: IncidentState) -> IncidentState:
    return evolve(
        incident,
        status=IncidentStatus.NEW,
        resolved_at=None,
        acknowledged_at=None,
        reopen_count=incident.reopen_count + 1,
    )


def seen(incident: IncidentState, alert: AlertState, now: datetime) -> IncidentState:
    """A member alert was seen again (repeat or change): severity and last activity move."""
    return evolve(
        incident,
        severity=max_severity(incident.severity, alert.severity),
        last_alert_at=now,
    )


def member_stopped(
    incident: IncidentState, resolve_on: ResolveOn, now: datetime
) -> tuple[IncidentState, bool]:
    """One member alert stopped counting as firing; returns the incident and whether that
    resolved it (`resolve_on`: all alerts resolved, any alert resolved, or never)."""
    firing = max(incident.firing_alerts - 1, 0)
    updated = evolve(incident, firing_alerts=firing, last_alert_at=now)
    done = (resolve_on is ResolveOn.ALL and firing == 0) or resolve_on is ResolveOn.ANY
    if done and incident.status.is_active:
        return evolve(updated, status=IncidentStatus.RESOLVED, resolved_at=now), True
    return updated, False


def leave(fx: Effects, prior: AlertState, alert: AlertState) -> None:
    """Apply an alert that stopped counting as firing to each of its active incidents."""
    if not prior.counts_firing or alert.counts_firing:
        return
    depart(fx, alert, prior.incident_ids)


def depart(fx: Effects, alert: AlertState, incident_ids: tuple[int, ...], why: str = "") -> None:
    """`alert` no longer counts as firing in `incident_ids`: it resolved, or (`why`) it is
    held now; an active incident may resolve."""
    for incident_id in incident_ids:
        incident = fx.incident(incident_id)
        if incident is None:
            continue
        if not incident.status.is_active:
            # Keep the count true (an operator resolved it, or `resolve_on: any`), so that a
            # reopen counts only the alerts that fire then and can resolve again.
            if incident.firing_alerts > 0:
                fx.put_incident(evolve(incident, firing_alerts=incident.firing_alerts - 1))
            continue
        rule = fx.rules.correlate_rule(incident.rule)
        resolve_on = rule.resolve_on if rule is not None else ResolveOn.ALL
        updated, resolved = member_stopped(incident, resolve_on, fx.now)
        message = f"{describe(alert)} ({why})" if why else describe(alert)
        fx.timeline.append(entry(updated, fx.now, TimelineKind.ALERT_RESOLVED, message, alert))
        action = IncidentAction.ALERT_RESOLVED
        if resolved:
            why = "all alerts resolved" if resolve_on is ResolveOn.ALL else "an alert resolved"
            fx.timeline.append(entry(updated, fx.now, TimelineKind.RESOLVED, why))
            action = IncidentAction.RESOLVED
        fx.decide("incidents", incident.rule, action)
        fx.put_incident(updated)


def recount(fx: Effects, alert: AlertState, delta: int) -> None:
    """Count a member that starts (+1) or stops (-1) counting as firing in each of its
    incidents, without a lifecycle change: a sender reports a resolved alert flapping, or a
    flapping alert fires again after its incidents were resolved (it is counted afresh where
    it joins then)."""
    for incident_id in alert.incident_ids:
        incident = fx.incident(incident_id)
        if incident is not None:
            firing = max(incident.firing_alerts + delta, 0)
            fx.put_incident(evolve(incident, firing_alerts=firing))


class Refusal(enum.StrEnum):
    """Why an operator action cannot be applied (the API answers 409 with this)."""

    ALREADY_RESOLVED = "incident is resolved"
    CLOSED = "incident is closed"
    NOT_RESOLVED = "incident is not resolved: resolve it before closing it"
    BAD_PRIORITY = "priority must be 1 to 5"


Transition = tuple[IncidentState, TimelineEntry | None] | Refusal


def acknowledge(incident: IncidentState, actor: str, comment: str, now: datetime) -> Transition:
    if incident.status is IncidentStatus.CLOSED:
        return Refusal.CLOSED
    if incident.status is IncidentStatus.RESOLVED:
        return Refusal.ALREADY_RESOLVED
    if incident.status is IncidentStatus.ACKNOWLEDGED:
        return incident, None
    updated = evolve(incident, status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=now)
    entry = TimelineEntry(updated.id, now, TimelineKind.ACKNOWLEDGED, actor, comment)
    return updated, entry


def unacknowledge(incident: IncidentState, actor: str, comment: str, now: datetime) -> Transition:
    if incident.status is IncidentStatus.CLOSED:
        return Refusal.CLOSED
    if incident.status is IncidentStatus.RESOLVED:
        return Refusal.ALREADY_RESOLVED
    if incident.status is not IncidentStatus.ACKNOWLEDGED:
        return incident, None
    updated = evolve(incident, status=IncidentStatus.NEW, acknowledged_at=None)
    entry = TimelineEntry(updated.id, now, TimelineKind.UNACKNOWLEDGED, actor, comment)
    return updated, entry


def resolve(incident: IncidentState, actor: str, comment: str, now: datetime) -> Transition:
    if incident.status is IncidentStatus.CLOSED:
        return Refusal.CLOSED
    if incident.status is IncidentStatus.RESOLVED:
        return incident, None
    updated = evolve(incident, status=IncidentStatus.RESOLVED, resolved_at=now)
    entry = TimelineEntry(updated.id, now, TimelineKind.RESOLVED, actor, comment)
    return updated, entry


def close(incident: IncidentState, actor: str, comment: str, now: datetime) -> Transition:
    """Resolved -> closed: final; a later alert of the key opens a new incident."""
    if incident.status is IncidentStatus.CLOSED:
        return incident, None
    if incident.status is not IncidentStatus.RESOLVED:
        return Refusal.NOT_RESOLVED
    updated = evolve(incident, status=IncidentStatus.CLOSED, closed_at=now)
    return updated, TimelineEntry(updated.id, now, TimelineKind.CLOSED, actor, comment)


def comment(incident: IncidentState, actor: str, text: str, now: datetime) -> Transition:
    if incident.status is IncidentStatus.CLOSED:
        return Refusal.CLOSED
    return incident, TimelineEntry(incident.id, now, TimelineKind.COMMENT, actor, text)


def assign(
    incident: IncidentState, actor: str, group: str, assignee: str, now: datetime
) -> Transition:
    """Set the assignment group and assignee (either may be empty: unassigned)."""
    if incident.status is IncidentStatus.CLOSED:
        return Refusal.CLOSED
    if (incident.assignment_group, incident.assignee) == (group, assignee):
        return incident, None
    updated = evolve(incident, assignment_group=group, assignee=assignee)
    who = " / ".join(part for part in (group, assignee) if part) or "nobody"
    return updated, TimelineEntry(updated.id, now, TimelineKind.ASSIGNED, actor, f"to {who}")


def set_priority(
    incident: IncidentState, actor: str, priority: int, why: str, now: datetime
) -> Transition:
    """An operator's priority overrides the matrix (a later alert may still raise it)."""
    if incident.status is IncidentStatus.CLOSED:
        return Refusal.CLOSED
    if not 1 <= priority <= 5:
        return Refusal.BAD_PRIORITY
    if priority == incident.priority:
        return incident, None
    updated = evolve(incident, priority=priority)
    message = f"priority P{incident.priority} -> P{priority}" + (f": {why}" if why else "")
    return updated, TimelineEntry(updated.id, now, TimelineKind.PRIORITY_CHANGED, actor, message)


def due_to_close(incident: IncidentState, now: datetime, after: timedelta) -> bool:
    """Auto-close: resolved for `after` or longer."""
    resolved = incident.resolved_at
    return (
        incident.status is IncidentStatus.RESOLVED
        and resolved is not None
        and (now - resolved >= after)
    )


def max_severity(a: Severity, b: Severity) -> Severity:
    return a if a.rank >= b.rank else b


def describe(alert: AlertState) -> str:
    name = alert.labels.get("alertname", "alert")
    where = alert.labels.get("instance") or alert.labels.get("host")
    return f"{name} {where} ({alert.fingerprint})" if where else f"{name} ({alert.fingerprint})"


def entry(
    incident: IncidentState,
    now: datetime,
    kind: TimelineKind,
    message: str,
    alert: AlertState | None = None,
    actor: str = "",
) -> TimelineEntry:
    fingerprint = alert.fingerprint if alert is not None else None
    return TimelineEntry(
        incident.id, now, kind, actor or f"rule:{incident.rule}", message, fingerprint
    )
