"""The store side of the engine's `World`: persist with placeholders, load back by lookups,
the schema's guarantees, and the migration from 0002 with rows in place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.store import admin, database, reads, repository, scans
from bridge.store.tables import alerts, events, incident_links, incidents, inhibitors, timeline
from rules.dedup import DedupDecision, DedupOutcome
from rules.effects import Evaluation, apply
from rules.evaluate import Lookups
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
    TimelineKind,
)
from rules.world import InhibitorChange, Link, World
from tests.rules.builders import T0, at, event

INHIBIT = ("node-down", "instance=db-01")
RECENT = T0 - timedelta(hours=1)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = database.create_engine(database_url)
    await database.upgrade(engine)
    yield engine
    await engine.dispose()


def alert(fingerprint: str = "fp1", **changes: Any) -> AlertState:
    base = AlertState(
        source="alertmanager",
        fingerprint=fingerprint,
        status=AlertStatus.FIRING,
        labels={"alertname": "DiskFull", "instance": "db-01:9100"},
        annotations={"summary": "disk full"},
        severity=Severity.MAJOR,
        starts_at=T0,
        ends_at=None,
        expires_at=at(300),
        generator_url="http://prometheus/graph",
        group_key='{}:{alertname="DiskFull"}',
        first_seen=T0,
        last_seen=T0,
        count=1,
        digest=f"digest-{fingerprint}",
        incident_id=None,
        rule=None,
    )
    return replace(base, **changes)


def incident(incident_id: int, key: str = "disk:db-01", **changes: Any) -> IncidentState:
    base = IncidentState(
        id=incident_id,
        key=key,
        rule="disk",
        title="Disk full on db-01",
        severity=Severity.MAJOR,
        status=IncidentStatus.NEW,
        opened_at=T0,
        acknowledged_at=None,
        resolved_at=None,
        first_alert_at=T0,
        last_alert_at=T0,
        firing_alerts=1,
        alert_count=1,
        reopen_count=0,
    )
    return replace(base, **changes)


def problem(problem_id: int, **changes: Any) -> ProblemState:
    base = ProblemState(
        id=problem_id,
        key="recurring:disk:db-01",
        rule="recurring",
        title="Recurring: Disk full on db-01",
        status=ProblemStatus.OPEN,
        opened_at=T0,
        updated_at=T0,
        incident_count=1,
        ci="db-01",
    )
    return replace(base, **changes)


def evaluation(
    outcome: DedupOutcome = DedupOutcome.NEW, fingerprint: str = "fp1", **parts: Any
) -> Evaluation:
    return Evaluation(event=event(fingerprint), dedup=DedupDecision(outcome, None), at=T0, **parts)


async def persist(engine: AsyncEngine, world: World, *done: Evaluation) -> dict[int, int]:
    async with engine.begin() as conn:
        return await repository.persist_world(conn, world, done, T0)


async def load(engine: AsyncEngine, found: Lookups, incident_ids: tuple[int, ...] = ()) -> World:
    async with engine.connect() as conn:
        return await repository.load_world(conn, found, incident_ids, RECENT)


async def count(conn: AsyncConnection, table: Any) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_world_round_trip_with_placeholders(engine: AsyncEngine) -> None:
    world = World()
    problem_id, first_id, second_id = world.new_id(), world.new_id(), world.new_id()
    new_problem = problem(problem_id)
    first = incident(first_id, ci="db-01", service="billing", priority=2, problem_id=problem_id)
    second = incident(second_id, key="disk:all", rule="disk-all", seq=4)
    member = alert(
        incident_id=first_id, rule="disk", hold=Hold.NONE, incident_key="disk:db-01",
        reason=JoinReason.OPENED, also=(second_id,), history="FRF", changed_at=at(5),
        flapping=True,
    )  # fmt: skip
    held = alert("fp2", hold=Hold.INHIBITED, held_by="node-down", incident_key="disk:db-01")
    link = Link(first_id, "alertmanager", "fp1", "disk", JoinReason.OPENED, T0)
    other_source = (("alertmanager", "node1"), ("alertmanager", "node2"))
    opened = evaluation(
        alerts=(member, held),
        incidents=(first, second),
        problems=(new_problem,),
        links=(link, replace(link, incident_id=second_id, reason=JoinReason.CONTINUED)),
        timeline=(TimelineEntry(first_id, T0, TimelineKind.OPENED, "rule:disk", "opened"),),
        inhibitors=(
            InhibitorChange(INHIBIT, other_source[0], True),
            InhibitorChange(INHIBIT, other_source[1], True),
            InhibitorChange(INHIBIT, other_source[0], False),
        ),
        beats=("watchdog",),
    )
    apply(world, opened)
    unlogged = (evaluation(DedupOutcome.DUPLICATE, "fp2"), evaluation(DedupOutcome.RECHECK, "fp2"))
    ids = await persist(engine, world, opened, *unlogged)

    assert set(ids) == {problem_id, first_id, second_id}
    assert all(stored > 0 for stored in ids.values())
    assert ids[first_id] < ids[second_id]  # in the order the placeholders were handed out
    found = Lookups(
        # The heartbeat's alert: a batch that may read heartbeats asks for it (see lookups).
        alerts={("alertmanager", "fp1"), ("alertmanager", "fp2"), ("heartbeat", "watchdog")},
        inhibit_keys={INHIBIT},
        problem_keys={new_problem.key},
    )
    loaded = await load(engine, found)
    assert loaded.alerts[("alertmanager", "fp1")] == replace(
        member, incident_id=ids[first_id], also=(ids[second_id],)
    )
    assert loaded.alerts[("alertmanager", "fp2")] == held
    assert loaded.incidents == {
        ids[first_id]: replace(first, id=ids[first_id], problem_id=ids[problem_id]),
        ids[second_id]: replace(second, id=ids[second_id]),
    }
    assert loaded.problems == {ids[problem_id]: replace(new_problem, id=ids[problem_id])}
    assert loaded.problem(new_problem.key) == loaded.problems[ids[problem_id]]
    assert loaded.inhibitors == {INHIBIT: {other_source[1]}}
    assert loaded.inhibitor(INHIBIT, ("alertmanager", "fp2")) == other_source[1]
    assert loaded.heartbeats == {"watchdog": T0}
    assert loaded.loaded_status == {ids[first_id]: IncidentStatus.NEW, ids[second_id]: "new"}
    async with engine.connect() as conn:
        logged = (await conn.execute(select(events))).all()
        links = (await conn.execute(select(incident_links).order_by(incident_links.c.id))).all()
        entries = (await conn.execute(select(timeline))).all()
    # One row for the new alert; the duplicate delivery and the recheck are not logged.
    assert [(e.fingerprint, e.outcome, e.incident_id) for e in logged] == [
        ("fp1", "new", ids[first_id])
    ]
    assert [(r.incident_id, r.fingerprint, r.rule, r.reason, r.at) for r in links] == [
        (ids[first_id], "fp1", "disk", "opened", T0),
        (ids[second_id], "fp1", "disk", "continued", T0),
    ]
    assert [(e.incident_id, e.kind) for e in entries] == [(ids[first_id], "opened")]


async def test_updates_after_reload(engine: AsyncEngine) -> None:
    world = World()
    problem_id, incident_id = world.new_id(), world.new_id()
    waiting = alert("fp2", hold=Hold.PENDING, held_by="disk", incident_key="disk:db-01")
    opened = evaluation(
        alerts=(alert(incident_id=incident_id), waiting),
        incidents=(incident(incident_id, problem_id=problem_id),),
        problems=(problem(problem_id),),
        inhibitors=(InhibitorChange(INHIBIT, ("alertmanager", "fp1"), True),),
        beats=("watchdog",),
    )
    apply(world, opened)
    ids = await persist(engine, world, opened)
    stored_incident, stored_problem = ids[incident_id], ids[problem_id]
    # An operator marks the problem a known error while the engine holds the old state.
    async with engine.begin() as conn:
        edited = await admin.update_problem(
            conn, stored_problem, "known_error", "full disk", None, at(1)
        )
    assert edited is not None
    assert (edited["status"], edited["root_cause"], edited["workaround"]) == (
        "known_error", "full disk", "",
    )  # fmt: skip

    found = Lookups(
        alerts={("alertmanager", "fp1"), ("heartbeat", "watchdog")}, incident_keys={"disk:db-01"}
    )
    found.inhibit_keys.add(INHIBIT)
    world = await load(engine, found)
    assert world.pending("disk:db-01") == [waiting]
    before = world.alerts[("alertmanager", "fp1")]
    repeat = replace(before, count=2, last_seen=at(30), digest="d2")  # the light update
    released = replace(
        waiting, hold=Hold.NONE, held_by="", incident_id=stored_incident, reason=JoinReason.RELEASED
    )
    resolved = replace(
        world.incidents[stored_incident], status=IncidentStatus.RESOLVED, resolved_at=at(30)
    )
    linked = replace(world.problems[stored_problem], incident_count=2, updated_at=at(30))
    later = evaluation(
        DedupOutcome.REPEAT,
        alerts=(repeat, released),
        incidents=(resolved,),
        problems=(linked,),
        inhibitors=(InhibitorChange(INHIBIT, ("alertmanager", "fp1"), False),),
    )
    apply(world, later)
    world.beat("watchdog", at(30))
    assert await persist(engine, world, later) == {}

    found.alerts.add(("alertmanager", "fp2"))  # no longer pending: loaded by its own key
    world = await load(engine, found, (stored_incident,))
    assert world.alerts[("alertmanager", "fp1")] == repeat
    assert world.alerts[("alertmanager", "fp2")] == released
    assert world.pending("disk:db-01") == []
    assert world.incidents[stored_incident] == resolved
    assert world.problems[stored_problem] == replace(
        linked, status=ProblemStatus.KNOWN_ERROR, root_cause="full disk"
    )
    assert world.inhibitors == {}
    assert world.heartbeats == {"watchdog": at(30)}
    async with engine.connect() as conn:
        assert await count(conn, inhibitors) == 0
        assert await repository.heartbeat_times(conn) == {"watchdog": at(30)}


async def test_pending_alerts_of_a_key_are_loaded(engine: AsyncEngine) -> None:
    world = World()
    key = "disk:db-01"
    rows = (
        alert("pending", hold=Hold.PENDING, held_by="disk", incident_key=key),
        alert("resolved", hold=Hold.PENDING, incident_key=key, status=AlertStatus.RESOLVED),
        alert("placed", hold=Hold.NONE, incident_key=key),
        alert("elsewhere", hold=Hold.PENDING, incident_key="disk:db-02"),
    )
    for row in rows:
        world.put_alert(row)
    await persist(engine, world)

    loaded = await load(engine, Lookups(incident_keys={key}))
    assert loaded.pending(key) == [rows[0]]
    assert set(loaded.alerts) == {("alertmanager", "pending")}
    assert loaded.latest_for_key(key) is None


async def test_latest_and_recent_incidents_of_a_key(engine: AsyncEngine) -> None:
    old = T0 - timedelta(days=30)
    world = World()
    closed = {"status": IncidentStatus.RESOLVED, "resolved_at": old, "opened_at": old}
    seeded = [
        incident(world.new_id(), "a", seq=0, **closed),
        incident(world.new_id(), "a", seq=1, **closed),  # the latest of "a", however old
        incident(world.new_id(), "b", seq=0, opened_at=at(-60)),
        incident(world.new_id(), "b", seq=1, opened_at=at(-30)),  # both recent
        incident(world.new_id(), "c", seq=0, opened_at=old, ci="db-01"),  # active, on the CI
        incident(world.new_id(), "d", seq=0, ci="db-01", **closed),  # old and resolved
        incident(world.new_id(), "e", seq=0, ci="db-02"),
    ]
    for row in seeded:
        world.put_incident(row)
    ids = await persist(engine, world)

    loaded = await load(engine, Lookups(incident_keys={"a", "b"}, cis={"db-01"}))
    stored = [ids[row.id] for row in seeded]
    assert set(loaded.incidents) == {stored[1], stored[2], stored[3], stored[4]}
    latest_a = loaded.latest_for_key("a")
    latest_b = loaded.latest_for_key("b")
    assert latest_a is not None
    assert latest_a.id == stored[1]
    assert latest_b is not None
    assert latest_b.seq == 1
    active = loaded.active_for_ci("db-01", lambda rule: True)
    assert active is not None
    assert active.id == stored[4]

    by_id = await load(engine, Lookups(), (stored[0],))
    assert set(by_id.incidents) == {stored[0]}


async def test_one_incident_per_key_and_generation(engine: AsyncEngine) -> None:
    for generation in (0, 1):
        world = World()
        world.put_incident(incident(world.new_id(), seq=generation))
        await persist(engine, world)  # an older generation may stay active
    world = World()
    world.put_incident(incident(world.new_id(), seq=1))
    with pytest.raises(IntegrityError):
        await persist(engine, world)


async def test_incident_detail_lists_linked_and_older_members(engine: AsyncEngine) -> None:
    world = World()
    first_id, other_id = world.new_id(), world.new_id()
    first = evaluation(
        alerts=(
            alert("a", incident_id=first_id, rule="disk", hold=Hold.NONE),
            alert("b", incident_id=other_id, rule="disk", also=(first_id,)),
        ),
        incidents=(incident(first_id), incident(other_id, key="other")),
        links=(
            Link(first_id, "alertmanager", "a", "disk", JoinReason.OPENED, T0),
            Link(first_id, "alertmanager", "b", "disk", JoinReason.GROUPED, at(10)),
            Link(first_id, "alertmanager", "b", "disk-all", JoinReason.RELEASED, at(20)),
            Link(other_id, "alertmanager", "b", "other", JoinReason.OPENED, at(10)),
        ),
    )
    apply(world, first)
    ids = await persist(engine, world, first)
    stored = ids[first_id]
    async with engine.begin() as conn:  # a member from before links were recorded
        await conn.execute(
            alerts.insert(), repository_row(alert("legacy", incident_id=stored, rule="disk"))
        )
        detail = await reads.get_incident(conn, stored)
        listed = await reads.list_incidents(conn, None, 10, 0)

    assert detail is not None
    members = [
        (m["fingerprint"], m["joined_rule"], m["joined_reason"], m["joined_at"])
        for m in detail["alerts"]
    ]
    assert members == [
        ("legacy", "disk", None, None),
        ("a", "disk", "opened", T0),
        ("b", "disk-all", "released", at(20)),
    ]
    assert detail["alerts"][2]["also"] == [stored]
    assert detail["alerts"][1]["hold"] == "none"
    assert (detail["priority"], detail["priority_level"], detail["seq"]) == ("P3", 3, 0)
    assert {i["id"] for i in listed} == set(ids.values())
    assert {"ci", "service", "problem_id"} <= set(listed[0])


def repository_row(state: AlertState) -> dict[str, Any]:
    row = {
        name: getattr(state, name)
        for name in (
            "source", "fingerprint", "status", "severity", "starts_at", "ends_at",
            "expires_at", "generator_url", "group_key", "first_seen", "last_seen", "count",
            "digest", "incident_id", "rule",
        )
    }  # fmt: skip
    return {**row, "labels": dict(state.labels), "annotations": dict(state.annotations)}


async def test_held_alerts_and_hold_filter(engine: AsyncEngine) -> None:
    world = World()
    rows = (
        alert("inhibited", hold=Hold.INHIBITED, held_by="node-down", last_seen=at(3)),
        alert("maintenance", hold=Hold.MAINTENANCE, held_by="patching", last_seen=at(1)),
        alert("pending", hold=Hold.PENDING, held_by="disk", last_seen=at(2)),
        alert("flapping", flapping=True, status=AlertStatus.RESOLVED, last_seen=at(4)),
        alert("heartbeat", hold=Hold.HEARTBEAT, last_seen=at(0)),
        alert("resolved", hold=Hold.INHIBITED, status=AlertStatus.RESOLVED),
        alert("plain"),
    )
    for row in rows:
        world.put_alert(row)
    await persist(engine, world)
    async with engine.connect() as conn:
        held = await scans.held_alerts(conn, 10)
        first_two = await scans.held_alerts(conn, 2)
        next_two = await scans.held_alerts(conn, 2, after_id=first_two[-1][0])
        inhibited = await reads.list_alerts(conn, None, None, 10, 0, hold="inhibited")
    # Rows are written in key order, and the job pages through them in row order.
    names = [fingerprint for _, (_, fingerprint) in held]
    assert names == ["flapping", "inhibited", "maintenance", "pending"]
    assert [f for _, (_, f) in first_two + next_two] == names
    assert [(a["fingerprint"], a["held_by"]) for a in inhibited] == [
        ("inhibited", "node-down"),
        ("resolved", ""),
    ]


async def test_problems_read_and_edit(engine: AsyncEngine) -> None:
    world = World()
    problem_id, incident_id = world.new_id(), world.new_id()
    world.put_problem(problem(problem_id))
    world.put_incident(incident(incident_id, problem_id=problem_id))
    ids = await persist(engine, world)
    stored = ids[problem_id]
    async with engine.begin() as conn:
        detail = await reads.get_problem(conn, stored)
        active = await reads.list_problems(conn, "active", 10, 0)
        resolved = await admin.update_problem(conn, stored, "resolved", None, "df", at(5))
        again = await admin.update_problem(conn, stored, "resolved", None, None, at(9))
        missing = await admin.update_problem(conn, stored + 100, None, "x", None, at(9))
        none_active = await reads.list_problems(conn, "active", 10, 0)
    assert detail is not None
    assert detail["incidents"] == [
        {"id": ids[incident_id], "title": "Disk full on db-01", "status": "new", "opened_at": T0}
    ]
    assert [p["id"] for p in active] == [stored]
    assert resolved is not None
    assert again is not None
    assert (resolved["status"], resolved["workaround"], resolved["resolved_at"]) == (
        "resolved", "df", at(5),
    )  # fmt: skip
    assert (again["resolved_at"], again["updated_at"]) == (at(5), at(9))
    assert missing is None
    assert none_active == []


async def test_maintenance_windows(engine: AsyncEngine) -> None:
    spec = {"name": "patching", "matchers": ["instance=~db-.*"], "start": "2026-11-24T22:00Z"}
    async with engine.begin() as conn:
        first = await admin.insert_window(conn, "patching", spec, "ops", "kernel", "CHG1", T0)
        second = await admin.insert_window(conn, "other", {}, "ops", "", "", T0)
        assert await admin.delete_window(conn, second, "alice", at(60))
        assert not await admin.delete_window(conn, second, "alice", at(60))
        live = await admin.list_windows(conn, include_deleted=False)
        every = await admin.list_windows(conn, include_deleted=True)
    assert [w["id"] for w in live] == [first]
    assert live[0]["spec"] == spec
    assert (live[0]["created_by"], live[0]["reason"], live[0]["change_ref"]) == (
        "ops", "kernel", "CHG1",
    )  # fmt: skip
    assert [(w["id"], w["deleted_by"], w["deleted_at"]) for w in every] == [
        (first, None, None),
        (second, "alice", at(60)),
    ]


def _migrate(connection: Connection, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS))
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


async def _empty(engine: AsyncEngine) -> None:
    """A database with no schema at all (the PostgreSQL one is shared by the session)."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))


