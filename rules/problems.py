"""Stage `problems`: ITIL problem records for incidents that recur or share a root cause.

Input: an incident that just opened or reopened, the rule set and the world (through
`Effects`). Output: a new or updated `ProblemState` and the incident linked to it
(`problem_id`), with timeline entries on the incidents.

Rule section: `problems`. A rule with `by: key` opens a problem when incidents of the same
incident key occur `count` times within `within` (a reopen counts as an occurrence); `by: ci`
when `count` incidents with the same root cause CI (topology) open within `within`. While the
problem is active (open or known error), every further incident of that key or CI links to it.
The first rule that links the incident wins (a rule whose count is not reached yet leaves it to
the next one); `rules:` limits a rule to incidents of those correlate rules.
Metric: `bridge_rule_decisions_total{stage="problems",decision="opened"|"linked"}`.
"""

from __future__ import annotations

from rules.effects import Effects
from rules.incidents import entry
from rules.keys import bounded
from rules.model import IncidentState, ProblemState, ProblemStatus, TimelineKind, evolve
from rules.ruleset import ProblemBy, ProblemRule


def link_problem(fx: Effects, incident: IncidentState) -> None:
    for rule in fx.rules.problems:
        if rule.rules and incident.rule not in rule.rules:
            continue
        value = incident.key if rule.by is ProblemBy.KEY else incident.ci
        if value is None:
            continue
        if _apply(fx, rule, incident, problem_key(rule.name, value)):
            return


def problem_key(rule: str, value: str) -> str:
    """The key of a rule's problem for an incident key or CI, bounded (`rules.keys`)."""
    return bounded(f"{rule}:{value}")


def _apply(fx: Effects, rule: ProblemRule, incident: IncidentState, key: str) -> bool:
    """Link the incident to the rule's problem for `key`, opening it once the rule's count is
    reached; False if the count is not reached (the next rule may still apply)."""
    existing = fx.world.problem(key)
    if existing is not None:
        existing = fx.problem(existing.id) or existing
        if incident.problem_id != existing.id:
            _link(fx, existing, incident, rule)
        return True
    since = fx.now - rule.within
    if rule.by is ProblemBy.KEY:
        earlier = [i for i in fx.world.recent(incident.key, None, since) if i.id != incident.id]
        occurrences = 1 + incident.reopen_count + sum(1 + i.reopen_count for i in earlier)
    else:
        # Incidents that share the CI, each once: one incident reopening is a recurrence, not
        # a second incident with the same cause.
        earlier = [
            i
            for i in fx.world.recent(None, incident.ci, since)
            if i.id != incident.id and (not rule.rules or i.rule in rule.rules)
        ]
        occurrences = 1 + len(earlier)
    if occurrences < rule.count:
        return False
    problem = ProblemState(
        id=fx.world.new_id(),
        key=key,
        rule=rule.name,
        title=_title(rule, incident),
        status=ProblemStatus.OPEN,
        opened_at=fx.now,
        updated_at=fx.now,
        incident_count=0,
        ci=incident.ci,
    )
    fx.decide("problems", rule.name, "opened")
    for member in [*earlier, incident]:
        current = fx.incident(member.id) or member
        if current.problem_id is None:
            problem = _link(fx, problem, current, rule)
    return True


def _link(
    fx: Effects, problem: ProblemState, incident: IncidentState, rule: ProblemRule
) -> ProblemState:
    updated = evolve(problem, incident_count=problem.incident_count + 1, updated_at=fx.now)
    fx.put_problem(updated)
    linked = evolve(incident, problem_id=problem.id)
    fx.put_incident(linked)
    message = f"linked to problem {problem.title!r} (rule {rule.name})"
    actor = f"rule:{rule.name}"
    fx.timeline.append(entry(linked, fx.now, TimelineKind.PROBLEM_LINKED, message, None, actor))
    fx.decide("problems", rule.name, "linked")
    return updated


def _title(rule: ProblemRule, incident: IncidentState) -> str:
    if rule.by is ProblemBy.CI:
        return f"Repeated incidents on {incident.ci}"
    return f"Recurring: {incident.title}"
