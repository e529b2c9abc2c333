"""`bridge db backup FILE`: an online copy of the SQLite database (also while another
connection writes), and the `pg_dump` advice for PostgreSQL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bridge.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    monkeypatch.delenv("BRIDGE_DATABASE_URL", raising=False)
    monkeypatch.setenv("BRIDGE_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """The configured database, migrated, with a few rows."""
    assert main(["db", "upgrade"]) == 0
    path = tmp_path / "data" / "bridge.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO heartbeats (name, last_beat_at) VALUES (?, ?)",
            [(f"beat-{i}", "2026-11-23 19:59:36.000000") for i in range(3)],
        )
    return path


def beats(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM heartbeats ORDER BY name")]


def test_the_backup_holds_the_rows_and_the_schema(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "backups" / "bridge-copy.db"
    target.parent.mkdir()
    assert main(["db", "backup", str(target)]) == 0
    assert f"backed up {database} to {target}" in capsys.readouterr().out
    assert beats(target) == ["beat-0", "beat-1", "beat-2"]
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(p.name for p in target.parent.iterdir()) == ["bridge-copy.db"]


def test_the_backup_runs_while_another_connection_writes(database: Path, tmp_path: Path) -> None:
    """What a running daemon looks like: committed rows still in the WAL, and a write
    transaction open during the copy (its rows are not in it; nothing waits)."""
    daemon = sqlite3.connect(database, isolation_level=None)
    try:
        assert daemon.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        daemon.execute("PRAGMA wal_autocheckpoint=0")
        daemon.execute("INSERT INTO heartbeats VALUES ('in-wal', '2026-11-23 20:00:00.000000')")
        assert (database.parent / "bridge.db-wal").stat().st_size > 0
        daemon.execute("BEGIN IMMEDIATE")
        daemon.execute("INSERT INTO heartbeats VALUES ('uncommitted', '2026-11-23 20:00:00')")
        target = tmp_path / "copy.db"
        assert main(["db", "backup", str(target)]) == 0
        daemon.execute("COMMIT")
    finally:
        daemon.close()
    assert beats(target) == ["beat-0", "beat-1", "beat-2", "in-wal"]


def test_an_existing_file_is_replaced(database: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    target.write_text("yesterday's backup")
    assert main(["db", "backup", str(target)]) == 0
    assert beats(target) == ["beat-0", "beat-1", "beat-2"]


def test_no_database_or_the_database_itself_is_refused(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "backup", str(database)]) == 1
    assert "FILE is the database itself" in capsys.readouterr().err
    assert beats(database) == ["beat-0", "beat-1", "beat-2"]
    database.unlink()
    assert main(["db", "backup", str(tmp_path / "copy.db")]) == 1
    assert f"no SQLite database at {database}" in capsys.readouterr().err
    assert not database.exists()  # not created by the attempt


def test_a_target_that_cannot_be_written_is_an_error(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "backup", str(tmp_path / "missing-dir" / "copy.db")]) == 1
    assert "bridge db backup:" in capsys.readouterr().err


def test_postgresql_is_refused_with_the_pg_dump_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+asyncpg://bridge:s3cr3t@db.example:5433/alerts"
    monkeypatch.setenv("BRIDGE_DATABASE_URL", url)
    target = tmp_path / "alerts.dump"
    assert main(["db", "backup", str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    command = (
        f"pg_dump --format=custom --file={target} --host=db.example --port=5433 "
        "--username=bridge alerts"
    )
    assert command in captured.err
    assert "s3cr3t" not in captured.err
    assert not target.exists()
