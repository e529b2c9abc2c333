"""`bridge run | check-config | db upgrade | version`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from bridge.app import create_app, load_config, version
from bridge.errors import ConfigError
from bridge.settings import Settings, load_settings
from bridge.store import database


def _settings_errors(exc: ValidationError, config_file: Path | None) -> list[str]:
    text = config_file.read_text() if config_file else ""
    errors = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        errors.append(f"{_origin(name, config_file, text)}: {name}: {error['msg']}")
    return errors


def _origin(name: str, config_file: Path | None, text: str) -> str:
    """Where a setting came from: `file:line` of its TOML key, else its environment variable."""
    env = f"BRIDGE_{name.upper()}"
    if env in os.environ or config_file is None:
        return env if env in os.environ else "settings"
    match = re.search(rf"^\s*{re.escape(name)}\s*=", text, re.MULTILINE)
    line = text.count("\n", 0, match.start()) + 1 if match else 1
    return f"{config_file}:{line}"


def _load(config_file: Path | None) -> Settings:
    try:
        return load_settings(config_file)
    except ValidationError as exc:
        raise ConfigError(_settings_errors(exc, config_file)) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{config_file}:1: {exc}"]) from exc


def _run(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # APScheduler logs every job run at INFO; its warnings and errors still show.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
    )
    return 0


def _check(settings: Settings) -> int:
    rules, mappings = load_config(settings)
    print(
        f"settings ok; {len(rules.incident_rules)} incident rules in {len(rules.files)} files; "
        f"{len(mappings)} generic webhook mappings"
    )
    return 0


async def _upgrade(settings: Settings) -> None:
    engine = database.create_engine(
        settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        await database.upgrade(engine)
    finally:
        await engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Alert bridge daemon.")
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("BRIDGE_CONFIG") or None,
        help="TOML settings file (default: $BRIDGE_CONFIG)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="serve the HTTP API and process alerts")
    commands.add_parser("check-config", help="validate settings and rule files")
    db = commands.add_parser("db", help="database maintenance")
    db.add_argument("db_command", choices=["upgrade"], help="upgrade: apply migrations")
    commands.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(version())
        return 0
    try:
        settings = _load(args.config)
        if args.command == "run":
            return _run(settings)
        if args.command == "check-config":
            return _check(settings)
        asyncio.run(_upgrade(settings))
        print("database schema is up to date")
        return 0
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
