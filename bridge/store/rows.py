"""Rows <-> domain values: the one place a table row becomes a `rules.model` state and back.

Rows written for the pipeline take `ids`, the placeholder -> database id mapping of the
transaction (new incidents and problems get negative placeholders in the engine until they
are inserted); a reference not in `ids` is already a database id.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row

from bridge.store.tables import alerts
from rules.model import (
    AlertState,
    AlertStatus,
    Hold,
    IncidentState,
    IncidentStatus,
    JoinReason,
    ProblemState,
    ProblemStatus,
    Severity,
    TimelineEntry,
)
from rules.world import Link

if TYPE_CHECKING:
    from rules.effects import Evaluation

# Domain -> row


def incident_row(incident: IncidentState, ids: dict[int, int], now: datetime) -> dict[str, Any]:
    problem_id = incident.problem_id
    return {
        "key": incident.key,
        "rule": incident.rule,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "opened_at": incident.opened_at,
        "acknowledged_at": incident.acknowledged_at,
        "resolved_at": incident.resolved_at,
        "first_alert_at": incident.first_alert_at,
        "last_alert_at": incident.last_alert_at,
        "firing_alerts": incident.firing_alerts,
        "alert_count": incident.alert_count,
        "reopen_count": incident.reopen_count,
        "updated_at": now,
        "priority": incident.priority,
        "ci": incident.ci,
        "service": incident.service,
        "problem_id": ids.get(problem_id, problem_id) if problem_id is not None else None,
        "seq": incident.seq,
        "closed_at": incident.closed_at,
        "assignment_group": incident.assignment_group,
        "assignee": incident.assignee,
        "labels": dict(incident.labels),
        "source": incident.source,
        "ack_due_at": incident.ack_due_at,
        "resolve_due_at": incident.resolve_due_at,
        "ack_breached_at": incident.ack_breached_at,
        "resolve_breached_at": incident.resolve_breached_at,
    }


def problem_row(problem: ProblemState, now: datetime) -> dict[str, Any]:
    return {
        "key": problem.key,
        "rule": problem.rule,
        "title": problem.title,
        "status": problem.status,
        "opened_at": problem.opened_at,
        "updated_at": problem.updated_at,
        "incident_count": problem.incident_count,
        "ci": problem.ci,
        "root_cause": problem.root_cause,
        "workaround": problem.workaround,
        "resolved_at": None if problem.status.is_active else now,
    }


def alert_row(alert: AlertState, ids: dict[int, int]) -> dict[str, Any]:
    incident_id = alert.incident_id
    return {
        "source": alert.source,
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "severity": alert.severity,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "expires_at": alert.expires_at,
        "generator_url": alert.generator_url,
        "group_key": alert.group_key,
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "count": alert.count,
        "digest": alert.digest,
        "incident_id": ids.get(incident_id, incident_id) if incident_id is not None else None,
        "rule": alert.rule,
        "flapping": alert.flapping,
        "flap_reported": alert.flap_reported,
        "maintenance": alert.maintenance,
        "hold": alert.hold,
        "held_by": alert.held_by,
        "incident_key": alert.incident_key,
        "reason": alert.reason,
        "also": [ids.get(i, i) for i in alert.also],
        "history": alert.history,
        "changed_at": alert.changed_at,
    }


def volatile_alert_row(alert: AlertState) -> dict[str, Any]:
    return {
        "source": alert.source,
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "ends_at": alert.ends_at,
        "expires_at": alert.expires_at,
        "last_seen": alert.last_seen,
        "count": alert.count,
        "digest": alert.digest,
    }


def stable_alert_fields(alert: AlertState) -> tuple[Any, ...]:
    """What a repeat leaves alone: when only the rest moved (counters, times, status), the row
    update writes just `volatile_alert_row` and skips labels and JSON."""
    return (
        alert.annotations, alert.severity, alert.incident_id, alert.rule, alert.starts_at,
        alert.generator_url, alert.group_key, alert.flapping, alert.maintenance, alert.hold,
        alert.held_by, alert.incident_key, alert.reason, alert.also, alert.history,
        alert.changed_at,
    )  # fmt: skip


def link_row(link: Link, ids: dict[int, int]) -> dict[str, Any]:
    return {
        "incident_id": ids.get(link.incident_id, link.incident_id),
        "source": link.source,
        "fingerprint": link.fingerprint,
        "rule": link.rule,
        "reason": link.reason,
        "at": link.at,
    }


def timeline_row(entry: TimelineEntry, ids: dict[int, int]) -> dict[str, Any]:
    return {
        "incident_id": ids.get(entry.incident_id, entry.incident_id),
        "at": entry.at,
        "kind": entry.kind,
        "actor": entry.actor,
        "message": entry.message,
        "fingerprint": entry.fingerprint,
        "source": entry.source,
    }


def event_row(evaluation: Evaluation, ids: dict[int, int], now: datetime) -> dict[str, Any]:
    event, alert = evaluation.event, evaluation.alert
    incident_id = alert.incident_id if alert is not None else None
    return {
        "received_at": now,
        "source": event.source,
        "fingerprint": event.fingerprint,
        "status": event.status,
        "outcome": evaluation.dedup.outcome,
        "incident_id": ids.get(incident_id, incident_id) if incident_id else None,
        "digest": event.digest,
    }


# Row -> domain


def alert_from_row(row: Row[Any]) -> AlertState:
    # One dict of the row's values, then plain lookups: attribute access on a Row costs a
    # keymap lookup per column, and this runs for every alert a batch loads.
    v = dict(zip(_ALERT_COLUMNS, row, strict=True))
    reason = v["reason"]
    return AlertState(
        source=v["source"],
        fingerprint=v["fingerprint"],
        status=_ALERT_STATUS[v["status"]],
        labels=v["labels"],
        annotations=v["annotations"],
        severity=_SEVERITY[v["severity"]],
        starts_at=v["starts_at"],
        ends_at=v["ends_at"],
        expires_at=v["expires_at"],
        generator_url=v["generator_url"],
        group_key=v["group_key"],
        first_seen=v["first_seen"],
        last_seen=v["last_seen"],
        count=v["count"],
        digest=v["digest"],
        incident_id=v["incident_id"],
        rule=v["rule"],
        flapping=v["flapping"],
        flap_reported=v["flap_reported"],
        maintenance=v["maintenance"],
        hold=_HOLD[v["hold"]],
        held_by=v["held_by"],
        incident_key=v["incident_key"],
        reason=JoinReason(reason) if reason is not None else None,
        also=tuple(v["also"]),
        history=v["history"],
        changed_at=v["changed_at"],
    )


# The column order of `select(alerts)`, which every caller of `alert_from_row` uses.
_ALERT_COLUMNS = tuple(column.key for column in alerts.c)
# Enum lookups by value without the enum machinery's call overhead.
_ALERT_STATUS = {s.value: s for s in AlertStatus}
_SEVERITY = {s.value: s for s in Severity}
_HOLD = {h.value: h for h in Hold}


def incident_from_row(row: Row[Any]) -> IncidentState:
    return IncidentState(
        id=row.id,
        key=row.key,
        rule=row.rule,
        title=row.title,
        severity=Severity(row.severity),
        status=IncidentStatus(row.status),
        opened_at=row.opened_at,
        acknowledged_at=row.acknowledged_at,
        resolved_at=row.resolved_at,
        first_alert_at=row.first_alert_at,
        last_alert_at=row.last_alert_at,
        firing_alerts=row.firing_alerts,
        alert_count=row.alert_count,
        reopen_count=row.reopen_count,
        priority=row.priority,
        ci=row.ci,
        service=row.service,
        problem_id=row.problem_id,
        seq=row.seq,
        closed_at=row.closed_at,
        assignment_group=row.assignment_group,
        assignee=row.assignee,
        labels=row.labels,
        source=row.source,
        ack_due_at=row.ack_due_at,
        resolve_due_at=row.resolve_due_at,
        ack_breached_at=row.ack_breached_at,
        resolve_breached_at=row.resolve_breached_at,
    )


def problem_from_row(row: Row[Any]) -> ProblemState:
    return ProblemState(
        id=row.id,
        key=row.key,
        rule=row.rule,
        title=row.title,
        status=ProblemStatus(row.status),
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        incident_count=row.incident_count,
        ci=row.ci,
        root_cause=row.root_cause,
        workaround=row.workaround,
    )
