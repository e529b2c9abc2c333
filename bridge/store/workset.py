"""The state one group commit works on: what was loaded, what the stages changed.

It implements `rules.evaluate.World`, so the stages read it; the writer applies each
evaluation to it, so later events of the same batch see earlier ones; the repository then
persists exactly what is dirty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rules.evaluate import Evaluation
from rules.model import AlertState, IncidentState, IncidentStatus, TimelineEntry

AlertKey = tuple[str, str]


@dataclass
class WorkSet:
    alerts: dict[AlertKey, AlertState] = field(default_factory=dict)
    incidents: dict[int, IncidentState] = field(default_factory=dict)
    latest_by_key: dict[str, int] = field(default_factory=dict)
    loaded_status: dict[int, IncidentStatus] = field(default_factory=dict)
    loaded_alerts: dict[AlertKey, AlertState] = field(default_factory=dict)
    dirty_alerts: set[AlertKey] = field(default_factory=set)
    dirty_incidents: set[int] = field(default_factory=set)
    timeline: list[TimelineEntry] = field(default_factory=list)
    _next_new_id: int = -1

    def add_loaded_alerts(self, alerts: Iterable[AlertState]) -> None:
        for alert in alerts:
            key = (alert.source, alert.fingerprint)
            self.alerts[key] = alert
            self.loaded_alerts[key] = alert

    def add_loaded_incidents(self, incidents: Iterable[IncidentState]) -> None:
        for incident in incidents:
            self.incidents[incident.id] = incident
            self.loaded_status[incident.id] = incident.status
            latest = self.latest_by_key.get(incident.key)
            if latest is None or latest < incident.id:
                self.latest_by_key[incident.key] = incident.id

    # World
    def alert(self, source: str, fingerprint: str) -> AlertState | None:
        return self.alerts.get((source, fingerprint))

    def incident(self, incident_id: int) -> IncidentState | None:
        return self.incidents.get(incident_id)

    def latest_for_key(self, key: str) -> IncidentState | None:
        incident_id = self.latest_by_key.get(key)
        return None if incident_id is None else self.incidents[incident_id]

    def new_incident_id(self) -> int:
        value = self._next_new_id
        self._next_new_id -= 1
        return value

    def apply(self, evaluation: Evaluation) -> None:
        alert = evaluation.alert
        if alert is not None:
            key = (alert.source, alert.fingerprint)
            self.alerts[key] = alert
            self.dirty_alerts.add(key)
        decision = evaluation.incident
        if decision.incident is not None:
            self.put_incident(decision.incident)
        self.timeline.extend(decision.timeline)

    def put_incident(self, incident: IncidentState) -> None:
        self.incidents[incident.id] = incident
        self.dirty_incidents.add(incident.id)
        latest = self.latest_by_key.get(incident.key)
        if incident.id < 0 or latest is None or (latest > 0 and latest < incident.id):
            self.latest_by_key[incident.key] = incident.id

    def status_changes(self) -> list[tuple[IncidentStatus | None, IncidentStatus]]:
        """(before, after) for every incident written, for the open-incidents gauge."""
        return [(self.loaded_status.get(i), self.incidents[i].status) for i in self.dirty_incidents]
