"""What the composition root builds once and the handlers and jobs share."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import ClientSession, web
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.api.limits import Limits, RateLimiter
from bridge.clock import Clock
from bridge.ingest import Pipeline
from bridge.metrics import Metrics
from bridge.notify.dispatcher import Dispatcher
from bridge.notify.templates import Templates
from bridge.settings import Settings
from connectors.generic import Mapping as GenericMapping
from rules.compile import compile_maintenance
from rules.ruleset import MaintenanceWindow, Origin, RuleSet
from rules.schedule import MaintenanceSpec

log = logging.getLogger(__name__)


@dataclass
class JobHealth:
    """What `/api/v1/status` shows of a scheduled job (pollers included)."""

    runs: int = 0
    failures: int = 0
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str = ""
    last_duration_seconds: float = 0.0


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    metrics: Metrics
    engine: AsyncEngine
    pipeline: Pipeline
    rules: RuleSet
    started_at: datetime
    version: str
    http: ClientSession
    templates: Templates
    dispatcher: Dispatcher
    generic_mappings: dict[str, GenericMapping] = field(default_factory=dict)
    last_event_at: dict[str, datetime] = field(default_factory=dict)
    jobs: dict[str, JobHealth] = field(default_factory=dict)
    api_windows: tuple[MaintenanceWindow, ...] = ()
    rules_loaded_at: datetime | None = None
    reload_errors: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=lambda: Limits(10_000, 128, 4096))
    rate_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0.0, 0.0))
    # Sources (and `api`) that accept requests without credentials.
    open_to_anybody: list[str] = field(default_factory=list)
    reload_failed_at: datetime | None = None
    # Set by the composition root: validate the rule files again and swap them in; returns
    # the errors (nothing changed) or an empty list.
    reload: Callable[[], list[str]] = field(default=lambda: [])

    def set_api_windows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Compile the maintenance windows created through the API (stored rows)."""
        windows = []
        for row in rows:
            window = window_from_row(row)
            if window is not None:
                windows.append(window)
        self.api_windows = tuple(windows)


def window_from_row(row: Mapping[str, Any]) -> MaintenanceWindow | None:
    try:
        spec = MaintenanceSpec.model_validate(row["spec"])
    except ValidationError as exc:  # validated on the way in; only a hand-edited row fails
        log.error("maintenance window %s is invalid and ignored: %s", row.get("id"), exc)
        return None
    window = compile_maintenance(spec, Origin("api", 0))
    return MaintenanceWindow(
        name=window.name,
        matchers=window.matchers,
        schedule=window.schedule,
        reason=window.reason,
        id=int(row["id"]),
        origin=window.origin,
    )


RUNTIME = web.AppKey("runtime", Runtime)
