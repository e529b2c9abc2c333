"""Retention: deletes the rows the `retain_*` settings say are old enough, in short batches.

Input: a `Policy` (the settings; a zero duration keeps that kind for ever) and the time now.
Output: rows deleted per `Kind`, also reported after each committed batch (the job feeds
`bridge_retention_deleted_total{kind}` with them). Each batch is its own short transaction of
at most `batch` rows of its kind, so the writer (and SQLite's one write lock) waits for one
batch at most, never for a whole run. Each batch takes the writers' lock (`database.write_lock`)
and repeats, in its DELETE, the conditions that chose its rows: a batch never deletes an alert
or incident between a writer's read of it and its write (on any replica), and an alert that
fired again meanwhile is not deleted.

What goes, and when:
- closed incidents, `retain_closed_incidents` after they closed, with their timeline, member
  list, notifications (dead letters included), targets and timers; their resolved alerts go
  too, unless `retain_resolved_alerts` keeps those longer or something else still needs them:
  those stay, detached (`incident_id` cleared);
- delivered notifications, `retain_notifications` after they were sent (never pending ones);
- resolved alerts, `retain_resolved_alerts` after they were last seen (which is when they
  resolved, or later), unless an incident that is not closed refers to them (`incident_id`,
  `also`, its member list) or they are an inhibit rule's source;
- the event log, `retain_events` after each event was received.
Problems stay: a problem outlives its incidents (`incidents.problem_id` points at it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, Table, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.store.database import write_lock
from bridge.store.outbox import SENT
from bridge.store.tables import (
    alerts,
    events,
    incident_links,
    incident_targets,
    incidents,
    inhibitors,
    notifications,
    paging,
    timeline,
)
from rules.model import AlertStatus, IncidentStatus

# Most ids one statement names as bound parameters (SQLite and asyncpg allow about 32k).
_MAX_IDS = 10_000
_CHUNK = 400
# What refers to an incident by foreign key, deleted before it.
_INCIDENT_CHILDREN = (timeline, incident_links, notifications, incident_targets, paging)


class Kind(enum.StrEnum):
    """What retention deletes; the value is the `kind` label of the metric."""

    INCIDENTS = "incidents"
    ALERTS = "alerts"
    NOTIFICATIONS = "notifications"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class Policy:
    """How long each kind is kept (zero: for ever), and the rows per batch."""

    resolved_alerts: timedelta
    closed_incidents: timedelta
    notifications: timedelta
    events: timedelta
    batch: int


Counted = Callable[[Kind, int], None]


def _ignore(kind: Kind, rows: int) -> None:
    pass


async def apply(
    engine: AsyncEngine, policy: Policy, now: datetime, counted: Counted = _ignore
) -> dict[Kind, int]:
    """Delete everything the policy lets go; returns the rows deleted per kind. `counted` hears
    each committed batch, so a run that fails half-way still reports what it deleted."""
    totals = dict.fromkeys(Kind, 0)

    def count(kind: Kind, rows: int) -> None:
        if rows:
            totals[kind] += rows
            counted(kind, rows)

    size = min(policy.batch, _MAX_IDS)
    if policy.closed_incidents:  # first: their notifications and alerts go with them
        await _closed_incidents(engine, policy, now, size, count)
    if policy.notifications:
        n = notifications.c
        sent = and_(n.status == SENT, n.sent_at <= now - policy.notifications)
        await _delete_batches(engine, notifications, sent, size, Kind.NOTIFICATIONS, count)
    if policy.resolved_alerts:
        await _resolved_alerts(engine, now - policy.resolved_alerts, size, count)
    if policy.events:
        received = events.c.received_at <= now - policy.events
        await _delete_batches(engine, events, received, size, Kind.EVENTS, count)
    return totals


async def _delete_batches(
    engine: AsyncEngine,
    table: Table,
    condition: ColumnElement[bool],
    size: int,
    kind: Kind,
    count: Counted,
) -> None:
    """Delete the rows of `table` matching `condition`, `size` rows per transaction."""
    page = select(table.c.id).where(condition).order_by(table.c.id).limit(size)
    while True:
        async with engine.begin() as conn:
            await write_lock(conn)
            statement = delete(table).where(table.c.id.in_(page.scalar_subquery()), condition)
            deleted: int = (await conn.execute(statement)).rowcount
        count(kind, deleted)
        if deleted < size:
            return


async def _ids(conn: AsyncConnection, query: Select[int]) -> list[int]:
    return list((await conn.execute(query)).scalars())


# Closed incidents


async def _closed_incidents(
    engine: AsyncEngine, policy: Policy, now: datetime, size: int, count: Counted
) -> None:
    i = incidents.c
    old = and_(i.status == IncidentStatus.CLOSED, i.closed_at <= now - policy.closed_incidents)
    while True:
        async with engine.begin() as conn:
            await write_lock(conn)
            ids = await _ids(conn, select(i.id).where(old).order_by(i.id).limit(size))
            if not ids:
                return
            doomed = and_(old, i.id <= ids[-1])
            # Never correlated: it names the same incidents inside any statement.
            doomed_ids = select(i.id).where(doomed).correlate(None)
            gone_alerts = await _detach_alerts(conn, doomed_ids, policy, now)
            gone_notifications = 0
            for table in _INCIDENT_CHILDREN:
                statement = delete(table).where(table.c.incident_id.in_(doomed_ids))
                deleted: int = (await conn.execute(statement)).rowcount
                if table is notifications:
                    gone_notifications = deleted
            gone: int = (await conn.execute(delete(incidents).where(doomed))).rowcount
        count(Kind.INCIDENTS, gone)
        count(Kind.ALERTS, gone_alerts)
        count(Kind.NOTIFICATIONS, gone_notifications)
        if len(ids) < size:
            return


async def _detach_alerts(
    conn: AsyncConnection, doomed: Select[int], policy: Policy, now: datetime
) -> int:
    """Delete the resolved alerts of incidents about to go (as the alerts' own retention
    would), and detach the others; returns how many were deleted."""
    theirs = alerts.c.incident_id.in_(doomed)
    deleted = 0
    if policy.resolved_alerts:
        chosen = and_(theirs, _resolved_before(now - policy.resolved_alerts))
        deleted = await _delete_unneeded(conn, chosen)
    await conn.execute(update(alerts).where(theirs).values(incident_id=None))
    return deleted


# Resolved alerts


async def _resolved_alerts(
    engine: AsyncEngine, cutoff: datetime, size: int, count: Counted
) -> None:
    """Page through the old resolved alerts in id order (some stay: they are still needed)."""
    a = alerts.c
    old = _resolved_before(cutoff)
    after = 0
    while True:
        async with engine.begin() as conn:
            await write_lock(conn)
            ids = await _ids(conn, select(a.id).where(old, a.id > after).order_by(a.id).limit(size))
            if not ids:
                return
            deleted = await _delete_unneeded(conn, and_(old, a.id > after, a.id <= ids[-1]))
        count(Kind.ALERTS, deleted)
        if len(ids) < size:
            return
        after = ids[-1]


def _resolved_before(cutoff: datetime) -> ColumnElement[bool]:
    """Resolved alerts last seen at or before `cutoff` whose `incident_id` names no incident
    that is not closed. `last_seen` is the bridge's own time of the last event (the resolve,
    or a later resend); `ends_at` is the sender's and may be missing or skewed."""
    a = alerts.c
    live = (
        select(incidents.c.id)
        .where(incidents.c.id == a.incident_id, incidents.c.status != IncidentStatus.CLOSED)
        .correlate(alerts)
    )
    return and_(a.status == AlertStatus.RESOLVED, a.last_seen <= cutoff, ~live.exists())


