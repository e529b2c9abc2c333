"""Scheduled work as plain async functions, each with a run-once entry point for tests.

`schedule` registers them with APScheduler; `guarded` is the job boundary: it catches, logs and
counts (`bridge_job_runs_total{job,result}`), so one failed run never stops the schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bridge.runtime import Runtime
from bridge.store import repository

log = logging.getLogger(__name__)

_EXPIRY_BATCH = 1000


async def resolve_expired(runtime: Runtime) -> int:
    """Resolve the level-triggered alerts whose `endsAt` passed without a re-send."""
    total = 0
    while True:
        async with runtime.engine.connect() as conn:
            keys = await repository.expired_alerts(conn, runtime.clock.now(), _EXPIRY_BATCH)
        if not keys:
            return total
        total += await runtime.pipeline.expire(keys)
        if len(keys) < _EXPIRY_BATCH:
            return total


def guarded(
    name: str, job: Callable[[Runtime], Awaitable[object]], runtime: Runtime
) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await job(runtime)
        except Exception:
            log.exception("job %s failed", name)
            runtime.metrics.job_runs.labels(name, "failure").inc()
            return
        runtime.metrics.job_runs.labels(name, "success").inc()

    return run


def schedule(runtime: Runtime) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(
        guarded("resolve_expired", resolve_expired, runtime),
        "interval",
        seconds=runtime.settings.resolve_check_interval.total_seconds(),
        id="resolve_expired",
        name="resolve_expired",
        max_instances=1,
        coalesce=True,
    )
    return scheduler
