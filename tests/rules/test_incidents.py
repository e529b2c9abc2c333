"""The incident lifecycle: resolve (resolve_on), reopen, and the operator's transitions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules.incidents import Refusal, acknowledge, resolve, unacknowledge
from rules.model import AlertStatus, IncidentStatus, TimelineKind
from rules.ruleset import ResolveOn, RuleSet
from tests.rules.builders import at, correlate, event, firing, labels, resolved
from tests.rules.world import Pipeline

ACTIVE, RESOLVED = IncidentStatus.NEW, IncidentStatus.RESOLVED
GONE = AlertStatus.RESOLVED
DISK = labels("DiskFull", "db-1")


def disk(instance: str) -> dict[str, str]:
    return {"alertname": "DiskFull", "instance": instance}


def test_an_incident_resolves_only_when_its_last_alert_resolves() -> None:
    pipeline = Pipeline()
    pipeline.send(event("a", labels=disk("db-01")), at(0))
    pipeline.send(event("b", labels=disk("db-02")), at(0))
    first = pipeline.send(event("a", GONE, labels=disk("db-01"), ends_at=at(5)), at(6))
    assert [(d.stage, d.decision) for d in first.decisions] == [("incidents", "alert_resolved")]
    assert pipeline.only_incident().status is ACTIVE
    last = pipeline.send(event("b", GONE, labels=disk("db-02"), ends_at=at(7)), at(8))
    assert [(d.stage, d.decision) for d in last.decisions] == [("incidents", "resolved")]
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at, incident.firing_alerts) == (RESOLVED, at(8), 0)
    assert [e.kind for e in last.timeline] == [TimelineKind.ALERT_RESOLVED, TimelineKind.RESOLVED]


@pytest.mark.parametrize(
    ("resolve_on", "after_first", "after_both"),
    [
        pytest.param(ResolveOn.ALL, ACTIVE, RESOLVED, id="resolve_on all waits for the last alert"),
        pytest.param(
            ResolveOn.ANY, RESOLVED, RESOLVED, id="resolve_on any resolves with the first resolve"
        ),
        pytest.param(
            ResolveOn.NEVER, ACTIVE, ACTIVE, id="resolve_on never leaves resolving to an operator"
        ),
    ],
)
def test_resolve_on(
    resolve_on: ResolveOn, after_first: IncidentStatus, after_both: IncidentStatus
) -> None:
    pipeline = Pipeline(RuleSet(correlate=(correlate("db", resolve_on=resolve_on),)))
    pipeline.send(firing("a", DISK), at(0))
    pipeline.send(firing("b", DISK), at(1))
    pipeline.send(resolved("a", DISK, until=10), at(10))
    assert pipeline.only_incident().status is after_first
    pipeline.send(resolved("b", DISK, since=0, until=20), at(20))
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts) == (after_both, 0)


@pytest.mark.parametrize(
    ("refire_at", "reopens"),
    [
        pytest.param(60, True, id="an alert firing again within the reopen window reopens"),
        pytest.param(
            6 + 3600, True, id="an alert firing again exactly at the window's end reopens"
        ),
        pytest.param(
            6 + 3601, False, id="an alert firing again after the reopen window opens a new one"
        ),
    ],
)
def test_reopen_window(refire_at: float, reopens: bool) -> None:
    pipeline = Pipeline()
    pipeline.send(event(labels=disk("db-01")), at(0))
    pipeline.send(event(status=GONE, labels=disk("db-01"), ends_at=at(5)), at(6))
    again = pipeline.send(event(labels=disk("db-01"), starts_at=at(refire_at)), at(refire_at))
    incidents = pipeline.incidents()
    if reopens:
        [incident] = incidents
        assert (incident.status, incident.reopen_count, incident.resolved_at) == (ACTIVE, 1, None)
        assert incident.alert_count == 1  # the same alert came back
        assert ("default-group-key", "reopened") in [(d.rule, d.decision) for d in again.decisions]
        assert pipeline.kinds(incident)[-2:] == [TimelineKind.REOPENED, TimelineKind.ALERT_ATTACHED]
    else:
        old, new = incidents
        assert (old.status, new.status, new.seq) == (RESOLVED, ACTIVE, 1)
        assert pipeline.alert("fp1", "alertmanager").incident_id == new.id


def test_another_alert_of_the_key_reopens_and_counts_as_a_second_member() -> None:
    pipeline = Pipeline()
    pipeline.send(event("a", labels=disk("db-01")), at(0))
    pipeline.send(event("a", GONE, labels=disk("db-01"), ends_at=at(5)), at(6))
    pipeline.send(event("b", labels=disk("db-02"), starts_at=at(60)), at(60))
    incident = pipeline.only_incident()
    assert (incident.status, incident.reopen_count) == (ACTIVE, 1)
    assert (incident.alert_count, incident.firing_alerts) == (2, 1)


def test_operator_acknowledge_then_resolve() -> None:
    pipeline = Pipeline()
    pipeline.send(event(), at(0))
    opened = pipeline.only_incident()
    acked = acknowledge(opened, "alice", "looking", at(10))
    assert not isinstance(acked, Refusal)
    incident, entry = acked
    assert (incident.status, incident.acknowledged_at) == (IncidentStatus.ACKNOWLEDGED, at(10))
    assert entry is not None
    assert (entry.kind, entry.actor, entry.message) == (
        TimelineKind.ACKNOWLEDGED,
        "alice",
        "looking",
    )
    assert acknowledge(incident, "alice", "again", at(11)) == (incident, None)
    done = resolve(incident, "bob", "fixed the disk", at(20))
    assert not isinstance(done, Refusal)
    assert (done[0].status, done[0].resolved_at) == (RESOLVED, at(20))
    assert resolve(done[0], "bob", "again", at(21)) == (done[0], None)
    assert acknowledge(done[0], "carol", "", at(30)) is Refusal.ALREADY_RESOLVED
    assert unacknowledge(done[0], "carol", "", at(30)) is Refusal.ALREADY_RESOLVED


def test_unacknowledge_returns_an_acknowledged_incident_to_new() -> None:
    pipeline = Pipeline()
    pipeline.send(event(), at(0))
    opened = pipeline.only_incident()
    assert unacknowledge(opened, "bob", "", at(5)) == (opened, None)
    acked = acknowledge(opened, "alice", "", at(10))
    assert not isinstance(acked, Refusal)
    back = unacknowledge(acked[0], "bob", "not mine", at(20))
    assert not isinstance(back, Refusal)
    assert (back[0].status, back[0].acknowledged_at) == (IncidentStatus.NEW, None)


@pytest.mark.parametrize(
    "then_alert_resolves",
    [
        pytest.param(True, id="the alert resolving later does not touch the resolved incident"),
        pytest.param(False, id="a repeat of the still firing alert does not reopen it"),
    ],
)
def test_operator_resolve_with_firing_alerts_is_not_undone(then_alert_resolves: bool) -> None:
    pipeline = Pipeline()
    pipeline.send(event(), at(0))
    opened = pipeline.only_incident()
    done = resolve(opened, "bob", "known noise", at(5))
    assert not isinstance(done, Refusal)
    pipeline.world.put_incident(done[0])
    if then_alert_resolves:
        after = pipeline.send(event(status=GONE, ends_at=at(100)), at(100))
    else:
        after = pipeline.send(event(), at(100))
    assert after.timeline == ()
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (RESOLVED, at(5))


def test_a_refire_after_the_rules_window_opens_the_next_generation_not_a_reopen() -> None:
    rules = RuleSet(correlate=(correlate("db", window=timedelta(minutes=10)),))
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", DISK), at(0))
    pipeline.send(resolved("a", DISK, until=60), at(60))
    # Within the reopen window but after the rule's window: the key's next generation opens.
    pipeline.send(firing("a", DISK, since=900), at(900))
    old, new = pipeline.incidents()
    assert (old.status, old.reopen_count) == (RESOLVED, 0)
    assert (new.status, new.seq) == (ACTIVE, 1)


def test_an_incident_reopened_after_an_operator_resolve_resolves_again_with_its_alert() -> None:
    pipeline = Pipeline()
    pipeline.send(firing("a", DISK), at(0))
    done = resolve(pipeline.only_incident(), "bob", "rebooted", at(5))
    assert not isinstance(done, Refusal)
    pipeline.world.put_incident(done[0])
    pipeline.send(resolved("a", DISK, until=10), at(10))
    pipeline.send(firing("a", DISK, since=60), at(60))
    assert (pipeline.only_incident().status, pipeline.only_incident().firing_alerts) == (ACTIVE, 1)
    pipeline.send(resolved("a", DISK, since=60, until=120), at(120))
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts) == (RESOLVED, 0)
