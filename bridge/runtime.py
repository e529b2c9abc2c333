"""What the composition root builds once and the handlers and jobs share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import ClientSession, web
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.clock import Clock
from bridge.ingest import Pipeline
from bridge.metrics import Metrics
from bridge.settings import Settings
from connectors.generic import Mapping as GenericMapping
from rules.ruleset import RuleSet


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
    generic_mappings: dict[str, GenericMapping] = field(default_factory=dict)
    last_event_at: dict[str, datetime] = field(default_factory=dict)
    jobs: dict[str, JobHealth] = field(default_factory=dict)


RUNTIME = web.AppKey("runtime", Runtime)
