"""Scenarios for the incidents stage: open, group, resolve, reopen, operator actions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules.incidents import IncidentAction, Refusal, acknowledge, resolve, route
from rules.match import parse_matcher
from rules.model import AlertStatus, IncidentStatus, Severity, TimelineKind
from rules.ruleset import IncidentRule, RuleSet
from tests.rules.builders import at, event
from tests.rules.world import MemoryWorld

RESOLVED = AlertStatus.RESOLVED


def disk(instance: str, **kwargs: object) -> dict[str, object]:
    return {
        "fingerprint": f"fp-{instance}",
        "labels": {"alertname": "DiskFull", "instance": instance},
        **kwargs,
    }


def test_first_alert_opens_an_incident_with_a_timeline_entry() -> None:
    world = MemoryWorld()
    result = world.send(event(**disk("db-01")), at(0))  # type: ignore[arg-type]
    decision = result.incident
    assert decision.action is IncidentAction.OPENED
    assert decision.incident is not None
    assert decision.incident.status is IncidentStatus.NEW
    assert decision.incident.rule == "default-group-key"
    assert [e.kind for e in decision.timeline] == [TimelineKind.OPENED]
    assert result.alert is not None
    assert result.alert.incident_id == decision.incident.id


def test_alerts_of_one_alertmanager_group_share_one_incident_and_its_worst_severity() -> None:
    world = MemoryWorld()
    world.send(event(**disk("db-01")), at(0))  # type: ignore[arg-type]
    second = world.send(event(**disk("db-02", severity=Severity.CRITICAL)), at(1))  # type: ignore[arg-type]
    assert second.incident.action is IncidentAction.ATTACHED
    incident = second.incident.incident
    assert incident is not None
    assert (incident.firing_alerts, incident.alert_count, incident.severity) == (
        2,
        2,
        Severity.CRITICAL,
    )
    assert len(world.incidents) == 1


def test_incident_resolves_only_when_its_last_alert_resolves() -> None:
    world = MemoryWorld()
    world.send(event(**disk("db-01")), at(0))  # type: ignore[arg-type]
    world.send(event(**disk("db-02")), at(0))  # type: ignore[arg-type]
    first = world.send(event(status=RESOLVED, ends_at=at(5), **disk("db-01")), at(6))  # type: ignore[arg-type]
    assert first.incident.action is IncidentAction.ALERT_RESOLVED
    last = world.send(event(status=RESOLVED, ends_at=at(7), **disk("db-02")), at(8))  # type: ignore[arg-type]
    assert last.incident.action is IncidentAction.RESOLVED
    incident = last.incident.incident
    assert incident is not None
    assert (incident.status, incident.resolved_at, incident.firing_alerts) == (
        IncidentStatus.RESOLVED,
        at(8),
        0,
    )
    assert [e.kind for e in last.incident.timeline] == [
        TimelineKind.ALERT_RESOLVED,
        TimelineKind.RESOLVED,
    ]


def test_refiring_within_the_reopen_window_reopens_the_same_incident() -> None:
    world = MemoryWorld()
    opened = world.send(event(**disk("db-01")), at(0))  # type: ignore[arg-type]
    world.send(event(status=RESOLVED, ends_at=at(5), **disk("db-01")), at(6))  # type: ignore[arg-type]
    again = world.send(event(starts_at=at(60), **disk("db-01")), at(61))  # type: ignore[arg-type]
    assert again.incident.action is IncidentAction.REOPENED
    assert again.incident.incident is not None
    assert opened.incident.incident is not None
    assert again.incident.incident.id == opened.incident.incident.id
    assert again.incident.incident.reopen_count == 1
    assert again.incident.incident.alert_count == 1  # the same alert came back


def test_refiring_after_the_reopen_window_opens_a_new_incident() -> None:
    world = MemoryWorld()
    world.send(event(**disk("db-01")), at(0))  # type: ignore[arg-type]
    world.send(event(status=RESOLVED, ends_at=at(5), **disk("db-01")), at(6))  # type: ignore[arg-type]
    later = at(6) + timedelta(hours=1, seconds=1)
    again = world.send(event(starts_at=later, **disk("db-01")), later)  # type: ignore[arg-type]
    assert again.incident.action is IncidentAction.OPENED
    assert len(world.incidents) == 2


def test_repeats_and_duplicates_open_nothing() -> None:
    world = MemoryWorld()
    world.send(event(**disk("db-01")), at(0))  # type: ignore[arg-type]
    duplicate = world.send(event(**disk("db-01")), at(10))  # type: ignore[arg-type]
    repeat = world.send(event(**disk("db-01")), at(120))  # type: ignore[arg-type]
    assert duplicate.incident.action is IncidentAction.NONE
    assert repeat.incident.action is IncidentAction.UPDATED
    assert repeat.incident.timeline == ()
    assert len(world.incidents) == 1


def test_first_matching_rule_wins_and_names_the_key() -> None:
    host_rule = IncidentRule(
        name="per-host",
        matchers=(parse_matcher('alertname="HostDown"'),),
        group_by=("instance",),
    )
    catch_all = IncidentRule(name="by-name", matchers=(), group_by=("alertname",))
    rules = RuleSet(incident_rules=(host_rule, catch_all))
    down = event(labels={"alertname": "HostDown", "instance": "web-01"})
    disk_full = event(labels={"alertname": "DiskFull", "instance": "web-01"})
    assert route(rules, down).rule is host_rule
    assert route(rules, down).key == "per-host{instance='web-01'}"
    assert route(rules, disk_full).rule is catch_all


def test_without_rules_items_without_group_key_group_by_alertname_and_instance() -> None:
    chosen = route(RuleSet(), event(group_key=None, source="prometheus"))
    assert chosen.rule.name == "default"
    assert chosen.key == "default{alertname='DiskFull',instance='db-01:9100'}"


def test_operator_acknowledge_then_resolve() -> None:
    world = MemoryWorld()
    opened = world.send(event(), at(0)).incident.incident
    assert opened is not None
    acked = acknowledge(opened, "alice", "looking", at(10))
    assert not isinstance(acked, Refusal)
    incident, entry = acked
    assert incident.status is IncidentStatus.ACKNOWLEDGED
    assert entry is not None
    assert (entry.actor, entry.message) == ("alice", "looking")
    assert acknowledge(incident, "alice", "again", at(11)) == (incident, None)
    done = resolve(incident, "bob", "fixed the disk", at(20))
    assert not isinstance(done, Refusal)
    assert done[0].status is IncidentStatus.RESOLVED
    assert acknowledge(done[0], "carol", "", at(30)) is Refusal.ALREADY_RESOLVED


@pytest.mark.parametrize("then_alert_resolves", [True, False])
def test_operator_resolve_with_firing_alerts_is_not_undone_by_repeats(
    then_alert_resolves: bool,
) -> None:
    world = MemoryWorld()
    opened = world.send(event(), at(0)).incident.incident
    assert opened is not None
    resolved = resolve(opened, "bob", "known noise", at(5))
    assert not isinstance(resolved, Refusal)
    world.incidents[opened.id] = resolved[0]
    if then_alert_resolves:
        after = world.send(event(status=RESOLVED, ends_at=at(100)), at(100))
        assert after.incident.action is IncidentAction.ALERT_RESOLVED
    else:
        after = world.send(event(), at(100))
        assert after.incident.action is IncidentAction.UPDATED
    assert world.incidents[opened.id].status is IncidentStatus.RESOLVED
