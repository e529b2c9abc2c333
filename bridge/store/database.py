"""The one `AsyncEngine`: creation with per-backend tuning, migrations, and a health probe."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, sqlite_synchronous: str = "full") -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, json_serializer=_json_dumps, json_deserializer=orjson.loads
        )
        _tune_sqlite(engine, sqlite_synchronous)
        return engine
    return create_async_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=5,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 30},
    )


def _tune_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# PostgreSQL advisory lock key ("bridge migrations"): replicas that start together migrate one
# after the other; the second finds the schema current.
MIGRATION_LOCK = 0x6272_6964_6765_01


async def upgrade(engine: AsyncEngine) -> None:
    """Create or migrate the schema to the newest revision."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Transaction-level: released with the migration's commit (or rollback).
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "head"))


# PostgreSQL advisory lock key ("bridge writer"): see `write_lock`.
WRITER_LOCK = 0x6272_6964_6765_02


async def write_lock(conn: AsyncConnection) -> None:
    """Make the transaction just begun on `conn` the only one changing alerts and incidents
    until it ends: call it before the transaction's first statement. The writer's batches (on
    every replica) and retention's batches take it, so what a batch read is what it changes:
    no lost update, no row deleted between the read and the write. SQLite: `BEGIN IMMEDIATE`
    (the database's one write lock, taken before the reads). PostgreSQL: a transaction-level
    advisory lock (released by the commit or rollback); other transactions (API reads, the
    dispatcher's outbox rows) do not wait for it."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITER_LOCK})
    else:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def schema_is_current(engine: AsyncEngine) -> bool:
    def _check(sync: Connection) -> bool:
        head = ScriptDirectory.from_config(_alembic_config(sync)).get_current_head()
        return MigrationContext.configure(sync).get_current_revision() == head

    async with engine.connect() as connection:
        return await connection.run_sync(_check)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


@contextlib.asynccontextmanager
async def exclusive(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Whether this process may do the work `name` now: on PostgreSQL, only the replica that
    holds the session advisory lock of `name` (held until the block ends); SQLite has a single
    node."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = int.from_bytes(hashlib.sha256(f"bridge:{name}".encode()).digest()[:8], "big", signed=True)
    async with engine.connect() as connection:
        # Autocommit: the lock is the session's; an open transaction held for the whole job
        # would hold back vacuum and die of `idle_in_transaction_session_timeout`, lock and all.
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        got = bool(await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
        try:
            yield got
        finally:
            if got:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
