"""Who is told what about an incident, and when: routes, escalation, repeats.

Input: an incident before and after a change (or a due timer), the rule set's `routes`,
`targets` and `escalations` sections, the targets already told about the incident and its
`Paging` (the escalation and repeat timers). Output: a `Plan`: the `Notice`s to put in the outbox
(target, transition, idempotency key) and the new `Paging`.

The rules, in the order a user meets them:
- An incident that opens is routed: routes are tried in file order on the labels of the alert
  that opened it (plus its priority, service, source, severity); the first match wins unless it
  says `continue`. Its targets, and the first escalation step if that step's `after` is zero,
  are told `opened`.
- Every later transition (acknowledged, resolved, closed, SLA breach, reopened) goes to every
  target that was told about the incident, whatever the routes, silences or inhibitions say
  now: whoever was paged hears that it is over. A route's `send` limits what its targets get.
- Escalation steps run while the incident is not acknowledged, `repeat` more rounds; an
  acknowledgement, resolve or close stops them. A route's `repeat_interval` re-sends to its
  targets while the incident stays unacknowledged.
- A priority change re-routes: targets the new priority reaches are told `opened`.
The writer, the escalation job and the SLA job call these; the shell persists the plan in the
same transaction as the incident change (the transactional outbox).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from rules.duration import format_duration
from rules.model import IncidentState, IncidentStatus, Transition, evolve
from rules.ruleset import ALL_TRANSITIONS, Route, RuleSet, all_match

# Pseudo-labels routes can match besides the opening alert's labels.
PRIORITY_LABEL = "__priority__"


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification to put in the outbox."""

    incident_id: int
    target: str
    transition: Transition
    generation: str  # which occurrence of the transition (reopen count, escalation round...)
    reason: str = ""

    @property
    def key(self) -> str:
        """The idempotency key: stable for incident, target, transition and generation."""
        return notice_key(self.incident_id, self.target, self.transition, self.generation)


@dataclass(frozen=True, slots=True)
class Paging:
    """The timers of one incident: the next escalation step and the next repeat."""

    incident_id: int
    routes: tuple[str, ...]
    escalation: str | None
    started_at: datetime  # when the incident opened or reopened: escalation counts from here
    step: int = 0  # the next step of the escalation policy
    round: int = 0
    next_at: datetime | None = None
    repeat_at: datetime | None = None
    repeats: int = 0

    @property
    def due_at(self) -> datetime | None:
        times = [t for t in (self.next_at, self.repeat_at) if t is not None]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Plan:
    notices: tuple[Notice, ...] = ()
    paging: Paging | None = None  # None: unchanged
    decisions: tuple[tuple[str, str], ...] = ()  # (route or policy, decision) for the metrics


def incident_ref(incident_id: int) -> str:
    """The bridge's id for an incident in other systems (PagerDuty dedup_key, ServiceNow
    correlation_id, ...)."""
    return f"bridge-incident-{incident_id}"


def notice_key(incident_id: int, target: str, transition: Transition, generation: str) -> str:
    return f"{incident_ref(incident_id)}:{target}:{transition}:{generation}"


def route_labels(incident: IncidentState) -> dict[str, str]:
    view = dict(incident.labels)
    view[PRIORITY_LABEL] = str(incident.priority)
    view["__source__"] = incident.source
    return view


def matches(route: Route, incident: IncidentState, labels: Mapping[str, str]) -> bool:
    if route.priorities and incident.priority not in route.priorities:
        return False
    if route.services and (incident.service or "") not in route.services:
        return False
    if route.sources and incident.source not in route.sources:
        return False
    if route.severities and incident.severity not in route.severities:
        return False
    return all_match(route.matchers, labels)


def routes_for(rules: RuleSet, incident: IncidentState) -> tuple[Route, ...]:
    """The routes an incident takes: in file order, the first match, and after one with
    `continue: true` the next matches too."""
    labels = route_labels(incident)
    found: list[Route] = []
    for route in rules.routes:
        if matches(route, incident, labels):
            found.append(route)
            if not route.cont:
                break
    return tuple(found)


