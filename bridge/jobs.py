"""Scheduled work as plain async functions, each with a run-once entry point for tests.

`schedule` registers them with APScheduler; `guarded` is the job boundary: it catches, logs and
counts (`bridge_job_runs_total{job,result}`), so one failed run never stops the schedule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.api import limits
from bridge.errors import StoreUnavailable
from bridge.ingest import OperatorAction
from bridge.notify import channels, itsm, servicenow, servicenow_inbound
from bridge.runtime import JobHealth, Runtime
from bridge.store import admin, database, outbox, repository, retention, scans
from bridge.store.failures import UNREACHABLE, describe, is_transient
from connectors import nagios, zabbix, zabbix_api
from connectors.nagios_reconcile import reconcile
from connectors.nagios_status import parse_status
from connectors.parsed import Parsed
from rules import incidents as incident_stage
from rules.heartbeats import SOURCE as HEARTBEAT_SOURCE
from rules.incidents import Transition, due_to_close
from rules.model import (
    AlertState,
    AlertStatus,
    Event,
    Hold,
    IncidentState,
    IncidentStatus,
    TimelineSource,
)
from rules.recheck import inhibitor_of, still_held
from rules.ruleset import Target

log = logging.getLogger(__name__)

_EXPIRY_BATCH = 1000


async def resolve_expired(runtime: Runtime) -> int:
    """Resolve the level-triggered alerts whose `endsAt` passed without a re-send."""
    total = 0
    while True:
        async with runtime.engine.connect() as conn:
            keys = await scans.expired_alerts(conn, runtime.clock.now(), _EXPIRY_BATCH)
        if not keys:
            return total
        total += await runtime.pipeline.expire(keys)
        if len(keys) < _EXPIRY_BATCH:
            return total


async def recheck_held(runtime: Runtime) -> int:
    """Look again at held and flapping alerts (a window ended, an inhibitor resolved, a
    flapping alert settled); returns how many changed."""
    total, after = 0, 0
    while True:
        async with runtime.engine.connect() as conn:
            page = await scans.held_alerts(conn, _EXPIRY_BATCH, after)
            alerts = await repository.load_alerts(conn, [key for _, key in page])
            todo = await _not_surely_held(runtime, conn, alerts)
        if todo:
            total += await runtime.pipeline.recheck(todo)
        if len(page) < _EXPIRY_BATCH:
            return total
        after = page[-1][0]


async def _not_surely_held(
    runtime: Runtime, conn: AsyncConnection, alerts: list[AlertState]
) -> list[AlertState]:
    """The held alerts worth the writer's time: those whose window may have ended or whose
    inhibiting alert may have stopped (thousands can stay inhibited behind one host down)."""
    named = {inhibitor_of(a.held_by) for a in alerts if a.hold is Hold.INHIBITED}
    sources = [key for key in named if key is not None]
    firing = {
        (a.source, a.fingerprint)
        for a in await repository.load_alerts(conn, sources)
        if a.status is AlertStatus.FIRING
    }
    windows = (*runtime.rules.maintenance, *runtime.api_windows)
    now = runtime.clock.now()
    return [a for a in alerts if not still_held(a, windows, now, firing.__contains__)]


AUTO_CLOSE_ACTOR = "rule:auto-close"


async def close_resolved(runtime: Runtime) -> int:
    """Close incidents resolved longer than `close_after` ago; returns how many closed."""
    after = runtime.settings.close_after
    if not after:
        return 0
    async with runtime.engine.connect() as conn:
        ids = await scans.resolved_before(conn, runtime.clock.now() - after, _EXPIRY_BATCH)
    closed = await asyncio.gather(*(_close(runtime, i, after) for i in ids))
    return sum(closed)


async def _close(runtime: Runtime, incident_id: int, after: timedelta) -> int:
    def close(incident: IncidentState, now: datetime) -> Transition:
        if not due_to_close(incident, now, after):  # reopened since the job looked
            return incident, None
        return incident_stage.close(incident, AUTO_CLOSE_ACTOR, f"resolved for {after}", now)

    action = OperatorAction(incident_id, "close", close, TimelineSource.RULE)
    updated = await runtime.pipeline.act(action)
    return 1 if updated.status is IncidentStatus.CLOSED else 0


async def check_heartbeats(runtime: Runtime) -> int:
    """Open an incident for every heartbeat that is late, and resolve those of heartbeats a
    reload removed; returns how many were late."""
    if not runtime.rules.heartbeats:
        async with runtime.engine.connect() as conn:
            if not await scans.firing_alerts(conn, HEARTBEAT_SOURCE):
                return 0  # no heartbeat rules, and none left behind by a reload
    return await runtime.pipeline.check_heartbeats()


async def refresh_windows(runtime: Runtime) -> int:
    """Reload the maintenance windows created through the API (another replica may have
    changed them); returns how many are defined."""
    async with runtime.engine.connect() as conn:
        rows = await admin.list_windows(conn, include_deleted=False)
    runtime.set_api_windows(rows)
    return len(rows)


async def reconcile_nagios(runtime: Runtime) -> int:
    """Bring alerts of source "nagios" in line with `status.dat`; returns the events sent."""
    path = runtime.settings.nagios_status_file
    if path is None:
        return 0
    text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
    states = parse_status(text)
    async with runtime.engine.connect() as conn:
        firing = {a.fingerprint for a in await scans.firing_alerts(conn, nagios.SOURCE)}
    events = _admissible(runtime, nagios.SOURCE, reconcile(states, firing, runtime.clock.now()))
    await runtime.pipeline.submit(events)
    return len(events)


async def run_escalations(runtime: Runtime) -> int:
    """Due escalation steps and repeat notifications; returns the notices queued."""
    return await runtime.pipeline.run_timers()


async def check_sla(runtime: Runtime) -> int:
    """Record SLA deadlines missed; returns how many."""
    return await runtime.pipeline.check_sla()


async def poll_itsm(runtime: Runtime) -> int:
    """Read back the ServiceNow tickets of incidents not closed yet; returns the updates
    applied. A target that cannot be read fails the run (counted, shown in the status)."""
    applied = 0
    failures = []
    for target in runtime.rules.targets:
        if target.channel != "servicenow":
            continue
        try:
            applied += await _poll_servicenow(runtime, target)
        except PollError as exc:
            failures.append(str(exc))
    if failures:
        raise PollError("; ".join(failures))
    return applied


async def _poll_servicenow(runtime: Runtime, target: Target) -> int:
    async with runtime.engine.connect() as conn:
        tickets = await outbox.open_tickets(conn, target.name)
        known = await outbox.ticket_states(conn, target.name)
    if not tickets:
        return 0
    options = channels.options(target.name, target.channel, target.options)
    assert isinstance(options, servicenow.Options)
    found = await servicenow_inbound.poll(options, runtime.http, sorted(tickets))
    if not isinstance(found, list):
        raise PollError(f"{target.name}: {found.reason}")
    results = [
        await itsm.apply(runtime, target.name, update, "poll", known.get(update.external_id))
        for update in found
    ]
    return sum(1 for result in results if result is itsm.Result.APPLIED)


class PollError(Exception):
    """A poll failed: the sender could not be reached or refused the request."""


# problem.get as Zabbix 6.0's own problem view asks it: open problems and recently resolved ones.
_PROBLEM_GET = {
    "output": "extend",
    "recent": True,
    "selectTags": "extend",
    "selectAcknowledges": "extend",
    "sortfield": ["eventid"],
    "sortorder": "ASC",
}


async def poll_zabbix(runtime: Runtime) -> int:
    """Polling mode: open and recently resolved problems from the Zabbix API, and the firing
    alerts whose problem is gone; returns the events sent."""
    settings = runtime.settings
    if not settings.zabbix_api_url:
        return 0
    problems = await _zabbix_call(runtime, "problem.get", _PROBLEM_GET)
    trigger_ids = zabbix_api.problem_trigger_ids(problems)
    triggers = await _zabbix_call(
        runtime,
        "trigger.get",
        {"triggerids": trigger_ids, "output": "extend", "selectTags": "extend",
         "selectHosts": ["hostid", "host", "name"], "expandDescription": True},
    )  # fmt: skip
    now = runtime.clock.now()
    parsed = zabbix_api.problems_from_response(
        problems, now, triggers=triggers, frontend_url=settings.zabbix_frontend_url
    )
    listed = {event.fingerprint for event in parsed.events}
    async with runtime.engine.connect() as conn:
        firing = await scans.firing_alerts(conn, zabbix.SOURCE)
    gone = [alert for alert in firing if alert.fingerprint not in listed]
    events = _admissible(runtime, zabbix.SOURCE, [*parsed.events, *zabbix_api.vanished(gone, now)])
    await runtime.pipeline.submit(events)
    return len(events)


def _admissible(runtime: Runtime, source: str, events: list[Event]) -> list[Event]:
    """The polled events within the limits webhooks apply (the store takes what they let
    through); the others are logged and counted as refused, as a webhook's would be."""
    checked = limits.within_label_limits(Parsed(events=events), runtime.limits)
    for reject in checked.rejects:
        log.warning("%s: polled alert refused: %s", source, reject.message)
        runtime.metrics.events_rejected.labels(source, reject.reason.value).inc()
    return checked.events


