"""A full disk under a real `python -m bridge run`: senders get 503 with `Retry-After` (never a
500), the daemon stays up and keeps serving reads, and once space is freed it takes alerts again
without a restart; every alert that got a 2xx is stored once, none of a refused request is.

The disk is a tmpfs mounted for the test (`mount -t tmpfs`, so the tests need root; they skip
when the mount is refused) and filled with a ballast file until `ENOSPC`:

- SQLite: the daemon's data directory (database, WAL, shared memory) lives on it; after the
  recovery the daemon is stopped and the file must pass `PRAGMA integrity_check`;
- PostgreSQL: a tablespace on it, and a database of the test's own created in that tablespace
  (PostgreSQL's WAL stays on the server's disk: the relation files are what cannot grow).

`/-/ready` is "the database answers and the rules are loaded" (README, `bridge/api/status.py`).
A full disk leaves the database answering and reads (incidents, alerts) working, and taking the
instance out of rotation would not help anybody (every replica writes to the same database;
senders already retry on 503), so ready stays 200. What tells the operator is the 503s and
`bridge_database_errors_total{operation="commit"}` and
`bridge_requests_rejected_total{reason="store_unavailable"}`, which must move.

Nothing sleeps to let time pass: every step posts or polls until a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.bridge.conftest import PG_ADMIN_DSN
from tests.bridge.test_notify_crash import Daemon
from tests.e2e.harness import LOCALHOST, Stack, http_get, metric_value

WITHIN = 15.0  # seconds any one condition may take
RETRY_AFTER = 3  # BRIDGE_RETRY_AFTER, in seconds
BATCH = 5  # alerts per request
PADDING = "x" * 600  # per alert: the database grows by a few pages per request
SENDERS = 4  # requests at once
LEAVE = 256 * 1024  # bytes left free on the filled disk: a few commits still fit

Json = dict[str, Any]


# --- the disk -------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point` (created if missing) for the block; unmounted after
    it, also when it fails. Skips the test when this process may not mount."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}"
            f" (uid {os.getuid()})"
        )
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            # Something still holds a file there: detach it now, freed when it lets go.
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@dataclass
class Ballast:
    """A file that takes all the free space of its filesystem, until `free`."""

    path: Path

    def fill(self, leave: int) -> None:
        """Write until `ENOSPC`, then give back `leave` bytes: the next writes fit, until one
        does not, part way through."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 1):
                _write_until_full(fd, b"\0" * size)
            assert shutil.disk_usage(self.path.parent).free == 0
            os.ftruncate(fd, os.fstat(fd).st_size - leave)
        finally:
            os.close(fd)
        free = shutil.disk_usage(self.path.parent).free
        assert leave <= free < leave + 64 * 1024, free

    def free(self) -> None:
        self.path.unlink()


def _write_until_full(fd: int, chunk: bytes) -> None:
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise


# --- the sender -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    number: int  # the batch: alerts Disk{number}-0 .. Disk{number}-{BATCH - 1}
    status: int
    retry_after: str | None
    body: str
    during: str  # "before", "full", "freed": the state of the disk when it was sent


def names_of(number: int) -> list[str]:
    return [f"Disk{number}-{i}" for i in range(BATCH)]


@dataclass
class Sender:
    """Posts batches of new alerts, `SENDERS` requests at a time (so that requests share group
    commits), each batch a number used once: a refused batch is not sent again, whether it was
    stored must be visible. Records every answer."""

    daemon: Daemon
    answers: list[Answer] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def post(self, during: str) -> Answer:
        number = next(self._numbers)
        now = datetime.now(UTC)
        body = [
            {
                "labels": {"alertname": name, "instance": f"disk-{number}:9100"},
                "annotations": {"summary": f"full disk test {name}", "padding": PADDING},
                "startsAt": (now - timedelta(minutes=1)).isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
            }
            for name in names_of(number)
        ]
        request = urllib.request.Request(
            f"{self.daemon.url}/api/v2/alerts",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=WITHIN) as response:
                answer = Answer(number, response.status, None, response.read().decode(), during)
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode(errors="replace")
                answer = Answer(number, exc.code, exc.headers.get("Retry-After"), text, during)
        self.answers.append(answer)
        return answer

    def burst(self, during: str) -> list[Answer]:
        """`SENDERS` requests at once; their answers."""
        with ThreadPoolExecutor(SENDERS) as pool:
            return list(pool.map(lambda _: self.post(during), range(SENDERS)))

    def burst_until(self, wanted: Callable[[Answer], bool], during: str, what: str) -> float:
        """Bursts until one answer is `wanted`; the seconds it took. Fails at once when the
        daemon dies, and after `WITHIN` seconds."""
        assert self.daemon.service is not None
        started = time.monotonic()
        while not any(wanted(answer) for answer in self.burst(during)):
            self.daemon.service.check_alive(f"while posting until {what}")
            assert time.monotonic() - started < WITHIN, f"no {what} in {WITHIN}s: {self.answers}"
        return time.monotonic() - started

    def numbers(self, status: int) -> set[int]:
        return {a.number for a in self.answers if a.status == status}


