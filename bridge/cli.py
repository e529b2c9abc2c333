"""`bridge run | check-config | db upgrade | db backup | version`, and the offline tools
`bridge rules check | rules test` and `bridge replay`, which need no database and no network
(the HTTP app and the store are imported only by the commands that use them)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shlex
import sqlite3
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bridge import rulecheck
from bridge.errors import ConfigError
from bridge.payloads import Decoder
from bridge.replay import replay
from bridge.ruletest import Runner
from bridge.settings import Settings, load_settings
from rules.evaluate import EngineSettings
from rules.loader import RuleLoadError, load_rules


def _settings_errors(exc: ValidationError, config_file: Path | None) -> list[str]:
    text = config_file.read_text() if config_file else ""
    errors = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        errors.append(f"{_origin(name, config_file, text)}: {name}: {error['msg']}")
    return errors


def _origin(name: str, config_file: Path | None, text: str) -> str:
    """Where a setting came from: `file:line` of its TOML key, else its environment variable
    (for `inbound_tokens.*.0`, those of `inbound_tokens`)."""
    name = name.split(".", 1)[0]
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


def shipped_config_dir() -> Path:
    """The example config shipped in `config/`; `bridge.app.default_config_dir` without
    importing the HTTP app."""
    return Path(__file__).with_name("_config")


def _rules_dir(settings: Settings) -> Path:
    """The rules directory as the daemon (and `check-config`) finds it."""
    return settings.rules_dir or shipped_config_dir() / "rules"


def _run(settings: Settings) -> int:
    from aiohttp import web

    from bridge.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # APScheduler logs every job run at INFO; its warnings and errors still show.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    tls = tls_context(settings)  # before the app: a bad certificate is a config error
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
        ssl_context=tls,
    )
    return 0


class _PassPhraseAsked(Exception):
    pass


def _no_pass_phrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal, or fail with no word of why.
    raise _PassPhraseAsked


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS from `tls_cert_file` and `tls_key_file` (TLS 1.2 or later); None: plain HTTP.
    A file that cannot be read, is no PEM certificate or key, or a key encrypted with a pass
    phrase (it is never asked for) is a `ConfigError` naming the setting."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None:
        return None
    errors = [_unreadable(name, path) for name, path in (("cert", cert), ("key", key))]
    if any(errors):
        raise ConfigError([error for error in errors if error])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_pass_phrase)
    except _PassPhraseAsked:
        setting = "tls_cert_file" if key is None else "tls_key_file"
        raise ConfigError(
            [
                f"{setting}: the private key in {key or cert} is encrypted with a pass phrase; "
                "give the bridge a key without one (openssl pkey -in KEY -out PLAIN)"
            ]
        ) from None
    except ssl.SSLError as exc:
        where = f"tls_cert_file: {cert}"
        if key is not None:
            where = f"tls_cert_file, tls_key_file: {cert} and {key}"
        problem = f"no PEM certificate and matching private key ({exc.reason or exc})"
        raise ConfigError([f"{where}: {problem}"]) from None
    return context


def _unreadable(name: str, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        with path.open("rb"):
            return None
    except OSError as exc:
        return f"tls_{name}_file: cannot read {path}: {exc.strerror}"


def _check(settings: Settings) -> int:
    from bridge.app import load_config

    errors: list[str] = []
    try:
        tls_context(settings)
    except ConfigError as exc:
        errors += exc.errors
    try:
        config = load_config(settings)
    except ConfigError as exc:
        raise ConfigError(errors + exc.errors) from exc
    if errors:
        raise ConfigError(errors)
    rules = config.rules
    print(
        f"settings ok; {len(rules.correlate)} incident rules in {len(rules.files)} files; "
        f"{len(rules.targets)} notification targets, {len(rules.routes)} routes; "
        f"{len(config.mappings)} generic webhook mappings"
    )
    return 0


async def _upgrade(settings: Settings) -> None:
    from bridge.store import database

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
    tools = db.add_subparsers(dest="db_command", required=True)
    tools.add_parser("upgrade", help="create the schema or apply new migrations")
    backup = tools.add_parser(
        "backup", help="copy the SQLite database to FILE, safely while the daemon runs"
    )
    backup.add_argument("file", type=Path, metavar="FILE", help="the copy to write (replaced)")
    commands.add_parser("version", help="print the version")
    _offline_parsers(commands)
    return parser


def _offline_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = commands.add_parser("rules", help="check and test rule files offline")
    tools = rules.add_subparsers(dest="rules_command", required=True)
    check = tools.add_parser("check", help="validate a rules directory and its CMDB")
    check.add_argument(
        "dir", nargs="?", type=Path, help="rules directory (default: as check-config finds it)"
    )
    test = tools.add_parser("test", help="run rule test files (docs/rules-testing.md)")
    test.add_argument("files", nargs="+", type=Path, metavar="TESTFILE")
    test.add_argument("--rules", type=Path, help="rules directory, over the test files' own")
    test.add_argument("-v", "--verbose", action="store_true", help="show every rule decision")
    play = commands.add_parser("replay", help="feed captured payloads through the rules")
    play.add_argument("dir", type=Path, help="directory of captured payloads (*.json)")
    play.add_argument("--rules", type=Path, help="rules directory (default: as configured)")
    play.add_argument("--source", help="sender of every payload (default: the folder's name)")


def _rules_check(args: argparse.Namespace) -> int:
    directory = args.dir if args.dir is not None else _rules_dir(_load(args.config))
    return rulecheck.check(directory)


def _rules_test(args: argparse.Namespace) -> int:
    runner = Runner(shipped_config_dir(), rules_override=args.rules, verbose=args.verbose)
    return runner.run(args.files)


def _replay(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    try:
        rules = load_rules(args.rules or _rules_dir(settings))
    except RuleLoadError as exc:
        raise ConfigError(exc.errors) from exc
    decoder = Decoder(
        settings.resolve_timeout,
        settings.zabbix_timezone,
        settings.generic_dir or shipped_config_dir() / "generic",
    )
    engine = EngineSettings(settings.duplicate_window, settings.reopen_window)
    return replay(args.dir, rules, engine, decoder, args.source)


def _backup(settings: Settings, target: Path) -> int:
    """`bridge db backup FILE`: SQLite only; for PostgreSQL, says what `pg_dump` to run."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "sqlite":
        print(_pg_dump_advice(settings.effective_database_url, target), file=sys.stderr)
        return 2
    source = Path(url.database or "")
    if not url.database or url.database == ":memory:" or not source.is_file():
        print(f"bridge db backup: no SQLite database at {source}", file=sys.stderr)
        return 1
    if target.resolve() == source.resolve():
        print("bridge db backup: FILE is the database itself", file=sys.stderr)
        return 1
    try:
        _copy_sqlite(source, target)
    except (sqlite3.Error, OSError) as exc:
        print(f"bridge db backup: {source} -> {target}: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {source} to {target} ({target.stat().st_size} bytes)")
    return 0


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup API, all pages in one step: one consistent snapshot taken as a
    WAL reader (the running daemon keeps writing meanwhile, and its writes cannot restart the
    copy), written next to `target` and renamed over it only once it passed `quick_check`."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)
                # One self-contained file (the copy has the source's WAL mode otherwise); the
                # daemon turns WAL on again when it opens a restored copy.
                dst.execute("PRAGMA journal_mode=DELETE")
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
        if check != "ok":
            raise sqlite3.DatabaseError(f"the copy failed its check: {check}")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _pg_dump_advice(database_url: str, target: Path) -> str:
    """What to run instead for PostgreSQL: `pg_dump` for the configured URL, without its
    password."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    command = ["pg_dump", "--format=custom", f"--file={target}"]
    if url.host:
        command.append(f"--host={url.host}")
    if url.port:
        command.append(f"--port={url.port}")
    if url.username:
        command.append(f"--username={url.username}")
    command.append(url.database or "")
    return (
        f"bridge db backup copies SQLite databases only; this one is {url.get_backend_name()}. "
        "Back it up with pg_dump (give the password in PGPASSWORD or ~/.pgpass; restore with "
        f"pg_restore, see docs/operations.md):\n  {shlex.join(command)}"
    )


def _db(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "backup":
        return _backup(settings, args.file)
    asyncio.run(_upgrade(settings))
    print("database schema is up to date")
    return 0


def _daemon(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if args.command == "run":
        return _run(settings)
    if args.command == "check-config":
        return _check(settings)
    return _db(args, settings)


def _version() -> int:
    from bridge.app import version

    print(version())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        return _version()
    if args.command == "rules":
        command = _rules_check if args.rules_command == "check" else _rules_test
    else:
        command = _replay if args.command == "replay" else _daemon
    try:
        return command(args)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