async def _delete_unneeded(conn: AsyncConnection, chosen: ColumnElement[bool]) -> int:
    needed = await _still_needed(conn, chosen)
    condition = and_(chosen, alerts.c.id.not_in(needed)) if needed else chosen
    deleted: int = (await conn.execute(delete(alerts).where(condition))).rowcount
    return deleted


async def _still_needed(conn: AsyncConnection, chosen: ColumnElement[bool]) -> set[int]:
    """The alerts among `chosen` that something still refers to: an inhibit rule (they are its
    source), or an incident that is not closed (its member list, or the alert's `also`)."""
    a, links = alerts.c, incident_links.c
    member_of = incidents.alias("member_of")
    inhibiting = select(a.id).select_from(
        alerts.join(
            inhibitors,
            and_(inhibitors.c.source == a.source, inhibitors.c.fingerprint == a.fingerprint),
        )
    )
    members = select(a.id).select_from(
        alerts.join(
            incident_links, and_(links.source == a.source, links.fingerprint == a.fingerprint)
        ).join(member_of, member_of.c.id == links.incident_id)
    )
    needed = set(await _ids(conn, inhibiting.where(chosen)))
    not_closed = member_of.c.status != IncidentStatus.CLOSED
    needed.update(await _ids(conn, members.where(chosen, not_closed)))
    joined = {
        row.id: tuple(row.also) for row in await conn.execute(select(a.id, a.also).where(chosen))
    }
    live = await _not_closed(conn, {i for also in joined.values() for i in also})
    needed.update(alert_id for alert_id, also in joined.items() if live.intersection(also))
    return needed


async def _not_closed(conn: AsyncConnection, ids: Collection[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(ids):
        query = select(incidents.c.id).where(
            incidents.c.id.in_(chunk), incidents.c.status != IncidentStatus.CLOSED
        )
        found.update(await _ids(conn, query))
    return found


def _chunks(items: Collection[int]) -> Iterable[list[int]]:
    ordered = sorted(items)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]
