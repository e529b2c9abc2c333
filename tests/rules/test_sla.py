"""`rules.sla`: deadlines per priority, missed deadlines (once each), and who hears of a
breach (`rules.notify.on_breach`)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rules import incidents
from rules.model import (
    IncidentState,
    IncidentStatus,
    Severity,
    TimelineEntry,
    TimelineKind,
    TimelineSource,
    Transition,
    evolve,
)
from rules.notify import on_breach
from rules.ruleset import EscalationPolicy, EscalationStep, Route, RuleSet, Target
from rules.sla import SlaKind, SlaPolicy, SlaTarget, breach, due, with_deadlines
from tests.rules.builders import T0, at

ACK = SlaKind.ACKNOWLEDGE
RESOLVE = SlaKind.RESOLVE


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def at_min(value: float) -> datetime:
    return T0 + minutes(value)


POLICY: SlaPolicy = {
    1: SlaTarget(acknowledge=minutes(15), resolve=minutes(240)),
    2: SlaTarget(acknowledge=minutes(30), resolve=minutes(480)),
    3: SlaTarget(resolve=minutes(24 * 60)),
    4: SlaTarget(acknowledge=minutes(120)),
    # no P5: no deadlines at all
}

OPEN = evolve(
    incidents.opened(7, "disk:db-01", 0, "disk", "Disk full on db-01", Severity.MAJOR, T0),
    priority=1,
    labels={"alertname": "DiskFull", "team": "web"},
    source="prometheus",
)
# P1 with its deadlines: acknowledge by T0 + 15m, resolve by T0 + 4h.
P1 = with_deadlines(OPEN, POLICY, T0)


def incident(base: IncidentState = P1, /, **changes: object) -> IncidentState:
    return evolve(base, **changes)


@pytest.mark.parametrize(
    ("priority", "ack_due", "resolve_due"),
    [
        pytest.param(1, at_min(15), at_min(240), id="P1: both"),
        pytest.param(2, at_min(30), at_min(480), id="P2: both"),
        pytest.param(3, None, at_min(24 * 60), id="P3: resolve only"),
        pytest.param(4, at_min(120), None, id="P4: acknowledge only"),
        pytest.param(5, None, None, id="P5: not in the policy"),
    ],
)
def test_with_deadlines_per_priority(
    priority: int, ack_due: datetime | None, resolve_due: datetime | None
) -> None:
    updated = with_deadlines(incident(OPEN, priority=priority), POLICY, T0)
    assert (updated.ack_due_at, updated.resolve_due_at) == (ack_due, resolve_due)
    assert (updated.ack_breached_at, updated.resolve_breached_at) == (None, None)


def test_with_deadlines_counts_from_since_and_forgets_old_breaches() -> None:
    breached = incident(ack_breached_at=at_min(15), resolve_breached_at=at_min(240))
    reopened = with_deadlines(incidents.reopened(breached), POLICY, at_min(600))
    assert (reopened.ack_due_at, reopened.resolve_due_at) == (at_min(615), at_min(840))
    assert (reopened.ack_breached_at, reopened.resolve_breached_at) == (None, None)


def test_an_empty_policy_sets_no_deadlines() -> None:
    updated = with_deadlines(P1, {}, T0)
    assert (updated.ack_due_at, updated.resolve_due_at) == (None, None)
    assert due(updated, at_min(10_000)) == []


ACKED = incident(status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=at_min(5))
DONE = incident(status=IncidentStatus.RESOLVED, resolved_at=at_min(5))
SHUT = incident(DONE, status=IncidentStatus.CLOSED, closed_at=at_min(6))


@pytest.mark.parametrize(
    ("state", "now", "expected"),
    [
        pytest.param(P1, at_min(14), [], id="new, before both deadlines"),
        pytest.param(P1, at_min(15), [ACK], id="new, at the acknowledge deadline"),
        pytest.param(P1, at_min(100), [ACK], id="new, after the acknowledge deadline"),
        pytest.param(P1, at_min(240), [ACK, RESOLVE], id="new, after both"),
        pytest.param(ACKED, at_min(100), [], id="acknowledged in time"),
        pytest.param(ACKED, at_min(240), [RESOLVE], id="acknowledged, not resolved in time"),
        pytest.param(DONE, at_min(500), [], id="resolved: nothing is due"),
        pytest.param(SHUT, at_min(500), [], id="closed: nothing is due"),
        pytest.param(
            incident(ack_breached_at=at_min(15)), at_min(100), [], id="acknowledge recorded"
        ),
        pytest.param(
            incident(ack_breached_at=at_min(15)), at_min(240), [RESOLVE], id="only resolve left"
        ),
        pytest.param(
            incident(ack_breached_at=at_min(15), resolve_breached_at=at_min(240)),
            at_min(1000),
            [],
            id="both recorded",
        ),
        pytest.param(incident(OPEN, priority=5), at_min(10_000), [], id="no deadlines: never due"),
    ],
)
def test_due(state: IncidentState, now: datetime, expected: list[SlaKind]) -> None:
    assert due(state, now) == expected


@pytest.mark.parametrize(
    ("kind", "field", "message"),
    [
        pytest.param(
            ACK,
            "ack_breached_at",
            "P1 SLA breached: not acknowledged by 2026-11-23T20:15:00+00:00",
            id="acknowledge",
        ),
        pytest.param(
            RESOLVE,
            "resolve_breached_at",
            "P1 SLA breached: not resolved by 2026-11-24T00:00:00+00:00",
            id="resolve",
        ),
    ],
)
def test_breach_records_it_and_returns_the_timeline_entry(
    kind: SlaKind, field: str, message: str
) -> None:
    now = at_min(300)
    updated, entry = breach(P1, kind, now)
    assert getattr(updated, field) == now
    assert updated == evolve(P1, **{field: now})
    assert entry == TimelineEntry(7, now, TimelineKind.SLA_BREACHED, "rule:sla", message)
    assert entry.source is TimelineSource.RULE
    assert kind not in due(updated, now)


def test_each_deadline_is_missed_once() -> None:
    state, entries = P1, []
    for now in (at_min(14), at_min(15), at_min(16), at_min(240), at_min(241), at_min(900)):
        for kind in due(state, now):
            state, entry = breach(state, kind, now)
            entries.append((entry.at, kind))
    assert entries == [(at_min(15), ACK), (at_min(240), RESOLVE)]


def test_a_breach_without_a_deadline_still_says_something() -> None:
    _, entry = breach(incident(OPEN, priority=5), ACK, at(1))
    assert entry.message == "P5 SLA breached: not acknowledged by ?"


# Who hears of a breach

RULES = RuleSet(
    targets=tuple(Target(name, "webhook") for name in ("chat", "mail", "pager", "boss")),
    escalations=(
        EscalationPolicy(
            "oncall",
            (EscalationStep(timedelta(0), ("pager",)), EscalationStep(minutes(30), ("boss",))),
        ),
    ),
    routes=(
        Route("p1", (), priorities=frozenset({1}), targets=("chat",), escalation="oncall"),
        Route(
            "p2",
            (),
            priorities=frozenset({2}),
            targets=("mail",),
            send=frozenset({Transition.OPENED, Transition.RESOLVED}),
        ),
    ),
)


def test_a_breach_goes_to_every_target_told() -> None:
    notices = on_breach(RULES, P1, ACK, {"chat", "pager", "boss"})
    assert [(n.target, n.transition, n.generation, n.reason) for n in notices] == [
        ("boss", Transition.SLA_BREACH, "0.acknowledge", "P1 SLA: not acknowledged in time"),
        ("chat", Transition.SLA_BREACH, "0.acknowledge", "P1 SLA: not acknowledged in time"),
        ("pager", Transition.SLA_BREACH, "0.acknowledge", "P1 SLA: not acknowledged in time"),
    ]
    assert notices[0].key == "bridge-incident-7:boss:sla_breach:0.acknowledge"


def test_a_breach_goes_to_told_targets_no_route_names_any_more() -> None:
    notices = on_breach(RULES, incident(priority=3), RESOLVE, {"mail"})
    assert [(n.target, n.reason) for n in notices] == [("mail", "P3 SLA: not resolved in time")]


def test_a_breach_nobody_was_told_of_goes_to_the_routed_targets() -> None:
    notices = on_breach(RULES, P1, RESOLVE, set())
    assert [(n.target, n.transition, n.generation) for n in notices] == [
        ("chat", Transition.SLA_BREACH, "0.resolve"),
        ("pager", Transition.SLA_BREACH, "0.resolve"),  # the escalation step due at once
    ]


@pytest.mark.parametrize("told", [set(), {"mail"}], ids=["nobody told", "mail told"])
def test_a_breach_respects_send(told: set[str]) -> None:
    assert on_breach(RULES, incident(priority=2), ACK, told) == []


def test_a_breach_of_an_unrouted_incident_nobody_was_told_of_goes_nowhere() -> None:
    assert on_breach(RULES, incident(priority=4), ACK, set()) == []


def test_breach_keys_differ_per_kind_and_generation() -> None:
    reopened = incidents.reopened(incident(DONE))
    keys = {
        n.key
        for state, kind in ((P1, ACK), (P1, RESOLVE), (reopened, ACK), (reopened, RESOLVE))
        for n in on_breach(RULES, state, kind, {"chat"})
    }
    assert keys == {
        "bridge-incident-7:chat:sla_breach:0.acknowledge",
        "bridge-incident-7:chat:sla_breach:0.resolve",
        "bridge-incident-7:chat:sla_breach:1.acknowledge",
        "bridge-incident-7:chat:sla_breach:1.resolve",
    }
