"""Loads the `World` a batch needs and persists what the stages changed, on one connection;
also the pipeline's queries for the scheduled jobs (expired, held and firing alerts).

Rows <-> domain values are converted in `rows`; the writes people make through the API
(maintenance windows, problem edits) are in `admin`. All statements are Core and batched
(`executemany`), so one group commit costs a handful of round trips whatever its size.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Update, and_, bindparam, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.rows import (
    alert_from_row,
    alert_row,
    event_row,
    incident_from_row,
    incident_row,
    link_row,
    problem_from_row,
    problem_row,
    stable_alert_fields,
    timeline_row,
    volatile_alert_row,
)
from bridge.store.tables import (
    alerts,
    events,
    heartbeats,
    incident_links,
    incidents,
    inhibitors,
    problems,
    timeline,
)
from rules.dedup import DedupOutcome
from rules.heartbeats import SOURCE as HEARTBEAT_SOURCE
from rules.model import (
    AlertState,
    AlertStatus,
    Hold,
    IncidentState,
    IncidentStatus,
    ProblemState,
    ProblemStatus,
    TimelineEntry,
)
from rules.world import AlertKey, InhibitKey, InhibitorChange, Link, World

if TYPE_CHECKING:
    from rules.effects import Evaluation
    from rules.evaluate import Lookups

_CHUNK = 400
# Evaluations that changed nothing worth a row in the event log (counted in the metrics).
_UNLOGGED = (DedupOutcome.DUPLICATE, DedupOutcome.RECHECK)


def _chunks(items: Collection[Any]) -> Iterable[Sequence[Any]]:
    ordered = sorted(items)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


# Loading


async def load_world(
    conn: AsyncConnection,
    lookups: Lookups,
    incident_ids: Iterable[int],
    recent_since: datetime,
    known: Mapping[AlertKey, AlertState] | None = None,
    checked: Collection[AlertKey] = (),
) -> World:
    """The rows the stages may read for a batch (see `rules.evaluate.lookups`): its alerts and
    the pending alerts of its incident keys, the incidents those alerts joined, the latest and
    recent incidents of its keys, the active or recent incidents of its CIs, its problems and
    inhibitors, and every heartbeat. `known` are alerts the caller loaded already, `checked`
    the keys it looked up (found or not), so that neither is asked for again."""
    found = dict(known or {})
    found.update(await _alerts_by_key(conn, lookups.alerts - found.keys() - set(checked)))
    for key, alert in (await _pending_alerts(conn, lookups.incident_keys)).items():
        found.setdefault(key, alert)
    wanted = set(incident_ids)
    for alert in found.values():
        wanted.update(alert.incident_ids)
    loaded = await _incidents(conn, wanted, lookups.incident_keys, lookups.cis, recent_since)
    problem_ids = {i.problem_id for i in loaded.values() if i.problem_id is not None}
    world = World()
    world.load_alerts(found.values())
    world.load_incidents(loaded.values())
    world.load_problems(await _problems(conn, lookups.problem_keys, problem_ids))
    for inhibit_key, alert_key in await _inhibitors(conn, lookups.inhibit_keys):
        world.load_inhibitor(inhibit_key, alert_key)
    if any(source == HEARTBEAT_SOURCE for source, _ in lookups.alerts):
        world.heartbeats = await heartbeat_times(conn)  # only a heartbeat's event reads them
    return world


async def load_alerts(conn: AsyncConnection, keys: Collection[AlertKey]) -> list[AlertState]:
    return list((await _alerts_by_key(conn, keys)).values())


async def _alerts_by_key(
    conn: AsyncConnection, keys: Collection[AlertKey]
) -> dict[AlertKey, AlertState]:
    # One query per source with `fingerprint IN (...)`: both columns of the unique index are
    # then constrained, which SQLite uses; a row-value IN over (source, fingerprint) pairs made
    # it scan the table once per chunk.
    by_source: dict[str, list[str]] = {}
    for source, fingerprint in keys:
        by_source.setdefault(source, []).append(fingerprint)
    found: dict[AlertKey, AlertState] = {}
    for source, fingerprints in sorted(by_source.items()):
        for chunk in _chunks(fingerprints):
            query = select(alerts).where(alerts.c.source == source, alerts.c.fingerprint.in_(chunk))
            for row in await conn.execute(query):
                alert = alert_from_row(row)
                found[(alert.source, alert.fingerprint)] = alert
    return found


async def _pending_alerts(
    conn: AsyncConnection, keys: Collection[str]
) -> dict[AlertKey, AlertState]:
    found: dict[AlertKey, AlertState] = {}
    for chunk in _chunks(keys):
        query = select(alerts).where(
            alerts.c.incident_key.in_(chunk),
            alerts.c.hold == Hold.PENDING,
            alerts.c.status == AlertStatus.FIRING,
        )
        for row in await conn.execute(query):
            found[(row.source, row.fingerprint)] = alert_from_row(row)
    return found


async def _incidents(
    conn: AsyncConnection,
    ids: Collection[int],
    keys: Collection[str],
    cis: Collection[str],
    since: datetime,
) -> dict[int, IncidentState]:
    """Incidents by id, the latest and recent ones of `keys`, the active or recent ones of
    `cis`: in one statement when each list fits one chunk (the usual batch), as every
    statement is a round trip through the driver."""
    if max(len(ids), len(keys), len(cis)) > _CHUNK:
        found = await _incidents_by_id(conn, ids)
        found.update(await _incidents_by_key(conn, keys, since))
        found.update(await _incidents_by_ci(conn, cis, since))
        return found
    terms: list[ColumnElement[bool]] = []
    if ids:
        terms.append(incidents.c.id.in_(sorted(ids)))
    if keys:
        terms.append(_of_keys(sorted(keys), since))
    if cis:
        terms.append(and_(incidents.c.ci.in_(sorted(cis)), _live(since)))
    if not terms:
        return {}
    result = await conn.execute(select(incidents).where(or_(*terms)))
    return {row.id: incident_from_row(row) for row in result}


def _of_keys(keys: Sequence[str], since: datetime) -> ColumnElement[bool]:
    """The latest incident of each key (any status, any age) and those opened since `since`."""
    latest = (
        select(func.max(incidents.c.id)).where(incidents.c.key.in_(keys)).group_by(incidents.c.key)
    )
    return and_(
        incidents.c.key.in_(keys), or_(incidents.c.opened_at >= since, incidents.c.id.in_(latest))
    )


def _live(since: datetime) -> ColumnElement[bool]:
    ended = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)
    return or_(incidents.c.status.notin_(ended), incidents.c.opened_at >= since)


async def load_incidents(conn: AsyncConnection, ids: Collection[int]) -> dict[int, IncidentState]:
    return await _incidents_by_id(conn, ids)


async def _incidents_by_id(conn: AsyncConnection, ids: Collection[int]) -> dict[int, IncidentState]:
    found: dict[int, IncidentState] = {}
    for chunk in _chunks(ids):
        result = await conn.execute(select(incidents).where(incidents.c.id.in_(chunk)))
        found.update((row.id, incident_from_row(row)) for row in result)
    return found


async def _incidents_by_key(
    conn: AsyncConnection, keys: Collection[str], since: datetime
) -> dict[int, IncidentState]:
    """The latest incident of each key (any status, any age) and those opened since `since`."""
    found: dict[int, IncidentState] = {}
    for chunk in _chunks(keys):
        query = select(incidents).where(_of_keys(chunk, since))
        found.update((row.id, incident_from_row(row)) for row in await conn.execute(query))
    return found


async def _incidents_by_ci(
    conn: AsyncConnection, cis: Collection[str], since: datetime
) -> dict[int, IncidentState]:
    found: dict[int, IncidentState] = {}
    for chunk in _chunks(cis):
        query = select(incidents).where(incidents.c.ci.in_(chunk), _live(since))
        found.update((row.id, incident_from_row(row)) for row in await conn.execute(query))
    return found


async def _problems(
    conn: AsyncConnection, keys: Collection[str], ids: Collection[int]
) -> list[ProblemState]:
    """The active problems of `keys`, and the problems `ids` whatever their status."""
    found: dict[int, ProblemState] = {}
    active = problems.c.status != ProblemStatus.RESOLVED
    for chunk in _chunks(keys):
        query = select(problems).where(problems.c.key.in_(chunk), active)
        found.update((row.id, problem_from_row(row)) for row in await conn.execute(query))
    for chunk in _chunks(ids):
        query = select(problems).where(problems.c.id.in_(chunk))
        found.update((row.id, problem_from_row(row)) for row in await conn.execute(query))
    return list(found.values())


async def _inhibitors(
    conn: AsyncConnection, keys: Collection[InhibitKey]
) -> list[tuple[InhibitKey, AlertKey]]:
    found: list[tuple[InhibitKey, AlertKey]] = []
    for chunk in _chunks(keys):
        pair = tuple_(inhibitors.c.rule, inhibitors.c.key)
        for row in await conn.execute(select(inhibitors).where(pair.in_(chunk))):
            found.append(((row.rule, row.key), (row.source, row.fingerprint)))
    return found


async def heartbeat_times(conn: AsyncConnection) -> dict[str, datetime]:
    query = select(heartbeats.c.name, heartbeats.c.last_beat_at)
    return {row.name: row.last_beat_at for row in await conn.execute(query)}


# Persisting


async def persist_world(
    conn: AsyncConnection, world: World, evaluations: Sequence[Evaluation], now: datetime
) -> dict[int, int]:
    """Write everything dirty in `world`; returns the placeholder -> database id mapping
    (incidents and problems share the placeholder space)."""
    ids = await _insert_new(conn, world, now)
    await _update_incidents(conn, world, ids, now)
    await _update_problems(conn, world)
    await _upsert_alerts(conn, world, ids)
    await _insert_links(conn, world.links, ids)
    await _insert_timeline(conn, world.timeline, ids)
    await _apply_inhibitor_changes(conn, world.inhibitor_changes)
    await _upsert_heartbeats(conn, {n: world.heartbeats[n] for n in world.dirty_heartbeats})
    await _insert_events(conn, evaluations, ids, now)
    return ids


async def _insert_new(conn: AsyncConnection, world: World, now: datetime) -> dict[int, int]:
    """Problems first (new incidents may link to them), each in the order its placeholders
    were handed out, so that ids keep the engine's order."""
    ids: dict[int, int] = {}
    new_problems = sorted((i for i in world.dirty_problems if i < 0), reverse=True)
    if new_problems:
        rows = [problem_row(world.problems[i], now) for i in new_problems]
        statement = problems.insert().returning(problems.c.id, sort_by_parameter_order=True)
        result = await conn.execute(statement, rows)
        ids.update(zip(new_problems, result.scalars().all(), strict=True))
    new_incidents = sorted((i for i in world.dirty_incidents if i < 0), reverse=True)
    if new_incidents:
        rows = [incident_row(world.incidents[i], ids, now) for i in new_incidents]
        statement = incidents.insert().returning(incidents.c.id, sort_by_parameter_order=True)
        result = await conn.execute(statement, rows)
        ids.update(zip(new_incidents, result.scalars().all(), strict=True))
    return ids


