"""SIGTERM while senders send and notifications go out: the daemon stops accepting, finishes
what is in flight, exits 0 in bounded time, and nothing it acknowledged is lost: after a
restart every alert that got a 2xx is stored and every incident's notification is delivered
exactly once.

A real `python -m bridge run` (SQLite) and the crash test's webhook target; nothing sleeps to
let time pass.
"""

from __future__ import annotations

import signal
import threading
import urllib.error
from pathlib import Path

from tests.bridge.test_notify_crash import (
    WITHIN,
    Daemon,
    Target,
    assert_once,
    daemon_env,
)
from tests.e2e.harness import Stack, get_json, wait_until

BATCH = 10
EXIT_WITHIN = 25.0  # the dispatcher's grace (notify timeout + 5 s) and the HTTP shutdown


class Sender:
    """Posts batches of new alerts (CrashN, one incident each) until the daemon stops
    answering; records the numbers of every batch that got its 2xx."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.acknowledged: list[int] = []
        self.batches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        first = 1
        while not self._stop.is_set():
            numbers = range(first, first + BATCH)
            try:
                self.daemon.post_alerts(numbers)
            except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
                return  # the daemon stopped answering (or answered 503 while stopping)
            self.acknowledged.extend(numbers)
            self.batches += 1
            first += BATCH


def test_sigterm_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with Target() as target, Stack(tmp_path / "processes") as stack:
        target.accept_opened = True
        daemon = Daemon(stack, daemon_env(tmp_path, target.url))
        service = daemon.start()
        with Sender(daemon) as sender:
            wait_until(lambda: sender.batches >= 5, WITHIN, "batches acknowledged")
            service.process.send_signal(signal.SIGTERM)
            code = service.process.wait(timeout=EXIT_WITHIN)
        assert code == 0, service.log_tail()
        acknowledged = sorted(sender.acknowledged)
        assert acknowledged, "nothing was acknowledged before the signal"

        daemon.start()
        alerts = get_json(f"{daemon.url}/api/v1/alerts?limit=1000")["alerts"]
        stored = {int(a["labels"]["alertname"].removeprefix("Crash")) for a in alerts}
        assert set(acknowledged) <= stored, sorted(set(acknowledged) - stored)
        incidents = len(daemon.incidents())
        assert incidents == len(stored)
        daemon.wait(lambda: len(daemon.notifications("sent")) == incidents, "all delivered")
        assert_once(target, "opened", incidents)