def targets_of(rules: RuleSet, routes: Collection[Route]) -> dict[str, frozenset[Transition]]:
    """Each target the routes name (their `targets` and the escalation steps due at once),
    with the transitions it is sent."""
    sends: dict[str, frozenset[Transition]] = {}
    for route in routes:
        names = list(route.targets)
        policy = rules.escalation(route.escalation) if route.escalation else None
        if policy is not None:
            for step in policy.steps:
                if step.after.total_seconds() == 0:
                    names.extend(step.targets)
        for name in names:
            sends[name] = sends.get(name, frozenset()) | route.send
    return sends


def transitions(before: IncidentState | None, after: IncidentState) -> list[Transition]:
    """What people are told about a change of one incident, in order."""
    found: list[Transition] = []
    if before is None:
        found.append(Transition.OPENED)
        was = IncidentStatus.NEW
    else:
        if after.reopen_count > before.reopen_count:
            found.append(Transition.REOPENED)
            was = IncidentStatus.NEW
        else:
            was = before.status
    if after.status is IncidentStatus.ACKNOWLEDGED and was is not IncidentStatus.ACKNOWLEDGED:
        found.append(Transition.ACKNOWLEDGED)
    if after.status in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED) and was.is_active:
        found.append(Transition.RESOLVED)
    if after.status is IncidentStatus.CLOSED and was is not IncidentStatus.CLOSED:
        found.append(Transition.CLOSED)
    return found


def on_change(
    rules: RuleSet,
    before: IncidentState | None,
    after: IncidentState,
    told: Collection[str],
    paging: Paging | None,
    now: datetime,
) -> Plan:
    """The notices and timers for one incident change (`before` None: it opened)."""
    notices: list[Notice] = []
    told_now = set(told)
    new_paging = paging
    decisions: list[tuple[str, str]] = []
    for transition in transitions(before, after):
        if transition.is_trigger:
            routes = routes_for(rules, after)
            decisions.extend((route.name, "matched") for route in routes)
            sends = targets_of(rules, routes)
            # A reopen also goes to whoever heard of the incident before.
            for name in told_now:
                sends.setdefault(name, _told_sends(rules, routes, name))
            notices.extend(_notify(after, sends, transition))
            told_now.update(sends)
            new_paging = start_paging(rules, after, routes, now)
        else:
            sends = {name: _told_sends(rules, routes_for(rules, after), name) for name in told_now}
            notices.extend(_notify(after, sends, transition, _generation(after, transition)))
            if new_paging is not None and new_paging.due_at is not None:
                new_paging = stopped(new_paging)
    if _unacknowledged(before, after) and new_paging is not None:
        # Nobody works on it any more: escalation and repeats start again from now.
        new_paging = start_paging(rules, after, _routes_named(rules, new_paging.routes), now)
    if _rerouted(before, after):
        assert before is not None
        fresh = _reroute(rules, before, after, told_now)
        notices.extend(fresh)
        if fresh and (new_paging is None or new_paging.due_at is None):
            new_paging = start_paging(rules, after, routes_for(rules, after), now)
    return Plan(tuple(notices), new_paging, tuple(decisions))


def concerns(before: IncidentState | None, after: IncidentState) -> bool:
    """Whether a change of an incident is any of routing's business: a transition people are
    told, a priority change (re-routing), or an unacknowledge (timers start again)."""
    return bool(
        transitions(before, after)
        or (before is not None and before.priority != after.priority)
        or _unacknowledged(before, after)
    )


def _generation(incident: IncidentState, transition: Transition) -> str:
    """Which occurrence: the reopen count, and for an acknowledgement also its time (an
    incident acknowledged, unacknowledged and acknowledged again is told both times)."""
    if transition is Transition.ACKNOWLEDGED and incident.acknowledged_at is not None:
        return f"{incident.reopen_count}.{int(incident.acknowledged_at.timestamp())}"
    return str(incident.reopen_count)


