"""Read-side queries for the API and the status page (no writes, no pipeline).

Incidents carry their priority twice: `priority` as shown to people ("P1" most urgent to
"P5") and `priority_level` as the number (1-5) to sort and filter by.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.tables import alerts, incident_links, incidents, problems, timeline

_INCIDENT_FIELDS = (
    "id", "key", "rule", "title", "severity", "status", "opened_at", "acknowledged_at",
    "resolved_at", "first_alert_at", "last_alert_at", "firing_alerts", "alert_count",
    "reopen_count", "updated_at", "ci", "service", "problem_id", "seq", "closed_at",
    "assignment_group", "assignee", "labels", "source", "ack_due_at", "resolve_due_at",
    "ack_breached_at", "resolve_breached_at",
)  # fmt: skip
_ALERT_FIELDS = (
    "source", "fingerprint", "status", "labels", "annotations", "severity", "starts_at",
    "ends_at", "expires_at", "generator_url", "group_key", "first_seen", "last_seen", "count",
    "incident_id", "rule", "flapping", "maintenance", "hold", "held_by", "incident_key",
    "reason", "also", "history",
)  # fmt: skip
_PROBLEM_FIELDS = (
    "id", "key", "rule", "title", "status", "opened_at", "updated_at", "resolved_at",
    "incident_count", "ci", "root_cause", "workaround",
)  # fmt: skip


def _as_dict(row: Row[Any], fields: tuple[str, ...]) -> dict[str, Any]:
    mapping = row._mapping
    return {name: mapping[name] for name in fields}


def _incident_dict(row: Row[Any]) -> dict[str, Any]:
    found = _as_dict(row, _INCIDENT_FIELDS)
    found["priority"] = f"P{row.priority}"
    found["priority_level"] = row.priority
    return found


async def list_incidents(
    conn: AsyncConnection, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    query = select(incidents).order_by(incidents.c.id.desc()).limit(limit).offset(offset)
    if status == "open":
        query = query.where(incidents.c.status.notin_(("resolved", "closed")))
    elif status:
        query = query.where(incidents.c.status == status)
    return [_incident_dict(row) for row in await conn.execute(query)]


async def get_incident(conn: AsyncConnection, incident_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(incidents).where(incidents.c.id == incident_id))).first()
    if row is None:
        return None
    found = _incident_dict(row)
    found["alerts"] = await _members(conn, incident_id)
    entries = select(timeline).where(timeline.c.incident_id == incident_id).order_by(timeline.c.id)
    found["timeline"] = [
        {"at": e.at, "kind": e.kind, "source": e.source, "actor": e.actor,
         "message": e.message, "fingerprint": e.fingerprint}
        for e in await conn.execute(entries)
    ]  # fmt: skip
    return found


async def _members(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    """Every alert that joined the incident, with its latest join (rule, reason, time), in
    join order; first the alerts that joined before links were recorded (no join details)."""
    links = incident_links.c
    same_alert = and_(alerts.c.source == links.source, alerts.c.fingerprint == links.fingerprint)
    unlinked = select(alerts).where(
        alerts.c.incident_id == incident_id,
        ~select(links.id).where(links.incident_id == incident_id, same_alert).exists(),
    )
    members = []
    for row in await conn.execute(unlinked.order_by(alerts.c.id)):
        member = _as_dict(row, _ALERT_FIELDS)
        member.update(joined_rule=row.rule, joined_reason=None, joined_at=None)
        members.append(member)
    latest = (
        select(func.max(links.id))
        .where(links.incident_id == incident_id)
        .group_by(links.source, links.fingerprint)
    )
    linked = (
        select(
            alerts,
            links.rule.label("joined_rule"),
            links.reason.label("joined_reason"),
            links.at.label("joined_at"),
        )
        .join_from(incident_links, alerts, same_alert)
        .where(links.id.in_(latest))
        .order_by(links.id)
    )
    for row in await conn.execute(linked):
        member = _as_dict(row, _ALERT_FIELDS)
        member.update(
            joined_rule=row.joined_rule, joined_reason=row.joined_reason, joined_at=row.joined_at
        )
        members.append(member)
    return members


async def list_alerts(
    conn: AsyncConnection,
    status: str | None,
    source: str | None,
    limit: int,
    offset: int,
    hold: str | None = None,
) -> list[dict[str, Any]]:
    """Alerts, most recently seen first; `hold` selects held ones ('pending', 'inhibited',
    'maintenance', 'heartbeat') or, as 'none', those not held."""
    query = select(alerts).order_by(alerts.c.last_seen.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(alerts.c.status == status)
    if source:
        query = query.where(alerts.c.source == source)
    if hold:
        query = query.where(alerts.c.hold == hold)
    return [_as_dict(row, _ALERT_FIELDS) for row in await conn.execute(query)]


async def list_problems(
    conn: AsyncConnection, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Problems, newest first; `status` is one status ('open', 'known_error', 'resolved') or
    'active' for every status but resolved."""
    query = select(problems).order_by(problems.c.id.desc()).limit(limit).offset(offset)
    if status == "active":
        query = query.where(problems.c.status != "resolved")
    elif status:
        query = query.where(problems.c.status == status)
    return [_as_dict(row, _PROBLEM_FIELDS) for row in await conn.execute(query)]


