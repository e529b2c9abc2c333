"""`rules.notify`: who hears what about an incident, and when.

Routing (file order, first match wins, `continue`), the transitions people are told about, the
resolve guarantee (whoever was told hears the rest, whatever the routes say now), re-routing on
a priority change, idempotency keys, escalation steps and rounds, and `repeat_interval`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pytest

from rules import incidents
from rules.match import matchers_from_mapping
from rules.model import IncidentState, IncidentStatus, Severity, Transition, evolve
from rules.notify import (
    Notice,
    Paging,
    Plan,
    incident_ref,
    notice_key,
    on_change,
    on_timer,
    routes_for,
    start_paging,
    targets_of,
    transitions,
)
from rules.ruleset import ALL_TRANSITIONS, EscalationPolicy, EscalationStep, Route, RuleSet, Target
from tests.rules.builders import T0, at, matchers

OPENED = Transition.OPENED
REOPENED = Transition.REOPENED
ACKNOWLEDGED = Transition.ACKNOWLEDGED
ESCALATED = Transition.ESCALATED
RESOLVED = Transition.RESOLVED
CLOSED = Transition.CLOSED
REPEAT = Transition.REPEAT

TARGETS = tuple(
    Target(name, "webhook") for name in ("boss", "chat", "dba", "mail", "noc", "pager", "secondary")
)


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def at_min(value: float) -> datetime:
    return T0 + minutes(value)


def route(name: str, *texts: str, **options: Any) -> Route:
    return Route(name, matchers(*texts), **options)


def step(after_minutes: float, *targets: str) -> EscalationStep:
    return EscalationStep(minutes(after_minutes), targets)


def policy(
    name: str, *steps: EscalationStep, repeat: int = 0, repeat_after: float = 30
) -> EscalationPolicy:
    return EscalationPolicy(name, steps, repeat, minutes(repeat_after))


def rule_set(*routes: Route, escalations: Iterable[EscalationPolicy] = ()) -> RuleSet:
    return RuleSet(targets=TARGETS, escalations=tuple(escalations), routes=routes)


def sends(*transitions: Transition) -> frozenset[Transition]:
    return frozenset(transitions)


# An incident as the incidents stage opens it, with the opening alert's labels and source.
OPEN = evolve(
    incidents.opened(7, "disk:db-01", 0, "disk", "Disk full on db-01", Severity.MAJOR, T0),
    labels={"alertname": "DiskFull", "host": "db-01", "team": "web"},
    source="prometheus",
    firing_alerts=1,
    alert_count=1,
)
ACKED = evolve(OPEN, status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=at(60))
DONE = evolve(OPEN, status=IncidentStatus.RESOLVED, resolved_at=at(120))
ACKED_DONE = evolve(ACKED, status=IncidentStatus.RESOLVED, resolved_at=at(120))
SHUT = evolve(DONE, status=IncidentStatus.CLOSED, closed_at=at(180))
AGAIN = incidents.reopened(DONE)


def incident(base: IncidentState = OPEN, /, **changes: object) -> IncidentState:
    return evolve(base, **changes)


def told(notices: Iterable[Notice]) -> list[tuple[str, Transition]]:
    return [(notice.target, notice.transition) for notice in notices]


# Routing


ROUTING = rule_set(
    route("db-team", 'team="db"', targets=("dba",), cont=True),
    route("staging", 'env=~"stag.*"'),  # first match wins: staging incidents go nowhere
    route("urgent", priorities=frozenset({1, 2}), targets=("pager",)),
    route("payments", services=frozenset({"payments"}), targets=("mail",)),
    route("nagios", sources=frozenset({"nagios"}), targets=("noc",)),
    route("critical", severities=frozenset({Severity.CRITICAL}), targets=("boss",)),
    Route(
        "zabbix-p4",
        matchers('__priority__="4"') + matchers_from_mapping({"__source__": "zabbix"}),
        targets=("chat",),
    ),
    Route("web-mail", matchers_from_mapping({"team": "web", "host": "web-01"}), targets=("mail",)),
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, (), id="no route matches: no route"),
        pytest.param({"labels": {"team": "db"}}, ("db-team",), id="a label matcher"),
        pytest.param(
            {"labels": {"team": "db"}, "priority": 1},
            ("db-team", "urgent"),
            id="continue: the next matching route too",
        ),
        pytest.param(
            {"labels": {"team": "db"}, "priority": 1, "service": "payments"},
            ("db-team", "urgent"),
            id="continue goes on to the next match only, which wins",
        ),
        pytest.param(
            {"labels": {"env": "staging"}, "priority": 1},
            ("staging",),
            id="the first match wins even without targets",
        ),
        pytest.param({"priority": 2}, ("urgent",), id="priority in the list"),
        pytest.param({"priority": 3}, (), id="priority not in the list"),
        pytest.param({"priority": 1, "service": "payments"}, ("urgent",), id="file order decides"),
        pytest.param({"service": "payments"}, ("payments",), id="a service"),
        pytest.param({"service": "billing"}, (), id="another service"),
        pytest.param({"source": "nagios"}, ("nagios",), id="a source"),
        pytest.param({"severity": Severity.CRITICAL}, ("critical",), id="a severity"),
        pytest.param({"severity": Severity.MINOR}, (), id="another severity"),
        pytest.param({"priority": 4, "source": "zabbix"}, ("zabbix-p4",), id="the pseudo-labels"),
        pytest.param({"priority": 4, "source": "prometheus"}, (), id="a pseudo-label that differs"),
        pytest.param({"priority": 5, "source": "zabbix"}, (), id="__priority__ is the incident's"),
        pytest.param(
            {"labels": {"team": "web", "host": "web-01"}}, ("web-mail",), id="match: all equal"
        ),
        pytest.param(
            {"labels": {"team": "web", "host": "web-02"}}, (), id="match: one label differs"
        ),
    ],
)
def test_routes_for(changes: dict[str, object], expected: tuple[str, ...]) -> None:
    found = routes_for(ROUTING, incident(**changes))
    assert tuple(r.name for r in found) == expected


def test_routes_match_the_labels_of_the_opening_alert_not_the_pseudo_labels_it_overrides() -> None:
    # A real label named like a pseudo-label cannot fake the incident's priority or source.
    rules = rule_set(route("p1", '__priority__="1"', targets=("pager",)))
    faked = incident(labels={"__priority__": "1"}, priority=3)
    assert routes_for(rules, faked) == ()
    assert [r.name for r in routes_for(rules, incident(priority=1))] == ["p1"]


def test_no_route_means_no_notices_and_no_timers() -> None:
    plan = on_change(rule_set(), None, OPEN, set(), None, T0)
    assert plan.notices == ()
    assert plan.decisions == ()
    assert plan.paging is not None
    assert plan.paging.due_at is None


ONCALL = policy(
    "oncall", step(0, "pager"), step(10, "secondary"), step(30, "boss"), repeat=1, repeat_after=30
)


def test_targets_of_includes_the_escalation_steps_due_at_once() -> None:
    rules = rule_set(route("p1", targets=("chat",), escalation="oncall"), escalations=[ONCALL])
    assert targets_of(rules, rules.routes) == {"chat": ALL_TRANSITIONS, "pager": ALL_TRANSITIONS}


def test_targets_of_joins_what_continued_routes_send_to_one_target() -> None:
    rules = rule_set(
        route("a", targets=("chat", "mail"), send=sends(OPENED), cont=True),
        route("b", targets=("chat",), send=sends(RESOLVED)),
    )
    assert targets_of(rules, rules.routes) == {
        "chat": sends(OPENED, RESOLVED),
        "mail": sends(OPENED),
    }


def test_targets_of_a_route_whose_escalation_is_gone() -> None:
    rules = rule_set(route("p1", targets=("chat",), escalation="removed"))
    assert targets_of(rules, rules.routes) == {"chat": ALL_TRANSITIONS}


# Transitions


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(None, OPEN, [OPENED], id="a new incident"),
        pytest.param(None, DONE, [OPENED, RESOLVED], id="opened and resolved in one batch"),
        pytest.param(None, ACKED, [OPENED, ACKNOWLEDGED], id="opened and acknowledged at once"),
        pytest.param(None, SHUT, [OPENED, RESOLVED, CLOSED], id="opened, resolved and closed"),
        pytest.param(OPEN, ACKED, [ACKNOWLEDGED], id="acknowledged"),
        pytest.param(OPEN, DONE, [RESOLVED], id="resolved unacknowledged"),
        pytest.param(ACKED, ACKED_DONE, [RESOLVED], id="resolved from acknowledged"),
        pytest.param(DONE, SHUT, [CLOSED], id="closed"),
        pytest.param(AGAIN, ACKED, [ACKNOWLEDGED], id="a reopened incident acknowledged"),
        pytest.param(DONE, AGAIN, [REOPENED], id="reopened"),
        pytest.param(
            DONE,
            incident(AGAIN, status=IncidentStatus.RESOLVED),
            [REOPENED, RESOLVED],
            id="reopened and resolved again in one batch",
        ),
        pytest.param(
            DONE,
            incident(AGAIN, status=IncidentStatus.ACKNOWLEDGED),
            [REOPENED, ACKNOWLEDGED],
            id="reopened and acknowledged in one batch",
        ),
        pytest.param(OPEN, OPEN, [], id="no change"),
        pytest.param(OPEN, incident(alert_count=5, firing_alerts=3), [], id="more alerts"),
        pytest.param(OPEN, incident(priority=1), [], id="a priority change alone"),
        pytest.param(ACKED, OPEN, [], id="unacknowledged: nobody is told"),
        pytest.param(DONE, DONE, [], id="still resolved"),
        pytest.param(SHUT, SHUT, [], id="still closed"),
    ],
)
def test_transitions(
    before: IncidentState | None, after: IncidentState, expected: list[Transition]
) -> None:
    assert transitions(before, after) == expected


# on_change: who hears about an incident change


def test_an_opened_incident_tells_its_routed_targets() -> None:
    rules = rule_set(
        route("db-team", 'team="web"', targets=("mail", "dba"), cont=True),
        route("p1", priorities=frozenset({3}), targets=("chat",), escalation="oncall"),
        route("never", targets=("boss",)),  # after a match without continue
        escalations=[ONCALL],
    )
    plan = on_change(rules, None, OPEN, set(), None, at(5))
    assert told(plan.notices) == [
        ("chat", OPENED),
        ("dba", OPENED),
        ("mail", OPENED),
        ("pager", OPENED),  # step 1 of oncall, due at once
    ]
    assert {n.generation for n in plan.notices} == {"0"}
    assert {n.incident_id for n in plan.notices} == {7}
    assert {n.reason for n in plan.notices} == {""}
    assert plan.decisions == (("db-team", "matched"), ("p1", "matched"))
    assert plan.paging == Paging(
        incident_id=7,
        routes=("db-team", "p1"),
        escalation="oncall",
        started_at=at(5),
        step=1,
        next_at=at(5) + minutes(10),
    )


def test_send_restricts_what_a_routes_targets_hear() -> None:
    rules = rule_set(
        route("chat", targets=("chat",), send=sends(OPENED, RESOLVED), cont=True),
        route("mail", targets=("mail",), send=sends(RESOLVED)),
    )
    opened = on_change(rules, None, OPEN, set(), None, T0)
    assert told(opened.notices) == [("chat", OPENED)]
    everyone = {"chat", "mail"}
    acked = on_change(rules, OPEN, ACKED, everyone, opened.paging, at(60))
    assert acked.notices == ()
    resolved = on_change(rules, ACKED, ACKED_DONE, everyone, acked.paging, at(120))
    assert told(resolved.notices) == [("chat", RESOLVED), ("mail", RESOLVED)]


def test_opened_and_resolved_in_one_batch() -> None:
    rules = rule_set(route("all", targets=("chat",), escalation="oncall"), escalations=[ONCALL])
    plan = on_change(rules, None, DONE, set(), None, T0)
    assert told(plan.notices) == [
        ("chat", OPENED),
        ("pager", OPENED),
        ("chat", RESOLVED),
        ("pager", RESOLVED),
    ]
    assert plan.paging is not None
    assert plan.paging.due_at is None  # no escalation for an incident already over


@pytest.mark.parametrize(
    ("before", "after", "transition"),
    [
        pytest.param(OPEN, ACKED, ACKNOWLEDGED, id="acknowledged"),
        pytest.param(ACKED, ACKED_DONE, RESOLVED, id="resolved"),
        pytest.param(DONE, SHUT, CLOSED, id="closed"),
    ],
)
@pytest.mark.parametrize(
    "rules",
    [
        pytest.param(rule_set(route("all", targets=("chat",))), id="the route still matches"),
        pytest.param(
            rule_set(route("other-team", 'team="db"', targets=("chat",))),
            id="the route no longer matches",
        ),
        pytest.param(rule_set(), id="the rules were reloaded without routes"),
    ],
)
def test_later_transitions_go_to_every_target_told(
    rules: RuleSet, before: IncidentState, after: IncidentState, transition: Transition
) -> None:
    plan = on_change(rules, before, after, {"pager", "chat"}, None, at(200))
    assert told(plan.notices) == [("chat", transition), ("pager", transition)]
    # An acknowledgement's generation also carries its time: acknowledged again after an
    # unacknowledge, it is told again.
    acked = after.acknowledged_at
    generation = f"0.{int(acked.timestamp())}" if transition is ACKNOWLEDGED and acked else "0"
    assert {n.generation for n in plan.notices} == {generation}


def test_whoever_was_paged_hears_the_resolve_after_the_labels_changed() -> None:
    rules = rule_set(route("web", 'team="web"', targets=("pager",), send=sends(OPENED)))
    opened = on_change(rules, None, OPEN, set(), None, T0)
    assert told(opened.notices) == [("pager", OPENED)]
    moved = incident(DONE, labels={"team": "db"})  # no route names pager for it now
    resolved = on_change(rules, OPEN, moved, {"pager"}, opened.paging, at(120))
    assert told(resolved.notices) == [("pager", RESOLVED)]


def test_a_told_target_still_named_by_a_route_gets_what_that_route_sends() -> None:
    rules = rule_set(route("all", targets=("pager",), send=sends(OPENED, CLOSED)))
    resolved = on_change(rules, OPEN, DONE, {"pager"}, None, at(120))
    assert resolved.notices == ()
    closed = on_change(rules, DONE, SHUT, {"pager"}, None, at(180))
    assert told(closed.notices) == [("pager", CLOSED)]


def test_a_target_told_by_an_escalation_step_gets_its_routes_send() -> None:
    rules = rule_set(
        route("all", targets=("chat",), escalation="oncall", send=sends(OPENED, ESCALATED)),
        escalations=[ONCALL],
    )
    plan = on_change(rules, OPEN, DONE, {"chat", "pager", "secondary"}, None, at(120))
    assert plan.notices == ()
    plain = rule_set(route("all", targets=("chat",), escalation="oncall"), escalations=[ONCALL])
    plan = on_change(plain, OPEN, DONE, {"chat", "pager", "secondary"}, None, at(120))
    assert told(plan.notices) == [
        ("chat", RESOLVED),
        ("pager", RESOLVED),
        ("secondary", RESOLVED),
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(OPEN, ACKED, id="acknowledged"),
        pytest.param(OPEN, DONE, id="resolved"),
        pytest.param(ACKED, ACKED_DONE, id="resolved from acknowledged"),
    ],
)
def test_acknowledge_or_resolve_stops_the_timers(
    before: IncidentState, after: IncidentState
) -> None:
    rules = rule_set(
        route("all", targets=("chat",), escalation="oncall", repeat_interval=minutes(15)),
        escalations=[ONCALL],
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    assert paging.due_at is not None
    plan = on_change(rules, before, after, {"chat", "pager"}, paging, at(90))
    assert plan.paging == evolve(paging, next_at=None, repeat_at=None)


def test_reopen_tells_the_routed_and_the_told_targets_and_restarts_paging() -> None:
    rules = rule_set(
        route("all", targets=("chat",), escalation="oncall", send=sends(REOPENED, RESOLVED)),
        escalations=[ONCALL],
    )
    stopped = Paging(7, ("all",), "oncall", T0, step=2, round=0)
    plan = on_change(rules, DONE, AGAIN, {"chat", "pager", "mail"}, stopped, at_min(100))
    # mail is named by no route any more: it hears everything about the incident.
    assert told(plan.notices) == [("chat", REOPENED), ("mail", REOPENED), ("pager", REOPENED)]
    assert {n.generation for n in plan.notices} == {"1"}
    assert plan.decisions == (("all", "matched"),)
    assert plan.paging == Paging(7, ("all",), "oncall", at_min(100), step=1, next_at=at_min(110))


def test_reopen_and_resolve_in_one_batch() -> None:
    rules = rule_set(route("all", targets=("chat",)))
    after = incident(AGAIN, status=IncidentStatus.RESOLVED, resolved_at=at(500))
    plan = on_change(rules, DONE, after, {"chat", "mail"}, None, at(500))
    assert [(n.target, n.transition, n.generation) for n in plan.notices] == [
        ("chat", REOPENED, "1"),
        ("mail", REOPENED, "1"),
        ("chat", RESOLVED, "1"),
        ("mail", RESOLVED, "1"),
    ]


def test_a_reopen_reaches_targets_the_rules_added_since() -> None:
    rules = rule_set(route("all", targets=("chat", "mail")))
    plan = on_change(rules, DONE, AGAIN, {"chat"}, None, at(500))
    assert told(plan.notices) == [("chat", REOPENED), ("mail", REOPENED)]


def test_no_transition_no_notices_and_timers_unchanged() -> None:
    rules = rule_set(route("all", targets=("chat",), escalation="oncall"), escalations=[ONCALL])
    paging = start_paging(rules, OPEN, rules.routes, T0)
    more = incident(alert_count=4, firing_alerts=2, last_alert_at=at(30))
    assert on_change(rules, OPEN, more, {"chat", "pager"}, paging, at(30)) == Plan((), paging, ())


# A priority change re-routes

PRIORITY_ROUTES = rule_set(
    route("p1", priorities=frozenset({1}), targets=("pager", "chat"), cont=True),
    route("team", 'team="web"', targets=("chat",)),
)


def test_a_raised_priority_tells_the_newly_routed_targets_that_it_opened() -> None:
    plan = on_change(PRIORITY_ROUTES, OPEN, incident(priority=1), {"chat"}, None, at(300))
    assert [(n.target, n.transition, n.generation, n.reason) for n in plan.notices] == [
        ("pager", OPENED, "0", "priority P3 -> P1"),
    ]
    assert plan.notices[0].key == "bridge-incident-7:pager:opened:0"


def test_a_lowered_priority_tells_nobody_already_told() -> None:
    before = incident(priority=1)
    plan = on_change(PRIORITY_ROUTES, before, OPEN, {"chat", "pager"}, None, at(300))
    assert plan.notices == ()


def test_a_priority_change_of_a_resolved_incident_routes_nothing() -> None:
    plan = on_change(PRIORITY_ROUTES, DONE, incident(DONE, priority=1), {"chat"}, None, at(300))
    assert plan.notices == ()


def test_a_priority_change_respects_send() -> None:
    rules = rule_set(route("p1", priorities=frozenset({1}), targets=("pager",), send=sends()))
    plan = on_change(rules, OPEN, incident(priority=1), set(), None, at(300))
    assert plan.notices == ()


def test_a_raised_priority_of_an_acknowledged_incident_does_not_leave_a_page_open() -> None:
    raised = incident(ACKED, priority=1)
    plan = on_change(PRIORITY_ROUTES, ACKED, raised, {"chat"}, None, at(300))
    pager = [n.transition for n in plan.notices if n.target == "pager"]
    # Either the pager is not triggered at all, or it hears the acknowledgement right after.
    assert not pager or pager[-1] is ACKNOWLEDGED


# Idempotency keys


def test_notice_key_format() -> None:
    assert incident_ref(7) == "bridge-incident-7"
    assert notice_key(7, "pager", OPENED, "0") == "bridge-incident-7:pager:opened:0"
    notice = Notice(7, "pager", ESCALATED, "1.0.2", "not acknowledged after 30m")
    assert notice.key == "bridge-incident-7:pager:escalated:1.0.2"


def test_keys_are_stable_across_redeliveries_of_the_same_change() -> None:
    rules = rule_set(route("all", targets=("chat", "pager")))
    first = on_change(rules, None, OPEN, set(), None, T0)
    again = on_change(rules, None, OPEN, set(), None, at(1))
    assert [n.key for n in first.notices] == [n.key for n in again.notices]
    assert [n.key for n in first.notices] == [
        "bridge-incident-7:chat:opened:0",
        "bridge-incident-7:pager:opened:0",
    ]


def test_keys_differ_per_incident_target_transition_and_generation() -> None:
    rules = rule_set(route("all", targets=("chat", "pager")))
    again_done = incident(AGAIN, status=IncidentStatus.RESOLVED)
    changes: list[tuple[IncidentState | None, IncidentState]] = [
        (None, OPEN),
        (None, incident(id=8)),
        (OPEN, ACKED),
        (ACKED, ACKED_DONE),
        (ACKED_DONE, incident(ACKED_DONE, status=IncidentStatus.CLOSED)),
        (DONE, AGAIN),
        (AGAIN, again_done),
        (again_done, incidents.reopened(again_done)),
    ]
    keys = [
        n.key
        for before, after in changes
        for n in on_change(rules, before, after, {"chat", "pager"}, None, at(600)).notices
    ]
    assert len(keys) == 2 * len(changes)
    assert len(set(keys)) == len(keys)
    assert "bridge-incident-8:chat:opened:0" in keys
    assert "bridge-incident-7:pager:resolved:0" in keys
    assert "bridge-incident-7:pager:resolved:1" in keys
    assert "bridge-incident-7:chat:reopened:2" in keys


# Escalation


def test_start_paging_waits_for_the_first_step_not_run_at_once() -> None:
    rules = rule_set(route("all", escalation="oncall"), escalations=[ONCALL])
    paging = start_paging(rules, OPEN, rules.routes, T0)
    assert paging == Paging(7, ("all",), "oncall", T0, step=1, next_at=at_min(10))
    assert paging.due_at == at_min(10)


@pytest.mark.parametrize(
    ("escalation", "expected"),
    [
        pytest.param(
            policy("p", step(5, "pager"), step(15, "boss")),
            {"step": 0, "round": 0, "next_at": at_min(5)},
            id="the first step after 5m",
        ),
        pytest.param(
            policy("p", step(0, "pager"), step(0, "chat")),
            {"step": 0, "round": 0, "next_at": None},
            id="every step at once and no repeat: nothing to wait for",
        ),
        pytest.param(
            policy("p", step(0, "pager"), repeat=2, repeat_after=20),
            {"step": 0, "round": 1, "next_at": at_min(20)},
            id="every step at once: the next round after repeat_after",
        ),
    ],
)
def test_start_paging(escalation: EscalationPolicy, expected: dict[str, object]) -> None:
    rules = rule_set(route("all", escalation="p"), escalations=[escalation])
    paging = start_paging(rules, OPEN, rules.routes, T0)
    assert {"step": paging.step, "round": paging.round, "next_at": paging.next_at} == expected


def test_start_paging_takes_the_first_escalation_and_the_shortest_repeat_of_its_routes() -> None:
    rules = rule_set(
        route("a", targets=("chat",), repeat_interval=minutes(30), cont=True),
        route("b", escalation="oncall", repeat_interval=minutes(20), cont=True),
        route("c", escalation="other", repeat_interval=minutes(45)),
        escalations=[ONCALL, policy("other", step(1, "boss"))],
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    assert paging == Paging(
        7, ("a", "b", "c"), "oncall", T0, step=1, next_at=at_min(10), repeat_at=at_min(20)
    )
    assert paging.due_at == at_min(10)


def test_start_paging_of_a_route_whose_escalation_is_gone() -> None:
    rules = rule_set(route("all", targets=("chat",), escalation="removed"))
    paging = start_paging(rules, OPEN, rules.routes, T0)
    assert (paging.escalation, paging.next_at, paging.due_at) == ("removed", None, None)


ESCALATING = rule_set(
    route("all", targets=("chat",), escalation="oncall", send=sends(OPENED)),
    escalations=[ONCALL],
)


def run_timers(
    rules: RuleSet, paging: Paging, until: datetime, state: IncidentState = OPEN
) -> tuple[list[tuple[float, str, str, str, str]], Paging]:
    """Call `on_timer` at every due time up to `until`, as the escalation job would."""
    found: list[tuple[float, str, str, str, str]] = []
    while paging.due_at is not None and paging.due_at <= until:
        now = paging.due_at
        plan = on_timer(rules, state, paging, set(), now)
        assert plan.paging is not None
        paging = plan.paging
        offset = (now - T0) / minutes(1)
        found.extend((offset, n.target, n.transition, n.generation, n.reason) for n in plan.notices)
    return found, paging


def test_escalation_steps_then_repeated_rounds_then_stop() -> None:
    opened = on_change(ESCALATING, None, OPEN, set(), None, T0)
    assert told(opened.notices) == [("chat", OPENED), ("pager", OPENED)]
    assert opened.paging is not None
    notices, last = run_timers(ESCALATING, opened.paging, at_min(24 * 60))
    assert notices == [
        (10, "secondary", ESCALATED, "0.0.1", "not acknowledged after 10m"),
        (30, "boss", ESCALATED, "0.0.2", "not acknowledged after 30m"),
        # round 2 starts repeat_after (30m) after the last step; steps count from there
        (60, "pager", ESCALATED, "0.1.0", "not acknowledged after 1h"),
        (70, "secondary", ESCALATED, "0.1.1", "not acknowledged after 70m"),
        (90, "boss", ESCALATED, "0.1.2", "not acknowledged after 90m"),
    ]
    assert (last.next_at, last.due_at) == (None, None)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(at_min(10) - timedelta(seconds=1), [], id="just before the step"),
        pytest.param(at_min(10), ["secondary"], id="at the step"),
        pytest.param(at_min(45), ["secondary"], id="late: one step per call"),
    ],
)
def test_on_timer_runs_a_step_once_it_is_due(now: datetime, expected: list[str]) -> None:
    paging = start_paging(ESCALATING, OPEN, ESCALATING.routes, T0)
    plan = on_timer(ESCALATING, OPEN, paging, {"chat", "pager"}, now)
    assert [n.target for n in plan.notices] == expected
    assert plan.paging is not None
    if expected:
        assert plan.decisions == (("oncall", "escalated"),)
        assert (plan.paging.step, plan.paging.next_at) == (2, at_min(30))
    else:
        assert plan == Plan((), paging, ())


def test_an_escalation_without_repeat_stops_after_its_last_step() -> None:
    rules = rule_set(
        route("all", escalation="short"),
        escalations=[policy("short", step(5, "pager"), step(15, "boss"))],
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    notices, last = run_timers(rules, paging, at_min(24 * 60))
    assert [(offset, target) for offset, target, *_ in notices] == [(5, "pager"), (15, "boss")]
    assert last.due_at is None


def test_an_escalation_of_steps_at_once_repeats_whole_rounds() -> None:
    rules = rule_set(
        route("all", escalation="loud"),
        escalations=[policy("loud", step(0, "pager"), repeat=2, repeat_after=20)],
    )
    opened = on_change(rules, None, OPEN, set(), None, T0)
    assert told(opened.notices) == [("pager", OPENED)]
    assert opened.paging is not None
    notices, last = run_timers(rules, opened.paging, at_min(24 * 60))
    assert notices == [
        (20, "pager", ESCALATED, "0.1.0", "not acknowledged after 20m"),
        (40, "pager", ESCALATED, "0.2.0", "not acknowledged after 40m"),
    ]
    assert last.due_at is None


def test_escalation_after_a_reopen_counts_from_the_reopen_with_new_keys() -> None:
    reopened_at = at_min(500)
    plan = on_change(ESCALATING, DONE, AGAIN, {"chat", "pager"}, None, reopened_at)
    assert plan.paging is not None
    assert plan.paging.next_at == reopened_at + minutes(10)
    notices, _ = run_timers(ESCALATING, plan.paging, reopened_at + minutes(30), AGAIN)
    # Timers that start after the opening carry their start in the generation.
    restart = f"r{int(reopened_at.timestamp())}."
    assert [(offset, target, gen) for offset, target, _, gen, _ in notices] == [
        (510, "secondary", f"1.{restart}0.1"),
        (530, "boss", f"1.{restart}0.2"),
    ]


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(ACKED, id="acknowledged"),
        pytest.param(DONE, id="resolved"),
        pytest.param(ACKED_DONE, id="resolved after acknowledge"),
        pytest.param(SHUT, id="closed"),
    ],
)
def test_a_timer_of_an_incident_no_longer_new_stops_without_notices(
    state: IncidentState,
) -> None:
    rules = rule_set(
        route("all", targets=("chat",), escalation="oncall", repeat_interval=minutes(5)),
        escalations=[ONCALL],
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    plan = on_timer(rules, state, paging, {"chat", "pager"}, at_min(60))
    assert plan.notices == ()
    assert plan.decisions == ()
    assert plan.paging == evolve(paging, next_at=None, repeat_at=None)
    assert plan.paging.due_at is None


def test_an_escalation_removed_by_a_reload_ends() -> None:
    paging = start_paging(ESCALATING, OPEN, ESCALATING.routes, T0)
    reloaded = rule_set(route("all", targets=("chat",), escalation="oncall"))
    plan = on_timer(reloaded, OPEN, paging, {"chat", "pager"}, at_min(10))
    assert plan.notices == ()
    assert plan.decisions == ()
    assert plan.paging == evolve(paging, next_at=None)


def test_a_step_beyond_a_shortened_escalation_ends_it() -> None:
    paging = Paging(7, ("all",), "oncall", T0, step=2, next_at=at_min(30))
    shortened = rule_set(
        route("all", escalation="oncall"),
        escalations=[policy("oncall", step(0, "pager"), step(10, "secondary"), repeat=3)],
    )
    plan = on_timer(shortened, OPEN, paging, {"pager"}, at_min(30))
    assert plan.notices == ()
    assert plan.paging == evolve(paging, next_at=None)


# repeat_interval


def test_repeat_interval_resends_to_the_routes_targets_until_acknowledged() -> None:
    rules = rule_set(route("all", targets=("chat", "mail"), repeat_interval=minutes(15)))
    paging = start_paging(rules, OPEN, rules.routes, T0)
    assert (paging.repeat_at, paging.next_at) == (at_min(15), None)
    early = on_timer(rules, OPEN, paging, {"chat", "mail"}, at_min(14))
    assert early == Plan((), paging, ())
    first = on_timer(rules, OPEN, paging, {"chat", "mail"}, at_min(15))
    assert [(n.target, n.transition, n.generation, n.reason) for n in first.notices] == [
        ("chat", REPEAT, "0.1", "still not acknowledged"),
        ("mail", REPEAT, "0.1", "still not acknowledged"),
    ]
    assert first.decisions == (("all", "repeated"),)
    assert first.paging is not None
    assert (first.paging.repeats, first.paging.repeat_at) == (1, at_min(30))
    late = on_timer(rules, OPEN, first.paging, {"chat", "mail"}, at_min(33))
    assert [n.key for n in late.notices] == [
        "bridge-incident-7:chat:repeat:0.2",
        "bridge-incident-7:mail:repeat:0.2",
    ]
    assert late.paging is not None
    assert late.paging.repeat_at == at_min(45)  # counted from when it was due: no drift
    acked = on_timer(rules, ACKED, late.paging, {"chat", "mail"}, at_min(48))
    assert acked.notices == ()
    assert acked.paging is not None
    assert acked.paging.due_at is None


def test_repeat_respects_send() -> None:
    rules = rule_set(
        route("all", targets=("chat",), repeat_interval=minutes(15), cont=True),
        route("mail", targets=("mail",), repeat_interval=minutes(15), send=sends(OPENED)),
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    plan = on_timer(rules, OPEN, paging, {"chat", "mail"}, at_min(15))
    assert told(plan.notices) == [("chat", REPEAT)]


def test_a_repeat_whose_route_lost_its_interval_ends() -> None:
    rules = rule_set(route("all", targets=("chat",), repeat_interval=minutes(15)))
    paging = start_paging(rules, OPEN, rules.routes, T0)
    reloaded = rule_set(route("all", targets=("chat",)))
    plan = on_timer(reloaded, OPEN, paging, {"chat"}, at_min(15))
    assert plan.notices == ()
    assert plan.paging == evolve(paging, repeat_at=None)


def test_an_escalation_step_and_a_repeat_due_together() -> None:
    rules = rule_set(
        route("all", targets=("chat",), escalation="oncall", repeat_interval=minutes(10)),
        escalations=[ONCALL],
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    assert paging.due_at == at_min(10)
    plan = on_timer(rules, OPEN, paging, {"chat", "pager"}, at_min(10))
    assert told(plan.notices) == [("secondary", ESCALATED), ("chat", REPEAT)]
    assert plan.decisions == (("oncall", "escalated"), ("all", "repeated"))


def test_repeat_decisions_name_only_the_routes_that_repeated() -> None:
    rules = rule_set(
        route("quiet", targets=("mail",), cont=True),
        route("loud", targets=("chat",), repeat_interval=minutes(15)),
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    plan = on_timer(rules, OPEN, paging, {"chat", "mail"}, at_min(15))
    assert told(plan.notices) == [("chat", REPEAT)]
    assert plan.decisions == (("loud", "repeated"),)


def test_an_incident_acknowledged_again_after_an_unacknowledge_is_told_again() -> None:
    rules = rule_set(route("all", targets=("chat",)))
    first = on_change(rules, OPEN, ACKED, {"chat"}, None, at(10))
    back = evolve(ACKED, status=IncidentStatus.NEW, acknowledged_at=None)
    again = evolve(ACKED, acknowledged_at=at(30))
    second = on_change(rules, back, again, {"chat"}, None, at(30))
    assert len(first.notices) == len(second.notices) == 1
    assert first.notices[0].key != second.notices[0].key


def test_an_unacknowledge_starts_the_escalation_again() -> None:
    rules = rule_set(route("all", targets=("chat",), escalation="oncall"), escalations=[ONCALL])
    paging = start_paging(rules, OPEN, rules.routes, T0)
    acked = on_change(rules, OPEN, ACKED, {"chat"}, paging, at(5))
    assert acked.paging is not None
    assert acked.paging.due_at is None
    back = evolve(ACKED, status=IncidentStatus.NEW, acknowledged_at=None)
    restarted = on_change(rules, ACKED, back, {"chat"}, acked.paging, at(20))
    assert restarted.notices == ()
    assert restarted.paging is not None
    assert restarted.paging.started_at == at(20)
    assert restarted.paging.due_at is not None
