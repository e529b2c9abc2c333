"""The pipeline's stage order, written once.

For an event that reports a state:
    normalize -> dedup (identify, then new/repeat/changed/resolved/...) -> heartbeats ->
    flapping -> inhibit (source bookkeeping) -> maintenance -> inhibit (target) -> topology /
    correlate -> problems -> incidents (lifecycle counts)
For an event that reports an action (acknowledgement, comment, flapping or downtime notice):
    normalize -> dedup (identify only) -> actions.

Input: one `Event`, the `World`, and the `Context` (rules, settings, API maintenance windows,
`now`). Output: an `Evaluation` with every changed state and every rule's decision. `run`
evaluates an event, applies the result to the world and evaluates its follow-ups (a heartbeat's
recovery), so that both the daemon and the offline tools drive the stages the same way.
`lookups` tells the daemon which stored rows the stages may read for a batch of events, and
`more_lookups` what else the rows it loaded point to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rules import heartbeats, incidents, inhibit
from rules.actions import act
from rules.correlate import hold_alert, hold_of, place, routes
from rules.dedup import DedupDecision, DedupOutcome, dedup, dedup_rule, identify
from rules.effects import Context, Effects, EngineSettings, Evaluation, apply
from rules.flapping import FlapChange, observe
from rules.model import (
    AlertState,
    AlertStatus,
    Event,
    EventKind,
    Hold,
    IncidentState,
    TimelineKind,
    evolve,
)
from rules.normalize import normalize
from rules.problems import problem_key
from rules.ruleset import DedupRule, ProblemBy, RuleSet
from rules.world import AlertKey, InhibitKey, InhibitorChange, World

__all__ = [
    "Context",
    "EngineSettings",
    "Evaluation",
    "Prepared",
    "evaluate",
    "lookups",
    "more_lookups",
    "prepare",
    "run",
]

_RESETS = (DedupOutcome.NEW, DedupOutcome.REFIRED, DedupOutcome.RESOLVED)


@dataclass(frozen=True, slots=True)
class Prepared:
    """An event as the stages see it: normalized (by the rules named in `normalized`), with
    the fingerprint its dedup rule gives. Preparing twice could apply a rewrite twice, so the
    shell prepares once (to know what to load) and evaluates the prepared event."""

    event: Event
    normalized: tuple[str, ...]
    dedup: DedupRule | None = None


def prepare(ruleset: RuleSet, event: Event) -> Prepared:
    event, normalized = normalize(ruleset, event)
    rule = dedup_rule(ruleset, event.match_labels())
    if event.source == heartbeats.SOURCE:
        # A heartbeat's alert is known by the heartbeat's name (the check and the recovery
        # look it up so), whatever fingerprint a dedup rule would give it.
        return Prepared(event, normalized, rule)
    return Prepared(identify(rule, event), normalized, rule)


def run(ctx: Context, world: World, event: Event | Prepared) -> list[Evaluation]:
    """Evaluate one event and its follow-ups, applying each to the world."""
    done: list[Evaluation] = []
    queue: list[Event | Prepared] = [event]
    while queue:
        evaluation = evaluate(ctx, world, queue.pop(0))
        apply(world, evaluation)
        done.append(evaluation)
        queue.extend(evaluation.follow_ups)
    return done


def evaluate(ctx: Context, world: World, event: Event | Prepared) -> Evaluation:
    prepared = event if isinstance(event, Prepared) else prepare(ctx.rules, event)
    event, normalized, rule = prepared.event, prepared.normalized, prepared.dedup
    labels = event.match_labels()
    if event.kind is not EventKind.STATE:
        fx = Effects(ctx, world, event, DedupDecision(DedupOutcome.ACTION, None))
        act(fx, labels)
        return fx.freeze()
    prior = world.alert(event.source, event.fingerprint)
    decided = dedup(prior, event, ctx.now, ctx.settings.duplicate_window, rule)
    fx = Effects(ctx, world, event, decided)
    for name in normalized:
        fx.decide("normalize", name, "applied")
    fx.beating = heartbeats.beaten(ctx.rules, labels)
    _beat(fx)
    if event.source == heartbeats.SOURCE and decided.outcome.fires:
        fx.decide("heartbeats", event.fingerprint, "missed")
    if decided.alert is not None:
        _stages(fx, prior, decided.alert, labels)
    return fx.freeze()


def _beat(fx: Effects) -> None:
    if not fx.event.from_sender:
        return
    for name in fx.beating:
        fx.beats.append(name)
        last = fx.world.heartbeats.get(name)
        stored = fx.world.alert(heartbeats.SOURCE, name)
        if last is not None and stored is not None and stored.status is AlertStatus.FIRING:
            rule = next(r for r in fx.rules.heartbeats if r.name == name)  # few, and rare
            fx.follow_ups.append(heartbeats.recovered_event(rule, last, fx.now))
            fx.decide("heartbeats", name, "recovered")


def _stages(
    fx: Effects, prior: AlertState | None, alert: AlertState, labels: Mapping[str, str]
) -> None:
    change = FlapChange.NONE
    if fx.dedup.outcome in _RESETS:
        alert, change = observe(fx.rules.flapping, prior, alert, fx.now)
    _track_inhibitors(fx, prior, alert, labels)
    if alert.status is AlertStatus.FIRING:
        alert = _firing(fx, prior, alert, labels)
    elif prior is not None:
        alert = _stopped(fx, prior, alert)
    if change is not FlapChange.NONE:
        _flap_noted(fx, alert, change)  # on the incident the alert is in after this event
    fx.put_alert(alert)


def _firing(
    fx: Effects, prior: AlertState | None, alert: AlertState, labels: Mapping[str, str]
) -> AlertState:
    outcome = fx.dedup.outcome
    active = [i for i in (fx.incident(n) for n in alert.incident_ids) if i and i.status.is_active]
    if outcome.fires and prior is not None and prior.counts_firing:
        if active:
            # Flapping: it resolved without leaving its incident, and now fires again, quietly.
            return _seen(fx, alert, active, changed=False)
        # Flapping, but its incidents were resolved meanwhile (by an operator, or `resolve_on`):
        # it stops counting there, and counts again where it is placed now.
        incidents.recount(fx, alert, -1)
    if fx.beating:
        # Held when it would be placed; one in an incident since before its heartbeat rule came
        # stays there, counted, until it resolves.
        if outcome.fires or alert.hold is not Hold.NONE:
            return hold_alert(fx, alert, Hold.HEARTBEAT, "heartbeat")
    elif outcome.fires or _released(fx, alert, labels):
        return place(fx, alert, labels)
    return _seen(fx, alert, active, changed=outcome is DedupOutcome.CHANGED)


def _released(fx: Effects, alert: AlertState, labels: Mapping[str, str]) -> bool:
    """Whether a held alert seen again is to be placed: it beats no heartbeat any more (its
    rule is gone), or what held it ended."""
    if alert.hold is Hold.HEARTBEAT:
        return True
    return alert.hold in _RECHECKED and _hold_moved(fx, alert, labels)


_RECHECKED = (Hold.MAINTENANCE, Hold.INHIBITED)


def _hold_moved(fx: Effects, alert: AlertState, labels: Mapping[str, str]) -> bool:
    """Whether a held alert seen again is held by something else now (its window ended, its
    inhibitor resolved): only then is it placed again, to keep repeats cheap."""
    held = hold_of(fx, alert, labels)
    return held is None or (held[0], held[1]) != (alert.hold, alert.held_by)


def _seen(
    fx: Effects, alert: AlertState, active: list[IncidentState], *, changed: bool
) -> AlertState:
    for incident in active:
        updated = incidents.seen(incident, alert, fx.now)
        if changed:
            fx.timeline.append(
                incidents.entry(
                    updated, fx.now, TimelineKind.ALERT_CHANGED, incidents.describe(alert), alert
                )
            )
        if updated != incident:
            fx.put_incident(updated)
    return alert


def _stopped(fx: Effects, prior: AlertState, alert: AlertState) -> AlertState:
    """The alert resolved: it leaves its incidents' firing count unless it still flaps (a held
    alert is in none, but a pending one in those of its `continue` routes)."""
    if alert.hold is not Hold.NONE:
        alert = evolve(alert, hold=Hold.NONE, held_by="")
    incidents.leave(fx, prior, alert)
    return alert


def _flap_noted(fx: Effects, alert: AlertState, change: FlapChange) -> None:
    fx.decide("flapping", "flapping", change.value)
    kind = (
        TimelineKind.FLAPPING_STARTED
        if change is FlapChange.STARTED
        else (TimelineKind.FLAPPING_STOPPED)
    )
    for incident_id in alert.incident_ids:
        incident = fx.incident(incident_id)
        if incident is not None and incident.status.is_active:
            message = f"{incidents.describe(alert)} {change.value} flapping"
            fx.timeline.append(incidents.entry(incident, fx.now, kind, message, alert))


def _track_inhibitors(
    fx: Effects, prior: AlertState | None, alert: AlertState, labels: Mapping[str, str]
) -> None:
    if not fx.rules.inhibit:
        return
    key = (alert.source, alert.fingerprint)
    firing = alert.status is AlertStatus.FIRING
    was = prior is not None and prior.status is AlertStatus.FIRING
    for inhibit_key in inhibit.sources(fx.rules, labels):
        if firing != was or prior is None:
            fx.inhibitors.append(InhibitorChange(inhibit_key, key, firing))
        elif firing and key not in fx.world.inhibitors.get(inhibit_key, ()):
            # It fired before a reload made it a source (a new rule, other `equal` labels).
            fx.inhibitors.append(InhibitorChange(inhibit_key, key, True))


@dataclass
class Lookups:
    """The stored rows a batch's stages may read, beyond the alerts of its fingerprints."""

    alerts: set[AlertKey] = field(default_factory=set)
    incident_keys: set[str] = field(default_factory=set)
    inhibit_keys: set[InhibitKey] = field(default_factory=set)
    cis: set[str] = field(default_factory=set)
    problem_keys: set[str] = field(default_factory=set)

    def merge(self, other: Lookups) -> None:
        self.alerts |= other.alerts
        self.incident_keys |= other.incident_keys
        self.inhibit_keys |= other.inhibit_keys
        self.cis |= other.cis
        self.problem_keys |= other.problem_keys