async def get_problem(conn: AsyncConnection, problem_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(problems).where(problems.c.id == problem_id))).first()
    if row is None:
        return None
    found = _as_dict(row, _PROBLEM_FIELDS)
    linked = (
        select(incidents.c.id, incidents.c.title, incidents.c.status, incidents.c.opened_at)
        .where(incidents.c.problem_id == problem_id)
        .order_by(incidents.c.id)
    )
    found["incidents"] = [
        {str(k): v for k, v in i._mapping.items()} for i in await conn.execute(linked)
    ]
    return found


async def counts(conn: AsyncConnection) -> dict[str, Any]:
    by_incident = select(incidents.c.status, func.count()).group_by(incidents.c.status)
    by_alert = select(alerts.c.source, alerts.c.status, func.count()).group_by(
        alerts.c.source, alerts.c.status
    )
    alert_counts: dict[str, int] = {}
    per_source: dict[str, dict[str, int]] = {}
    for source, status, count in (await conn.execute(by_alert)).all():
        alert_counts[status] = alert_counts.get(status, 0) + count
        per_source.setdefault(source, {})[status] = count
    return {
        "incidents": {s: n for s, n in (await conn.execute(by_incident)).all()},
        "alerts": alert_counts,
        "alerts_by_source": per_source,
    }


async def incidents_by_id(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Incidents in the API's shape (no alerts, no timeline), for the outbox dispatcher."""
    query = select(incidents).where(incidents.c.id.in_(sorted(set(ids))))
    return {row.id: _incident_dict(row) for row in await conn.execute(query)}


async def members_of(
    conn: AsyncConnection, ids: list[int], most: int
) -> dict[int, list[dict[str, Any]]]:
    """Up to `most` member alerts of each incident (the latest to join), in one statement."""
    links = incident_links.c
    same_alert = and_(alerts.c.source == links.source, alerts.c.fingerprint == links.fingerprint)
    query = (
        select(links.incident_id.label("member_of"), alerts)
        .join_from(incident_links, alerts, same_alert)
        .where(links.incident_id.in_(sorted(set(ids))))
        .order_by(links.id.desc())
    )
    found: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}
    for row in await conn.execute(query):
        members = found.setdefault(row.member_of, {})
        key = (row.source, row.fingerprint)
        if key not in members and len(members) < most:
            members[key] = _as_dict(row, _ALERT_FIELDS)
    return {incident: list(reversed(m.values())) for incident, m in found.items()}
