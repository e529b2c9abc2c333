"""HTTP + DB fixtures: the real app on SQLite and on PostgreSQL, with a settable clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.app import create_app
from bridge.runtime import RUNTIME, Runtime
from bridge.settings import Settings

CAPTURED = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured"
PG_ADMIN_DSN = os.environ.get("BRIDGE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def set(self, value: datetime) -> None:
        self.current = value

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@contextlib.contextmanager
def new_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own on the server of `PG_ADMIN_DSN` for the block, dropped
    after it even with connections still open; its `postgresql://` DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # Also requested from inside a running event loop, so it runs its own loop in a thread.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, run(f'CREATE DATABASE "{name}"')).result()
        try:
            yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
        finally:
            drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            thread.submit(asyncio.run, run(drop)).result()


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """A scratch PostgreSQL database for this test session, dropped at the end."""
    with new_database("bridge_test") as dsn:
        yield dsn


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own, dropped after it: the `BRIDGE_DATABASE_URL`
    of a `bridge run` process (asyncpg)."""
    with new_database("bridge_scratch") as dsn:
        yield dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _reset_pg(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    dsn: str = request.getfixturevalue("pg_server_dsn")
    await _reset_pg(dsn)
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 19, 59, 36, tzinfo=UTC))


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "sqlite_synchronous": "normal",
        **settings_overrides,
    }
    return Settings(**values)


@dataclass
class Bridge:
    client: TestClient[Any, Any]
    runtime: Runtime
    clock: FakeClock

    async def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        response = await self.client.post(path, json=body)
        return response.status, await response.json()

    async def get_json(self, path: str) -> Any:
        response = await self.client.get(path)
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture
async def bridge(settings: Settings, clock: FakeClock) -> AsyncIterator[Bridge]:
    app = await create_app(settings, clock=clock)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Bridge(client, app[RUNTIME], clock)
    finally:
        await client.close()