async def _zabbix_call(runtime: Runtime, method: str, params: dict[str, Any]) -> object:
    token = runtime.settings.zabbix_api_token
    body = zabbix_api.request(method, params, token.get_secret_value() if token else None, 1)
    headers = {"Content-Type": "application/json-rpc"}
    try:
        async with runtime.http.post(
            runtime.settings.zabbix_api_url, data=orjson.dumps(body), headers=headers
        ) as response:
            if response.status != 200:
                raise PollError(f"{method}: HTTP {response.status}")
            answer: object = orjson.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        raise PollError(f"{method}: {type(exc).__name__}: {exc}") from exc
    error = zabbix_api.api_error(answer)
    if error is not None:
        raise PollError(f"{method}: {error}")
    return answer


async def apply_retention(runtime: Runtime) -> int:
    """Delete what the `retain_*` settings let go, in batches of `retention_batch` rows (one
    short transaction each, so ingest never waits long); returns the rows deleted."""
    settings = runtime.settings
    policy = retention.Policy(
        resolved_alerts=settings.retain_resolved_alerts,
        closed_incidents=settings.retain_closed_incidents,
        notifications=settings.retain_notifications,
        events=settings.retain_events,
        batch=settings.retention_batch,
    )
    deleted = runtime.metrics.retention_deleted
    for kind in retention.Kind:
        deleted.labels(kind.value)  # every kind shows, at 0 until something goes

    def counted(kind: retention.Kind, rows: int) -> None:
        deleted.labels(kind.value).inc(rows)

    totals = await retention.apply(runtime.engine, policy, runtime.clock.now(), counted)
    return sum(totals.values())


