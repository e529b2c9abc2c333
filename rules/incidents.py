"""Stage `incidents`: decide which incident an alert belongs to, and what that does to it.

Input: the dedup decision for one event, the incident view the shell loaded, the rule set.
Output: an `IncidentDecision` naming the action (the value is the `action` label of the incident
metrics), the rule that decided it, the new incident and alert states and the timeline entries.

Rule section: `incidents` (first matching rule wins; see `route`). An incident opens when its
first alert fires, resolves when its last firing alert resolves, and a new firing alert for a
key whose incident resolved less than `reopen_window` ago reopens that incident.

Operator actions (acknowledge, resolve) are pure functions here too; the shell only persists.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from rules.dedup import DedupDecision, DedupOutcome
from rules.model import (
    AlertState,
    Event,
    IncidentState,
    IncidentStatus,
    Severity,
    TimelineEntry,
    TimelineKind,
)
from rules.ruleset import DEFAULT_GROUP_RULE, DEFAULT_LABEL_RULE, IncidentRule, RuleSet


class IncidentAction(enum.StrEnum):
    OPENED = "opened"
    ATTACHED = "attached"
    REOPENED = "reopened"
    UPDATED = "updated"
    ALERT_RESOLVED = "alert_resolved"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    UNACKNOWLEDGED = "unacknowledged"
    NOTED = "noted"
    NONE = "none"


class IncidentView(Protocol):
    """The incidents the shell loaded for the current batch."""

    def incident(self, incident_id: int) -> IncidentState | None: ...

    def latest_for_key(self, key: str) -> IncidentState | None: ...


@dataclass(frozen=True, slots=True)
class IncidentDecision:
    action: IncidentAction
    rule: str
    incident: IncidentState | None = None
    alert: AlertState | None = None
    timeline: tuple[TimelineEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    rule: IncidentRule
    key: str


def route(ruleset: RuleSet, event: Event) -> Route:
    """The first `incidents` rule that matches the event, and the incident key it gives."""
    labels = event.match_labels()
    for rule in ruleset.incident_rules:
        if rule.matches(labels):
            return Route(rule, incident_key(rule, labels))
    fallback = DEFAULT_GROUP_RULE if event.group_key else DEFAULT_LABEL_RULE
    return Route(fallback, incident_key(fallback, labels))


def incident_key(rule: IncidentRule, labels: Mapping[str, str]) -> str:
    parts = ",".join(f"{name}={labels.get(name, '')!r}" for name in rule.group_by)
    return f"{rule.name}{{{parts}}}"


def correlate(
    ruleset: RuleSet,
    view: IncidentView,
    event: Event,
    decision: DedupDecision,
    now: datetime,
    reopen_window: timedelta,
    new_id: Callable[[], int],
) -> IncidentDecision:
    alert = decision.alert
    if alert is None:
        return IncidentDecision(IncidentAction.NONE, rule="")
    if decision.outcome.fires:
        return _join(ruleset, view, event, alert, now, reopen_window, new_id)
    current = view.incident(alert.incident_id) if alert.incident_id is not None else None
    if current is None:
        return IncidentDecision(IncidentAction.NONE, rule=alert.rule or "", alert=alert)
    if decision.outcome is DedupOutcome.RESOLVED:
        return _alert_resolved(current, alert, now)
    return _alert_seen(current, alert, decision.outcome, now)


def _join(
    ruleset: RuleSet,
    view: IncidentView,
    event: Event,
    alert: AlertState,
    now: datetime,
    reopen_window: timedelta,
    new_id: Callable[[], int],
) -> IncidentDecision:
    target = route(ruleset, event)
    latest = view.latest_for_key(target.key)
    rule = target.rule.name
    if latest is not None and latest.status.is_active:
        return _attach(latest, alert, rule, now)
    if latest is not None and latest.resolved_at and now - latest.resolved_at <= reopen_window:
        return _reopen(latest, alert, rule, now)
    incident = IncidentState(
        id=new_id(),
        key=target.key,
        rule=rule,
        title=_title(target.rule, event),
        severity=event.severity,
        status=IncidentStatus.NEW,
        opened_at=now,
        acknowledged_at=None,
        resolved_at=None,
        first_alert_at=now,
        last_alert_at=now,
        firing_alerts=1,
        alert_count=1,
        reopen_count=0,
    )
    entry = _entry(incident, now, TimelineKind.OPENED, f"opened by {_describe(alert)}", alert)
    joined = replace(alert, incident_id=incident.id, rule=rule)
    return IncidentDecision(IncidentAction.OPENED, rule, incident, joined, (entry,))


def _attach(
    incident: IncidentState, alert: AlertState, rule: str, now: datetime
) -> IncidentDecision:
    updated = _with_firing_alert(incident, alert, now)
    entry = _entry(updated, now, TimelineKind.ALERT_ATTACHED, _describe(alert), alert)
    joined = replace(alert, incident_id=incident.id, rule=rule)
    return IncidentDecision(IncidentAction.ATTACHED, rule, updated, joined, (entry,))


def _reopen(
    incident: IncidentState, alert: AlertState, rule: str, now: datetime
) -> IncidentDecision:
    updated = replace(
        _with_firing_alert(incident, alert, now),
        status=IncidentStatus.NEW,
        resolved_at=None,
        reopen_count=incident.reopen_count + 1,
    )
    entry = _entry(updated, now, TimelineKind.REOPENED, f"reopened by {_describe(alert)}", alert)
    joined = replace(alert, incident_id=incident.id, rule=rule)
    return IncidentDecision(IncidentAction.REOPENED, rule, updated, joined, (entry,))


def _with_firing_alert(incident: IncidentState, alert: AlertState, now: datetime) -> IncidentState:
    returning = alert.incident_id == incident.id
    return replace(
        incident,
        severity=_max_severity(incident.severity, alert.severity),
        last_alert_at=now,
        firing_alerts=incident.firing_alerts + 1,
        alert_count=incident.alert_count + (0 if returning else 1),
    )


def _alert_resolved(incident: IncidentState, alert: AlertState, now: datetime) -> IncidentDecision:
    firing = max(incident.firing_alerts - 1, 0)
    updated = replace(incident, firing_alerts=firing, last_alert_at=now)
    entries = [_entry(updated, now, TimelineKind.ALERT_RESOLVED, _describe(alert), alert)]
    action = IncidentAction.ALERT_RESOLVED
    if firing == 0 and incident.status.is_active:
        updated = replace(updated, status=IncidentStatus.RESOLVED, resolved_at=now)
        entries.append(_entry(updated, now, TimelineKind.RESOLVED, "all alerts resolved", None))
        action = IncidentAction.RESOLVED
    return IncidentDecision(action, incident.rule, updated, alert, tuple(entries))


def _alert_seen(
    incident: IncidentState, alert: AlertState, outcome: DedupOutcome, now: datetime
) -> IncidentDecision:
    updated = replace(
        incident,
        severity=_max_severity(incident.severity, alert.severity),
        last_alert_at=now,
    )
    entries: tuple[TimelineEntry, ...] = ()
    if outcome is DedupOutcome.CHANGED:
        entries = (_entry(updated, now, TimelineKind.ALERT_CHANGED, _describe(alert), alert),)
    return IncidentDecision(IncidentAction.UPDATED, incident.rule, updated, alert, entries)


class Refusal(enum.StrEnum):
    """Why an operator action cannot be applied (the API answers 409 with this)."""

    ALREADY_RESOLVED = "incident is resolved"


def acknowledge(
    incident: IncidentState, actor: str, comment: str, now: datetime
) -> tuple[IncidentState, TimelineEntry | None] | Refusal:
    if incident.status is IncidentStatus.RESOLVED:
        return Refusal.ALREADY_RESOLVED
    if incident.status is IncidentStatus.ACKNOWLEDGED:
        return incident, None
    updated = replace(incident, status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=now)
    entry = TimelineEntry(updated.id, now, TimelineKind.ACKNOWLEDGED, actor, comment)
    return updated, entry


def unacknowledge(
    incident: IncidentState, actor: str, comment: str, now: datetime
) -> tuple[IncidentState, TimelineEntry | None] | Refusal:
    if incident.status is IncidentStatus.RESOLVED:
        return Refusal.ALREADY_RESOLVED
    if incident.status is not IncidentStatus.ACKNOWLEDGED:
        return incident, None
    updated = replace(incident, status=IncidentStatus.NEW, acknowledged_at=None)
    entry = TimelineEntry(updated.id, now, TimelineKind.UNACKNOWLEDGED, actor, comment)
    return updated, entry


def resolve(
    incident: IncidentState, actor: str, comment: str, now: datetime
) -> tuple[IncidentState, TimelineEntry | None] | Refusal:
    if incident.status is IncidentStatus.RESOLVED:
        return incident, None
    updated = replace(incident, status=IncidentStatus.RESOLVED, resolved_at=now)
    entry = TimelineEntry(updated.id, now, TimelineKind.RESOLVED, actor, comment)
    return updated, entry


def _title(rule: IncidentRule, event: Event) -> str:
    if rule.title is not None:
        rendered = rule.title.render(event.labels, event.annotations)
        if rendered:
            return rendered
    name = event.labels.get("alertname", "alert")
    where = event.labels.get("instance") or event.labels.get("job")
    return f"{name} on {where}" if where else name


def _max_severity(a: Severity, b: Severity) -> Severity:
    return a if a.rank >= b.rank else b


def _describe(alert: AlertState) -> str:
    name = alert.labels.get("alertname", "alert")
    where = alert.labels.get("instance")
    return f"{name} {where} ({alert.fingerprint})" if where else f"{name} ({alert.fingerprint})"


def _entry(
    incident: IncidentState,
    now: datetime,
    kind: TimelineKind,
    message: str,
    alert: AlertState | None,
) -> TimelineEntry:
    fingerprint = alert.fingerprint if alert is not None else None
    return TimelineEntry(incident.id, now, kind, f"rule:{incident.rule}", message, fingerprint)
