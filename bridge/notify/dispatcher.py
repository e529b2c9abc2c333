"""The outbox dispatcher: delivers queued notifications in the background.

It claims due notifications (`bridge.store.outbox.claim`: the oldest pending one of each
incident and target, so that a target hears an incident's transitions in order), renders their
text, hands each to its target's channel and records the outcome: delivered (with the target's
id for the incident, kept for the next update), retried later with exponential backoff and
jitter or after the `Retry-After` the target asked for, or a dead letter after
`notify_max_attempts` attempts, `notify_max_age`, or a refusal a retry cannot help; a dead
letter goes to the target's `fallback` if it has one. The writer wakes it after every commit
that queued something; otherwise it looks every `notify_poll_interval`.

Each outcome is stored as soon as it is known; while the database is away the dispatcher keeps
the outcomes it knows and stores them when it is back (within the notifications' lease), so an
outage does not make it send anything again. Delivery is at least once: a crash after a
target accepted and before its outcome was stored re-sends that notification (at most
`notify_concurrency` are in that window at a time) with the same idempotency key; webhook
receivers drop the repeat by `Idempotency-Key`, PagerDuty folds it into the incident's alert
(`dedup_key`), ServiceNow finds the ticket by `correlation_id` and adds a work note.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.clock import Clock
from bridge.metrics import Metrics
from bridge.notify import channels
from bridge.notify.base import Channel, Delivered, Message, Outcome, Rejected, Retry, Transition
from bridge.notify.templates import Templates
from bridge.store import outbox, reads
from bridge.store.failures import describe, is_transient
from bridge.store.tables import timeline
from rules.model import TimelineKind
from rules.ruleset import RuleSet, Target

log = logging.getLogger(__name__)

MAX_ALERTS = 50
_SLOT_DEPTH = 4  # notifications claimed per delivery slot and round
# Pauses between attempts to store outcomes while the database is away.
_STORE_RETRY_FIRST = timedelta(seconds=0.25)
_STORE_RETRY_MAX = timedelta(seconds=5)
_REFUSED = "the database refused this outcome: "


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    max_attempts: int = 10
    max_age: timedelta = timedelta(hours=24)
    backoff: timedelta = timedelta(seconds=5)
    backoff_max: timedelta = timedelta(minutes=10)
    timeout: timedelta = timedelta(seconds=15)
    concurrency: int = 10
    poll_interval: timedelta = timedelta(seconds=1)

    @property
    def batch(self) -> int:
        """Notifications claimed per round: a few per delivery slot."""
        return self.concurrency * _SLOT_DEPTH

    @property
    def lease(self) -> timedelta:
        """How long a claimed notification stays with its dispatcher before another may try:
        the longest a round can take (each slot's notifications one after the other) and some
        margin, so that a second dispatcher never takes one this round will still send."""
        return self.timeout * (_SLOT_DEPTH + 1) + timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """What one round's messages are built from, read in three statements."""

    incidents: Mapping[int, Mapping[str, Any]]
    members: Mapping[int, list[dict[str, Any]]]
    external: Mapping[tuple[int, str], str]


_Settled = tuple[dict[str, Any], Outcome, Target | None, "asyncio.Future[None]"]


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        rules: Callable[[], RuleSet],
        templates: Callable[[], Templates],
        session: aiohttp.ClientSession,
        metrics: Metrics,
        settings: DeliverySettings,
        public_url: str,
        environ: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._rules = rules
        self._templates = templates
        self._session = session
        self._metrics = metrics
        self._settings = settings
        self._public_url = public_url.rstrip("/")
        self._environ = environ
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Outcomes waiting to be stored, and whether a `_settle` is storing them now.
        self._outcomes: list[_Settled] = []
        self._settling = False
        self._built_for: RuleSet | None = None
        self._channels: dict[str, Channel | str] = {}  # target -> channel, or why it has none

    @property
    def settings(self) -> DeliverySettings:
        return self._settings

    # Running

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="bridge-dispatcher")

    async def stop(self) -> None:
        """Let the round in progress finish (its sends and their outcomes: cancelled in the
        middle, an accepted notification would be sent again after a restart), then stop;
        a round that takes longer than one attempt's timeout is cancelled."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        grace = self._settings.timeout.total_seconds() + 5
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=grace)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            # Cleared before the round: a wake during it makes the wait below return at once.
            self._wake.clear()
            try:
                handled = await self.run_once()
                await self.refresh_gauges()
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                log.warning("dispatcher cannot reach the store: %s", exc)
                self._metrics.database_errors.labels("dispatch").inc()
                handled = 0
            except Exception:
                log.exception("dispatcher round failed")
                self._metrics.internal_errors.labels("dispatcher").inc()
                handled = 0
            if handled or self._stopping:
                continue  # more may be due
            try:
                wait = self._settings.poll_interval.total_seconds()
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many notifications were attempted.

        One round: claim up to `batch` notifications, load their incidents in a few statements,
        send them (`concurrency` at a time), and record every outcome in one transaction."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            rows = await outbox.claim(conn, now, self._settings.lease, self._settings.batch)
        if not rows:
            return 0
        loaded = await self._load(rows)
        gate = asyncio.Semaphore(self._settings.concurrency)
        await asyncio.gather(*(self._deliver(row, loaded, gate) for row in rows))
        return len(rows)

    async def _load(self, rows: list[dict[str, Any]]) -> _Loaded:
        ids = [row["incident_id"] for row in rows]
        async with self._engine.connect() as conn:
            incidents = await reads.incidents_by_id(conn, ids)
            members = await reads.members_of(conn, ids, MAX_ALERTS)
            external = await outbox.external_ids(conn, ids)
        return _Loaded(incidents, members, external)

    async def refresh_gauges(self) -> None:
        async with self._engine.connect() as conn:
            pending, oldest, dead = await outbox.depth(conn)
        m = self._metrics
        m.outbox_pending.set(pending)
        age = (self._clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        m.outbox_oldest.set(max(age, 0.0))
        m.dead_letters.set(dead)

    # One notification

    async def _deliver(self, row: dict[str, Any], loaded: _Loaded, gate: asyncio.Semaphore) -> None:
        rules = self._rules()
        target = rules.target(row["target"])
        channel = self._channel(rules, row["target"])
        if target is None or isinstance(channel, str):
            why = channel if isinstance(channel, str) else "target is no longer configured"
            await self._settle(row, Rejected(why), None)
            return
        message = self._message(row, target, loaded)
        if message is None:
            await self._settle(row, Rejected("incident not found"), target)
            return
        async with gate:
            if self._clock.now() >= row["next_attempt_at"]:
                return  # the round outlived the claim (the store was away): not ours to send
            outcome = await self._send(channel, message, row["channel"])
            # Stored at once, not at the end of the round: after a crash only a notification
            # whose outcome was in flight can be sent again.
            await self._settle(row, outcome, target)

    async def _settle(self, row: dict[str, Any], outcome: Outcome, target: Target | None) -> None:
        """Store one outcome, together with the others that came in meanwhile (group commit:
        one transaction for what finished while the previous one was being written)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outcomes.append((row, outcome, target, done))
        if not self._settling:
            self._settling = True
            try:
                while self._outcomes:
                    batch, self._outcomes = self._outcomes, []
                    await self._store_patiently(batch)
            except BaseException as exc:
                # Nobody stores the rest now: their senders learn it (the leases retry them).
                waiting, self._outcomes = self._outcomes, []
                _fail([*batch, *waiting], exc)
                if not done.cancelled():
                    done.exception()  # this caller re-raises `exc` itself
                raise
            finally:
                self._settling = False
        await done

    async def _store_patiently(self, batch: list[_Settled]) -> None:
        """Store `batch`; while the database is away, try again, backing off, rather than drop
        outcomes this process knows (dropped, an accepted notification would be sent again
        when its lease ends). Gives up when the earliest lease of the batch ends: another
        dispatcher may take its notification from then on."""
        lease_ends = min(row["next_attempt_at"] for row, *_ in batch)
        pause = _STORE_RETRY_FIRST
        while True:
            try:
                await self._store(batch)
                return
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                if isinstance(exc, SQLAlchemyError) and not is_transient(exc):
                    await self._store_apart(batch, exc)
                    return
                if self._clock.now() + pause >= lease_ends:
                    raise
                log.warning("dispatcher cannot store %d outcomes: %s", len(batch), describe(exc))
                self._metrics.database_errors.labels("dispatch").inc()
            await asyncio.sleep(pause.total_seconds())
            pause = min(pause * 2, _STORE_RETRY_MAX)

    async def _store_apart(self, batch: list[_Settled], exc: SQLAlchemyError) -> None:
        """The database refused a batch of outcomes (a bug, not an outage): store each alone,
        so that the one at fault does not take the others down; that one is stored as a plain
        retry, so that its attempts count on towards a dead letter instead of it being sent
        again, unrecorded, every lease."""
        if len(batch) > 1:
            for item in batch:
                await self._store_patiently([item])
            return
        row, outcome, target, done = batch[0]
        log.error("outcome of notification %s refused: %s", row["id"], describe(exc))
        self._metrics.internal_errors.labels("dispatcher").inc()
        if isinstance(outcome, Retry) and outcome.reason.startswith(_REFUSED):
            raise exc  # refused as a plain retry too: nothing more to try
        await self._store([(row, Retry(f"{_REFUSED}{describe(exc)}"), target, done)])

    async def _store(self, batch: list[_Settled]) -> None:
        labels = []
        async with self._engine.begin() as conn:
            for row, outcome, target, _ in batch:
                labels.append(await self._record(conn, row, outcome, target))
        m = self._metrics
        for (row, outcome, _, done), (label, fallback) in zip(batch, labels, strict=True):
            m.notifications.labels(row["channel"], label).inc()
            if isinstance(outcome, Delivered):
                latency = max((self._clock.now() - row["created_at"]).total_seconds(), 0.0)
                m.notification_latency.labels(row["channel"]).observe(latency)
            if fallback:
                self.wake()
            if not done.done():
                done.set_result(None)

    async def _send(self, channel: Channel, message: Message, name: str) -> Outcome:
        timeout = self._settings.timeout.total_seconds()
        try:
            return await asyncio.wait_for(channel.send(message), timeout)
        except TimeoutError:
            return Retry(f"no outcome within {timeout:g}s")
        except Exception as exc:  # the outbox loop is a last-resort boundary (STYLE)
            log.exception("channel %s failed on %s", name, message.key)
            self._metrics.internal_errors.labels("channel").inc()
            return Retry(f"internal error: {exc.__class__.__name__}")

    def _channel(self, rules: RuleSet, name: str) -> Channel | str:
        if self._built_for is not rules:
            self._channels = {}
            self._built_for = rules
        found = self._channels.get(name)
        if found is None:
            found = self._build(rules, name)
            self._channels[name] = found
        return found

    def _build(self, rules: RuleSet, name: str) -> Channel | str:
        target = rules.target(name)
        if target is None:
            return "target is no longer configured"
        try:
            options: BaseModel = channels.options(
                name, target.channel, target.options, self._environ
            )
        except channels.TargetError as exc:
            return str(exc)
        return channels.make(target.channel, options, self._session)

    def _message(self, row: Mapping[str, Any], target: Target, loaded: _Loaded) -> Message | None:
        detail = loaded.incidents.get(row["incident_id"])
        if detail is None:
            return None
        detail = dict(detail)
        detail["priority"] = detail.pop("priority_level")
        incident = orjson.loads(orjson.dumps(detail))
        members = orjson.loads(orjson.dumps(loaded.members.get(row["incident_id"], [])))
        url = f"{self._public_url}/api/v1/incidents/{row['incident_id']}"
        transition = Transition(row["transition"])
        context = {
            "incident": incident,
            "alerts": members,
            "transition": str(transition),
            "reason": row["reason"],
            "url": url,
            "target": target.name,
        }
        rendered = self._templates().render(target, context)
        return Message(
            key=row["key"],
            target=target.name,
            transition=transition,
            incident=incident,
            alerts=members,
            title=rendered.title,
            body=rendered.body,
            url=url,
            created_at=row["created_at"],
            external_id=loaded.external.get((row["incident_id"], row["target"])),
            reason=row["reason"],
        )

    async def _record(
        self, conn: Any, row: Mapping[str, Any], outcome: Outcome, target: Target | None
    ) -> tuple[str, bool]:
        """Store one outcome; returns the `outcome` metric label and whether a fallback
        notification was queued."""
        now = self._clock.now()
        if isinstance(outcome, Delivered):
            state = channels.ticket_state(row["channel"], Transition(row["transition"]))
            if await outbox.delivered(conn, row, outcome.external_id, outcome.detail, now, state):
                await self._note(conn, row, now, f"sent {row['transition']} to {row['target']}")
            return "delivered", False
        if isinstance(outcome, Retry) and not self._exhausted(row, now):
            await outbox.retry(conn, row, outcome.reason, now + self._delay(row, outcome))
            return "retried", False
        reason = outcome.reason
        if isinstance(outcome, Retry):
            reason = f"gave up after {row['attempts'] + 1} attempts: {reason}"
        fallback = self._fallback(row, target)
        if not await outbox.dead(conn, row, reason, fallback, now):
            return ("rejected" if isinstance(outcome, Rejected) else "dead"), False
        message = f"could not send {row['transition']} to {row['target']}: {reason}"
        if fallback is not None:
            message += f"; sent to {fallback[0]} instead"
        await self._note(conn, row, now, message)
        return ("rejected" if isinstance(outcome, Rejected) else "dead"), fallback is not None

    def _fallback(self, row: Mapping[str, Any], target: Target | None) -> tuple[str, str] | None:
        # A fallback's own failure goes no further: two targets that fall back to each other
        # would otherwise pass a refused notification back and forth.
        if target is None or target.fallback is None or row["fallback_of"] is not None:
            return None
        other = self._rules().target(target.fallback)
        return (other.name, other.channel) if other is not None else None

    def _exhausted(self, row: Mapping[str, Any], now: datetime) -> bool:
        too_old: bool = now - row["created_at"] >= self._settings.max_age
        return too_old or int(row["attempts"]) + 1 >= self._settings.max_attempts

    def _delay(self, row: Mapping[str, Any], outcome: Retry) -> timedelta:
        """Retry-After when the target gave one, else exponential backoff with equal jitter
        (half fixed, half random), so that retries of many notifications spread out."""
        if outcome.after is not None:
            # Capped as a number first: a huge value would overflow timedelta.
            return timedelta(seconds=min(outcome.after, self._settings.max_age.total_seconds()))
        base = self._settings.backoff.total_seconds() * 2 ** int(row["attempts"])
        capped = min(base, self._settings.backoff_max.total_seconds())
        return timedelta(seconds=capped / 2 + self._rng.uniform(0, capped / 2))

    @staticmethod
    async def _note(conn: Any, row: Mapping[str, Any], now: datetime, message: str) -> None:
        entry = {
            "incident_id": row["incident_id"],
            "at": now,
            "kind": TimelineKind.NOTIFIED,
            "actor": "bridge:outbox",
            "message": outbox.storable(message)[:1000],
            "fingerprint": None,
            "source": "rule",
        }
        await conn.execute(timeline.insert(), [entry])


def _fail(batch: list[_Settled], exc: BaseException) -> None:
    for *_, done in batch:
        if done.done():
            continue
        if isinstance(exc, Exception):
            done.set_exception(exc)
        else:
            done.cancel()
