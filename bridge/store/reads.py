"""Read-side queries for the API and the status page (no writes, no pipeline)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.tables import alerts, incidents, timeline

_INCIDENT_FIELDS = (
    "id", "key", "rule", "title", "severity", "status", "opened_at", "acknowledged_at",
    "resolved_at", "first_alert_at", "last_alert_at", "firing_alerts", "alert_count",
    "reopen_count", "updated_at",
)  # fmt: skip
_ALERT_FIELDS = (
    "source", "fingerprint", "status", "labels", "annotations", "severity", "starts_at",
    "ends_at", "expires_at", "generator_url", "group_key", "first_seen", "last_seen", "count",
    "incident_id", "rule", "flapping", "maintenance",
)  # fmt: skip


def _as_dict(row: Row[Any], fields: tuple[str, ...]) -> dict[str, Any]:
    mapping = row._mapping
    return {name: mapping[name] for name in fields}


async def list_incidents(
    conn: AsyncConnection, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    query = select(incidents).order_by(incidents.c.id.desc()).limit(limit).offset(offset)
    if status == "open":
        query = query.where(incidents.c.status != "resolved")
    elif status:
        query = query.where(incidents.c.status == status)
    return [_as_dict(row, _INCIDENT_FIELDS) for row in await conn.execute(query)]


async def get_incident(conn: AsyncConnection, incident_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(incidents).where(incidents.c.id == incident_id))).first()
    if row is None:
        return None
    found = _as_dict(row, _INCIDENT_FIELDS)
    members = select(alerts).where(alerts.c.incident_id == incident_id).order_by(alerts.c.id)
    found["alerts"] = [_as_dict(a, _ALERT_FIELDS) for a in await conn.execute(members)]
    entries = select(timeline).where(timeline.c.incident_id == incident_id).order_by(timeline.c.id)
    found["timeline"] = [
        {"at": e.at, "kind": e.kind, "actor": e.actor, "message": e.message,
         "fingerprint": e.fingerprint}
        for e in await conn.execute(entries)
    ]  # fmt: skip
    return found


async def list_alerts(
    conn: AsyncConnection, status: str | None, source: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    query = select(alerts).order_by(alerts.c.last_seen.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(alerts.c.status == status)
    if source:
        query = query.where(alerts.c.source == source)
    return [_as_dict(row, _ALERT_FIELDS) for row in await conn.execute(query)]


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