def lookups(
    ruleset: RuleSet,
    events: Iterable[Event],
    stored: Callable[[str, str], AlertState | None] | None = None,
) -> Lookups:
    """What to load for `events` (the `Prepared.event`s): their alerts, the incident keys they may
    route to, the inhibit keys they may be targets or sources of, the CIs whose incidents may
    take them as symptoms, the problem keys they may link to, and heartbeat alerts they may
    recover. With `stored` (the alerts already loaded), a re-send of an alert that fires in its
    incidents asks only for what a repeat reads: most traffic is such re-sends."""
    found = Lookups()
    for event in events:
        found.alerts.add((event.source, event.fingerprint))
        labels = event.match_labels()
        if event.kind is EventKind.STATE and event.from_sender:
            # Any state report beats its heartbeats, a resolve too, and may recover them.
            found.alerts.update((heartbeats.SOURCE, n) for n in heartbeats.beaten(ruleset, labels))
        if event.status is not AlertStatus.FIRING:
            continue  # actions on firing alerts may place them too (a downtime that ends)
        prior = stored(event.source, event.fingerprint) if stored is not None else None
        if prior is not None and _steady(prior, event):
            found.inhibit_keys.update(inhibit.sources(ruleset, labels))  # registered yet?
            continue
        _event_lookups(ruleset, labels, found)
    return found


