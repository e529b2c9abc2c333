"""The writers' lock (`database.write_lock`): a writer's batch reads and writes as one unit, so
retention (or another replica's writer) cannot delete or change a row between the read and the
write. PostgreSQL: retention waits for the transaction holding the lock, then keeps the alert
that fired again meanwhile. SQLite: the lock is the database's write lock, held from before the
first read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from bridge import jobs
from bridge.store import database
from bridge.store.tables import alerts
from tests.bridge.conftest import Bridge
from tests.bridge.test_retention import closed_incident

DAY = 86400.0
LABELS = {"alertname": "DiskFull", "instance": "web-1:9100", "mountpoint": "/"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"retain_resolved_alerts": "5d"}


async def resolved_long_ago(bridge: Bridge) -> None:
    """An alert resolved (and its incident closed) six days ago: retention's to delete."""
    await closed_incident(bridge, LABELS)
    bridge.clock.advance(6 * DAY)


async def waiting_for_advisory_lock(dsn_engine: Any) -> bool:
    async with dsn_engine.connect() as conn:
        query = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
            " AND datname = current_database()"
        )
        return bool(await conn.scalar(query))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_retention_waits_for_a_writer_and_keeps_the_alert_it_fired_again(
    bridge: Bridge,
) -> None:
    """Another replica's writer has read the old resolved alert and is about to store it firing
    again; retention, run meanwhile, must neither delete it under the writer's feet (the update
    would change no row: an acknowledged alert lost) nor delete it afterwards."""
    await resolved_long_ago(bridge)
    other = database.create_engine(bridge.runtime.settings.effective_database_url)
    try:
        async with other.begin() as writer:
            await database.write_lock(writer)
            key = alerts.c.fingerprint.is_not(None)
            (fingerprint,) = (await writer.execute(select(alerts.c.fingerprint).where(key))).one()
            retention = asyncio.create_task(jobs.apply_retention(bridge.runtime))
            deadline = asyncio.get_running_loop().time() + 10
            while not await waiting_for_advisory_lock(other):
                assert not retention.done(), "retention ran while a writer held the lock"
                assert asyncio.get_running_loop().time() < deadline, "retention never waited"
                await asyncio.sleep(0.02)  # polling a condition, with a deadline
            now = bridge.clock.now()
            changed = await writer.execute(
                update(alerts)
                .where(alerts.c.fingerprint == fingerprint)
                .values(status="firing", last_seen=now, ends_at=None)
            )
            assert changed.rowcount == 1
        deleted = await retention
    finally:
        await other.dispose()
    assert deleted == 0
    async with bridge.runtime.engine.connect() as conn:
        statuses = list((await conn.execute(select(alerts.c.status))).scalars())
    assert statuses == ["firing"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_writers_batch_holds_the_write_lock_from_its_first_read(
    bridge: Bridge,
) -> None:
    await resolved_long_ago(bridge)
    other = database.create_engine(bridge.runtime.settings.effective_database_url)
    try:
        async with other.begin() as writer:
            await database.write_lock(writer)
            await writer.execute(select(alerts.c.id))
            async with bridge.runtime.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA busy_timeout=0")
                with pytest.raises(OperationalError, match="locked"):
                    await conn.execute(update(alerts).values(last_seen=bridge.clock.now()))
                await conn.rollback()
                await conn.exec_driver_sql("PRAGMA busy_timeout=5000")
    finally:
        await other.dispose()
    # Released with the transaction: retention now runs and deletes the old alert.
    deleted = await jobs.apply_retention(bridge.runtime)
    assert deleted == 1
