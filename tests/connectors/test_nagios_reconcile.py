"""Reconciliation from the captured status.dat files: what the bridge has wrong becomes events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from connectors import nagios
from connectors.nagios_reconcile import reconcile
from connectors.nagios_status import ObjectState, parse_status
from rules.model import AlertStatus, Severity

NAGIOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured" / "nagios"
NOW = datetime(2026, 11, 23, 20, 30, tzinfo=UTC)
HTTP = "service:e2e-web-01/HTTP"
QUEUE = "service:e2e-web-01/Queue consumer"


def states(name: str) -> list[ObjectState]:
    return parse_status((NAGIOS / name).read_text())


def test_hard_problems_the_bridge_missed_fire() -> None:
    events = reconcile(states("status-1-problems.dat"), set(), NOW)
    assert {(e.fingerprint, e.status, e.severity) for e in events} == {
        ("service:e2e-db-01/PostgreSQL", AlertStatus.FIRING, Severity.CRITICAL),
        ("service:e2e-web-01/Disk /var", AlertStatus.FIRING, Severity.WARNING),
        (HTTP, AlertStatus.FIRING, Severity.CRITICAL),
    }
    http = next(e for e in events if e.fingerprint == HTTP)
    assert http.source == nagios.SOURCE
    assert http.labels["alertname"] == "HTTP"
    assert http.labels["host"] == "e2e-web-01"
    assert http.annotations["runbook_url"] == "https://runbooks.e2e.example/nagios"
    assert "runbook" not in http.labels


def test_alerts_the_bridge_already_has_firing_give_no_event() -> None:
    firing = {e.fingerprint for e in reconcile(states("status-1-problems.dat"), set(), NOW)}
    assert reconcile(states("status-1-problems.dat"), firing, NOW) == []


def test_objects_that_are_ok_again_resolve_what_the_bridge_has_firing() -> None:
    events = reconcile(states("status-1-problems.dat"), {QUEUE}, NOW)
    queue = next(e for e in events if e.fingerprint == QUEUE)
    assert (queue.status, queue.ends_at) == (AlertStatus.RESOLVED, NOW)


def test_host_problems_use_the_webhooks_identity_and_alertname() -> None:
    events = reconcile(states("status-2-handled-problems.dat"), set(), NOW)
    hosts = {e.fingerprint: e for e in events if e.labels["nagios_object"] == "host"}
    assert set(hosts) == {nagios.fingerprint("host", "e2e-db-01"), "host:e2e-app-01"}
    assert hosts["host:e2e-db-01"].labels["alertname"] == nagios.HOST_ALERTNAME
    assert hosts["host:e2e-db-01"].severity is Severity.CRITICAL
    assert hosts["host:e2e-app-01"].severity is Severity.MAJOR
    assert hosts["host:e2e-db-01"].labels["team"] == "dba"


def test_the_same_state_twice_gives_the_same_digest() -> None:
    first = reconcile(states("status-1-problems.dat"), set(), NOW)
    again = reconcile(states("status-1-problems.dat"), set(), NOW)
    assert [e.digest for e in first] == [e.digest for e in again]