def _old_incident(**changes: Any) -> dict[str, Any]:
    row = {
        "key": "disk:db-01", "rule": "disk", "title": "Disk full", "severity": "major",
        "status": "new", "opened_at": T0, "acknowledged_at": None, "resolved_at": None,
        "first_alert_at": T0, "last_alert_at": T0, "firing_alerts": 1, "alert_count": 1,
        "reopen_count": 0, "updated_at": T0,
    }  # fmt: skip
    return {**row, **changes}


async def test_upgrade_from_0002_keeps_rows(database_url: str) -> None:
    engine = database.create_engine(database_url)
    await _empty(engine)
    async with engine.begin() as conn:
        await conn.run_sync(_migrate, "0002")
    # Rows as 0002 had them: two incidents of one key, one resolved, and a member alert.
    async with engine.begin() as conn:
        resolved = _old_incident(status="resolved", resolved_at=at(-10), opened_at=at(-60))
        stored = []
        for row in (resolved, _old_incident()):
            result = await conn.execute(incidents.insert().returning(incidents.c.id), row)
            stored.append(result.scalar_one())
        await conn.execute(alerts.insert(), repository_row(alert(incident_id=stored[1])))
    await database.upgrade(engine)
    assert await database.schema_is_current(engine)

    found = Lookups(alerts={("alertmanager", "fp1")}, incident_keys={"disk:db-01"})
    world = await load(engine, found)
    assert world.alerts[("alertmanager", "fp1")] == alert(incident_id=stored[1])
    assert sorted(
        (i.id, i.seq, i.priority, i.ci, i.problem_id) for i in world.incidents.values()
    ) == [
        (stored[0], 0, 3, None, None),
        (stored[1], 1, 3, None, None),
    ]
    async with engine.connect() as conn:
        detail = await reads.get_incident(conn, stored[1])
    assert detail is not None
    assert [(a["fingerprint"], a["joined_reason"]) for a in detail["alerts"]] == [("fp1", None)]

    # The engine's next generation of the key fits, and the downgrade works with new rows.
    world.put_incident(incident(world.new_id(), "disk:db-01", seq=2))
    await persist(engine, world)
    async with engine.begin() as conn:
        await conn.execute(incidents.update().where(incidents.c.seq < 2).values(status="resolved"))
        await conn.run_sync(_migrate, "0002", down=True)
    async with engine.begin() as conn:
        await conn.run_sync(_migrate, "head")
        seqs = (await conn.execute(select(incidents.c.seq).order_by(incidents.c.id))).scalars()
        assert list(seqs) == [0, 1, 2]
    await engine.dispose()
