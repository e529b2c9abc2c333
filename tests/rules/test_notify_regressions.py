"""Review findings in `rules.notify` (pure): each test is a bug found and fixed since."""

from __future__ import annotations

from datetime import datetime, timedelta

from rules import incidents
from rules.model import IncidentState, IncidentStatus, Severity, evolve
from rules.notify import Paging, on_change, on_timer, start_paging
from rules.ruleset import EscalationPolicy, EscalationStep, Route, RuleSet, Target
from tests.rules.builders import T0

TARGETS = (Target("chat", "webhook"), Target("lead", "webhook"))
ONCALL = EscalationPolicy(
    "oncall",
    (EscalationStep(timedelta(0), ("chat",)), EscalationStep(timedelta(minutes=10), ("lead",))),
)
OPEN = evolve(
    incidents.opened(7, "disk:db-01", 0, "disk", "Disk full", Severity.MAJOR, T0),
    labels={"alertname": "DiskFull"},
    source="prometheus",
)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _ack_unack(rules: RuleSet, paging: Paging, acked_at: datetime) -> tuple[IncidentState, Paging]:
    """Acknowledged at `acked_at`, unacknowledged a minute later: the restarted timers."""
    acked = evolve(OPEN, status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=acked_at)
    stopped = on_change(rules, OPEN, acked, {"chat"}, paging, acked_at).paging
    back = evolve(acked, status=IncidentStatus.NEW, acknowledged_at=None)
    later = acked_at + timedelta(minutes=1)
    restarted = on_change(rules, acked, back, {"chat"}, stopped, later).paging
    assert restarted is not None
    assert restarted.due_at is not None
    return back, restarted


def test_an_escalation_restarted_by_an_unacknowledge_has_new_keys() -> None:
    rules = RuleSet(
        targets=TARGETS, escalations=(ONCALL,), routes=(Route("all", (), escalation="oncall"),)
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    first = on_timer(rules, OPEN, paging, {"chat"}, _at(11))
    assert [n.target for n in first.notices] == ["lead"]
    assert first.paging is not None
    back, restarted = _ack_unack(rules, first.paging, _at(12))
    second = on_timer(rules, back, restarted, {"chat", "lead"}, _at(30))
    assert [n.target for n in second.notices] == ["lead"]
    assert second.notices[0].key != first.notices[0].key


def test_repeats_restarted_by_an_unacknowledge_have_new_keys() -> None:
    rules = RuleSet(
        targets=TARGETS,
        routes=(Route("all", (), targets=("chat",), repeat_interval=timedelta(minutes=15)),),
    )
    paging = start_paging(rules, OPEN, rules.routes, T0)
    first = on_timer(rules, OPEN, paging, {"chat"}, _at(15))
    assert first.paging is not None
    back, restarted = _ack_unack(rules, first.paging, _at(20))
    second = on_timer(rules, back, restarted, {"chat"}, _at(40))
    assert [n.target for n in second.notices] == ["chat"]
    assert second.notices[0].key != first.notices[0].key
