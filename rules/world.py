"""The state the stages read and the evaluations they produce, as in-memory indexes.

`World` holds alerts, incidents, problems, inhibitors and heartbeats, indexed the way the
stages look them up (by fingerprint, incident key, CI, inhibit key). The stages never change
it; the driver in `rules.evaluate` applies each `Evaluation` to it, so that later events see
earlier ones, and records what changed (`dirty_*`) for whoever persists it.

The offline tools (`bridge rules test`, `bridge replay`) keep one `World` for a whole run. The
daemon builds one per group commit from the rows the batch needs (`rules.evaluate.lookups`
says which) and writes back exactly what is dirty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rules.model import (
    AlertState,
    AlertStatus,
    Hold,
    IncidentState,
    IncidentStatus,
    JoinReason,
    ProblemState,
    TimelineEntry,
)

AlertKey = tuple[str, str]
InhibitKey = tuple[str, str]  # (inhibit rule, the `equal` label values)


@dataclass(frozen=True, slots=True)
class Link:
    """An alert joined an incident: by which rule and why (the incident's member list)."""

    incident_id: int
    source: str
    fingerprint: str
    rule: str
    reason: JoinReason
    at: datetime


@dataclass(frozen=True, slots=True)
class InhibitorChange:
    key: InhibitKey
    alert: AlertKey
    active: bool  # True: the alert now inhibits; False: it no longer does


@dataclass
class World:
    alerts: dict[AlertKey, AlertState] = field(default_factory=dict)
    incidents: dict[int, IncidentState] = field(default_factory=dict)
    problems: dict[int, ProblemState] = field(default_factory=dict)
    heartbeats: dict[str, datetime] = field(default_factory=dict)
    inhibitors: dict[InhibitKey, set[AlertKey]] = field(default_factory=dict)
    # What was loaded, to tell inserts from updates and for the open-incidents gauge.
    loaded_alerts: dict[AlertKey, AlertState] = field(default_factory=dict)
    loaded_status: dict[int, IncidentStatus] = field(default_factory=dict)
    loaded_incidents: dict[int, IncidentState] = field(default_factory=dict)
    dirty_alerts: set[AlertKey] = field(default_factory=set)
    dirty_incidents: set[int] = field(default_factory=set)
    dirty_problems: set[int] = field(default_factory=set)
    dirty_heartbeats: set[str] = field(default_factory=set)
    inhibitor_changes: list[InhibitorChange] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    _latest_by_key: dict[str, int] = field(default_factory=dict)
    _by_key: dict[str, set[int]] = field(default_factory=dict)
    _by_ci: dict[str, set[int]] = field(default_factory=dict)
    _pending: dict[str, set[AlertKey]] = field(default_factory=dict)
    _problem_by_key: dict[str, int] = field(default_factory=dict)
    _next_placeholder: int = -1

    # Loading (the shell, or a fresh world for the offline tools)

    def load_alerts(self, alerts: Iterable[AlertState]) -> None:
        for alert in alerts:
            key = (alert.source, alert.fingerprint)
            self.loaded_alerts[key] = alert
            self._put_alert(alert)

    def load_incidents(self, incidents: Iterable[IncidentState]) -> None:
        for incident in incidents:
            self.loaded_status[incident.id] = incident.status
            self.loaded_incidents[incident.id] = incident
            self._put_incident(incident)

    def load_problems(self, problems: Iterable[ProblemState]) -> None:
        for problem in problems:
            self._put_problem(problem)

    def load_inhibitor(self, key: InhibitKey, alert: AlertKey) -> None:
        self.inhibitors.setdefault(key, set()).add(alert)

    # Reading (what the stages see)

    def alert(self, source: str, fingerprint: str) -> AlertState | None:
        return self.alerts.get((source, fingerprint))

    def incident(self, incident_id: int) -> IncidentState | None:
        return self.incidents.get(incident_id)

    def latest_for_key(self, key: str) -> IncidentState | None:
        found = self._latest_by_key.get(key)
        return None if found is None else self.incidents[found]

    def pending(self, key: str) -> list[AlertState]:
        return [self.alerts[k] for k in sorted(self._pending.get(key, ()))]

    def inhibitor(self, key: InhibitKey, exclude: AlertKey) -> AlertKey | None:
        """A firing alert that inhibits alerts of `key` (never the alert itself)."""
        stale = self.stale_inhibitors(key)
        for candidate in sorted(self.inhibitors.get(key, ())):
            if candidate != exclude and candidate not in stale:
                return candidate
        return None

    def stale_inhibitors(self, key: InhibitKey) -> set[AlertKey]:
        """The inhibitors of `key` known to have stopped firing. A resolve clears the keys its
        alert inhibits under the rules of that moment; if a reload changed the rule while
        the alert fired, its old key stays behind and must not hold targets for ever."""
        return {
            candidate
            for candidate in self.inhibitors.get(key, ())
            if (found := self.alerts.get(candidate)) is not None
            and found.status is not AlertStatus.FIRING
        }

    def unloaded_inhibitors(self) -> set[AlertKey]:
        """Inhibiting alerts whose state is not loaded (the daemon loads them to tell stale
        inhibitors)."""
        return {k for members in self.inhibitors.values() for k in members} - self.alerts.keys()

    def active_for_ci(self, ci: str, rules: Callable[[str], bool]) -> IncidentState | None:
        """The latest active incident whose root cause CI is `ci` and whose correlate rule
        passes `rules`."""
        active = [
            i
            for i in self._by_ci.get(ci, ())
            if self.incidents[i].status.is_active and rules(self.incidents[i].rule)
        ]
        return self.incidents[max(active, key=_order)] if active else None

    def recent(self, key: str | None, ci: str | None, since: datetime) -> list[IncidentState]:
        """Incidents of an incident key (or of a root cause CI) opened at or after `since`."""
        ids = self._by_key.get(key, set()) if key is not None else self._by_ci.get(ci or "", set())
        found = [self.incidents[i] for i in ids if self.incidents[i].opened_at >= since]
        return sorted(found, key=lambda i: _order(i.id))

    def problem(self, key: str) -> ProblemState | None:
        found = self._problem_by_key.get(key)
        return None if found is None else self.problems[found]

    def new_id(self) -> int:
        """A placeholder id (negative) for an incident or problem opened in this world; the
        shell swaps it for the database id, the offline tools number from 1."""
        value = self._next_placeholder
        self._next_placeholder -= 1
        return value

    # Writing (the driver applies each evaluation)

    def put_alert(self, alert: AlertState) -> None:
        self._put_alert(alert)
        self.dirty_alerts.add((alert.source, alert.fingerprint))

    def put_incident(self, incident: IncidentState) -> None:
        self._put_incident(incident)
        self.dirty_incidents.add(incident.id)

    def put_problem(self, problem: ProblemState) -> None:
        self._put_problem(problem)
        self.dirty_problems.add(problem.id)

    def change_inhibitor(self, change: InhibitorChange) -> None:
        members = self.inhibitors.setdefault(change.key, set())
        if change.active:
            members.add(change.alert)
        else:
            members.discard(change.alert)
        self.inhibitor_changes.append(change)

    def beat(self, name: str, at: datetime) -> None:
        self.heartbeats[name] = at
        self.dirty_heartbeats.add(name)

    def changed_incidents(self) -> list[tuple[IncidentState | None, IncidentState]]:
        """Each dirty incident as loaded (None: opened in this batch) and as it is now."""
        return [(self.loaded_incidents.get(i), self.incidents[i]) for i in sorted_ids(self)]

    def status_changes(self) -> list[tuple[IncidentStatus | None, IncidentStatus]]:
        """(before, after) for every incident written, for the open-incidents gauge."""
        return [(self.loaded_status.get(i), self.incidents[i].status) for i in self.dirty_incidents]

    def _put_alert(self, alert: AlertState) -> None:
        key = (alert.source, alert.fingerprint)
        before = self.alerts.get(key)
        if before is not None and before.incident_key is not None:
            self._pending.get(before.incident_key, set()).discard(key)
        self.alerts[key] = alert
        pending = alert.hold is Hold.PENDING and alert.status is AlertStatus.FIRING
        if pending and alert.incident_key is not None:
            self._pending.setdefault(alert.incident_key, set()).add(key)

    def _put_incident(self, incident: IncidentState) -> None:
        self.incidents[incident.id] = incident
        self._by_key.setdefault(incident.key, set()).add(incident.id)
        if incident.ci is not None:
            self._by_ci.setdefault(incident.ci, set()).add(incident.id)
        latest = self._latest_by_key.get(incident.key)
        if latest is None or _order(incident.id) >= _order(latest):
            self._latest_by_key[incident.key] = incident.id

    def _put_problem(self, problem: ProblemState) -> None:
        self.problems[problem.id] = problem
        if problem.status.is_active:
            self._problem_by_key[problem.key] = problem.id
        elif self._problem_by_key.get(problem.key) == problem.id:
            del self._problem_by_key[problem.key]


def sorted_ids(world: World) -> list[int]:
    """Dirty incident ids in the order they came to be: stored ones by id, then new ones."""
    return sorted(world.dirty_incidents, key=_order)


def _order(incident_id: int) -> tuple[int, int]:
    """Stored ids first, in id order; then placeholders in the order they were handed out."""
    return (1, -incident_id) if incident_id < 0 else (0, incident_id)