async def _update_incidents(
    conn: AsyncConnection, world: World, ids: dict[int, int], now: datetime
) -> None:
    rows = []
    for incident_id in sorted(i for i in world.dirty_incidents if i > 0):
        row = incident_row(world.incidents[incident_id], ids, now)
        row["b_id"] = incident_id
        rows.append(row)
    if rows:
        columns: dict[str, Any] = {name: bindparam(name) for name in rows[0] if name != "b_id"}
        statement = update(incidents).where(incidents.c.id == bindparam("b_id")).values(columns)
        await conn.execute(statement, rows)


async def _update_problems(conn: AsyncConnection, world: World) -> None:
    """The engine only links incidents to a stored problem: it writes the count and time, and
    never the status, root cause or workaround that the API may be editing meanwhile."""
    rows = [
        {"b_id": p.id, "incident_count": p.incident_count, "updated_at": p.updated_at}
        for p in (world.problems[i] for i in sorted(world.dirty_problems) if i > 0)
    ]
    if rows:
        columns: dict[str, Any] = {n: bindparam(n) for n in ("incident_count", "updated_at")}
        statement = update(problems).where(problems.c.id == bindparam("b_id")).values(columns)
        await conn.execute(statement, rows)


async def _upsert_alerts(conn: AsyncConnection, world: World, ids: dict[int, int]) -> None:
    inserts: list[dict[str, Any]] = []
    full: list[dict[str, Any]] = []
    light: list[dict[str, Any]] = []
    for key in sorted(world.dirty_alerts):
        alert, before = world.alerts[key], world.loaded_alerts.get(key)
        if before is None:
            inserts.append(alert_row(alert, ids))
        elif stable_alert_fields(before) == stable_alert_fields(alert):
            light.append(volatile_alert_row(alert))
        else:
            full.append(alert_row(alert, ids))
    if inserts:
        statement = _insert(conn, alerts)
        changing = {n: statement.excluded[n] for n in inserts[0] if n not in _ALERT_KEY}
        upsert = statement.on_conflict_do_update(index_elements=list(_ALERT_KEY), set_=changing)
        await conn.execute(upsert, inserts)
    for rows in (full, light):
        if rows:
            for row in rows:
                row["b_source"] = row.pop("source")
                row["b_fingerprint"] = row.pop("fingerprint")
            await conn.execute(_update_alert(tuple(rows[0])), rows)


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


