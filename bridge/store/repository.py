"""Loads the state a batch needs and persists what the stages changed, on one connection.

Rows <-> domain values are converted here and nowhere else. All statements are Core and
batched (`executemany`), so one group commit costs a handful of round trips whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Update, bindparam, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.tables import alerts, events, incidents, timeline
from bridge.store.workset import AlertKey, WorkSet
from rules.dedup import DedupOutcome
from rules.evaluate import Evaluation
from rules.model import (
    AlertState,
    AlertStatus,
    IncidentState,
    IncidentStatus,
    Severity,
    TimelineEntry,
)

_CHUNK = 400


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


async def load_alerts(conn: AsyncConnection, keys: Iterable[AlertKey]) -> list[AlertState]:
    wanted = sorted(set(keys))
    found: list[AlertState] = []
    for chunk in _chunks(wanted):
        pair = tuple_(alerts.c.source, alerts.c.fingerprint)
        result = await conn.execute(select(alerts).where(pair.in_(chunk)))
        found.extend(alert_from_row(row) for row in result)
    return found


async def load_incidents(
    conn: AsyncConnection, ids: Iterable[int], keys: Iterable[str], recent_since: datetime
) -> list[IncidentState]:
    """Incidents by id, plus the active or recently resolved ones of the given keys."""
    found: dict[int, IncidentState] = {}
    for chunk in _chunks(sorted(set(ids))):
        result = await conn.execute(select(incidents).where(incidents.c.id.in_(chunk)))
        found.update((row.id, incident_from_row(row)) for row in result)
    live = or_(
        incidents.c.status != IncidentStatus.RESOLVED, incidents.c.resolved_at >= recent_since
    )
    for chunk in _chunks(sorted(set(keys))):
        result = await conn.execute(select(incidents).where(incidents.c.key.in_(chunk), live))
        found.update((row.id, incident_from_row(row)) for row in result)
    return list(found.values())


async def expired_alerts(conn: AsyncConnection, now: datetime, limit: int) -> list[AlertKey]:
    query = (
        select(alerts.c.source, alerts.c.fingerprint)
        .where(alerts.c.status == AlertStatus.FIRING, alerts.c.expires_at <= now)
        .order_by(alerts.c.expires_at)
        .limit(limit)
    )
    return [(row.source, row.fingerprint) for row in await conn.execute(query)]


async def firing_alerts(conn: AsyncConnection, source: str) -> list[AlertState]:
    query = select(alerts).where(alerts.c.source == source, alerts.c.status == AlertStatus.FIRING)
    return [alert_from_row(row) for row in await conn.execute(query)]


async def count_incidents_by_status(conn: AsyncConnection) -> dict[str, int]:
    query = select(incidents.c.status, func.count()).group_by(incidents.c.status)
    return {status: count for status, count in (await conn.execute(query)).all()}


async def persist(
    conn: AsyncConnection, work: WorkSet, evaluations: Sequence[Evaluation], now: datetime
) -> dict[int, int]:
    """Write everything dirty in `work`; returns the placeholder -> database id mapping."""
    ids = await _insert_new_incidents(conn, work, now)
    await _update_incidents(conn, work, now)
    await _upsert_alerts(conn, work, ids)
    await _insert_timeline(conn, work.timeline, ids)
    await _insert_events(conn, evaluations, ids, now)
    return ids


async def _insert_new_incidents(
    conn: AsyncConnection, work: WorkSet, now: datetime
) -> dict[int, int]:
    new = sorted((i for i in work.dirty_incidents if i < 0), reverse=True)
    if not new:
        return {}
    rows = [_incident_row(work.incidents[i], now) for i in new]
    statement = incidents.insert().returning(incidents.c.id, sort_by_parameter_order=True)
    result = await conn.execute(statement, rows)
    return dict(zip(new, result.scalars().all(), strict=True))


async def _update_incidents(conn: AsyncConnection, work: WorkSet, now: datetime) -> None:
    rows = []
    for incident_id in sorted(i for i in work.dirty_incidents if i > 0):
        row = _incident_row(work.incidents[incident_id], now)
        row["b_id"] = incident_id
        rows.append(row)
    if rows:
        columns: dict[str, Any] = {name: bindparam(name) for name in rows[0] if name != "b_id"}
        statement = update(incidents).where(incidents.c.id == bindparam("b_id")).values(columns)
        await conn.execute(statement, rows)


async def _upsert_alerts(conn: AsyncConnection, work: WorkSet, ids: dict[int, int]) -> None:
    inserts: list[dict[str, Any]] = []
    full: list[dict[str, Any]] = []
    light: list[dict[str, Any]] = []
    for key in sorted(work.dirty_alerts):
        alert, before = work.alerts[key], work.loaded_alerts.get(key)
        if before is None:
            inserts.append(_alert_row(alert, ids))
        elif _only_volatile_changed(before, alert):
            light.append(_volatile_row(alert))
        else:
            full.append(_alert_row(alert, ids))
    if inserts:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = insert(alerts)
        changing = {n: statement.excluded[n] for n in inserts[0] if n not in _ALERT_KEY}
        upsert = statement.on_conflict_do_update(index_elements=list(_ALERT_KEY), set_=changing)
        await conn.execute(upsert, inserts)
    for rows in (full, light):
        if rows:
            for row in rows:
                row["b_source"] = row.pop("source")
                row["b_fingerprint"] = row.pop("fingerprint")
            await conn.execute(_update_alert(tuple(rows[0])), rows)


def _only_volatile_changed(before: AlertState, after: AlertState) -> bool:
    """A repeat: only counters and times moved, so the row update can skip labels and JSON."""
    return (
        before.annotations == after.annotations
        and before.severity is after.severity
        and before.incident_id == after.incident_id
        and before.rule == after.rule
        and before.starts_at == after.starts_at
        and before.generator_url == after.generator_url
        and before.group_key == after.group_key
        and before.flapping is after.flapping
        and before.maintenance is after.maintenance
    )


def _volatile_row(alert: AlertState) -> dict[str, Any]:
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


def _update_alert(columns: tuple[str, ...]) -> Update:
    key = (
        alerts.c.source == bindparam("b_source"),
        alerts.c.fingerprint == bindparam("b_fingerprint"),
    )
    values: dict[str, Any] = {
        name: bindparam(name) for name in columns if not name.startswith("b_")
    }
    return update(alerts).where(*key).values(values)


_ALERT_KEY = ("source", "fingerprint")


async def _insert_timeline(
    conn: AsyncConnection, entries: Sequence[TimelineEntry], ids: dict[int, int]
) -> None:
    if entries:
        rows = [
            {
                "incident_id": ids.get(e.incident_id, e.incident_id),
                "at": e.at,
                "kind": e.kind,
                "actor": e.actor,
                "message": e.message,
                "fingerprint": e.fingerprint,
            }
            for e in entries
        ]
        await conn.execute(timeline.insert(), rows)


async def _insert_events(
    conn: AsyncConnection, evaluations: Sequence[Evaluation], ids: dict[int, int], now: datetime
) -> None:
    rows = []
    for evaluation in evaluations:
        # A duplicate delivery changed nothing; it is counted in the metrics, not logged.
        if evaluation.dedup.outcome is DedupOutcome.DUPLICATE:
            continue
        event, alert = evaluation.event, evaluation.alert
        incident_id = alert.incident_id if alert is not None else None
        rows.append(
            {
                "received_at": now,
                "source": event.source,
                "fingerprint": event.fingerprint,
                "status": event.status,
                "outcome": evaluation.dedup.outcome,
                "incident_id": ids.get(incident_id, incident_id) if incident_id else None,
                "digest": event.digest,
            }
        )
    if rows:
        await conn.execute(events.insert(), rows)


def _incident_row(incident: IncidentState, now: datetime) -> dict[str, Any]:
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
    }


def _alert_row(alert: AlertState, ids: dict[int, int]) -> dict[str, Any]:
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
        "maintenance": alert.maintenance,
    }


def alert_from_row(row: Row[Any]) -> AlertState:
    return AlertState(
        source=row.source,
        fingerprint=row.fingerprint,
        status=AlertStatus(row.status),
        labels=row.labels,
        annotations=row.annotations,
        severity=Severity(row.severity),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        expires_at=row.expires_at,
        generator_url=row.generator_url,
        group_key=row.group_key,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        count=row._mapping["count"],
        digest=row.digest,
        incident_id=row.incident_id,
        rule=row.rule,
        flapping=row.flapping,
        maintenance=row.maintenance,
    )


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
    )
