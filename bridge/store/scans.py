"""What the scheduled jobs and the composition root look for in the store: expired and held
alerts, a source's firing alerts, incident counts. Read-only; the writer changes rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.rows import alert_from_row
from bridge.store.tables import alerts, incidents
from rules.model import AlertState, AlertStatus, Hold, IncidentStatus
from rules.world import AlertKey

# Alerts the recheck job looks at again: held by something that may end, or flapping.
_RECHECKED = (Hold.PENDING, Hold.INHIBITED, Hold.MAINTENANCE)


async def expired_alerts(conn: AsyncConnection, now: datetime, limit: int) -> list[AlertKey]:
    query = (
        select(alerts.c.source, alerts.c.fingerprint)
        .where(alerts.c.status == AlertStatus.FIRING, alerts.c.expires_at <= now)
        .order_by(alerts.c.expires_at)
        .limit(limit)
    )
    return [(row.source, row.fingerprint) for row in await conn.execute(query)]


async def resolved_before(conn: AsyncConnection, until: datetime, limit: int) -> list[int]:
    """Incidents resolved at or before `until` and not closed yet (the auto-close job)."""
    query = (
        select(incidents.c.id)
        .where(incidents.c.status == IncidentStatus.RESOLVED, incidents.c.resolved_at <= until)
        .order_by(incidents.c.id)
        .limit(limit)
    )
    return [row.id for row in await conn.execute(query)]


async def held_alerts(
    conn: AsyncConnection, limit: int, after_id: int = 0
) -> list[tuple[int, AlertKey]]:
    """Firing alerts held by something that may end (pending, inhibited, maintenance), and
    flapping alerts: what the recheck job evaluates again, in row order from `after_id`, so
    that the job pages through all of them (none starves behind a thousand others)."""
    held = (alerts.c.status == AlertStatus.FIRING) & alerts.c.hold.in_(_RECHECKED)
    query = (
        select(alerts.c.id, alerts.c.source, alerts.c.fingerprint)
        .where(or_(held, alerts.c.flapping.is_(True)), alerts.c.id > after_id)
        .order_by(alerts.c.id)
        .limit(limit)
    )
    return [(row.id, (row.source, row.fingerprint)) for row in await conn.execute(query)]


async def firing_alerts(conn: AsyncConnection, source: str) -> list[AlertState]:
    query = select(alerts).where(alerts.c.source == source, alerts.c.status == AlertStatus.FIRING)
    return [alert_from_row(row) for row in await conn.execute(query)]


async def count_incidents_by_status(conn: AsyncConnection) -> dict[str, int]:
    query = select(incidents.c.status, func.count()).group_by(incidents.c.status)
    return {status: count for status, count in (await conn.execute(query)).all()}
