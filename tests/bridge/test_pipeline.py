"""The writer: group commit, durability before the answer, outage and recovery."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import (
    CompileError,
    DBAPIError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bridge.errors import StoreRefused, StoreUnavailable
from bridge.ingest import Pipeline
from bridge.metrics import Metrics
from bridge.store import database, repository
from bridge.store.failures import is_transient
from bridge.store.tables import alerts
from rules.evaluate import EngineSettings
from rules.ruleset import RuleSet
from tests.bridge.conftest import CAPTURED, PG_ADMIN_DSN, Bridge, FakeClock
from tests.rules.builders import event

SETTINGS = EngineSettings(duplicate_window=timedelta(minutes=1), reopen_window=timedelta(hours=1))


def sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def test_concurrent_submissions_share_one_commit(database_url: str, clock: FakeClock) -> None:
    engine = database.create_engine(database_url)
    await database.upgrade(engine)
    metrics = Metrics("test")
    pipeline = Pipeline(engine, clock, RuleSet, SETTINGS, metrics, commit_max_events=5000)
    submissions = [
        asyncio.create_task(pipeline.submit([event(f"fp{i}", group_key=None)])) for i in range(20)
    ]
    await asyncio.sleep(0)  # let every request enqueue before the writer starts
    pipeline.start()
    await asyncio.gather(*submissions)
    await pipeline.stop()
    assert sample(metrics, "bridge_commit_events_count") == 1
    assert sample(metrics, "bridge_commit_events_sum") == 20
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(alerts))).scalar() == 20
    await engine.dispose()


async def test_commit_size_is_capped(database_url: str, clock: FakeClock) -> None:
    engine = database.create_engine(database_url)
    await database.upgrade(engine)
    metrics = Metrics("test")
    pipeline = Pipeline(engine, clock, RuleSet, SETTINGS, metrics, commit_max_events=5)
    submissions = [
        asyncio.create_task(pipeline.submit([event(f"fp{i}", group_key=None)])) for i in range(12)
    ]
    await asyncio.sleep(0)
    pipeline.start()
    await asyncio.gather(*submissions)
    await pipeline.stop()
    assert sample(metrics, "bridge_commit_events_count") == 3
    await engine.dispose()


async def _allow_connections(database: str, allowed: bool) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_database_outage_gives_503_with_retry_after_and_recovers(bridge: Bridge) -> None:
    name = "am-01-firing-bridge-critical-hostdown-1alerts.json"
    body: dict[str, Any] = json.loads((CAPTURED / "alertmanager" / name).read_text())
    database_name = bridge.runtime.engine.url.database
    assert database_name
    await _allow_connections(database_name, False)
    try:
        response = await bridge.client.post("/api/v1/webhooks/alertmanager", json=body)
        assert response.status == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert (await bridge.client.get("/-/ready")).status == 503
        assert (await bridge.client.get("/-/healthy")).status == 200
        assert (await bridge.client.get("/api/v1/incidents")).status == 503
    finally:
        await _allow_connections(database_name, True)
    status, _ = await bridge.post_json("/api/v1/webhooks/alertmanager", body)
    assert status == 200
    assert (await bridge.client.get("/-/ready")).status == 200
    assert len((await bridge.get_json("/api/v1/incidents"))["incidents"]) == 1
    text = await (await bridge.client.get("/metrics")).text()
    assert (
        'bridge_requests_rejected_total{reason="store_unavailable",source="alertmanager"} 1.0'
        in text
    )


async def test_submit_raises_store_unavailable_when_the_database_is_gone(clock: FakeClock) -> None:
    engine = database.create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    pipeline = Pipeline(engine, clock, RuleSet, SETTINGS, Metrics("t"), commit_max_events=10)
    pipeline.start()
    with pytest.raises(StoreUnavailable):
        await pipeline.submit([event()])
    await pipeline.stop()
    await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_request_the_database_refuses_does_not_take_its_batch_down(
    database_url: str, clock: FakeClock
) -> None:
    engine = database.create_engine(database_url)
    await database.upgrade(engine)
    metrics = Metrics("test")
    pipeline = Pipeline(engine, clock, RuleSet, SETTINGS, metrics, commit_max_events=100)
    good = [asyncio.create_task(pipeline.submit([event(f"ok{i}")])) for i in range(3)]
    poison = asyncio.create_task(pipeline.submit([event("bad", source="s" * 100)]))
    await asyncio.sleep(0)
    pipeline.start()
    await asyncio.gather(*good)
    with pytest.raises(StoreRefused):
        await poison
    await pipeline.stop()
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(alerts))).scalar() == 3
    await engine.dispose()


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OperationalError("stmt", {}, Exception("database is locked")), True),
        (PoolTimeout("pool exhausted"), True),
        (DBAPIError("stmt", {}, _PgError("57P03")), True),  # cannot connect now
        (DBAPIError("stmt", {}, _PgError("08006")), True),  # connection failure
        (DBAPIError("stmt", {}, _PgError("40P01")), True),  # deadlock: retry helps
        (DBAPIError("stmt", {}, _PgError("22001")), False),  # value too long
        (DBAPIError("stmt", {}, _PgError("23505")), False),  # unique violation
        (CompileError("bindparam name reserved"), False),  # a bug, not an outage
    ],
)
def test_only_outages_count_as_transient(error: SQLAlchemyError, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_locked_sqlite_file_gives_503_and_recovers_when_released(
    bridge: Bridge,
) -> None:
    name = "am-01-firing-bridge-critical-hostdown-1alerts.json"
    body: dict[str, Any] = json.loads((CAPTURED / "alertmanager" / name).read_text())
    path = bridge.runtime.engine.url.database
    assert path
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")  # another process holding the database
    try:
        response = await bridge.client.post("/api/v1/webhooks/alertmanager", json=body)
        assert response.status == 503  # after the busy timeout, not a hang and not a 500
        assert int(response.headers["Retry-After"]) >= 1
        assert (await bridge.client.get("/-/healthy")).status == 200
    finally:
        other.execute("ROLLBACK")
        other.close()
    status, _ = await bridge.post_json("/api/v1/webhooks/alertmanager", body)
    assert status == 200
    assert len((await bridge.get_json("/api/v1/incidents"))["incidents"]) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_outage_under_load_loses_nothing_acknowledged(bridge: Bridge) -> None:
    """Senders keep posting while PostgreSQL refuses connections: they get 503 (never a 500),
    the daemon stays up, and once the database is back every alert that got a 2xx is stored."""
    database_name = bridge.runtime.engine.url.database
    assert database_name
    acknowledged: list[str] = []
    statuses: list[int] = []

    async def send() -> None:
        for n in range(10_000):
            names = [f"Load{n}-{i}" for i in range(5)]
            body = [{"labels": {"alertname": a, "instance": "h:1"}} for a in names]
            response = await bridge.client.post("/api/v2/alerts", json=body)
            statuses.append(response.status)
            if response.status == 200:
                acknowledged.extend(names)
            if len(acknowledged) >= 200 and statuses.count(503) >= 3 and statuses[-1] == 200:
                return

    async def until(check: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while not check():
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.01)

    sender = asyncio.create_task(send())
    await until(lambda: len(acknowledged) >= 50, "stored before the outage")
    await _allow_connections(database_name, False)
    try:
        await until(lambda: statuses.count(503) >= 3, "503 during the outage")
        assert (await bridge.client.get("/-/ready")).status == 503
        assert (await bridge.client.get("/-/healthy")).status == 200
    finally:
        await _allow_connections(database_name, True)
    await asyncio.wait_for(sender, 60)
    assert set(statuses) <= {200, 503}, statuses
    assert (await bridge.client.get("/-/ready")).status == 200
    stored = (await bridge.get_json("/api/v1/alerts?limit=1000"))["alerts"]
    names = {a["labels"]["alertname"] for a in stored}
    assert set(acknowledged) <= names


class _DeadlockDetected(Exception):
    sqlstate = "40P01"  # what asyncpg's error carries


async def test_a_batch_chosen_as_deadlock_victim_is_evaluated_again(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL breaks a deadlock (the writer's outbox rows against a dispatcher's outcome
    rows) by failing one transaction: the sender must not see a 503 for it."""
    real = repository.persist_world
    attempts: list[int] = []

    async def deadlocked_once(*args: Any) -> dict[int, int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise DBAPIError("INSERT INTO incident_targets ...", {}, _DeadlockDetected())
        return await real(*args)

    monkeypatch.setattr(repository, "persist_world", deadlocked_once)
    status, answer = await bridge.post_json("/api/v2/alerts", [{"labels": {"alertname": "V"}}])
    assert (status, len(attempts)) == (200, 2), answer
    stored = (await bridge.get_json("/api/v1/alerts"))["alerts"]
    assert [a["labels"]["alertname"] for a in stored] == ["V"]
