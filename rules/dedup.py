"""Stage `dedup`: decide what one event means for the stored alert of its fingerprint.

Input: the stored `AlertState` (or None) and a decoded `Event`. Output: a `DedupDecision`
whose `outcome` names what happened (the value is the `outcome` label of
`bridge_dedup_outcomes_total`) and the new alert state to store, if any.

- `duplicate`: the same item delivered again within the duplicate window (Alertmanager HA
  replicas, sender retries), or a resolve of an alert that is already resolved. Nothing changes.
- `repeat` / `changed`: a firing alert seen again; `changed` when its annotations or severity
  differ. Both count the alert and move `last_seen`.
- `new` / `refired`: a firing alert with no stored record, or one whose record was resolved.
- `resolved`: a firing alert resolves.
- `stale`: an event that is older than what is stored (a late firing notification for an
  occurrence that already ended, or a resolve of an occurrence older than the stored one).
- `resolved_unseen`: a resolve for an alert never seen firing (Alertmanager's `max_alerts`
  truncation can hide the firing notification); it is recorded but opens nothing.
- `action`: the event reports an action (acknowledgement, comment, flapping, downtime), not a
  state; dedup leaves the alert alone and the `actions` stage applies it.

Rule section: `dedup` (first matching rule wins). A rule may name the labels that identify an
alert (`fingerprint`: the sender's fingerprint is replaced by a hash of the rule name and those
labels' values, see `identify`) and the fields that do not count as a change (`ignore`:
`severity`, `annotations` or `annotations.<name>`), so that e.g. a value in a description does
not turn every re-send into `changed`. Without a rule, annotations and severity count.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rules.model import AlertState, AlertStatus, Event, evolve
from rules.ruleset import DedupRule, RuleSet, all_match


class DedupOutcome(enum.StrEnum):
    NEW = "new"
    REFIRED = "refired"
    REPEAT = "repeat"
    CHANGED = "changed"
    RESOLVED = "resolved"
    DUPLICATE = "duplicate"
    STALE = "stale"
    RESOLVED_UNSEEN = "resolved_unseen"
    ACTION = "action"  # not a state report: the `actions` stage handles it
    RECHECK = "recheck"  # no event: the `recheck` stage looked at a held or flapping alert

    @property
    def fires(self) -> bool:
        """The alert starts (again) and must join an incident."""
        return self in (DedupOutcome.NEW, DedupOutcome.REFIRED)


@dataclass(frozen=True, slots=True)
class DedupDecision:
    outcome: DedupOutcome
    alert: AlertState | None


def dedup_rule(ruleset: RuleSet, labels: Mapping[str, str]) -> DedupRule | None:
    for rule in ruleset.dedup_index.candidates(labels):
        if all_match(rule.matchers, labels):
            return rule
    return None


def identify(rule: DedupRule | None, event: Event) -> Event:
    """The event with the fingerprint its dedup rule gives (unchanged without `fingerprint`)."""
    if rule is None or not rule.fingerprint:
        return event
    digest = hashlib.sha256(rule.name.encode())
    for name in rule.fingerprint:
        value = event.labels.get(name, "")
        digest.update(f"\0{name}\0{len(value)}\0{value}".encode())
    return evolve(event, fingerprint=f"{rule.name}:{digest.hexdigest()[:16]}")


def dedup(
    prior: AlertState | None,
    event: Event,
    now: datetime,
    duplicate_window: timedelta,
    rule: DedupRule | None = None,
) -> DedupDecision:
    if prior is None:
        return _first_sight(event, now)
    if prior.digest == event.digest and now - prior.last_seen <= duplicate_window:
        return DedupDecision(DedupOutcome.DUPLICATE, None)
    if event.status is AlertStatus.FIRING:
        return _firing_again(prior, event, now, rule)
    return _resolving(prior, event, now)


def _changed(prior: AlertState, event: Event, rule: DedupRule | None) -> bool:
    if rule is None:
        return prior.annotations != event.annotations or prior.severity is not event.severity
    if not rule.ignore_severity and prior.severity is not event.severity:
        return True
    if rule.ignore_all_annotations:
        return False
    ignored = rule.ignore_annotations
    before = {k: v for k, v in prior.annotations.items() if k not in ignored}
    after = {k: v for k, v in event.annotations.items() if k not in ignored}
    return before != after


def _first_sight(event: Event, now: datetime) -> DedupDecision:
    outcome = (
        DedupOutcome.NEW if event.status is AlertStatus.FIRING else DedupOutcome.RESOLVED_UNSEEN
    )
    alert = AlertState(
        source=event.source,
        fingerprint=event.fingerprint,
        status=event.status,
        labels=event.labels,
        annotations=event.annotations,
        severity=event.severity,
        starts_at=event.starts_at,
        ends_at=_ended_at(event, now),
        expires_at=event.expires_at,
        generator_url=event.generator_url,
        group_key=event.group_key,
        first_seen=now,
        last_seen=now,
        count=1,
        digest=event.digest,
        incident_id=None,
        rule=None,
    )
    return DedupDecision(outcome, alert)


def _firing_again(
    prior: AlertState, event: Event, now: datetime, rule: DedupRule | None
) -> DedupDecision:
    if prior.status is AlertStatus.RESOLVED:
        # An edge-triggered sender (no expiry) that repeats the start time of an occurrence we
        # saw end is late, not new. A level-triggered one is the judge of its own state: if we
        # resolved the alert by expiry and the sender still reports it firing, it fires again.
        late = event.expires_at is None and prior.ends_at is not None
        if late and event.starts_at <= prior.ends_at:  # type: ignore[operator]
            return DedupDecision(DedupOutcome.STALE, None)
        return DedupDecision(DedupOutcome.REFIRED, _observed(prior, event, now, first=True))
    outcome = DedupOutcome.CHANGED if _changed(prior, event, rule) else DedupOutcome.REPEAT
    return DedupDecision(outcome, _observed(prior, event, now, first=False))


def _resolving(prior: AlertState, event: Event, now: datetime) -> DedupDecision:
    if prior.status is AlertStatus.RESOLVED:
        return DedupDecision(DedupOutcome.DUPLICATE, None)
    if event.starts_at < prior.starts_at:
        return DedupDecision(DedupOutcome.STALE, None)
    return DedupDecision(DedupOutcome.RESOLVED, _observed(prior, event, now, first=False))


def _observed(prior: AlertState, event: Event, now: datetime, *, first: bool) -> AlertState:
    """The prior record updated with what the event says; `first` starts a new occurrence."""
    # Built directly rather than with `dataclasses.replace`: this runs for every re-send.
    return AlertState(
        source=prior.source,
        fingerprint=prior.fingerprint,
        status=event.status,
        labels=prior.labels,
        annotations=event.annotations,
        severity=event.severity,
        starts_at=event.starts_at if first else prior.starts_at,
        ends_at=_ended_at(event, now),
        expires_at=event.expires_at,
        generator_url=event.generator_url or prior.generator_url,
        group_key=event.group_key or prior.group_key,
        first_seen=prior.first_seen,
        last_seen=now,
        count=1 if first else prior.count + 1,
        digest=event.digest,
        incident_id=prior.incident_id,
        rule=prior.rule,
        flapping=prior.flapping,
        maintenance=prior.maintenance,
        flap_reported=prior.flap_reported,
        hold=prior.hold,
        held_by=prior.held_by,
        incident_key=prior.incident_key,
        reason=prior.reason,
        also=prior.also,
        history=prior.history,
        changed_at=prior.changed_at,
    )


def _ended_at(event: Event, now: datetime) -> datetime | None:
    if event.status is AlertStatus.FIRING:
        return None
    return event.ends_at or now


def expiry_event(alert: AlertState) -> Event:
    """The resolve that a level-triggered alert's passed `expires_at` stands for.

    Prometheus re-sends a firing alert with a later `endsAt`; when none came before the last
    one passed, the alert ended at that time (Alertmanager's resolve_timeout semantics).
    """
    expired = ended(alert, alert.expires_at or alert.last_seen, "expired")
    return evolve(expired, from_sender=False)  # the sender went quiet: no heartbeat beat


def ended(alert: AlertState, at: datetime, why: str) -> Event:
    """A resolve of a stored alert that its sender will not send itself (it expired, or a
    poller no longer finds it), built from what the bridge stored; `why` marks the digest."""
    return Event(
        source=alert.source,
        fingerprint=alert.fingerprint,
        status=AlertStatus.RESOLVED,
        labels=alert.labels,
        annotations=alert.annotations,
        severity=alert.severity,
        starts_at=alert.starts_at,
        ends_at=at,
        expires_at=None,
        generator_url=alert.generator_url,
        group_key=alert.group_key,
        receiver=None,
        digest=f"{why}:{alert.digest}",
    )
