"""The migrations build exactly the schema `bridge/store/tables.py` declares, on SQLite and
PostgreSQL: a column, index, default or nullability added to one and not the other fails here."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from bridge.store import database
from bridge.store.tables import metadata


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    found = compare_metadata(context, metadata)
    if connection.dialect.name != "sqlite":
        return list(found)
    return [d for d in found if not _sqlite_noise(d)]


def _sqlite_noise(difference: Any) -> bool:
    """SQLite reflects `server_default=""` as `''` and reports its type affinities, not the
    declared types; PostgreSQL is compared on everything."""
    if isinstance(difference, list):  # modify_* entries come as a list of tuples
        return all(_sqlite_noise(d) for d in difference)
    return difference[0] in ("modify_default", "modify_type")


async def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    engine = database.create_engine(database_url)
    try:
        await database.upgrade(engine)
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == []
