"""The incident lifecycle beyond alerts: close (and auto-close), assign, comment, priority, and
what a closed incident refuses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from rules import incidents
from rules.incidents import Refusal
from rules.model import IncidentState, IncidentStatus, Severity, TimelineKind, evolve
from tests.rules.builders import T0, at

OPEN = incidents.opened(7, "k", 0, "rule", "title", Severity.MAJOR, T0)
RESOLVED = evolve(OPEN, status=IncidentStatus.RESOLVED, resolved_at=at(60))
CLOSED = evolve(RESOLVED, status=IncidentStatus.CLOSED, closed_at=at(120))


def test_close_only_after_resolve_and_once() -> None:
    assert incidents.close(OPEN, "alice", "", at(90)) is Refusal.NOT_RESOLVED
    closed = incidents.close(RESOLVED, "alice", "done", at(90))
    assert not isinstance(closed, Refusal)
    updated, entry = closed
    assert (updated.status, updated.closed_at) == (IncidentStatus.CLOSED, at(90))
    assert entry is not None
    assert (entry.kind, entry.actor, entry.message) == (TimelineKind.CLOSED, "alice", "done")
    assert incidents.close(CLOSED, "alice", "", at(200)) == (CLOSED, None)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda i: incidents.acknowledge(i, "a", "", at(200)), id="acknowledge"),
        pytest.param(lambda i: incidents.unacknowledge(i, "a", "", at(200)), id="unacknowledge"),
        pytest.param(lambda i: incidents.resolve(i, "a", "", at(200)), id="resolve"),
        pytest.param(lambda i: incidents.comment(i, "a", "hi", at(200)), id="comment"),
        pytest.param(lambda i: incidents.assign(i, "a", "dba", "", at(200)), id="assign"),
        pytest.param(lambda i: incidents.set_priority(i, "a", 1, "", at(200)), id="priority"),
    ],
)
def test_a_closed_incident_refuses_every_change(
    action: Callable[[IncidentState], incidents.Transition],
) -> None:
    assert action(CLOSED) is Refusal.CLOSED


def test_assign_and_reassign_put_who_on_the_timeline() -> None:
    assigned = incidents.assign(OPEN, "alice", "dba", "bob", at(10))
    assert not isinstance(assigned, Refusal)
    updated, entry = assigned
    assert (updated.assignment_group, updated.assignee) == ("dba", "bob")
    assert entry is not None
    assert (entry.kind, entry.message) == (TimelineKind.ASSIGNED, "to dba / bob")
    assert incidents.assign(updated, "alice", "dba", "bob", at(20)) == (updated, None)
    unassigned = incidents.assign(updated, "alice", "", "", at(30))
    assert not isinstance(unassigned, Refusal)
    assert unassigned[1] is not None
    assert unassigned[1].message == "to nobody"


def test_priority_is_set_by_hand_within_1_to_5() -> None:
    assert incidents.set_priority(OPEN, "a", 0, "", at(5)) is Refusal.BAD_PRIORITY
    changed = incidents.set_priority(OPEN, "alice", 1, "CEO is watching", at(5))
    assert not isinstance(changed, Refusal)
    updated, entry = changed
    assert updated.priority == 1
    assert entry is not None
    assert entry.message == "priority P3 -> P1: CEO is watching"


@pytest.mark.parametrize(
    ("incident", "minutes", "due"),
    [
        pytest.param(RESOLVED, 59, False, id="resolved less than the delay ago"),
        pytest.param(RESOLVED, 61, True, id="resolved the delay ago"),
        pytest.param(OPEN, 600, False, id="open incidents never auto-close"),
        pytest.param(CLOSED, 600, False, id="closed already"),
    ],
)
def test_due_to_close(incident: IncidentState, minutes: int, due: bool) -> None:
    now = at(60) + timedelta(minutes=minutes)
    assert incidents.due_to_close(incident, now, timedelta(hours=1)) is due
