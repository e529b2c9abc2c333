"""Stage `actions`: what a sender reports besides state acts on the alert's incident.

Input: an event whose `kind` is not `state` (Nagios acknowledgements, custom notifications,
flapping and downtime notices; Zabbix acknowledgements, unacknowledgements and messages), and
the world. Output: an `IncidentDecision` (action `acknowledged`, `unacknowledged` or `noted`,
the label of `bridge_incident_actions_total`) with the incident change and timeline entry. An
event for an alert the bridge has not seen, or whose alert has no incident, changes nothing.
The actor on the timeline is `<source>:<user>`, e.g. `nagios:alice`.

Flapping and maintenance notices set the alert's `flapping` / `maintenance` flag and are
recorded on the timeline; what they do to incidents (keep a flapping incident quiet, open
nothing in maintenance) belongs to the rule engine's `flapping` and `maintenance` sections.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Protocol

from rules.incidents import (
    IncidentAction,
    IncidentDecision,
    IncidentView,
    Refusal,
    acknowledge,
    unacknowledge,
)
from rules.model import AlertState, Event, EventKind, IncidentState, TimelineEntry, TimelineKind


class ActionView(IncidentView, Protocol):
    def alert(self, source: str, fingerprint: str) -> AlertState | None: ...


_NOTES = {
    EventKind.COMMENT: (TimelineKind.COMMENT, "comment"),
    EventKind.FLAPPING_START: (TimelineKind.FLAPPING_STARTED, "started flapping"),
    EventKind.FLAPPING_STOP: (TimelineKind.FLAPPING_STOPPED, "stopped flapping"),
    EventKind.MAINTENANCE_START: (TimelineKind.MAINTENANCE_STARTED, "maintenance started"),
    EventKind.MAINTENANCE_END: (TimelineKind.MAINTENANCE_ENDED, "maintenance ended"),
}
_NOTHING = IncidentDecision(IncidentAction.NONE, rule="")
_FLAPPING = {EventKind.FLAPPING_START: True, EventKind.FLAPPING_STOP: False}
_MAINTENANCE = {EventKind.MAINTENANCE_START: True, EventKind.MAINTENANCE_END: False}
_ACKNOWLEDGEMENTS = {
    EventKind.ACKNOWLEDGE: (acknowledge, IncidentAction.ACKNOWLEDGED),
    EventKind.UNACKNOWLEDGE: (unacknowledge, IncidentAction.UNACKNOWLEDGED),
}


def act(view: ActionView, event: Event, now: datetime) -> IncidentDecision:
    alert = view.alert(event.source, event.fingerprint)
    if alert is None:
        return _NOTHING
    flagged = _flagged(alert, event.kind)
    incident = view.incident(alert.incident_id) if alert.incident_id is not None else None
    if incident is None:
        rule = alert.rule or ""
        return IncidentDecision(IncidentAction.NONE, rule, alert=flagged) if flagged else _NOTHING
    actor = f"{event.source}:{event.actor}" if event.actor else event.source
    if event.kind in _ACKNOWLEDGEMENTS:
        return _acknowledgement(incident, alert, event, actor, now)
    kind, default = _NOTES[event.kind]
    message = event.message or default
    entry = TimelineEntry(incident.id, now, kind, actor, message, alert.fingerprint)
    return IncidentDecision(IncidentAction.NOTED, incident.rule, None, flagged, (entry,))


def _flagged(alert: AlertState, kind: EventKind) -> AlertState | None:
    """The alert with its flapping or maintenance flag set as the event says; None if the
    event sets no flag or the flag is already so."""
    if kind in _FLAPPING and alert.flapping is not _FLAPPING[kind]:
        return replace(alert, flapping=_FLAPPING[kind])
    if kind in _MAINTENANCE and alert.maintenance is not _MAINTENANCE[kind]:
        return replace(alert, maintenance=_MAINTENANCE[kind])
    return None


def _acknowledgement(
    incident: IncidentState, alert: AlertState, event: Event, actor: str, now: datetime
) -> IncidentDecision:
    verb, action = _ACKNOWLEDGEMENTS[event.kind]
    decided = verb(incident, actor, event.message, now)
    if isinstance(decided, Refusal):
        return _NOTHING  # the incident already resolved: a late acknowledgement changes nothing
    updated, entry = decided
    if entry is None:
        return _NOTHING  # already in that state (a retried or repeated notification)
    entry = replace(entry, fingerprint=alert.fingerprint)
    return IncidentDecision(action, incident.rule, updated, None, (entry,))
