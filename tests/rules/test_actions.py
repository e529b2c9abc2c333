"""Scenarios for the actions stage: acknowledgements and notes reported by a sender."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.dedup import DedupOutcome
from rules.incidents import IncidentAction
from rules.model import AlertStatus, Event, EventKind, IncidentStatus, TimelineKind
from tests.rules.builders import at, event
from tests.rules.world import MemoryWorld


def action(kind: EventKind, actor: str = "alice", message: str = "") -> Event:
    return replace(event(source="nagios"), kind=kind, actor=actor, message=message)


def opened_world() -> MemoryWorld:
    world = MemoryWorld()
    world.send(event(source="nagios"), at(0))
    return world


def test_a_sender_acknowledgement_acknowledges_the_incident_with_who_and_why() -> None:
    world = opened_world()
    result = world.send(action(EventKind.ACKNOWLEDGE, "alice", "looking"), at(10))
    assert result.dedup.outcome is DedupOutcome.ACTION
    assert result.incident.action is IncidentAction.ACKNOWLEDGED
    assert result.incident.incident is not None
    assert result.incident.incident.status is IncidentStatus.ACKNOWLEDGED
    entry = result.incident.timeline[0]
    assert (entry.kind, entry.actor, entry.message) == (
        TimelineKind.ACKNOWLEDGED,
        "nagios:alice",
        "looking",
    )
    assert entry.fingerprint == "fp1"


def test_a_repeated_acknowledgement_changes_nothing() -> None:
    world = opened_world()
    world.send(action(EventKind.ACKNOWLEDGE), at(10))
    again = world.send(action(EventKind.ACKNOWLEDGE), at(11))
    assert again.incident.action is IncidentAction.NONE
    assert again.incident.timeline == ()


def test_unacknowledge_returns_the_incident_to_new() -> None:
    world = opened_world()
    world.send(action(EventKind.ACKNOWLEDGE), at(10))
    result = world.send(action(EventKind.UNACKNOWLEDGE, "bob"), at(20))
    assert result.incident.action is IncidentAction.UNACKNOWLEDGED
    assert result.incident.incident is not None
    assert result.incident.incident.status is IncidentStatus.NEW
    assert result.incident.incident.acknowledged_at is None


@pytest.mark.parametrize(
    ("kind", "timeline", "default"),
    [
        (EventKind.COMMENT, TimelineKind.COMMENT, "comment"),
        (EventKind.FLAPPING_START, TimelineKind.FLAPPING_STARTED, "started flapping"),
        (EventKind.FLAPPING_STOP, TimelineKind.FLAPPING_STOPPED, "stopped flapping"),
        (EventKind.MAINTENANCE_START, TimelineKind.MAINTENANCE_STARTED, "maintenance started"),
        (EventKind.MAINTENANCE_END, TimelineKind.MAINTENANCE_ENDED, "maintenance ended"),
    ],
)
def test_notices_go_on_the_timeline_and_leave_the_alert_alone(
    kind: EventKind, timeline: TimelineKind, default: str
) -> None:
    world = opened_world()
    before = world.alerts[("nagios", "fp1")]
    result = world.send(action(kind, "nagiosadmin"), at(10))
    assert result.incident.action is IncidentAction.NOTED
    assert [(e.kind, e.message) for e in result.incident.timeline] == [(timeline, default)]
    after = world.alerts[("nagios", "fp1")]
    assert (after.status, after.count, after.digest) == (before.status, before.count, before.digest)


def test_actions_on_unknown_alerts_or_resolved_incidents_change_nothing() -> None:
    world = MemoryWorld()
    assert world.send(action(EventKind.ACKNOWLEDGE), at(0)).incident.action is (IncidentAction.NONE)
    world.send(event(source="nagios"), at(0))
    world.send(replace(event(source="nagios", status=AlertStatus.RESOLVED)), at(5))
    late = world.send(action(EventKind.ACKNOWLEDGE), at(10))
    assert late.incident.action is IncidentAction.NONE


@pytest.mark.parametrize(
    ("start", "stop", "flag"),
    [
        (EventKind.FLAPPING_START, EventKind.FLAPPING_STOP, "flapping"),
        (EventKind.MAINTENANCE_START, EventKind.MAINTENANCE_END, "maintenance"),
    ],
)
def test_notices_set_and_clear_the_alerts_flag_and_repeats_keep_it(
    start: EventKind, stop: EventKind, flag: str
) -> None:
    world = opened_world()
    started = world.send(action(start), at(10))
    assert started.alert is not None
    assert getattr(started.alert, flag) is True
    world.send(event(source="nagios"), at(200))  # a re-send of the problem keeps the flag
    assert getattr(world.alerts[("nagios", "fp1")], flag) is True
    stopped = world.send(action(stop), at(300))
    assert stopped.alert is not None
    assert getattr(stopped.alert, flag) is False


def test_a_flag_is_set_even_on_an_alert_without_an_incident() -> None:
    world = MemoryWorld()
    world.send(event(source="nagios", status=AlertStatus.RESOLVED), at(0))  # resolved_unseen
    result = world.send(action(EventKind.MAINTENANCE_START), at(5))
    assert result.incident.action is IncidentAction.NONE
    assert result.alert is not None
    assert result.alert.maintenance is True
