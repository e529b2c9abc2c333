"""What a test expects after a step, compared with the offline world: the diff.

Input: an `Expectations` (`bridge.ruletest.spec`), the `World` after the step, the decisions
the step made, the notices queued so far (`bridge.ruletest.outbox`), and where the expectation
was written. Output: the mismatches as readable lines
(expected vs got, per incident, alert or problem and field); none when all is as expected. Only
the fields a test gives are compared. The `incidents` and `problems` lists are exhaustive (an
incident or problem nobody expected is a mismatch) unless the test says otherwise.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from bridge.ruletest.spec import (
    AlertExpect,
    CountsExpect,
    DecisionExpect,
    Expectations,
    IncidentExpect,
    MemberExpect,
    ProblemExpect,
)
from bridge.timeline import describe_alert, numbers
from rules.effects import Decision
from rules.model import AlertState, AlertStatus, Hold, IncidentState, JoinReason, ProblemState
from rules.notify import Notice
from rules.world import AlertKey, World
from rules.yamlsource import Loc

LineOf = Callable[[Loc], int]


@dataclass(frozen=True)
class View:
    """The world as a test reads it: incidents and problems numbered 1.., and each incident's
    member alerts with every reason they joined it for."""

    world: World
    incident_no: Mapping[int, int]
    problem_no: Mapping[int, int]
    members: Mapping[int, Mapping[AlertKey, set[JoinReason]]]
    notices: Sequence[Notice] = ()

    @classmethod
    def of(cls, world: World, notices: Sequence[Notice] = ()) -> View:
        members: dict[int, dict[AlertKey, set[JoinReason]]] = {}
        for link in world.links:
            joined = members.setdefault(link.incident_id, {})
            joined.setdefault((link.source, link.fingerprint), set()).add(link.reason)
        return cls(world, numbers(world.incidents), numbers(world.problems), members, notices)

    def notifications(self, incident: IncidentState) -> list[str]:
        """`target:transition` for each notice queued for the incident, in order."""
        return [f"{n.target}:{n.transition}" for n in self.notices if n.incident_id == incident.id]

    def told(self, incident: IncidentState) -> list[str]:
        return sorted({n.target for n in self.notices if n.incident_id == incident.id})

    def incidents(self) -> list[IncidentState]:
        return sorted(self.world.incidents.values(), key=lambda i: self.incident_no[i.id])

    def problems(self) -> list[ProblemState]:
        return sorted(self.world.problems.values(), key=lambda p: self.problem_no[p.id])

    def number(self, incident_id: int | None) -> int | None:
        return None if incident_id is None else self.incident_no.get(incident_id, incident_id)

    def problem_rule(self, incident: IncidentState) -> str | None:
        problem = self.world.problems.get(incident.problem_id or 0)
        return problem.rule if problem is not None else None


def check(
    expect: Expectations,
    world: World,
    decided: Sequence[Decision],
    line_of: LineOf,
    base: Loc,
    notices: Sequence[Notice] = (),
) -> list[str]:
    """Every mismatch between `expect` (written at `base`) and `world`, `decided`: the
    decisions it may name (a step's, or the whole run's for the final expectations), and
    `notices`: what was queued so far."""
    view = View.of(world, notices)
    found: list[str] = []
    if expect.incidents is not None:
        found += _check_incidents(expect, view, line_of, (*base, "incidents"))
    if expect.problems is not None:
        found += _check_problems(expect, view, line_of, (*base, "problems"))
    for name, held in (("held", True), ("alerts", False)):
        entries: list[AlertExpect] | None = getattr(expect, name)
        for index, entry in enumerate(entries or ()):
            found += _check_alerts(entry, view, held, line_of((*base, name, index)))
    if expect.counts is not None:
        found += _check_counts(expect.counts, view, line_of((*base, "counts")))
    for index, wanted in enumerate(expect.decisions or ()):
        found += _check_decision(wanted, decided, line_of((*base, "decisions", index)))
    return found


# Incidents


def _check_incidents(expect: Expectations, view: View, line_of: LineOf, base: Loc) -> list[str]:
    found: list[str] = []
    unclaimed = view.incidents()
    for index, entry in enumerate(expect.incidents or ()):
        line = line_of((*base, index))
        candidates = [i for i in unclaimed if _selects(entry, i)]
        if not candidates:
            found.append(f"missing incident (line {line}): {_wanted(entry)}")
            found += [
                f"  got: {_summary(i, view)}" for i in view.incidents() if i.rule == entry.rule
            ]
            continue
        best = min(candidates, key=lambda i: len(_incident_diff(entry, i, view)))
        unclaimed.remove(best)
        diff = _incident_diff(entry, best, view)
        if diff:
            found.append(f"incident #{view.incident_no[best.id]} {best.key} (line {line}):")
            found += [f"  {text}" for text in diff]
    if expect.incidents_exhaustive:
        found += [f"unexpected incident {_summary(i, view)}" for i in unclaimed]
    return found


def _selects(entry: IncidentExpect, incident: IncidentState) -> bool:
    if entry.rule != incident.rule:
        return False
    if entry.title is not None and entry.title != incident.title:
        return False
    if isinstance(entry.key, str):
        return entry.key == incident.key
    if entry.key is not None:
        values = key_values(incident.key)
        return all(values.get(name) == value for name, value in entry.key.items())
    return True


_KEY_PART = re.compile(r"""([\w]+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def key_values(key: str) -> dict[str, str]:
    """The group_by values of an incident key such as `host-down{host='db-1'}`."""
    inner = key[key.find("{") + 1 : key.rfind("}")]
    return {m.group(1): str(ast.literal_eval(m.group(2))) for m in _KEY_PART.finditer(inner)}


_INCIDENT_FIELDS: dict[str, Callable[[IncidentState, View], object]] = {
    "status": lambda i, v: i.status,
    "priority": lambda i, v: f"P{i.priority}",
    "severity": lambda i, v: i.severity,
    "ci": lambda i, v: i.ci,
    "service": lambda i, v: i.service,
    "alert_count": lambda i, v: i.alert_count,
    "firing_alerts": lambda i, v: i.firing_alerts,
    "reopen_count": lambda i, v: i.reopen_count,
    "problem": lambda i, v: v.problem_rule(i),
    "notify": lambda i, v: v.told(i),
    "notifications": lambda i, v: v.notifications(i),
}


def _incident_diff(entry: IncidentExpect, incident: IncidentState, view: View) -> list[str]:
    diff = _fields(entry, _INCIDENT_FIELDS, lambda get: get(incident, view))
    members = view.members.get(incident.id, {})
    for member in entry.members:
        if not _has_member(member, members, view.world):
            diff.append(f"member {_wanted_member(member)}: not found")
            diff += [f"  got: {text}" for text in _member_list(members, view.world)]
    return diff


def _has_member(
    member: MemberExpect, members: Mapping[AlertKey, set[JoinReason]], world: World
) -> bool:
    for key, reasons in members.items():
        alert = world.alerts[key]
        if not _alert_selected(member.labels, member.source, alert):
            continue
        if member.reason is None or member.reason in reasons:
            return True
    return False


def _member_list(members: Mapping[AlertKey, set[JoinReason]], world: World) -> list[str]:
    shown = [
        f"{describe_alert(world.alerts[key])} ({', '.join(sorted(reasons))})"
        for key, reasons in members.items()
    ]
    limit = 8
    more = [f"... and {len(shown) - limit} more"] if len(shown) > limit else []
    return shown[:limit] + more


def _summary(incident: IncidentState, view: View) -> str:
    return (
        f"#{view.incident_no[incident.id]}: rule {incident.rule}, key {incident.key}, "
        f"{incident.status}, P{incident.priority}, {incident.alert_count} alerts, "
        f"{_show(incident.title)}"
    )


def _wanted(entry: IncidentExpect) -> str:
    parts = [f"rule {entry.rule}"]
    if entry.key is not None:
        parts.append(f"key {_show(entry.key)}")
    if entry.title is not None:
        parts.append(f"title {_show(entry.title)}")
    return ", ".join(parts)


def _wanted_member(member: MemberExpect) -> str:
    text = _show(member.labels)
    if member.source is not None:
        text = f"{member.source} {text}"
    return f"{text} ({member.reason})" if member.reason is not None else text


# Problems


_PROBLEM_FIELDS: dict[str, Callable[[ProblemState, View], object]] = {
    "status": lambda p, v: p.status,
    "incident_count": lambda p, v: p.incident_count,
    "ci": lambda p, v: p.ci,
    "incidents": lambda p, v: sorted(
        v.incident_no[i.id] for i in v.world.incidents.values() if i.problem_id == p.id
    ),
}


def _check_problems(expect: Expectations, view: View, line_of: LineOf, base: Loc) -> list[str]:
    found: list[str] = []
    unclaimed = view.problems()
    for index, entry in enumerate(expect.problems or ()):
        line = line_of((*base, index))
        candidates = [p for p in unclaimed if _selects_problem(entry, p)]
        if not candidates:
            found.append(f"missing problem (line {line}): rule {entry.rule}")
            continue

        def diff(problem: ProblemState, entry: ProblemExpect = entry) -> list[str]:
            return _fields(entry, _PROBLEM_FIELDS, lambda get: get(problem, view))

        best = min(candidates, key=lambda p: len(diff(p)))
        unclaimed.remove(best)
        if diff(best):
            found.append(f"problem #{view.problem_no[best.id]} {best.key} (line {line}):")
            found += [f"  {text}" for text in diff(best)]
    if expect.problems_exhaustive:
        found += [
            f"unexpected problem #{view.problem_no[p.id]}: rule {p.rule}, key {p.key}, "
            f"{p.status}, {p.incident_count} incidents"
            for p in unclaimed
        ]
    return found


def _selects_problem(entry: ProblemExpect, problem: ProblemState) -> bool:
    return (
        entry.rule == problem.rule
        and entry.key in (None, problem.key)
        and entry.title in (None, problem.title)
    )


# Alerts


_ALERT_FIELDS: dict[str, Callable[[AlertState, View], object]] = {
    "status": lambda a, v: a.status,
    "severity": lambda a, v: a.severity,
    "flapping": lambda a, v: a.flapping,
    "maintenance": lambda a, v: a.maintenance,
    "hold": lambda a, v: a.hold,
    "count": lambda a, v: a.count,
    "incident": lambda a, v: v.number(a.incident_id),
}


def _check_alerts(entry: AlertExpect, view: View, held: bool, line: int) -> list[str]:
    alerts = view.world.alerts.values()
    selected = [a for a in alerts if _alert_selected(entry.labels, entry.source, a)]
    what = "held alert" if held else "alert"
    if not selected:
        source = f"{entry.source} " if entry.source else ""
        return [f"missing {what} (line {line}): {source}{_show(entry.labels)}"]
    found: list[str] = []
    for alert in selected:
        diff = _alert_diff(entry, alert, view, held)
        if diff:
            found.append(f"{what} {describe_alert(alert, entry.labels)} (line {line}):")
            found += [f"  {text}" for text in diff]
    return found


def _alert_diff(entry: AlertExpect, alert: AlertState, view: View, held: bool) -> list[str]:
    diff = _fields(entry, _ALERT_FIELDS, lambda get: get(alert, view))
    if held and "hold" not in entry.model_fields_set and not _is_held(alert):
        diff.append(f"hold: expected held, got {alert.hold} ({alert.status})")
    if entry.held_by is not None and entry.held_by not in alert.held_by:
        diff.append(
            f"held_by: expected to contain {_show(entry.held_by)}, got {_show(alert.held_by)}"
        )
    return diff


def _alert_selected(labels: Mapping[str, str], source: str | None, alert: AlertState) -> bool:
    if source is not None and alert.source != source:
        return False
    return all(alert.labels.get(name) == value for name, value in labels.items())


def _is_held(alert: AlertState) -> bool:
    return alert.status is AlertStatus.FIRING and alert.hold is not Hold.NONE


# Counts


_COUNTS: dict[str, Callable[[View], int]] = {
    "incidents": lambda v: len(v.world.incidents),
    "open_incidents": lambda v: sum(i.status.is_active for i in v.world.incidents.values()),
    "alerts": lambda v: len(v.world.alerts),
    "firing_alerts": lambda v: sum(a.status is AlertStatus.FIRING for a in v.world.alerts.values()),
    "held": lambda v: sum(_is_held(a) for a in v.world.alerts.values()),
    "problems": lambda v: len(v.world.problems),
    "notifications": lambda v: len(v.notices),
}


def _check_counts(counts: CountsExpect, view: View, line: int) -> list[str]:
    diff = _fields(counts, _COUNTS, lambda get: get(view))
    return [f"counts (line {line}): {text}" for text in diff]


# Decisions


def _check_decision(entry: DecisionExpect, decided: Sequence[Decision], line: int) -> list[str]:
    for decision in decided:
        same_rule = entry.rule is None or entry.rule == decision.rule
        if same_rule and (decision.stage, decision.decision) == (entry.stage, entry.decision):
            return []
    rule = f" {entry.rule}" if entry.rule is not None else ""
    found = [f"missing decision (line {line}): {entry.stage}{rule}: {entry.decision}"]
    got = [f"  got: {d.stage} {d.rule}: {d.decision}" for d in decided if d.stage == entry.stage]
    return found + (got or ["  got: none of that stage"])


# Shared


def _fields(
    entry: BaseModel, getters: Mapping[str, Any], got_of: Callable[[Any], object]
) -> list[str]:
    """`field: expected X, got Y` for every field the test gave that differs."""
    diff: list[str] = []
    for name, getter in getters.items():
        if name not in entry.model_fields_set:
            continue
        expected, got = getattr(entry, name), got_of(getter)
        if expected != got:
            diff.append(f"{name}: expected {_show(expected)}, got {_show(got)}")
    return diff


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and (not value or value != value.strip() or " " in value):
        return f'"{value}"'
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)
