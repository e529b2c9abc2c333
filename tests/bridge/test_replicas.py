"""Two `bridge run` processes on one PostgreSQL database, sent the same alerts at the same time
(as an Alertmanager HA pair does) and load-balanced: exactly one incident per key, every request
answered 2xx (the replicas' writer batches take turns under the writers' lock, and read what
the other stored), and exactly one notification per target and transition although both
dispatchers deliver.

Real processes, a scratch database created and dropped for the test (`scratch_database` of
conftest.py); nothing sleeps to let time pass.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.bridge.test_notify_crash import Daemon, Target, assert_once, daemon_env
from tests.e2e.harness import Stack, get_json

pytestmark = pytest.mark.postgres

ROUNDS = 20
PER_ROUND = 10  # alerts per request; ROUNDS * PER_ROUND incidents (alertname CrashN)


def post(url: str, numbers: range) -> int:
    body = [
        {
            "labels": {"alertname": f"Crash{i}", "instance": f"host-{i % 7}:9100"},
            "endsAt": "2099-01-01T00:00:00Z",
        }
        for i in numbers
    ]
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_two_replicas_under_duplicate_load_open_each_incident_once(
    tmp_path: Path, scratch_database: str
) -> None:
    with Target() as target, Stack(tmp_path / "processes") as stack:
        target.accept_opened = True
        env = {**daemon_env(tmp_path, target.url), "BRIDGE_DATABASE_URL": scratch_database}
        replicas = [Daemon(stack, env), Daemon(stack, env)]
        # Started together: both migrate the empty database (one waits for the other).
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda daemon: daemon.start(), replicas))
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def send(url: str, numbers: range) -> None:
            status = post(url, numbers)
            with lock:
                statuses[status] += 1

        with ThreadPoolExecutor(max_workers=4) as pool:
            for round_ in range(ROUNDS):
                numbers = range(round_ * PER_ROUND + 1, (round_ + 1) * PER_ROUND + 1)
                # The same batch to both replicas at once (an HA pair) ...
                duplicates = [pool.submit(send, r.url, numbers) for r in replicas]
                # ... and half of the batches again to one of them (a load balancer's retry).
                if round_ % 2:
                    duplicates.append(pool.submit(send, replicas[round_ % 2].url, numbers))
                for future in duplicates:
                    future.result()
        assert set(statuses) == {200}, statuses

        incidents = get_json(f"{replicas[0].url}/api/v1/incidents?limit=1000")["incidents"]
        assert len(incidents) == ROUNDS * PER_ROUND
        assert len({(i["key"], i["seq"]) for i in incidents}) == len(incidents)
        alerts = get_json(f"{replicas[1].url}/api/v1/alerts?limit=1000")["alerts"]
        assert len(alerts) == ROUNDS * PER_ROUND

        def delivered() -> bool:
            sent = get_json(f"{replicas[0].url}/api/v1/notifications?status=sent&limit=1000")
            return len(sent["notifications"]) == len(incidents)

        replicas[0].wait(delivered, "every incident's notification delivered")
        assert_once(target, "opened", len(incidents))
