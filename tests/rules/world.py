"""Drives the pure pipeline over an in-memory `rules.world.World`, as the offline tools do.

`Pipeline.send` evaluates one event with `rules.evaluate.run` (the event and its follow-ups,
each applied to the world); `Pipeline.tick` runs what time alone changes (`rules.timers.tick`:
expiry, rechecks of held and flapping alerts, missed heartbeats); `Pipeline.step` does both, as
`bridge rules test` does at every step of a timeline. The readers below answer what a user
would look at: incidents, their members and timelines, held alerts, decisions. Incidents and
problems opened here have placeholder ids (negative, in opening order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rules.effects import Context, EngineSettings, Evaluation
from rules.evaluate import run
from rules.model import (
    AlertState,
    Event,
    IncidentState,
    ProblemState,
    TimelineEntry,
    TimelineKind,
)
from rules.ruleset import MaintenanceWindow, RuleSet
from rules.timers import tick
from rules.world import World

SETTINGS = EngineSettings(duplicate_window=timedelta(minutes=1), reopen_window=timedelta(hours=1))


@dataclass
class Pipeline:
    rules: RuleSet = field(default_factory=RuleSet)
    settings: EngineSettings = SETTINGS
    windows: tuple[MaintenanceWindow, ...] = ()
    world: World = field(default_factory=World)
    evaluations: list[Evaluation] = field(default_factory=list)

    def context(self, now: datetime) -> Context:
        return Context(rules=self.rules, settings=self.settings, now=now, windows=self.windows)

    def send(self, event: Event, now: datetime) -> Evaluation:
        """Evaluate `event` at `now` with its follow-ups; returns the event's own evaluation."""
        done = run(self.context(now), self.world, event)
        self.evaluations.extend(done)
        return done[0]

    def tick(self, now: datetime) -> list[Evaluation]:
        done = tick(self.context(now), self.world)
        self.evaluations.extend(done)
        return done

    def step(self, now: datetime, *events: Event) -> list[Evaluation]:
        """What the offline tools do at one step of a timeline: tick, then send the events."""
        done = self.tick(now)
        for event in events:
            done.append(self.send(event, now))
        return done

    # Reading

    def alert(self, fingerprint: str, source: str = "prometheus") -> AlertState:
        found = self.world.alert(source, fingerprint)
        assert found is not None, f"no alert {source}/{fingerprint}"
        return found

    def incidents(self) -> list[IncidentState]:
        """Every incident, in the order they opened."""
        return sorted(self.world.incidents.values(), key=lambda i: -i.id)

    def active(self) -> list[IncidentState]:
        return [i for i in self.incidents() if i.status.is_active]

    def only_incident(self) -> IncidentState:
        [incident] = self.incidents()
        return incident

    def incident_of(self, fingerprint: str, source: str = "prometheus") -> IncidentState:
        """The incident the alert belongs to (its primary one)."""
        alert = self.alert(fingerprint, source)
        assert alert.incident_id is not None, f"{source}/{fingerprint} is in no incident"
        return self.world.incidents[alert.incident_id]

    def members(self, incident: IncidentState) -> list[str]:
        """The fingerprints that joined the incident, in the order they joined (each once)."""
        seen: dict[str, None] = {}
        for link in self.world.links:
            if link.incident_id == incident.id:
                seen[link.fingerprint] = None
        return list(seen)

    def timeline(self, incident: IncidentState) -> list[TimelineEntry]:
        return [e for e in self.world.timeline if e.incident_id == incident.id]

    def kinds(self, incident: IncidentState) -> list[TimelineKind]:
        return [e.kind for e in self.timeline(incident)]

    def problems(self) -> list[ProblemState]:
        return sorted(self.world.problems.values(), key=lambda p: -p.id)

    def decisions(self, stage: str) -> list[tuple[str, str]]:
        """(rule, decision) of every decision of `stage`, over every evaluation so far."""
        return decisions(self.evaluations, stage)


def decisions(evaluations: Iterable[Evaluation], stage: str) -> list[tuple[str, str]]:
    return [(d.rule, d.decision) for e in evaluations for d in e.decisions if d.stage == stage]
