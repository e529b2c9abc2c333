"""Stage `actions`: what a sender reports besides state acts on the alert and its incident.

Input: an event whose `kind` is not `state` (Nagios acknowledgements, custom notifications,
flapping and downtime notices; Zabbix acknowledgements, unacknowledgements and messages), and
the world. Output (added to the effects): the incident acknowledged or unacknowledged, a
timeline entry, and the alert's `flapping` / `maintenance` flag as the sender reports it. An
event for an alert the bridge has not seen changes nothing. The actor on the timeline is
`<source>:<user>`, e.g. `nagios:alice`.

The flags act as the engine's own detections do: a flapping alert keeps its incident open
(when FLAPPINGSTOP arrives for an alert that already resolved, the incident counts it resolved
then), and an alert in the sender's downtime opens no incident; at DOWNTIMEEND an alert that
still fires is released into one.
"""

from __future__ import annotations

from collections.abc import Mapping

from rules import incidents
from rules.correlate import place
from rules.effects import Effects
from rules.model import (
    AlertState,
    AlertStatus,
    EventKind,
    Hold,
    TimelineEntry,
    TimelineKind,
    TimelineSource,
    evolve,
)

_NOTES = {
    EventKind.COMMENT: (TimelineKind.COMMENT, "comment"),
    EventKind.FLAPPING_START: (TimelineKind.FLAPPING_STARTED, "started flapping"),
    EventKind.FLAPPING_STOP: (TimelineKind.FLAPPING_STOPPED, "stopped flapping"),
    EventKind.MAINTENANCE_START: (TimelineKind.MAINTENANCE_STARTED, "maintenance started"),
    EventKind.MAINTENANCE_END: (TimelineKind.MAINTENANCE_ENDED, "maintenance ended"),
}
_FLAPPING = {EventKind.FLAPPING_START: True, EventKind.FLAPPING_STOP: False}
_MAINTENANCE = {EventKind.MAINTENANCE_START: True, EventKind.MAINTENANCE_END: False}
_ACKNOWLEDGEMENTS = {
    EventKind.ACKNOWLEDGE: (incidents.acknowledge, incidents.IncidentAction.ACKNOWLEDGED),
    EventKind.UNACKNOWLEDGE: (incidents.unacknowledge, incidents.IncidentAction.UNACKNOWLEDGED),
}


def act(fx: Effects, labels: Mapping[str, str]) -> None:
    event = fx.event
    alert = fx.world.alert(event.source, event.fingerprint)
    if alert is None:
        return
    actor = f"{event.source}:{event.actor}" if event.actor else event.source
    if event.kind in _ACKNOWLEDGEMENTS:
        _acknowledgement(fx, alert, actor)
        return
    kind, default = _NOTES[event.kind]
    incident = fx.incident(alert.incident_id) if alert.incident_id is not None else None
    if incident is not None:
        entry = TimelineEntry(
            incident.id, fx.now, kind, actor, event.message or default, alert.fingerprint,
            TimelineSource.CONNECTOR,
        )  # fmt: skip
        fx.timeline.append(entry)
        fx.decide("incidents", incident.rule, incidents.IncidentAction.NOTED)
    flagged = _flagged(alert, event.kind)
    if flagged is None:
        return
    if flagged.counts_firing and not alert.counts_firing:
        incidents.recount(fx, flagged, +1)  # a resolved alert flaps: it keeps them open
    elif alert.counts_firing and not flagged.counts_firing:
        incidents.leave(fx, alert, flagged)
    # Placed only while the sender still reports it firing: a DOWNTIMEEND in state OK (the
    # recovery inside the downtime was not notified) is followed by its resolve.
    firing = flagged.status is AlertStatus.FIRING and event.status is AlertStatus.FIRING
    if firing and _needs_placing(alert, flagged):
        flagged = place(fx, flagged, labels)
    fx.put_alert(flagged)


def _needs_placing(before: AlertState, after: AlertState) -> bool:
    """Downtime started for an alert without an incident, or ended for one it held."""
    if after.maintenance:
        return after.incident_id is None and after.hold is Hold.NONE
    return before.hold is Hold.MAINTENANCE


def _flagged(alert: AlertState, kind: EventKind) -> AlertState | None:
    """The alert with its flapping or maintenance flag set as the event says; None if the
    event sets no flag or the flag is already so."""
    if kind in _FLAPPING and alert.flap_reported is not _FLAPPING[kind]:
        return evolve(alert, flapping=_FLAPPING[kind], flap_reported=_FLAPPING[kind])
    if kind in _MAINTENANCE and alert.maintenance is not _MAINTENANCE[kind]:
        return evolve(alert, maintenance=_MAINTENANCE[kind])
    return None


def _acknowledgement(fx: Effects, alert: AlertState, actor: str) -> None:
    incident = fx.incident(alert.incident_id) if alert.incident_id is not None else None
    if incident is None:
        return
    verb, action = _ACKNOWLEDGEMENTS[fx.event.kind]
    decided = verb(incident, actor, fx.event.message, fx.now)
    if isinstance(decided, incidents.Refusal):
        return  # the incident already resolved: a late acknowledgement changes nothing
    updated, entry = decided
    if entry is None:
        return  # already in that state (a retried or repeated notification)
    fx.put_incident(updated)
    fx.timeline.append(
        evolve(entry, fingerprint=alert.fingerprint, source=TimelineSource.CONNECTOR)
    )
    fx.decide("incidents", incident.rule, action)
