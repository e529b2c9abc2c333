"""Stage `recheck`: look again at alerts whose situation changes with time, not with events.

Input: a stored alert that is held (maintenance, inhibited, pending) or flapping, the world and
the context. Output: an `Evaluation` (dedup outcome `recheck`) when something changed, else
None: a held alert whose window ended or whose inhibitor resolved joins its incident then
(`JoinReason.released`); a pending alert whose group reached `min_alerts` (after a reload)
opens it; a flapping alert whose state has not changed for the `flapping.settle` time stops
flapping, and if it is resolved, its incident counts it resolved now.

The daemon runs it from a scheduled job over the alerts the store reports as held or flapping;
the offline tools run it at every step of a test timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from rules import incidents
from rules.correlate import place
from rules.dedup import DedupDecision, DedupOutcome
from rules.effects import Context, Effects, Evaluation
from rules.flapping import FlapChange, settle
from rules.model import AlertState, AlertStatus, Event, Hold, TimelineKind
from rules.ruleset import MaintenanceWindow
from rules.world import AlertKey, World

_HELD = (Hold.MAINTENANCE, Hold.INHIBITED, Hold.PENDING)


def needs_recheck(alert: AlertState) -> bool:
    return alert.flapping or (alert.status is AlertStatus.FIRING and alert.hold in _HELD)


def still_held(
    alert: AlertState,
    windows: Iterable[MaintenanceWindow],
    now: datetime,
    firing: Callable[[AlertKey], bool],
) -> bool:
    """A cheap pre-check for the daemon's recheck job: True when what holds the alert surely
    still does (its window is still active, its inhibiting alert still fires), so that
    looking at it again would change nothing. False means "look again" (`recheck` decides)."""
    if alert.flapping or alert.hold is Hold.PENDING:
        return False
    if alert.hold is Hold.MAINTENANCE:
        if alert.held_by.startswith("downtime:"):
            return alert.maintenance  # the sender's downtime: until it says it ended
        window = next((w for w in windows if w.label == alert.held_by), None)
        return window is not None and window.schedule.window_at(now) is not None
    if alert.hold is Hold.INHIBITED:
        source = inhibitor_of(alert.held_by)
        return source is not None and firing(source)
    return False


def inhibitor_of(held_by: str) -> AlertKey | None:
    """The inhibiting alert named in an inhibited alert's `held_by`
    (`inhibit:<rule> by <source>/<fingerprint>`, see `rules.inhibit.inhibited_by`)."""
    _, found, named = held_by.partition(" by ")
    source, slash, fingerprint = named.partition("/")
    return (source, fingerprint) if found and slash else None


def recheck(ctx: Context, world: World, alert: AlertState) -> Evaluation | None:
    fx = Effects(ctx, world, as_event(alert), DedupDecision(DedupOutcome.RECHECK, alert))
    current = alert
    settled = settle(ctx.rules.flapping, current, ctx.now)
    if settled is not None and not alert.maintenance:
        fx.decide("flapping", "flapping", FlapChange.STOPPED.value)
        _note_settled(fx, settled)
        incidents.leave(fx, current, settled)
        current = settled
    if current.status is AlertStatus.FIRING and current.hold in _HELD:
        current = place(fx, current, _labels(current))
    if current == alert:
        return None
    fx.put_alert(current)
    return fx.freeze()


def _note_settled(fx: Effects, alert: AlertState) -> None:
    for incident_id in alert.incident_ids:
        incident = fx.incident(incident_id)
        if incident is not None and incident.status.is_active:
            message = (
                f"{incidents.describe(alert)} stopped flapping (stable since {alert.changed_at})"
            )
            fx.timeline.append(
                incidents.entry(incident, fx.now, TimelineKind.FLAPPING_STOPPED, message, alert)
            )


def _labels(alert: AlertState) -> dict[str, str]:
    return as_event(alert).match_labels()


def as_event(alert: AlertState) -> Event:
    """The stored alert as an event of its current state (for lookups and matching)."""
    return Event(
        source=alert.source,
        fingerprint=alert.fingerprint,
        status=alert.status,
        labels=alert.labels,
        annotations=alert.annotations,
        severity=alert.severity,
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        expires_at=alert.expires_at,
        generator_url=alert.generator_url,
        group_key=alert.group_key,
        receiver=None,
        digest=alert.digest,
    )
