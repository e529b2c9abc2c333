"""What one evaluation decides: the changed states and the decisions that name their rules.

The stages of one event add to an `Effects` while they run (reading through it, so that a
later stage sees an incident an earlier one changed), and `Effects.freeze` turns it into the
immutable `Evaluation` that the driver applies to the world and the shell persists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rules.dedup import DedupDecision
from rules.model import AlertState, Event, IncidentState, ProblemState, TimelineEntry
from rules.ruleset import MaintenanceWindow, RuleSet
from rules.world import InhibitorChange, Link, World


@dataclass(frozen=True, slots=True)
class EngineSettings:
    duplicate_window: timedelta
    reopen_window: timedelta


@dataclass(frozen=True, slots=True)
class Context:
    """What every stage of one evaluation reads besides the world: the rule set, the engine
    settings, the maintenance windows created through the API, and the clock reading."""

    rules: RuleSet
    settings: EngineSettings
    now: datetime
    windows: tuple[MaintenanceWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """One rule's decision; the three fields are the labels of `bridge_rule_decisions_total`
    (stage = rule-file section, rule = rule name, decision = what it did)."""

    stage: str
    rule: str
    decision: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    event: Event
    dedup: DedupDecision
    at: datetime
    alerts: tuple[AlertState, ...] = ()
    incidents: tuple[IncidentState, ...] = ()
    problems: tuple[ProblemState, ...] = ()
    timeline: tuple[TimelineEntry, ...] = ()
    links: tuple[Link, ...] = ()
    inhibitors: tuple[InhibitorChange, ...] = ()
    beats: tuple[str, ...] = ()
    decisions: tuple[Decision, ...] = ()
    # Events the driver evaluates next (a heartbeat's recovery when its event arrives).
    follow_ups: tuple[Event, ...] = ()

    @property
    def alert(self) -> AlertState | None:
        """The stored state of the event's own alert, if it changed."""
        for alert in self.alerts:
            if alert.fingerprint == self.event.fingerprint and alert.source == self.event.source:
                return alert
        return None


@dataclass
class Effects:
    ctx: Context
    world: World
    event: Event
    dedup: DedupDecision
    alerts: dict[tuple[str, str], AlertState] = field(default_factory=dict)
    incidents: dict[int, IncidentState] = field(default_factory=dict)
    problems: dict[int, ProblemState] = field(default_factory=dict)
    timeline: list[TimelineEntry] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    inhibitors: list[InhibitorChange] = field(default_factory=list)
    beats: list[str] = field(default_factory=list)
    # The heartbeats the event's labels match (whether or not it counts as a beat).
    beating: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    follow_ups: list[Event] = field(default_factory=list)

    @property
    def now(self) -> datetime:
        return self.ctx.now

    @property
    def rules(self) -> RuleSet:
        return self.ctx.rules

    def incident(self, incident_id: int) -> IncidentState | None:
        return self.incidents.get(incident_id) or self.world.incident(incident_id)

    def problem(self, problem_id: int) -> ProblemState | None:
        return self.problems.get(problem_id) or self.world.problems.get(problem_id)

    def put_alert(self, alert: AlertState) -> None:
        self.alerts[alert.source, alert.fingerprint] = alert

    def put_incident(self, incident: IncidentState) -> None:
        self.incidents[incident.id] = incident

    def put_problem(self, problem: ProblemState) -> None:
        self.problems[problem.id] = problem

    def decide(self, stage: str, rule: str, decision: str) -> None:
        self.decisions.append(Decision(stage, rule, decision))

    def freeze(self) -> Evaluation:
        return Evaluation(
            event=self.event,
            dedup=self.dedup,
            at=self.ctx.now,
            alerts=tuple(self.alerts.values()),
            incidents=tuple(self.incidents.values()),
            problems=tuple(self.problems.values()),
            timeline=tuple(self.timeline),
            links=tuple(self.links),
            inhibitors=tuple(self.inhibitors),
            beats=tuple(self.beats),
            decisions=tuple(self.decisions),
            follow_ups=tuple(self.follow_ups),
        )


def apply(world: World, evaluation: Evaluation) -> None:
    """Record an evaluation in the world, so that the next event sees it."""
    for alert in evaluation.alerts:
        world.put_alert(alert)
    for incident in evaluation.incidents:
        world.put_incident(incident)
    for problem in evaluation.problems:
        world.put_problem(problem)
    for change in evaluation.inhibitors:
        world.change_inhibitor(change)
    for name in evaluation.beats:
        world.beat(name, evaluation.at)
    world.links.extend(evaluation.links)
    world.timeline.extend(evaluation.timeline)
