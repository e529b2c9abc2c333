"""The whole PostgreSQL cluster stopped under load and started again, with a real daemon.

Senders post new alerts steadily to `python -m bridge run` on a scratch database. The crash
test's webhook target accepts every notification except those of the batch `HOLD`, which it
holds without answering. Once it holds them (the dispatcher still waiting for their answers),
the cluster is stopped (`pg_ctlcluster stop -m fast`) and the held requests are answered 200,
so the dispatcher knows outcomes it cannot store. The cluster stays down for `OUTAGE` seconds:
every answer is 200 or 503, each 503 carries `Retry-After`, `/-/ready` answers 503,
`/-/healthy` 200, and the process stays up. After the start, without restarting the daemon,
requests get 200 again within `RECOVERY` seconds of PostgreSQL accepting connections,
`/-/ready` answers 200, every alert that got a 200 is stored exactly once with one incident
each, every notification is delivered exactly once (the held ones are not sent again when their
lease ends) and none is dead-lettered.

The outage is the point of the test, so it lasts a fixed time: it is a deadline during which
the conditions above are polled, not a sleep. PostgreSQL is started again in a `finally`, and a
detached watchdog starts it if this process dies before it could; the rest of the suite needs it.
The figures of a run are recorded with `record_property` (see them with
`-o junit_family=xunit1 --junitxml=FILE`).

Measured (3 runs, PostgreSQL 15 on the development machine): the held requests answered
0.13-0.15 s after they arrived; outage 10.002-10.011 s; PostgreSQL accepting 2.27-2.32 s after
the start command; first 200 15-51 ms after that; per run 380-383 requests, 292-295 answered 503
and 87-88 answered 200 (435-440 alerts acknowledged, all stored once); every notification
accepted once; 16.1-16.3 s per run. With the dispatcher's old way put back for a check (one
`_store` of the outcomes, dropped when it fails), 3 of 3 runs failed: the 5 held notifications
were sent again and accepted twice 24.9-25.0 s after the stop, when their lease ended.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.bridge.conftest import PG_ADMIN_DSN
from tests.bridge.test_notify_crash import WITHIN, Daemon, Target, assert_once, daemon_env
from tests.e2e.harness import Service, Stack, get_json, http_get, metric_value, wait_until

pytestmark = pytest.mark.postgres

OUTAGE = 10.0  # seconds PostgreSQL is down: from its stop returning to the start command
RECOVERY = 30.0  # the first 200 comes at most this long after PostgreSQL accepts connections
SENDERS = 3
BATCH = 5  # new alerts per request: CrashN, one incident each; batches start at 1, 6, 11, ...
PACE = 0.1  # seconds between the requests of one sender
HOLD = frozenset(range(101, 101 + BATCH))  # the 21st batch: held at the target until the stop
# BRIDGE_NOTIFY_TIMEOUT: the held requests are answered well within it, and a claim's lease
# (5 times it and 5 s: 25 s) outlasts the outage and the start with room for the dispatcher's
# backoff. With the crash test's 2 s (lease 15 s) its last try to store the held outcomes
# came 0.4 s after PostgreSQL was back: too close to call.
NOTIFY_TIMEOUT = 4.0
AFTER = 50  # alerts acknowledged after the start
ANSWER_WITHIN = 10.0  # a request not answered by then counts as a hang (`Daemon.post_alerts`)
PROBE_EVERY = 0.2  # seconds between the checks during the outage
WATCHDOG = 60  # seconds after the stop when a detached process starts PostgreSQL regardless

Record = Callable[[str, object], None]


# --- the PostgreSQL cluster -----------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """The local cluster serving `PG_ADMIN_DSN`, driven with pg_ctlcluster (as root)."""

    version: str
    name: str
    host: str
    port: int

    @classmethod
    def serving(cls, dsn: str) -> Cluster:
        url = urllib.parse.urlsplit(dsn)
        host, port = url.hostname or "127.0.0.1", url.port or 5432
        listed = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
        ).stdout
        for line in listed.splitlines():
            version, name, cluster_port, *_ = line.split()
            if int(cluster_port) == port:
                return cls(version, name, host, port)
        raise AssertionError(f"no local cluster listens on port {port}:\n{listed}")

    def command(self, action: str, *options: str) -> list[str]:
        skip = "--skip-systemctl-redirect"
        return ["pg_ctlcluster", skip, self.version, self.name, action, *options]

    def _run(self, action: str, *options: str, check: bool = True) -> bool:
        done = subprocess.run(
            self.command(action, *options), capture_output=True, check=check, timeout=60
        )
        return done.returncode == 0

    def accepting(self) -> bool:
        probe = ["pg_isready", "-q", "-h", self.host, "-p", str(self.port), "-t", "1"]
        return subprocess.run(probe, check=False, timeout=10).returncode == 0

    def stop(self) -> None:
        self._run("stop", "-m", "fast")

    def start(self) -> None:
        """Start the cluster unless it runs (maybe still starting), and wait until it accepts
        connections."""

        def up() -> bool:
            if not self.accepting() and not self._run("status", check=False):
                self._run("start")
            return self.accepting()

        retry = (OSError, subprocess.SubprocessError)
        wait_until(up, 60, "PostgreSQL to accept connections", interval=0.05, retry_on=retry)


@dataclass
class Outage:
    """When the stop returned, the start command ran and PostgreSQL accepted connections
    again (`time.monotonic()`)."""

    stopped_at: float = 0.0
    start_at: float = 0.0
    ready_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.start_at - self.stopped_at


@contextlib.contextmanager
def stopped(cluster: Cluster, outage: Outage) -> Iterator[None]:
    """The cluster stopped for the block, started again whatever happens in it; the times go
    to `outage`."""
    # Starts the cluster should this process die before its `finally` (SIGKILL, OOM): its own
    # session, so a Ctrl-C of the test run does not reach it.
    watchdog = subprocess.Popen(
        ["sh", "-c", f'sleep {WATCHDOG} && exec "$@"', "watchdog", *cluster.command("start")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        cluster.stop()
        outage.stopped_at = time.monotonic()
        yield
    finally:
        outage.start_at = time.monotonic()
        try:
            cluster.start()
            outage.ready_at = time.monotonic()
        finally:
            os.killpg(watchdog.pid, signal.SIGKILL)
            watchdog.wait(timeout=10)


# --- the senders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer (or the failure) came
    status: int  # 0: no answer at all (see `error`)
    retry_after: str | None = None
    error: str = ""

    @property
    def fine(self) -> bool:
        """200, or 503 with a `Retry-After` of whole seconds, at least 1."""
        if self.status == 200:
            return True
        after = self.retry_after or ""
        return self.status == 503 and after.isdigit() and int(after) >= 1


def post(daemon: Daemon, numbers: range) -> Answer:
    try:
        daemon.post_alerts(numbers)
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(time.monotonic(), exc.code, exc.headers.get("Retry-After"))
    except (OSError, AssertionError) as exc:  # no answer (refused, reset, timed out), or not 200
        return Answer(time.monotonic(), 0, error=f"{type(exc).__name__}: {exc}")
    return Answer(time.monotonic(), 200)


@dataclass
class Senders:
    """`SENDERS` threads, each posting `BATCH` new alerts every `PACE` seconds. A batch that
    did not get its 200 is sent again (as Alertmanager retries), so a number is acknowledged
    at most once and every number sent belongs to one batch."""

    daemon: Daemon
    _answers: list[Answer] = field(default_factory=list)
    _acknowledged: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _firsts: Iterator[int] = field(default_factory=lambda: itertools.count(1, BATCH))
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Senders:
        for n in range(SENDERS):
            thread = threading.Thread(target=self._run, name=f"sender-{n}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=ANSWER_WITHIN + 5)

    def _batch(self) -> range:
        with self._lock:
            first = next(self._firsts)
        return range(first, first + BATCH)

    def _run(self) -> None:
        numbers = self._batch()
        while not self._stop.wait(PACE):
            answer = post(self.daemon, numbers)
            with self._lock:
                self._answers.append(answer)
                if answer.status == 200:
                    self._acknowledged.extend(numbers)
            if answer.status == 200:
                numbers = self._batch()

    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    def acknowledged(self) -> list[int]:
        with self._lock:
            return list(self._acknowledged)

    def first_200_after(self, moment: float) -> Answer | None:
        return next((a for a in self.answers() if a.status == 200 and a.at >= moment), None)

    def acknowledged_after(self, moment: float) -> int:
        return BATCH * sum(1 for a in self.answers() if a.status == 200 and a.at >= moment)


def assert_fine(answers: list[Answer]) -> None:
    bad = [a for a in answers if not a.fine]
    assert not bad, f"{len(bad)} answers neither 200 nor 503 with Retry-After: {bad[:20]}"


# --- the test -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    daemon: Daemon
    service: Service  # the daemon's process
    senders: Senders
    target: Target
    cluster: Cluster
    outage: Outage


def watch_outage(service: Service, senders: Senders, outage: Outage) -> int:
    """Poll until `OUTAGE` seconds after the stop; returns how many times it checked."""
    checks = 0
    while (left := OUTAGE - (time.monotonic() - outage.stopped_at)) > 0:
        service.check_alive("while PostgreSQL was down")
        status, body = http_get(f"{service.url}/-/ready", timeout=ANSWER_WITHIN)
        assert status == 503, body
        assert http_get(f"{service.url}/-/healthy", timeout=ANSWER_WITHIN)[0] == 200
        assert_fine(senders.answers())
        checks += 1
        time.sleep(min(PROBE_EVERY, left))
    service.check_alive("at the end of the outage")
    return checks


def outage_with_held_answers(run: Run, record: Record) -> None:
    """Stop PostgreSQL while the target holds the notifications of `HOLD`, and accept them
    right after the stop: the dispatcher learns outcomes it cannot store."""
    target, outage, service = run.target, run.outage, run.service
    wait = f"the notifications of alerts {min(HOLD)}-{max(HOLD)} held in flight"
    wait_until(lambda: target.held_fresh(len(HOLD)), WITHIN, wait, interval=0.01, watch=[service])
    with stopped(run.cluster, outage):
        released_at = time.monotonic()
        target.release(200)
        record("acknowledged_before_stop", len(run.senders.acknowledged()))
        record("delivered_before_stop", len(target.accepted("opened")))
        record("outage_checks", watch_outage(service, run.senders, outage))
    held_for = released_at - min(s.at for s in target.seen() if s.number in HOLD)
    record("held_seconds", round(held_for, 3))
    assert held_for < NOTIFY_TIMEOUT, "the dispatcher gave up on the held requests: no test"
    record("outage_seconds", round(outage.seconds, 3))
    record("start_seconds", round(outage.ready_at - outage.start_at, 3))
    assert outage.seconds >= OUTAGE


def recovery(run: Run, record: Record) -> None:
    """Requests get 200 soon after PostgreSQL is back, and `AFTER` alerts are acknowledged."""
    senders, outage = run.senders, run.outage
    during = [a for a in senders.answers() if outage.stopped_at <= a.at <= outage.start_at]
    assert any(a.status == 503 for a in during), Counter(a.status for a in during)
    first = wait_until(
        lambda: senders.first_200_after(outage.ready_at),
        RECOVERY,
        "a 200 after PostgreSQL is back",
        interval=0.05,
        watch=[run.service],
    )
    record("first_200_after_ready_seconds", round(first.at - outage.ready_at, 3))
    assert first.at - outage.ready_at <= RECOVERY
    assert http_get(f"{run.daemon.url}/-/ready")[0] == 200
    ack = f"{AFTER} alerts acknowledged after the start"
    run.daemon.wait(lambda: senders.acknowledged_after(outage.ready_at) >= AFTER, ack)


def check_recovered(run: Run, record: Record) -> None:
    """Every acknowledged alert stored once, one incident each, each notification delivered
    once (the held ones too), none dead."""
    daemon, target = run.daemon, run.target
    alerts = get_json(f"{daemon.url}/api/v1/alerts?limit=1000")["alerts"]
    assert len(alerts) < 1000, "more alerts than one page holds"
    stored = [int(a["labels"]["alertname"].removeprefix("Crash")) for a in alerts]
    duplicates = [n for n, count in Counter(stored).items() if count > 1]
    assert not duplicates, f"alerts stored more than once: {duplicates}"
    missing = sorted(set(run.senders.acknowledged()) - set(stored))
    assert not missing, f"acknowledged alerts lost: {missing}"
    incidents = daemon.incidents()
    assert len(incidents) == len(stored)
    assert len({(i["key"], i["seq"]) for i in incidents}) == len(incidents)
    every = f"every incident's notification delivered ({len(incidents)})"
    daemon.wait(lambda: len(daemon.notifications("sent")) == len(incidents), every)
    assert daemon.notifications("pending") == []
    assert daemon.notifications("dead") == []
    metrics = http_get(f"{daemon.url}/metrics")[1]
    record("alerts_stored", len(stored))
    record("database_errors", metric_value(metrics, "bridge_database_errors_total"))
    assert metric_value(metrics, "bridge_internal_errors_total") == 0
    accepted = target.accepted("opened")
    held = {s.key: accepted[s.key] for s in target.seen() if s.number in HOLD}
    assert list(held.values()) == [1] * len(HOLD), f"held ones, times accepted: {held}"
    assert_once(target, "opened", len(incidents))


def failure_notes(stack: Stack, target: Target, senders: Senders, outage: Outage) -> Iterator[str]:
    """What a failed run shows: the daemon's state and log lines other than the outage's
    expected warnings, the answers, and the target's requests of the held keys and of keys
    accepted twice (times of arrival in seconds after the stop returned)."""
    for service in stack.services:
        code = service.process.poll()
        state = "running" if code is None else f"exited with {code}"
        lines = service.log_path.read_text(errors="replace").splitlines()
        kept = [line for line in lines if " WARNING " not in line][:200]
        yield f"{service.name} ({state}), log {service.log_path}, without WARNING lines:"
        yield "\n".join(kept)
    yield f"answers: {Counter(a.status for a in senders.answers())}"
    twice = {key for key, count in target.accepted("opened").items() if count > 1}
    for seen in target.seen():
        if seen.key in twice or seen.number in HOLD:
            at = seen.at - outage.stopped_at
            yield f"  {seen.key} (Crash{seen.number}): {seen.status}, arrived {at:+.3f}s"
    yield (
        f"outage {outage.seconds:.3f}s, PostgreSQL ready "
        f"{outage.ready_at - outage.stopped_at:+.3f}s after the stop"
    )


def test_postgres_stopped_under_load_gives_503_and_recovers_losing_nothing(
    tmp_path: Path, scratch_database: str, record_property: Record
) -> None:
    started = time.monotonic()
    cluster = Cluster.serving(PG_ADMIN_DSN)
    outage = Outage()
    with Target() as target, Stack(tmp_path / "processes") as stack:
        target.accept_opened = True
        target.hold = HOLD
        env = daemon_env(tmp_path, target.url, scratch_database)
        daemon = Daemon(stack, {**env, "BRIDGE_NOTIFY_TIMEOUT": f"{NOTIFY_TIMEOUT:g}s"})
        service = daemon.start()
        senders = Senders(daemon)
        try:
            with senders:
                run = Run(daemon, service, senders, target, cluster, outage)
                outage_with_held_answers(run, record_property)
                recovery(run, record_property)
            answers = senders.answers()
            statuses = Counter(a.status for a in answers)
            record_property("requests", len(answers))
            record_property("answered_200", statuses[200])
            record_property("answered_503", statuses[503])
            record_property("acknowledged", len(senders.acknowledged()))
            assert_fine(answers)
            service.check_alive("after the outage")
            check_recovered(run, record_property)
        except BaseException as exc:
            for note in failure_notes(stack, target, senders, outage):
                exc.add_note(note)
            raise
    record_property("notifications_accepted", len(target.accepted("opened")))
    record_property("seconds", round(time.monotonic() - started, 3))