# --- the scenario ---------------------------------------------------------------------------


@dataclass
class Observed:
    """What the daemon said during the fault, and how long each step took."""

    to_refuse: float = 0.0
    to_recover: float = 0.0
    healthy: int = 0
    ready: int = 0
    read: int = 0
    commit_errors: float = 0.0
    rejected: float = 0.0
    errors_after_free: float = 0.0  # commits failed after the ballast was deleted
    after_free: list[int] = field(default_factory=list)


def metrics(daemon: Daemon) -> str:
    status, text = http_get(f"{daemon.url}/metrics")
    assert status == 200, text
    return text


def commit_errors(text: str) -> float:
    return metric_value(text, "bridge_database_errors_total", operation="commit")


def store_unavailable(text: str) -> float:
    return metric_value(
        text, "bridge_requests_rejected_total", source="prometheus", reason="store_unavailable"
    )


def fill_refuse_free_recover(daemon: Daemon, ballast: Ballast) -> tuple[Sender, Observed]:
    """Alerts stored on a disk with room; the disk filled but for `LEAVE` bytes: 2xx until a
    commit does not fit, then 503s; the ballast deleted: 2xx again."""
    sender = Sender(daemon)
    seen = Observed()
    for _ in range(3):
        assert {a.status for a in sender.burst("before")} == {200}, sender.answers
    before = metrics(daemon)
    ballast.fill(LEAVE)
    seen.to_refuse = sender.burst_until(lambda a: a.status != 200, "full", "refusal")
    for _ in range(3):  # it keeps refusing while the disk is full, and keeps answering
        sender.burst("full")
    assert daemon.service is not None
    daemon.service.check_alive("with the disk full")
    seen.healthy = http_get(f"{daemon.url}/-/healthy")[0]
    seen.ready = http_get(f"{daemon.url}/-/ready")[0]
    seen.read = http_get(f"{daemon.url}/api/v1/alerts?limit=1")[0]
    during = metrics(daemon)
    seen.commit_errors = commit_errors(during) - commit_errors(before)
    seen.rejected = store_unavailable(during) - store_unavailable(before)
    ballast.free()
    first = len(sender.answers)
    seen.to_recover = sender.burst_until(lambda a: a.status == 200, "freed", "2xx after freeing")
    for _ in range(3):
        sender.burst("freed")
    seen.after_free = [a.status for a in sender.answers[first:]]
    seen.errors_after_free = commit_errors(metrics(daemon)) - commit_errors(during)
    return sender, seen


def listed(daemon: Daemon, what: str) -> list[Json]:
    """Every alert or incident the API lists, page by page."""
    found: list[Json] = []
    while True:
        status, text = http_get(f"{daemon.url}/api/v1/{what}?limit=1000&offset={len(found)}")
        assert status == 200, text
        page: list[Json] = json.loads(text)[what]
        found += page
        if len(page) < 1000:
            return found


def assert_fault_handled(sender: Sender, seen: Observed) -> None:
    """503 + Retry-After while full, never a 500; still up and serving reads; counted."""
    full = [a for a in sender.answers if a.during == "full"]
    assert {a.status for a in full} <= {200, 503}, full
    refused = [a for a in full if a.status == 503]
    # At least one in the first burst refused, then every request of the three bursts after it.
    assert len(refused) > 3 * SENDERS, full
    assert {a.retry_after for a in refused} == {str(RETRY_AFTER)}, refused
    assert all("database is unavailable" in a.body for a in refused), refused
    assert (seen.healthy, seen.ready, seen.read) == (200, 200, 200), seen
    assert seen.rejected == len(refused), seen
    assert seen.commit_errors >= 1, seen


def assert_recovered_and_nothing_lost(daemon: Daemon, sender: Sender, seen: Observed) -> list[Json]:
    """2xx again without a restart; every acknowledged alert stored once, no refused one, and
    no incident left behind by a refused request. Returns the stored alerts."""
    stored, incidents = listed(daemon, "alerts"), listed(daemon, "incidents")
    assert set(seen.after_free) == {200}, seen.after_free  # from the first request on
    assert seen.errors_after_free == 0, seen
    names = Counter(str(a["labels"]["alertname"]) for a in stored)
    twice = {name: n for name, n in names.items() if n > 1}
    assert not twice, f"stored more than once: {twice}"
    acknowledged = {name for n in sender.numbers(200) for name in names_of(n)}
    refused = {name for n in sender.numbers(503) for name in names_of(n)}
    assert acknowledged <= names.keys(), sorted(acknowledged - names.keys())
    assert not refused & names.keys(), f"stored though refused: {sorted(refused & names.keys())}"
    assert names.keys() == acknowledged, sorted(names.keys() - acknowledged)
    assert {a["count"] for a in stored} == {1}, [a for a in stored if a["count"] != 1]
    padded = {a["annotations"].get("padding") for a in stored}
    assert padded == {PADDING}, "an alert stored with its annotations cut"
    assert {i["id"] for i in incidents} == {a["incident_id"] for a in stored}, incidents
    assert all(i["alert_count"] >= 1 for i in incidents), incidents
    return stored


