"""The single writer: parse -> load state -> evaluate -> persist, with group commit.

Requests hand their decoded events to `Pipeline.submit` and wait. One writer task takes
everything queued (up to `commit_max_events`), loads the state those events touch, runs the
rule stages (`rules.evaluate`) in arrival order, writes the result in one transaction and only
then answers every waiting request. While one commit is in flight the next batch queues, so
concurrent senders share commits and durability costs one commit per batch, not per request.
Operator actions (acknowledge, resolve), expiry of level-triggered alerts, rechecks of held and
flapping alerts and heartbeat checks go through the same writer, so nothing races the pipeline
for an incident row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.clock import Clock
from bridge.errors import Conflict, NotFound, StoreRefused, StoreUnavailable
from bridge.metrics import Metrics
from bridge.notify import planner
from bridge.notify.planner import Planned
from bridge.store import database, outbox, repository, scans
from bridge.store.failures import UNREACHABLE, Unreachable, describe, is_transient
from rules import incidents as incident_stage
from rules import notify as notify_stage
from rules.dedup import DedupOutcome, expiry_event
from rules.effects import Context, EngineSettings, Evaluation, apply
from rules.evaluate import Lookups, Prepared, lookups, more_lookups, prepare, run
from rules.heartbeats import SOURCE as HEARTBEAT_SOURCE
from rules.heartbeats import missed_event
from rules.incidents import IncidentAction, Refusal
from rules.model import (
    AlertState,
    AlertStatus,
    Event,
    IncidentState,
    IncidentStatus,
    TimelineSource,
    Transition,
    evolve,
)
from rules.recheck import as_event, needs_recheck, recheck
from rules.ruleset import MaintenanceWindow, RuleSet
from rules.sla import SlaPolicy
from rules.timers import due_heartbeats, gone_heartbeats
from rules.world import AlertKey, World

log = logging.getLogger(__name__)

# Times a batch is evaluated again after losing an insert race to another writer.
_RACE_RETRIES = 3
# Deadlock victim, serialization failure: the transaction may simply run again.
_RETRY_SQLSTATES = ("40P01", "40001")


def _lost_race(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """A change someone (or the auto-close job) makes to one incident: `apply` is a pure
    transition of `rules.incidents` with its arguments bound, run by the writer on the
    incident as stored at that moment."""

    incident_id: int
    verb: str  # acknowledge, unacknowledge, resolve, close, assign, comment, priority
    apply: Callable[[IncidentState, datetime], incident_stage.Transition]
    source: TimelineSource = TimelineSource.API
    # The target the change came from (an ITSM ticket), which is not notified of it.
    quiet_target: str | None = None


@dataclass(eq=False)
class _Work:
    events: Sequence[Event] = ()
    expire: Sequence[AlertKey] = ()
    recheck: Sequence[AlertState] = ()
    heartbeats: bool = False
    timers: bool = False  # due escalation steps and repeat notifications
    sla: bool = False  # missed SLA deadlines
    action: OperatorAction | None = None
    started: float = field(default_factory=time.perf_counter)
    future: asyncio.Future[object] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    result: object = None
    error: Exception | None = None
    resolved_rule: str | None = None  # set when an operator resolved an incident
    quiet: list[tuple[int, str, Transition]] = field(default_factory=list)

    @property
    def size(self) -> int:
        jobs = sum((self.action is not None, self.heartbeats, self.timers, self.sla))
        return len(self.events) + len(self.expire) + len(self.recheck) + jobs


class Pipeline:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        rules: Callable[[], RuleSet],
        settings: EngineSettings,
        metrics: Metrics,
        commit_max_events: int,
        windows: Callable[[], tuple[MaintenanceWindow, ...]] = tuple,
        sla_policy: SlaPolicy | None = None,
        queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._sla = sla_policy or {}
        self._queued = queued
        self._engine = engine
        self._clock = clock
        self._rules = rules
        self._windows = windows
        self._settings = settings
        self._metrics = metrics
        self._max = commit_max_events
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bridge-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer."""
        if self._task is None:
            return
        self._closed = True  # what comes later (a job still running) fails, not waits for ever
        await self._queue.join()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def submit(self, events: Sequence[Event]) -> None:
        """Returns once the events are committed; raises `StoreUnavailable` otherwise."""
        if events:
            await self._enqueue(_Work(events=events))

    async def expire(self, keys: Sequence[AlertKey]) -> int:
        """Resolve the given alerts if their `expires_at` has passed; returns how many did."""
        result = await self._enqueue(_Work(expire=keys))
        return result if isinstance(result, int) else 0

    async def recheck(self, alerts: Sequence[AlertState]) -> int:
        """Look again at held or flapping alerts (as the store listed them); returns how many
        changed (released into an incident, stopped flapping)."""
        result = await self._enqueue(_Work(recheck=alerts))
        return result if isinstance(result, int) else 0

    async def check_heartbeats(self) -> int:
        """Open incidents for missed heartbeats; returns how many were missed."""
        result = await self._enqueue(_Work(heartbeats=True))
        return result if isinstance(result, int) else 0

    async def run_timers(self) -> int:
        """Run the escalation steps and repeats that are due; returns the notices queued."""
        result = await self._enqueue(_Work(timers=True))
        return result if isinstance(result, int) else 0

    async def check_sla(self) -> int:
        """Record missed SLA deadlines (timeline, notices); returns how many."""
        result = await self._enqueue(_Work(sla=True))
        return result if isinstance(result, int) else 0

    async def act(self, action: OperatorAction) -> IncidentState:
        result = await self._enqueue(_Work(action=action))
        assert isinstance(result, IncidentState)
        return result

    async def _enqueue(self, work: _Work) -> object:
        if self._closed:
            raise StoreUnavailable("the writer has stopped")
        self._queue.put_nowait(work)
        return await work.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = batch[0].size
            while size < self._max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
                size += batch[-1].size
            try:
                await self._commit(batch, size)
            except Exception as exc:
                log.exception("writer failed a batch of %d items", len(batch))
                self._metrics.internal_errors.labels("writer").inc()
                self._fail(batch, exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Work], size: int, races: int = 0) -> None:
        started = time.perf_counter()
        now = self._clock.now()
        try:
            world, evaluations, planned = await self._attempt(batch, now)
        except SQLAlchemyError as exc:
            self._metrics.database_errors.labels("commit").inc()
            if _lost_race(exc) and races < _RACE_RETRIES:
                # Another writer on the same database (a replica) inserted the same incident or
                # problem first, or PostgreSQL chose this transaction as a deadlock's victim (the
                # dispatcher's outcome rows): evaluate again on what is stored now.
                log.info("commit lost a race with another writer, retrying: %s", describe(exc))
                await self._commit(batch, size, races + 1)
                return
            # Not the database being away: something in the batch does not fit. Commit the
            # requests one by one, so only the one at fault fails and the others are stored.
            if len(batch) > 1:
                for item in batch:
                    await self._commit([item], item.size)
                return
            log.error("commit refused: %s", describe(exc))
            retry_helps = _lost_race(exc)  # a concurrent writer won a race
            error = StoreUnavailable if retry_helps else StoreRefused
            self._fail(batch, error(describe(exc)))
            return
        except UNREACHABLE as exc:
            log.warning("commit of %d events failed: %s", size, describe(exc))
            self._metrics.database_errors.labels("commit").inc()
            self._fail(batch, StoreUnavailable(describe(exc)))
            return
        self._observe(world, evaluations, now)
        self._observe_notify(planned)
        self._metrics.commit_events.observe(size)
        self._metrics.commit_duration.observe(time.perf_counter() - started)
        finished = time.perf_counter()
        for item in batch:
            if item.events:
                self._metrics.ingest_latency.labels(item.events[0].source).observe(
                    finished - item.started
                )
            if item.resolved_rule is not None:
                self._metrics.incidents_resolved.labels(item.resolved_rule, "operator").inc()
            if item.error is not None:
                item.future.set_exception(item.error)
            else:
                item.future.set_result(item.result)

    async def _attempt(
        self, batch: list[_Work], now: datetime
    ) -> tuple[World, list[Evaluation], Planned]:
        for item in batch:  # a retried batch starts afresh
            item.result, item.error, item.resolved_rule, item.quiet = None, None, None, []
        try:
            connection = await self._engine.connect()
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            raise Unreachable(exc) from exc  # whatever stops a connection, waiting may help
        try:
            async with connection.begin():
                await database.write_lock(connection)
                return await self._transaction(connection, batch, now)
        except SQLAlchemyError as exc:
            if is_transient(exc) and not _lost_race(exc):
                raise Unreachable(exc) from exc
            raise
        finally:
            await connection.close()

    @staticmethod
    def _fail(batch: list[_Work], exc: Exception) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    async def _transaction(
        self, conn: AsyncConnection, batch: list[_Work], now: datetime
    ) -> tuple[World, list[Evaluation], Planned]:
        rules = self._rules()
        ctx = Context(rules, self._settings, now, self._windows())
        prepared = [[prepare(rules, event) for event in item.events] for item in batch]
        world = await self._load(conn, batch, prepared, ctx)
        evaluations: list[Evaluation] = []
        for item, events in zip(batch, prepared, strict=True):
            for ready in events:
                evaluations.extend(run(ctx, world, ready))
            if item.expire:
                item.result = self._expire(ctx, world, item.expire, evaluations)
            if item.recheck:
                item.result = self._recheck(ctx, world, item.recheck, evaluations)
            if item.heartbeats:
                missed = due_heartbeats(ctx, world)
                for beat in [*missed, *gone_heartbeats(ctx, world)]:
                    evaluations.extend(run(ctx, world, beat))
                item.result = len(missed)
            if item.action is not None:
                self._apply_action(world, item, now)
        planned = await self._plan(conn, batch, world, rules, now)
        ids = await repository.persist_world(conn, world, evaluations, now)
        notices, pagings = planner.stored(planned, ids)
        channels = {target.name: target.channel for target in rules.targets}
        planned.queued = await outbox.write(conn, notices, pagings, channels, now)
        return world, evaluations, planned

    async def _plan(
        self, conn: AsyncConnection, batch: list[_Work], world: World, rules: RuleSet, now: datetime
    ) -> Planned:
        """The notifications of the batch's incident changes, due timers and SLA breaches."""
        planned = Planned()
        for item in batch:
            if item.timers:
                item.result = await planner.run_timers(conn, world, rules, now, planned)
            if item.sla:
                item.result = await planner.check_sla(conn, world, rules, now, planned)
            planned.quiet.update(item.quiet)
        await planner.plan_changes(conn, world, rules, self._sla, now, planned)
        return planned

    async def _load(
        self,
        conn: AsyncConnection,
        batch: list[_Work],
        prepared: list[list[Prepared]],
        ctx: Context,
    ) -> World:
        rules = ctx.rules
        events = [p.event for events in prepared for p in events]
        # The batch's own alerts first: a re-send of a firing alert needs little else.
        keys = {(e.source, e.fingerprint) for e in events}
        for item in batch:
            keys.update(item.expire)
        known = {(a.source, a.fingerprint): a for a in await repository.load_alerts(conn, keys)}
        found = lookups(rules, events, lambda source, fp: known.get((source, fp)))
        for item in batch:
            found.alerts.update(item.expire)
            for alert in item.recheck:
                found.alerts.add((alert.source, alert.fingerprint))
                found.merge(_recheck_lookups(rules, alert))
            if item.heartbeats:
                # What a missed-heartbeat event may read (its incident key, problems), and the
                # firing heartbeat alerts, to resolve those whose rule a reload removed.
                missed = [missed_event(r, ctx.now, ctx.now) for r in rules.heartbeats]
                found.merge(lookups(rules, [prepare(rules, event).event for event in missed]))
                firing = await scans.firing_alerts(conn, HEARTBEAT_SOURCE)
                found.alerts.update((a.source, a.fingerprint) for a in firing)
        incident_ids = [item.action.incident_id for item in batch if item.action]
        windows = [rule.within for rule in rules.problems] + [self._settings.reopen_window]
        since = ctx.now - max(windows)
        world = await repository.load_world(conn, found, incident_ids, since, known, keys)
        more = more_lookups(rules, world, found)
        if more.cis:
            extra = await repository.load_world(conn, more, (), since)
            world.load_incidents(i for k, i in extra.incidents.items() if k not in world.incidents)
            world.load_problems(p for k, p in extra.problems.items() if k not in world.problems)
        # The inhibiting alerts' states: one that stopped firing is a stale inhibitor (see
        # `World.stale_inhibitors`) and must not hold the batch's alerts.
        unloaded = world.unloaded_inhibitors()
        if unloaded:
            world.load_alerts(await repository.load_alerts(conn, unloaded))
        return world

    def _expire(
        self, ctx: Context, world: World, keys: Sequence[AlertKey], evaluations: list[Evaluation]
    ) -> int:
        expired = 0
        for source, fingerprint in keys:
            alert = world.alert(source, fingerprint)
            # Re-checked here: a re-send may have moved `expires_at` since the job looked.
            if alert is None or alert.status is not AlertStatus.FIRING:
                continue
            if alert.expires_at is None or alert.expires_at > ctx.now:
                continue
            evaluations.extend(run(ctx, world, expiry_event(alert)))
            self._metrics.alerts_expired.labels(source).inc()
            expired += 1
        return expired

    @staticmethod
    def _recheck(
        ctx: Context, world: World, alerts: Sequence[AlertState], evaluations: list[Evaluation]
    ) -> int:
        changed = 0
        for listed in alerts:
            alert = world.alert(listed.source, listed.fingerprint)
            if alert is None or not needs_recheck(alert):
                continue  # an event changed it since the job looked
            evaluation = recheck(ctx, world, alert)
            if evaluation is not None:
                apply(world, evaluation)
                evaluations.append(evaluation)
                changed += 1
        return changed

    @staticmethod
    def _apply_action(world: World, item: _Work, now: datetime) -> None:
        action = item.action
        assert action is not None
        incident = world.incident(action.incident_id)
        if incident is None:
            item.error = NotFound(f"incident {action.incident_id} not found")
            return
        decided = action.apply(incident, now)
        if isinstance(decided, Refusal):
            item.error = Conflict(decided.value)
            return
        updated, entry = decided
        if action.quiet_target is not None:
            # Not sent back to the ticket it came from: only what this action itself did.
            item.quiet = [
                (incident.id, action.quiet_target, transition)
                for transition in notify_stage.transitions(incident, updated)
            ]
        if entry is not None:
            world.put_incident(updated)
            world.timeline.append(evolve(entry, source=action.source))
            if updated.status is IncidentStatus.RESOLVED:
                item.resolved_rule = updated.rule
        item.result = updated

    def _observe_notify(self, planned: Planned) -> None:
        m = self._metrics
        for queued, count in Counter(planned.queued).items():
            m.notifications_queued.labels(queued.channel, queued.transition).inc(count)
        for (priority, kind), count in planned.breaches.items():
            m.sla_breaches.labels(priority, kind).inc(count)
        for (route, decision), count in planned.decisions.items():
            m.rule_decisions.labels("notify", route, decision).inc(count)
        if planned.queued:
            self._queued()

    def _observe(self, world: World, evaluations: list[Evaluation], now: datetime) -> None:
        # Tallied first: one `labels()` lookup per distinct label set, not per event.
        outcomes: Counter[tuple[str, str]] = Counter()
        decisions: Counter[tuple[str, str, str]] = Counter()
        for evaluation in evaluations:
            if evaluation.dedup.outcome is not DedupOutcome.RECHECK:
                outcomes[evaluation.event.source, evaluation.dedup.outcome] += 1
            for made in evaluation.decisions:
                decisions[made.stage, made.rule, made.decision] += 1
        m = self._metrics
        for (source, outcome), count in outcomes.items():
            m.events_received.labels(source).inc(count)
            m.dedup_outcomes.labels(source, outcome).inc(count)
        for source in {source for source, _ in outcomes}:
            m.last_event.labels(source).set(now.timestamp())
        for (stage, rule, what), count in decisions.items():
            m.rule_decisions.labels(stage, rule, what).inc(count)
            if stage == "incidents":
                _count_action(m, rule, IncidentAction(what), count)
        for before, after in world.status_changes():
            if before is not None:
                m.incidents.labels(before).dec()
            m.incidents.labels(after).inc()


def _recheck_lookups(rules: RuleSet, alert: AlertState) -> Lookups:
    """What placing a held alert may read: it is looked at as if it fired now."""
    return lookups(rules, [as_event(alert)])


def _count_action(m: Metrics, rule: str, action: IncidentAction, count: int) -> None:
    m.incident_actions.labels(rule, action).inc(count)
    if action is IncidentAction.OPENED:
        m.incidents_opened.labels(rule).inc(count)
    elif action is IncidentAction.REOPENED:
        m.incidents_reopened.labels(rule).inc(count)
    elif action is IncidentAction.RESOLVED:
        m.incidents_resolved.labels(rule, "alerts").inc(count)
