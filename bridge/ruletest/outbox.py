"""What the daemon's outbox would hold during a rules test: `rules.notify` run over the timeline.

Input: the rule set (its `targets`, `escalations` and `routes`), the incidents before and after
each change of the test's world (time passing, one event), and the instants the run passes.
Output: the `Notice`s the writer would queue (as `bridge.notify.planner` does: `on_change` with
the targets told so far and the incident's timers), each with the instant it was queued; the
targets told about each incident; the `notify` decisions; and a `Told` per change to show.

Escalation steps and repeats run at the instant they fall due, before the step that passes it,
as the escalation job would have (`on_timer`). Like the outbox table, a notice whose idempotency
key was queued already is not queued again. Nothing is rendered or sent and the channels'
options are not checked: a test needs neither the environment nor the network. There are no SLA
deadlines (the test settings have no SLA targets), so no `sla_breach` notices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rules.effects import Decision
from rules.model import IncidentState, Transition
from rules.notify import Notice, Paging, Plan, concerns, on_change, on_timer, transitions
from rules.ruleset import RuleSet
from rules.world import World

STAGE = "notify"  # the stage label of the decisions, as in `bridge_rule_decisions_total`


@dataclass(frozen=True, slots=True)
class Queued:
    at: datetime
    notice: Notice


@dataclass(frozen=True, slots=True)
class Told:
    """What one incident change or one due timer queued."""

    incident_id: int
    at: datetime
    transitions: tuple[Transition, ...]
    notices: tuple[Notice, ...]
    again: tuple[Notice, ...]  # planned, but their key was queued before
    decisions: tuple[Decision, ...]


@dataclass
class Outbox:
    rules: RuleSet
    queued: list[Queued] = field(default_factory=list)
    told: dict[int, set[str]] = field(default_factory=dict)
    timers: dict[int, Paging] = field(default_factory=dict)
    _keys: set[str] = field(default_factory=set)

    @property
    def active(self) -> bool:
        """Whether the rules notify anyone (without targets the writer plans nothing)."""
        return bool(self.rules.targets)

    def notices(self) -> list[Notice]:
        return [entry.notice for entry in self.queued]

    def on_changes(
        self, before: Mapping[int, IncidentState], world: World, now: datetime
    ) -> list[Told]:
        """Plan every incident that differs from `before` (a snapshot of `world.incidents`)."""
        if not self.active:
            return []
        found = []
        for after in world.incidents.values():
            was = before.get(after.id)
            if was == after:
                continue
            if concerns(was, after):
                told = self.told.get(after.id, set())
                plan = on_change(self.rules, was, after, told, self.timers.get(after.id), now)
                found.append(self._add(after.id, plan, now, transitions(was, after)))
        return found

    def run_timers(self, world: World, until: datetime) -> list[Told]:
        """Every escalation step and repeat due by `until`, each at the instant it is due."""
        found = []
        while due := self._next_due(until):
            at = due.due_at or until
            incident = world.incident(due.incident_id)
            if incident is None:
                del self.timers[due.incident_id]
                continue
            plan = on_timer(self.rules, incident, due, self.told.get(incident.id, set()), at)
            if plan.paging is None or plan.paging == due:
                self.timers.pop(due.incident_id)  # a timer that does not move on is done
            told = self._add(incident.id, plan, at, ())
            if told.notices or told.again:
                found.append(told)
        return found

    def _next_due(self, until: datetime) -> Paging | None:
        due = [t for t in self.timers.values() if t.due_at is not None and t.due_at <= until]
        return min(due, key=lambda t: (t.due_at or until, -t.incident_id)) if due else None

    def _add(
        self, incident_id: int, plan: Plan, at: datetime, changed: Sequence[Transition]
    ) -> Told:
        if plan.paging is not None:
            self.timers[incident_id] = plan.paging
        fresh, again = [], []
        for notice in plan.notices:
            if notice.key in self._keys:
                again.append(notice)
                continue
            self._keys.add(notice.key)
            self.queued.append(Queued(at, notice))
            self.told.setdefault(incident_id, set()).add(notice.target)
            fresh.append(notice)
        shown = dict.fromkeys([*changed, *(n.transition for n in plan.notices)])
        decisions = tuple(Decision(STAGE, name, what) for name, what in plan.decisions)
        return Told(incident_id, at, tuple(shown), tuple(fresh), tuple(again), decisions)


def explain(told: Told, incident_no: Mapping[int, int]) -> list[str]:
    """A change as an operator reads it: per transition who was told, e.g. `notify #1 opened
    -> ops-chat, pager`, then the notify decisions (`notify database: matched`)."""
    number = incident_no.get(told.incident_id, told.incident_id)
    lines = []
    for transition in told.transitions:
        names = [n.target for n in told.notices if n.transition is transition]
        names += [f"{n.target} (queued before)" for n in told.again if n.transition is transition]
        reasons = {n.reason for n in (*told.notices, *told.again) if n.transition is transition}
        reason = f" ({reasons.pop()})" if len(reasons) == 1 and "" not in reasons else ""
        lines.append(f"notify #{number} {transition} -> {', '.join(names) or 'nobody'}{reason}")
    return lines + [f"{d.stage} {d.rule}: {d.decision}" for d in told.decisions]


def describe(queued: Queued, incident_no: Mapping[int, int]) -> str:
    """One queued notice: `#1 pager: escalated (not acknowledged after 10m)`."""
    notice = queued.notice
    number = incident_no.get(notice.incident_id, notice.incident_id)
    reason = f" ({notice.reason})" if notice.reason else ""
    return f"#{number} {notice.target}: {notice.transition}{reason}"
