"""An in-memory `World` that applies evaluations, for scenario tests of the pure pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rules.evaluate import EngineSettings, Evaluation, evaluate
from rules.model import AlertState, Event, IncidentState
from rules.ruleset import RuleSet

SETTINGS = EngineSettings(duplicate_window=timedelta(minutes=1), reopen_window=timedelta(hours=1))


@dataclass
class MemoryWorld:
    rules: RuleSet = field(default_factory=RuleSet)
    settings: EngineSettings = SETTINGS
    alerts: dict[tuple[str, str], AlertState] = field(default_factory=dict)
    incidents: dict[int, IncidentState] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)
    next_id: int = 1

    def alert(self, source: str, fingerprint: str) -> AlertState | None:
        return self.alerts.get((source, fingerprint))

    def incident(self, incident_id: int) -> IncidentState | None:
        return self.incidents.get(incident_id)

    def latest_for_key(self, key: str) -> IncidentState | None:
        found = self.latest.get(key)
        return None if found is None else self.incidents[found]

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def send(self, event: Event, now: datetime) -> Evaluation:
        evaluation = evaluate(self.rules, self, event, now, self.settings, self._new_id)
        if evaluation.alert is not None:
            self.alerts[(event.source, event.fingerprint)] = evaluation.alert
        incident = evaluation.incident.incident
        if incident is not None:
            self.incidents[incident.id] = incident
            self.latest[incident.key] = max(self.latest.get(incident.key, 0), incident.id)
        return evaluation
