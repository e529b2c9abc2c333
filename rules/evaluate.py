"""The pipeline's stage order, written once: dedup -> incidents, or actions for events that
report an action rather than a state.

Input: one `Event`, the state the shell loaded (`World`), the rule set and the clock reading.
Output: an `Evaluation` holding each stage's decision. The shell applies the new states to its
working set (so later events of the same batch see them) and persists them in one transaction.
Later stages of the rule engine (normalize, inhibit, maintenance, flapping, ...) slot in here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from rules.actions import act
from rules.dedup import DedupDecision, DedupOutcome, dedup
from rules.incidents import IncidentDecision, IncidentView, correlate
from rules.model import AlertState, Event, EventKind
from rules.ruleset import RuleSet

_ACTION = DedupDecision(DedupOutcome.ACTION, None)


class World(IncidentView, Protocol):
    """Everything the stages may look at: stored alerts and incidents."""

    def alert(self, source: str, fingerprint: str) -> AlertState | None: ...


@dataclass(frozen=True, slots=True)
class EngineSettings:
    duplicate_window: timedelta
    reopen_window: timedelta


@dataclass(frozen=True, slots=True)
class Evaluation:
    event: Event
    dedup: DedupDecision
    incident: IncidentDecision

    @property
    def alert(self) -> AlertState | None:
        """The alert state to store: the incident stage's, which carries the incident link."""
        return self.incident.alert or self.dedup.alert


def evaluate(
    ruleset: RuleSet,
    world: World,
    event: Event,
    now: datetime,
    settings: EngineSettings,
    new_incident_id: Callable[[], int],
) -> Evaluation:
    if event.kind is not EventKind.STATE:
        return Evaluation(event, _ACTION, act(world, event, now))
    prior = world.alert(event.source, event.fingerprint)
    deduped = dedup(prior, event, now, settings.duplicate_window)
    joined = correlate(ruleset, world, event, deduped, now, settings.reopen_window, new_incident_id)
    return Evaluation(event, deduped, joined)