def _unacknowledged(before: IncidentState | None, after: IncidentState) -> bool:
    return (
        before is not None
        and before.status is IncidentStatus.ACKNOWLEDGED
        and after.status is IncidentStatus.NEW
        and before.reopen_count == after.reopen_count
    )


def _routes_named(rules: RuleSet, names: Collection[str]) -> tuple[Route, ...]:
    return tuple(route for route in rules.routes if route.name in names)


def _rerouted(before: IncidentState | None, after: IncidentState) -> bool:
    """A priority change of an incident nobody acknowledged yet (once acknowledged, someone
    works on it: paging more people for it would wake them for nothing)."""
    return (
        before is not None
        and before.priority != after.priority
        and before.reopen_count == after.reopen_count
        and after.status is IncidentStatus.NEW
    )


def _reroute(
    rules: RuleSet, before: IncidentState, after: IncidentState, told: set[str]
) -> list[Notice]:
    """Targets a changed priority newly reaches are told the incident is open."""
    sends = targets_of(rules, routes_for(rules, after))
    fresh = {name: send for name, send in sends.items() if name not in told}
    reason = f"priority P{before.priority} -> P{after.priority}"
    found = []
    for notice in _notify(after, fresh, Transition.OPENED):
        found.append(evolve(notice, reason=reason))
    told.update(fresh)
    return found


def _told_sends(rules: RuleSet, routes: Collection[Route], target: str) -> frozenset[Transition]:
    """What a target that was told about the incident hears next: what the routes naming it
    now allow, and everything if no route names it any more (rules changed since)."""
    sends = targets_of(rules, routes).get(target)
    if sends is None:
        for route in routes:
            policy = rules.escalation(route.escalation) if route.escalation else None
            if policy is not None and any(target in s.targets for s in policy.steps):
                return route.send
        return ALL_TRANSITIONS
    return sends


def _notify(
    incident: IncidentState,
    sends: Mapping[str, frozenset[Transition]],
    transition: Transition,
    generation: str | None = None,
    reason: str = "",
) -> list[Notice]:
    gen = str(incident.reopen_count) if generation is None else generation
    found = []
    for name, send in sorted(sends.items()):
        if transition in send:
            found.append(Notice(incident.id, name, transition, gen, reason))
    return found


def _restart(incident: IncidentState, paging: Paging) -> str:
    """Timers started again after the incident opened (an unacknowledge, a re-route) run the
    same steps again: their keys carry the restart's time, so the outbox takes them."""
    if paging.started_at <= incident.opened_at:
        return ""
    return f"r{int(paging.started_at.timestamp())}."


def start_paging(
    rules: RuleSet, incident: IncidentState, routes: Collection[Route], now: datetime
) -> Paging:
    """The timers of an incident that (re)opened: the first escalation step not yet run and
    the shortest repeat interval of its routes."""
    policy_name = next((r.escalation for r in routes if r.escalation), None)
    paging = Paging(incident.id, tuple(r.name for r in routes), policy_name, now)
    policy = rules.escalation(policy_name) if policy_name else None
    if policy is not None:
        first = next((i for i, s in enumerate(policy.steps) if s.after.total_seconds() > 0), None)
        if first is not None:
            paging = evolve(paging, step=first, next_at=now + policy.steps[first].after)
        elif policy.repeat > 0:
            paging = evolve(paging, step=0, round=1, next_at=now + policy.round_length)
    intervals = [r.repeat_interval for r in routes if r.repeat_interval is not None]
    if intervals:
        paging = evolve(paging, repeat_at=now + min(intervals))
    return paging


def stopped(paging: Paging) -> Paging:
    return evolve(paging, next_at=None, repeat_at=None)


