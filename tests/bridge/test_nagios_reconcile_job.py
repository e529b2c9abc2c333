"""The Nagios reconciliation job: status.dat brings the bridge in line with Nagios."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bridge import jobs
from tests.bridge.conftest import CAPTURED, Bridge

NAGIOS = CAPTURED / "nagios"
QUEUE_PROBLEM = "nagios-07-service-problem-e2e-web-01-queue-consumer-critical.json"


@pytest.fixture
def status_file(tmp_path: Path) -> Path:
    target = tmp_path / "status.dat"
    shutil.copy(NAGIOS / "status-1-problems.dat", target)
    return target


@pytest.fixture
def settings_overrides(status_file: Path) -> dict[str, Any]:
    return {"nagios_status_file": status_file}


async def firing(bridge: Bridge) -> set[str]:
    alerts = (await bridge.get_json("/api/v1/alerts?source=nagios&status=firing"))["alerts"]
    return {a["fingerprint"] for a in alerts}


async def test_lost_problems_fire_and_lost_recoveries_resolve(bridge: Bridge) -> None:
    body = json.loads((NAGIOS / QUEUE_PROBLEM).read_text())
    status, _ = await bridge.post_json("/api/v1/webhooks/nagios", body)
    assert status == 200
    assert await firing(bridge) == {"service:e2e-web-01/Queue consumer"}
    # status.dat: three services in hard problems the bridge never heard of; the queue
    # consumer is OK again, but its recovery notification was lost.
    bridge.clock.advance(60)
    assert await jobs.reconcile_nagios(bridge.runtime) == 4
    assert await firing(bridge) == {
        "service:e2e-db-01/PostgreSQL",
        "service:e2e-web-01/Disk /var",
        "service:e2e-web-01/HTTP",
    }
    open_incidents = (await bridge.get_json("/api/v1/incidents?status=open"))["incidents"]
    assert len(open_incidents) == 3


async def test_a_poll_that_finds_nothing_wrong_writes_nothing(bridge: Bridge) -> None:
    assert await jobs.reconcile_nagios(bridge.runtime) == 3
    bridge.clock.advance(60)
    assert await jobs.reconcile_nagios(bridge.runtime) == 0


@pytest.fixture
def broken_status_file(status_file: Path) -> Path:
    status_file.write_text("this is not a status file {\n")
    return status_file


@pytest.mark.usefixtures("broken_status_file")
async def test_a_broken_status_file_is_counted_and_shown_not_raised(bridge: Bridge) -> None:
    run = jobs.guarded("reconcile_nagios", jobs.reconcile_nagios, bridge.runtime)
    await run()
    health = (await bridge.get_json("/api/v1/status"))["jobs"]["reconcile_nagios"]
    assert (health["runs"], health["failures"]) == (1, 1)
    assert "StatusFileError" in health["last_error"]
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_job_runs_total{job="reconcile_nagios",result="failure"} 1.0' in metrics


@pytest.fixture
def nul_in_status(status_file: Path) -> None:
    text = status_file.read_text()
    status_file.write_text(text.replace("Disk /var", "Disk /v\x00ar"))


@pytest.mark.usefixtures("nul_in_status")
async def test_polled_alerts_meet_the_limits_webhooks_apply(bridge: Bridge) -> None:
    """status.dat is no webhook, but what it says is stored the same way: a service whose
    text PostgreSQL cannot store (a NUL) is refused alone and counted, the others go in."""
    assert await jobs.reconcile_nagios(bridge.runtime) == 2
    assert await firing(bridge) == {"service:e2e-db-01/PostgreSQL", "service:e2e-web-01/HTTP"}
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_events_rejected_total{reason="label_limit",source="nagios"} 1.0' in metrics
