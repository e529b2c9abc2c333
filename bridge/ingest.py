"""The single writer: parse -> load state -> evaluate -> persist, with group commit.

Requests hand their decoded events to `Pipeline.submit` and wait. One writer task takes
everything queued (up to `commit_max_events`), loads the state those events touch, runs the
rule stages (`rules.evaluate`) in arrival order, writes the result in one transaction and only
then answers every waiting request. While one commit is in flight the next batch queues, so
concurrent senders share commits and durability costs one commit per batch, not per request.
Operator actions (acknowledge, resolve) and expiry of level-triggered alerts go through the same
writer, so nothing races the pipeline for an incident row.
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
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.clock import Clock
from bridge.errors import Conflict, NotFound, StoreRefused, StoreUnavailable
from bridge.metrics import Metrics
from bridge.store import repository
from bridge.store.workset import AlertKey, WorkSet
from rules import incidents as incident_stage
from rules.dedup import expiry_event
from rules.evaluate import EngineSettings, Evaluation, evaluate
from rules.incidents import IncidentAction, Refusal, route
from rules.model import AlertStatus, Event, EventKind, IncidentState, IncidentStatus
from rules.ruleset import RuleSet

log = logging.getLogger(__name__)

_NO_ACTION = IncidentAction.NONE

# SQLSTATE classes where waiting and retrying helps: connection exception, transaction
# rollback (deadlock, serialization), invalid catalog (database gone), insufficient resources,
# operator intervention (shutdown, "cannot connect now"), system error.
_TRANSIENT_SQLSTATE = ("08", "40", "3D", "53", "57", "58")


class _Unreachable(Exception):
    """The database is away (connection, disk, lock): the whole batch waits for a retry."""


_UNREACHABLE = (_Unreachable, OSError, asyncio.TimeoutError)


def is_transient(exc: SQLAlchemyError) -> bool:
    """Whether waiting helps: the database is away, not refusing what we sent."""
    if isinstance(exc, PoolTimeout | DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False  # compile or usage errors: a bug, not an outage
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE)


def _describe(exc: BaseException) -> str:
    """The driver's message without the statement and its parameters (they hold alert data)."""
    if isinstance(exc, _Unreachable) and exc.__cause__ is not None:
        exc = exc.__cause__
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    return f"{type(original).__name__}: {str(original).splitlines()[0] if str(original) else ''}"


@dataclass(frozen=True, slots=True)
class OperatorAction:
    incident_id: int
    verb: str  # "acknowledge" | "resolve"
    actor: str
    comment: str


@dataclass(eq=False)
class _Work:
    events: Sequence[Event] = ()
    expire: Sequence[AlertKey] = ()
    action: OperatorAction | None = None
    started: float = field(default_factory=time.perf_counter)
    future: asyncio.Future[object] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    result: object = None
    error: Exception | None = None
    resolved_rule: str | None = None  # set when an operator resolved an incident

    @property
    def size(self) -> int:
        return len(self.events) + len(self.expire) + (1 if self.action else 0)