def daemon_settings(data_dir: Path, database_url: str = "") -> dict[str, str]:
    return {
        "BRIDGE_HOST": LOCALHOST,
        "BRIDGE_DATA_DIR": str(data_dir),
        "BRIDGE_DATABASE_URL": database_url,
        "BRIDGE_LOG_LEVEL": "warning",
        "BRIDGE_RETRY_AFTER": f"{RETRY_AFTER}s",
        "BRIDGE_SLA_ACKNOWLEDGE": "{}",
        "BRIDGE_SLA_RESOLVE": "{}",
        "BRIDGE_ITSM_POLL_INTERVAL": "0",
    }


def report(stack: Stack, sender: Sender | None) -> str:
    lines = [f"{title}\n{text}" for title, text in stack.report()]
    if sender is not None:
        lines.append("answers:")
        lines += [f"  {a}" for a in sender.answers]
    return "\n".join(lines)


def summary(backend: str, sender: Sender, seen: Observed) -> str:
    statuses = Counter((a.during, a.status) for a in sender.answers)
    return (
        f"{backend}: refused after {seen.to_refuse:.2f}s, recovered in {seen.to_recover:.2f}s;"
        f" answers {dict(sorted(statuses.items()))}; during the fault healthy={seen.healthy}"
        f" ready={seen.ready} read={seen.read}, commit errors +{seen.commit_errors:g},"
        f" store_unavailable +{seen.rejected:g}"
    )


def stop(daemon: Daemon) -> None:
    """SIGTERM; the daemon must exit 0 in bounded time."""
    assert daemon.service is not None
    daemon.service.process.send_signal(signal.SIGTERM)
    code = daemon.service.process.wait(timeout=WITHIN)
    assert code == 0, daemon.service.log_tail()


# --- SQLite ---------------------------------------------------------------------------------


def test_sqlite_full_disk_gives_503_and_recovers_when_space_is_freed(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk, Stack(tmp_path / "processes") as stack:
        data = disk / "data"
        daemon = Daemon(stack, daemon_settings(data))
        sender: Sender | None = None
        try:
            daemon.start()
            sender, seen = fill_refuse_free_recover(daemon, Ballast(disk / "ballast"))
            print(summary("sqlite", sender, seen))
            assert_fault_handled(sender, seen)
            stored = assert_recovered_and_nothing_lost(daemon, sender, seen)
            stop(daemon)
            with contextlib.closing(sqlite3.connect(data / "bridge.db")) as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                rows = db.execute("SELECT json_extract(labels, '$.alertname') FROM alerts")
                in_file = sorted(name for (name,) in rows)
            assert in_file == sorted(a["labels"]["alertname"] for a in stored)
        except BaseException:
            print(report(stack, sender))
            raise


# --- PostgreSQL -----------------------------------------------------------------------------


def admin(*statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def alert_names_in(url: str) -> list[str]:
    """The alert names stored in the database at `url`, read with the daemon stopped."""

    async def run() -> list[str]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            rows = await conn.fetch("SELECT labels->>'alertname' AS name FROM alerts")
        finally:
            await conn.close()
        return sorted(str(row["name"]) for row in rows)

    return asyncio.run(run())


@contextlib.contextmanager
def database_in_tablespace(location: Path) -> Iterator[str]:
    """A database of its own in a new tablespace at `location` (a directory the server's
    `postgres` user owns); its URL. Both dropped after the block, also when it fails."""
    name = f"bridge_disk_{uuid.uuid4().hex[:10]}"
    location.mkdir()
    try:
        shutil.chown(location, "postgres", "postgres")
    except LookupError:
        pytest.skip("no `postgres` user here: the PostgreSQL server must run on this machine")
    location.chmod(0o700)
    admin(f"CREATE TABLESPACE \"{name}\" LOCATION '{location}'")
    try:
        admin(f'CREATE DATABASE "{name}" TABLESPACE "{name}"')
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin(f'DROP TABLESPACE IF EXISTS "{name}"')


@pytest.mark.postgres
def test_postgresql_full_tablespace_gives_503_and_recovers_when_space_is_freed(
    tmp_path: Path,
) -> None:
    # The server runs as `postgres`, which cannot enter pytest's (root-only) tmp_path.
    mount_point = Path(tempfile.mkdtemp(prefix="bridge-full-disk-"))
    try:
        with (
            tmpfs(mount_point, "24m") as disk,
            database_in_tablespace(disk / "tablespace") as url,
            Stack(tmp_path / "processes") as stack,
        ):
            daemon = Daemon(stack, daemon_settings(tmp_path / "data", url))
            sender: Sender | None = None
            try:
                daemon.start()
                sender, seen = fill_refuse_free_recover(daemon, Ballast(disk / "ballast"))
                print(summary("postgresql", sender, seen))
                assert_fault_handled(sender, seen)
                stored = assert_recovered_and_nothing_lost(daemon, sender, seen)
                stop(daemon)
                assert alert_names_in(url) == sorted(a["labels"]["alertname"] for a in stored)
            except BaseException:
                print(report(stack, sender))
                raise
    finally:
        mount_point.rmdir()