def _steady(prior: AlertState, event: Event) -> bool:
    """A firing re-send of an alert that fires, held by nothing: dedup makes it a repeat or a
    change (or a duplicate), which reads only the alert's own incidents."""
    return (
        event.kind is EventKind.STATE
        and prior.status is AlertStatus.FIRING
        and prior.hold is Hold.NONE
    )


def more_lookups(ruleset: RuleSet, world: World, found: Lookups) -> Lookups:
    """What the stages may read besides `found` that only the rows it loaded tell: an incident
    an alert may reopen has the CI of the alert that opened it, which may not be the alert's
    own, and the reopen counts for the problems of that CI (`by: ci`)."""
    more = Lookups()
    if not any(rule.by is ProblemBy.CI for rule in ruleset.problems):
        return more
    for key in found.incident_keys:
        latest = world.latest_for_key(key)
        if latest is not None and latest.ci is not None and latest.ci not in found.cis:
            more.cis.add(latest.ci)
            more.problem_keys.update(problem_key(p.name, latest.ci) for p in ruleset.problems)
    return more


def _event_lookups(ruleset: RuleSet, labels: Mapping[str, str], found: Lookups) -> None:
    for route in routes(ruleset, labels):
        found.incident_keys.add(route.key)
        found.problem_keys.update(problem_key(p.name, route.key) for p in ruleset.problems)
    found.inhibit_keys.update(inhibit.targets(ruleset, labels))
    found.inhibit_keys.update(inhibit.sources(ruleset, labels))  # is it registered as one yet
    topology = ruleset.topology
    ci = topology.ci_of(labels) if topology is not None else None
    if topology is not None and ci is not None:
        cis = {ci, *topology.cmdb.ancestors(ci)}
        found.cis.update(cis)
        found.problem_keys.update(problem_key(p.name, c) for p in ruleset.problems for c in cis)