class Pipeline:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        rules: Callable[[], RuleSet],
        settings: EngineSettings,
        metrics: Metrics,
        commit_max_events: int,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._rules = rules
        self._settings = settings
        self._metrics = metrics
        self._max = commit_max_events
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bridge-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer."""
        if self._task is None:
            return
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

    async def act(self, action: OperatorAction) -> IncidentState:
        result = await self._enqueue(_Work(action=action))
        assert isinstance(result, IncidentState)
        return result

    async def _enqueue(self, work: _Work) -> object:
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

    async def _commit(self, batch: list[_Work], size: int) -> None:
        started = time.perf_counter()
        now = self._clock.now()
        try:
            work, evaluations = await self._attempt(batch, now)
        except SQLAlchemyError as exc:
            # Not the database being away: something in the batch does not fit. Commit the
            # requests one by one, so only the one at fault fails and the others are stored.
            self._metrics.database_errors.labels("commit").inc()
            if len(batch) > 1:
                for item in batch:
                    await self._commit([item], item.size)
                return
            log.error("commit refused: %s", _describe(exc))
            retry_helps = isinstance(exc, IntegrityError)  # a concurrent writer won a race
            error = StoreUnavailable if retry_helps else StoreRefused
            self._fail(batch, error(_describe(exc)))
            return
        except _UNREACHABLE as exc:
            log.warning("commit of %d events failed: %s", size, _describe(exc))
            self._metrics.database_errors.labels("commit").inc()
            self._fail(batch, StoreUnavailable(_describe(exc)))
            return
        self._observe(work, evaluations, now)
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

    async def _attempt(self, batch: list[_Work], now: datetime) -> tuple[WorkSet, list[Evaluation]]:
        try:
            connection = await self._engine.connect()
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            raise _Unreachable(exc) from exc  # whatever stops a connection, waiting may help
        try:
            async with connection.begin():
                return await self._transaction(connection, batch, now)
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise _Unreachable(exc) from exc
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
    ) -> tuple[WorkSet, list[Evaluation]]:
        rules = self._rules()
        work = await self._load(conn, batch, rules, now)
        evaluations: list[Evaluation] = []
        for item in batch:
            for event in item.events:
                evaluations.append(self._evaluate(rules, work, event, now))
            if item.expire:
                item.result = self._expire(rules, work, item.expire, now, evaluations)
            if item.action is not None:
                self._apply_action(work, item, now)
        await repository.persist(conn, work, evaluations, now)
        return work, evaluations

    async def _load(
        self, conn: AsyncConnection, batch: list[_Work], rules: RuleSet, now: datetime
    ) -> WorkSet:
        work = WorkSet()
        keys = {(e.source, e.fingerprint) for item in batch for e in item.events}
        keys.update(k for item in batch for k in item.expire)
        work.add_loaded_alerts(await repository.load_alerts(conn, keys))
        route_keys = set()
        for item in batch:
            for event in item.events:
                prior = work.alert(event.source, event.fingerprint)
                may_fire = prior is None or prior.status is AlertStatus.RESOLVED
                fires = event.status is AlertStatus.FIRING and event.kind is EventKind.STATE
                if fires and may_fire:
                    route_keys.add(route(rules, event).key)
        incident_ids = {a.incident_id for a in work.alerts.values() if a.incident_id is not None}
        incident_ids.update(item.action.incident_id for item in batch if item.action)
        since = now - self._settings.reopen_window
        loaded = await repository.load_incidents(conn, incident_ids, route_keys, since)
        work.add_loaded_incidents(loaded)
        return work

    def _evaluate(self, rules: RuleSet, work: WorkSet, event: Event, now: datetime) -> Evaluation:
        evaluation = evaluate(rules, work, event, now, self._settings, work.new_incident_id)
        work.apply(evaluation)
        return evaluation

    def _expire(
        self,
        rules: RuleSet,
        work: WorkSet,
        keys: Sequence[AlertKey],
        now: datetime,
        evaluations: list[Evaluation],
    ) -> int:
        expired = 0
        for source, fingerprint in keys:
            alert = work.alert(source, fingerprint)
            # Re-checked here: a re-send may have moved `expires_at` since the job looked.
            if alert is None or alert.status is not AlertStatus.FIRING:
                continue
            if alert.expires_at is None or alert.expires_at > now:
                continue
            evaluations.append(self._evaluate(rules, work, expiry_event(alert), now))
            self._metrics.alerts_expired.labels(source).inc()
            expired += 1
        return expired

    @staticmethod
    def _apply_action(work: WorkSet, item: _Work, now: datetime) -> None:
        action = item.action
        assert action is not None
        incident = work.incident(action.incident_id)
        if incident is None:
            item.error = NotFound(f"incident {action.incident_id} not found")
            return
        verb = (
            incident_stage.acknowledge if action.verb == "acknowledge" else incident_stage.resolve
        )
        decided = verb(incident, action.actor, action.comment, now)
        if isinstance(decided, Refusal):
            item.error = Conflict(decided.value)
            return
        updated, entry = decided
        if entry is not None:
            work.put_incident(updated)
            work.timeline.append(entry)
            if updated.status is IncidentStatus.RESOLVED:
                item.resolved_rule = updated.rule
        item.result = updated

    def _observe(self, work: WorkSet, evaluations: list[Evaluation], now: datetime) -> None:
        # Tallied first: one `labels()` lookup per distinct label set, not per event.
        outcomes: Counter[tuple[str, str]] = Counter()
        actions: Counter[tuple[str, IncidentAction]] = Counter()
        for evaluation in evaluations:
            outcomes[evaluation.event.source, evaluation.dedup.outcome] += 1
            decision = evaluation.incident
            if decision.action is not _NO_ACTION:
                actions[decision.rule, decision.action] += 1
        m = self._metrics
        for (source, outcome), count in outcomes.items():
            m.events_received.labels(source).inc(count)
            m.dedup_outcomes.labels(source, outcome).inc(count)
        for source in {source for source, _ in outcomes}:
            m.last_event.labels(source).set(now.timestamp())
        for (rule, action), count in actions.items():
            _count_action(m, rule, action, count)
        for before, after in work.status_changes():
            if before is not None:
                m.incidents.labels(before).dec()
            m.incidents.labels(after).inc()


def _count_action(m: Metrics, rule: str, action: IncidentAction, count: int) -> None:
    m.incident_actions.labels(rule, action).inc(count)
    if action is IncidentAction.OPENED:
        m.incidents_opened.labels(rule).inc(count)
    elif action is IncidentAction.REOPENED:
        m.incidents_reopened.labels(rule).inc(count)
    elif action is IncidentAction.RESOLVED:
        m.incidents_resolved.labels(rule, "alerts").inc(count)
