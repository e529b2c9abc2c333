"""The composition root: settings, clock, metrics, engine, rules and pipeline, built once."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import prometheus_client
from aiohttp import ClientSession, ClientTimeout, web

from bridge import jobs
from bridge.api import (
    auth,
    incidents,
    maintenance,
    middleware,
    notifications,
    problems,
    status,
    webhooks,
)
from bridge.api.limits import Limits, RateLimiter
from bridge.clock import Clock, SystemClock
from bridge.errors import ConfigError
from bridge.ingest import Pipeline
from bridge.metrics import Metrics
from bridge.notify import channels
from bridge.notify.dispatcher import DeliverySettings, Dispatcher
from bridge.notify.templates import TemplateLoadError, Templates
from bridge.runtime import RUNTIME, Runtime
from bridge.settings import Settings
from bridge.store import admin, database, scans
from connectors.generic import Mapping as GenericMapping
from connectors.generic import MappingLoadError, load_mappings
from rules.evaluate import EngineSettings
from rules.loader import RuleLoadError, load_rules
from rules.ruleset import RuleSet
from rules.sla import SlaPolicy, SlaTarget

log = logging.getLogger(__name__)


def version() -> str:
    try:
        return metadata.version("alert-bridge")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def default_config_dir() -> Path:
    """The example config shipped in `config/` (`bridge/_config` links there, and the wheel
    carries a copy under that name)."""
    return Path(__file__).with_name("_config")


def load_rule_set(settings: Settings) -> RuleSet:
    try:
        return load_rules(settings.rules_dir or default_config_dir() / "rules")
    except RuleLoadError as exc:
        raise ConfigError(exc.errors) from exc


def load_generic_mappings(settings: Settings) -> dict[str, GenericMapping]:
    try:
        return load_mappings(settings.generic_dir or default_config_dir() / "generic")
    except MappingLoadError as exc:
        raise ConfigError(exc.errors) from exc


@dataclass(frozen=True, slots=True)
class Config:
    """Everything loaded from files: rules, generic mappings, notification templates."""

    rules: RuleSet
    mappings: dict[str, GenericMapping]
    templates: Templates


def load_config(settings: Settings) -> Config:
    """Every file the settings name, validated together: all errors are reported at once
    (rule files, the options of every notification target, generic mappings, templates)."""
    errors: list[str] = []
    rules, mappings, templates = RuleSet(), {}, Templates(None)
    try:
        rules = load_rule_set(settings)
        errors += channels.check_targets(rules)
    except ConfigError as exc:
        errors += exc.errors
    try:
        mappings = load_generic_mappings(settings)
    except ConfigError as exc:
        errors += exc.errors
    try:
        templates = Templates(settings.templates_dir or default_config_dir() / "templates")
    except TemplateLoadError as exc:
        errors.append(str(exc))
    if errors:
        raise ConfigError(errors)
    return Config(rules, mappings, templates)


async def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    """Load rules, migrate the schema, and wire the HTTP app; the writer starts with the app."""
    config = load_config(settings)
    policy = auth.Policy.from_settings(settings)
    open_to_anybody = check_posture(settings, policy, [*auth.BUILT_IN_SOURCES, *config.mappings])
    # `*_created` series double the exposition and no alerting rule uses them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = Metrics(version())
    engine = database.create_engine(
        settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    await database.upgrade(engine)
    clock = clock or SystemClock()
    http = ClientSession(timeout=ClientTimeout(total=30))
    dispatcher = Dispatcher(
        engine,
        clock,
        lambda: runtime.rules,
        lambda: runtime.templates,
        http,
        metrics,
        delivery_settings(settings),
        settings.effective_public_url,
    )
    runtime = Runtime(
        settings=settings,
        clock=clock,
        metrics=metrics,
        engine=engine,
        pipeline=Pipeline(
            engine,
            clock,
            lambda: runtime.rules,
            EngineSettings(settings.duplicate_window, settings.reopen_window),
            metrics,
            settings.commit_max_events,
            lambda: runtime.api_windows,
            sla_policy(settings),
            dispatcher.wake,
        ),
        rules=config.rules,
        started_at=clock.now(),
        version=version(),
        http=http,
        generic_mappings=config.mappings,
        templates=config.templates,
        dispatcher=dispatcher,
    )
    runtime.reload = lambda: reload_rules(runtime)
    _rules_loaded(runtime)
    async with engine.connect() as conn:
        for state, count in (await scans.count_incidents_by_status(conn)).items():
            metrics.incidents.labels(state).set(count)
        runtime.set_api_windows(await admin.list_windows(conn, include_deleted=False))

    runtime.open_to_anybody = open_to_anybody
    runtime.limits = Limits(
        settings.max_batch_items, settings.max_labels, settings.max_label_length
    )
    runtime.rate_limiter = RateLimiter(settings.rate_limit, settings.rate_limit * 2)
    refused = metrics.requests_rejected
    guard = auth.middleware(
        policy,
        lambda: runtime.generic_mappings,
        lambda label, reason: refused.labels(label, reason.value).inc(),
        settings.max_body_bytes,
    )
    app = web.Application(
        middlewares=[middleware.errors, guard],
        client_max_size=settings.max_body_bytes,
        # Bodies stay as sent: aiohttp would inflate a `Content-Encoding: gzip` body on the
        # event loop while it arrives, before any handler (or the auth check) could refuse it.
        # The guard answers 415 to any encoding but identity.
        handler_args={"auto_decompress": False},
    )
    app[RUNTIME] = runtime
    webhooks.add_routes(app)
    incidents.add_routes(app)
    problems.add_routes(app)
    maintenance.add_routes(app)
    notifications.add_routes(app)
    status.add_routes(app)
    app.cleanup_ctx.append(_background)
    return app


def check_posture(settings: Settings, policy: auth.Policy, sources: list[str]) -> list[str]:
    """The sources (and `api`) that answer anybody. Bound to loopback that is the default;
    bound to any other address it is refused unless `allow_unauthenticated` is set (then
    warned about here and shown in the status API)."""
    found = auth.unguarded(policy, sources)
    if not found or auth.is_loopback(settings.host):
        return found
    if not settings.allow_unauthenticated:
        raise ConfigError(
            [
                f"bound to {settings.host}, but these accept requests from anybody: "
                f"{', '.join(found)}. Set BRIDGE_INBOUND_TOKENS (or BRIDGE_INBOUND_BASIC, "
                "BRIDGE_GENERIC_HMAC_SECRETS) for every source and BRIDGE_API_WRITE_TOKENS, "
                "or BRIDGE_ALLOW_UNAUTHENTICATED=true"
            ]
        )
    log.warning(
        "bound to %s with no authentication for %s (BRIDGE_ALLOW_UNAUTHENTICATED=true)",
        settings.host,
        ", ".join(found),
    )
    return found


def sla_policy(settings: Settings) -> SlaPolicy:
    priorities = {f"P{n}": n for n in range(1, 6)}
    return {
        level: SlaTarget(settings.sla_acknowledge.get(name), settings.sla_resolve.get(name))
        for name, level in priorities.items()
    }


def delivery_settings(settings: Settings) -> DeliverySettings:
    return DeliverySettings(
        max_attempts=settings.notify_max_attempts,
        max_age=settings.notify_max_age,
        backoff=settings.notify_backoff,
        backoff_max=settings.notify_backoff_max,
        timeout=settings.notify_timeout,
        concurrency=settings.notify_concurrency,
        poll_interval=settings.notify_poll_interval,
    )


def _rules_loaded(runtime: Runtime) -> None:
    runtime.rules_loaded_at = runtime.clock.now()
    runtime.metrics.rules_last_reload.set(runtime.rules_loaded_at.timestamp())
    for section, count in runtime.rules.counts().items():
        runtime.metrics.rules_loaded.labels(section).set(count)


def reload_rules(runtime: Runtime) -> list[str]:
    """Validate every file again and swap the rule set (and generic mappings) whole; on any
    error change nothing, log each `file:line: message`, count it and return the errors.
    Open incidents, held alerts and API maintenance windows are state, not rules: they stay."""
    try:
        config = load_config(runtime.settings)
    except ConfigError as exc:
        for error in exc.errors:
            log.error("rule reload refused: %s", error)
        runtime.metrics.rules_reload_failures.inc()
        runtime.reload_errors = list(exc.errors)
        runtime.reload_failed_at = runtime.clock.now()
        return runtime.reload_errors
    runtime.rules = config.rules
    runtime.generic_mappings = config.mappings
    runtime.templates = config.templates
    runtime.reload_errors = []
    runtime.metrics.rules_reloads.inc()
    _rules_loaded(runtime)
    log.info("rules reloaded: %s", _summary(config.rules))
    return []


def _summary(rules: RuleSet) -> str:
    return ", ".join(f"{count} {section}" for section, count in rules.counts().items())


async def _background(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    runtime.pipeline.start()
    runtime.dispatcher.start()
    scheduler = jobs.schedule(runtime)
    scheduler.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload_rules, runtime)
    log.info(
        "bridge %s ready: database %s, rules: %s",
        runtime.version,
        runtime.settings.database_backend,
        _summary(runtime.rules),
    )
    yield
    loop.remove_signal_handler(signal.SIGHUP)
    scheduler.shutdown(wait=False)
    await runtime.pipeline.stop()
    await runtime.dispatcher.stop()
    await runtime.http.close()
    await runtime.engine.dispose()