def _insert(conn: AsyncConnection, table: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


async def _insert_links(conn: AsyncConnection, links: Sequence[Link], ids: dict[int, int]) -> None:
    if links:
        await conn.execute(incident_links.insert(), [link_row(link, ids) for link in links])


async def _insert_timeline(
    conn: AsyncConnection, entries: Sequence[TimelineEntry], ids: dict[int, int]
) -> None:
    if entries:
        await conn.execute(timeline.insert(), [timeline_row(entry, ids) for entry in entries])


async def _apply_inhibitor_changes(
    conn: AsyncConnection, changes: Sequence[InhibitorChange]
) -> None:
    # Each change sets or clears one row, so the last change of a row decides its state.
    final: dict[tuple[str, str, str, str], bool] = {}
    for change in changes:
        final[(*change.key, *change.alert)] = change.active
    added: list[dict[str, str]] = []
    removed: list[dict[str, str]] = []
    for values, active in sorted(final.items()):
        if active:
            added.append(dict(zip(_INHIBITOR_KEY, values, strict=True)))
        else:
            removed.append({f"b_{n}": v for n, v in zip(_INHIBITOR_KEY, values, strict=True)})
    if added:
        await conn.execute(_insert(conn, inhibitors).on_conflict_do_nothing(), added)
    if removed:
        statement = inhibitors.delete().where(
            *(inhibitors.c[name] == bindparam(f"b_{name}") for name in _INHIBITOR_KEY)
        )
        await conn.execute(statement, removed)


_INHIBITOR_KEY = ("rule", "key", "source", "fingerprint")


async def _upsert_heartbeats(conn: AsyncConnection, beats: dict[str, datetime]) -> None:
    if beats:
        rows = [{"name": name, "last_beat_at": at} for name, at in sorted(beats.items())]
        statement = _insert(conn, heartbeats)
        upsert = statement.on_conflict_do_update(
            index_elements=["name"], set_={"last_beat_at": statement.excluded.last_beat_at}
        )
        await conn.execute(upsert, rows)


async def _insert_events(
    conn: AsyncConnection, evaluations: Sequence[Evaluation], ids: dict[int, int], now: datetime
) -> None:
    # A duplicate delivery or a recheck changed no state worth logging; both are counted.
    rows = [event_row(e, ids, now) for e in evaluations if e.dedup.outcome not in _UNLOGGED]
    if rows:
        await conn.execute(events.insert(), rows)
