"""Scheduled jobs run on one replica at a time: on PostgreSQL a job whose advisory lock another
replica holds is skipped (and counted); SQLite is a single node and always runs it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from bridge import jobs
from bridge.store import database
from tests.bridge.conftest import Bridge


async def test_a_job_held_by_another_replica_is_skipped(bridge: Bridge) -> None:
    runtime = bridge.runtime
    calls: list[str] = []

    async def job(_: object) -> int:
        calls.append("ran")
        return 0

    # Another engine on the same database stands for the other replica.
    other = database.create_engine(runtime.settings.effective_database_url)
    try:
        async with database.exclusive(other, "job:probe") as theirs:
            assert theirs
            await jobs.guarded("probe", job, runtime)()
        await jobs.guarded("probe", job, runtime)()
    finally:
        await other.dispose()
    postgres = runtime.engine.dialect.name == "postgresql"
    assert calls == (["ran"] if postgres else ["ran", "ran"])
    metrics = await (await bridge.client.get("/metrics")).text()
    skipped = 'bridge_job_runs_total{job="probe",result="skipped"} 1.0'
    assert (skipped in metrics) is postgres
    assert 'bridge_job_runs_total{job="probe",result="success"}' in metrics


async def test_the_lock_is_released_when_the_job_ends(bridge: Bridge) -> None:
    engine = bridge.runtime.engine
    async with database.exclusive(engine, "job:x") as first:
        assert first
    async with database.exclusive(engine, "job:x") as again:
        assert again


async def test_a_job_whose_lock_cannot_be_taken_counts_as_failed(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is away when the job starts: the run is a failure in the metrics and in
    the job's status, not an exception left to the scheduler."""

    @contextlib.asynccontextmanager
    async def away(engine: object, name: str) -> AsyncIterator[bool]:
        raise ConnectionRefusedError("connection refused")
        yield True  # pragma: no cover - makes this a generator

    async def job(_: object) -> int:
        raise AssertionError("ran without its lock")

    monkeypatch.setattr(database, "exclusive", away)
    await jobs.guarded("probe", job, bridge.runtime)()
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_job_runs_total{job="probe",result="failure"} 1.0' in metrics
    status = await bridge.get_json("/api/v1/status")
    assert "ConnectionRefusedError" in status["jobs"]["probe"]["last_error"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_held_job_lock_keeps_no_transaction_open(bridge: Bridge) -> None:
    """Open for the whole job, a transaction would hold back vacuum and be killed (lock and
    all) by `idle_in_transaction_session_timeout`."""
    engine = bridge.runtime.engine
    async with database.exclusive(engine, "job:x") as mine:
        assert mine
        async with engine.connect() as conn:
            query = text(
                "SELECT a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND a.datname = current_database()"
            )
            states = list((await conn.execute(query)).scalars())
    assert states == ["idle"]