def on_timer(
    rules: RuleSet, incident: IncidentState, paging: Paging, told: Collection[str], now: datetime
) -> Plan:
    """A due escalation step or repeat of an incident not acknowledged yet; an incident that
    was acknowledged, resolved or closed meanwhile stops its timers."""
    if incident.status is not IncidentStatus.NEW:
        return Plan(paging=stopped(paging))
    notices: list[Notice] = []
    decisions: list[tuple[str, str]] = []
    if paging.next_at is not None and paging.next_at <= now:
        step_notices, paging = _escalate(rules, incident, paging)
        notices.extend(step_notices)
        if step_notices and paging.escalation:
            decisions.append((paging.escalation, "escalated"))
    if paging.repeat_at is not None and paging.repeat_at <= now:
        repeat_notices, paging, repeated = _repeat(rules, incident, paging, now)
        notices.extend(repeat_notices)
        decisions.extend((name, "repeated") for name in repeated)
    return Plan(tuple(notices), paging, tuple(decisions))


def _escalate(
    rules: RuleSet, incident: IncidentState, paging: Paging
) -> tuple[list[Notice], Paging]:
    policy = rules.escalation(paging.escalation) if paging.escalation else None
    if policy is None or paging.step >= len(policy.steps):
        return [], evolve(paging, next_at=None)  # the policy was removed or shortened
    step = policy.steps[paging.step]
    waited = step.after + policy.round_length * paging.round
    reason = f"not acknowledged after {format_duration(waited)}"
    sends = dict.fromkeys(step.targets, ALL_TRANSITIONS)
    generation = f"{incident.reopen_count}.{_restart(incident, paging)}{paging.round}.{paging.step}"
    notices = _notify(incident, sends, Transition.ESCALATED, generation, reason)
    following, round_ = paging.step + 1, paging.round
    if following >= len(policy.steps):
        following, round_ = 0, round_ + 1
    if round_ > policy.repeat:
        return notices, evolve(paging, step=following, round=round_, next_at=None)
    start = paging.started_at + policy.round_length * round_
    next_at = start + policy.steps[following].after
    return notices, evolve(paging, step=following, round=round_, next_at=next_at)


def _repeat(
    rules: RuleSet, incident: IncidentState, paging: Paging, now: datetime
) -> tuple[list[Notice], Paging, list[str]]:
    """Re-send to the targets of the routes with a `repeat_interval`; returns the notices,
    the timers, and the routes that repeated."""
    routes = [r for r in rules.routes if r.name in paging.routes and r.repeat_interval]
    if not routes:
        return [], evolve(paging, repeat_at=None), []
    sends: dict[str, frozenset[Transition]] = {}
    for route in routes:
        for name in route.targets:
            sends[name] = sends.get(name, frozenset()) | route.send
    count = paging.repeats + 1
    generation = f"{incident.reopen_count}.{_restart(incident, paging)}{count}"
    notices = _notify(incident, sends, Transition.REPEAT, generation, "still not acknowledged")
    interval = min(r.repeat_interval for r in routes if r.repeat_interval is not None)
    # Counted from when it was due, not when the job ran, so that repeats do not drift.
    due = paging.repeat_at or now
    following = due + interval if due + interval > now else now + interval
    repeated = [r.name for r in routes if r.targets]
    return notices, evolve(paging, repeats=count, repeat_at=following), repeated


def on_breach(
    rules: RuleSet, incident: IncidentState, kind: str, told: Collection[str]
) -> list[Notice]:
    """An SLA deadline was missed: every target told about the incident hears it."""
    routes = routes_for(rules, incident)
    sends = {name: _told_sends(rules, routes, name) for name in told}
    if not sends:
        sends = targets_of(rules, routes)  # nobody was told yet: tell the routed targets
    generation = f"{incident.reopen_count}.{kind}"
    reason = f"P{incident.priority} SLA: not {kind}d in time"
    return _notify(incident, sends, Transition.SLA_BREACH, generation, reason)
