"""`bridge check-config`, `bridge db upgrade` and the settings documentation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("BRIDGE_DATA_DIR", str(tmp_path / "data"))


def test_check_config_accepts_the_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--config", str(ROOT / "config" / "bridge.example.toml"), "check-config"])
    assert code == 0
    assert "3 incident rules" in capsys.readouterr().out


def test_check_config_reports_rule_errors_as_file_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("correlate:\n  - name: x\n    group_by: []\n    colour: red\n")
    monkeypatch.setenv("BRIDGE_RULES_DIR", str(rules))
    assert main(["check-config"]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"{rules / 'bad.yaml'}:3: ") for line in errors), errors
    assert any(line.startswith(f"{rules / 'bad.yaml'}:4: ") for line in errors), errors


def test_check_config_reports_bad_settings_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('host = "0.0.0.0"\nport = "eighty"\nresolve_timeout = "soon"\n')
    assert main(["--config", str(config), "check-config"]) == 1
    err = capsys.readouterr().err
    assert f"{config}:2: port:" in err
    assert f"{config}:3: resolve_timeout:" in err


def test_environment_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("port = 1234\n")
    monkeypatch.setenv("BRIDGE_PORT", "not-a-port")
    assert main(["--config", str(config), "check-config"]) == 1
    assert "BRIDGE_PORT: port:" in capsys.readouterr().err


def test_db_upgrade_creates_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "data" / "bridge.db"
    assert main(["db", "upgrade"]) == 0
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"alerts", "incidents", "timeline", "events", "alembic_version"} <= tables
    assert journal == "wal"
    assert main(["db", "upgrade"]) == 0  # idempotent


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "config" / "bridge.example.toml").read_text()
    assert f"`BRIDGE_{name.upper()}`" in readme
    assert f"{name} = " in example