Job = Callable[[Runtime], Awaitable[object]]


# Jobs that refresh this process's own state run on every replica; the others (pollers,
# expiry, escalation, SLA, retention...) run on one replica at a time (a PostgreSQL advisory
# lock per job; skipped runs are counted as `skipped`).
_EVERY_REPLICA = frozenset({"refresh_windows"})


def guarded(name: str, job: Job, runtime: Runtime) -> Callable[[], Awaitable[None]]:
    health = runtime.jobs.setdefault(name, JobHealth())

    async def run() -> None:
        try:
            if name in _EVERY_REPLICA:
                await attempt()
                return
            async with database.exclusive(runtime.engine, f"job:{name}") as mine:
                if not mine:  # another replica runs it right now
                    runtime.metrics.job_runs.labels(name, "skipped").inc()
                    return
                await attempt()
        except Exception as exc:  # noqa: BLE001 - the lock, its release: logged, counted
            failed(exc)

    async def attempt() -> None:
        started = time.perf_counter()
        health.runs += 1
        try:
            await job(runtime)
        except Exception as exc:  # noqa: BLE001 - the job boundary: logged and counted
            failed(exc)
            return
        finally:
            health.last_duration_seconds = round(time.perf_counter() - started, 6)
        runtime.metrics.job_runs.labels(name, "success").inc()
        health.last_success_at = runtime.clock.now()

    def failed(exc: Exception) -> None:
        if isinstance(exc, (StoreUnavailable, *UNREACHABLE)) or (
            isinstance(exc, SQLAlchemyError) and is_transient(exc)
        ):
            log.warning("job %s: the database is unavailable: %s", name, describe(exc))
        else:
            log.exception("job %s failed", name)
        runtime.metrics.job_runs.labels(name, "failure").inc()
        health.failures += 1
        health.last_error_at = runtime.clock.now()
        health.last_error = f"{type(exc).__name__}: {exc}"[:500]

    return run


def schedule(runtime: Runtime) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")
    settings = runtime.settings
    jobs: list[tuple[str, Job, timedelta]] = [
        ("resolve_expired", resolve_expired, settings.resolve_check_interval),
        ("recheck_held", recheck_held, settings.recheck_interval),
        ("check_heartbeats", check_heartbeats, settings.heartbeat_check_interval),
        ("refresh_windows", refresh_windows, settings.recheck_interval),
        ("close_resolved", close_resolved, settings.recheck_interval * 4),
        ("run_escalations", run_escalations, settings.escalation_check_interval),
        ("check_sla", check_sla, settings.sla_check_interval),
    ]
    if settings.retention_interval:
        jobs.append(("apply_retention", apply_retention, settings.retention_interval))
    if settings.itsm_poll_interval:
        jobs.append(("poll_itsm", poll_itsm, settings.itsm_poll_interval))
    if settings.nagios_status_file is not None:
        jobs.append(("reconcile_nagios", reconcile_nagios, settings.nagios_reconcile_interval))
    if settings.zabbix_api_url:
        jobs.append(("poll_zabbix", poll_zabbix, settings.zabbix_poll_interval))
    for name, job, every in jobs:
        scheduler.add_job(
            guarded(name, job, runtime),
            "interval",
            seconds=every.total_seconds(),
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
        )
    return scheduler
