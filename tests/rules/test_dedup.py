"""Decision table for the dedup stage: what a repeat, change, resolve or redelivery does."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from rules.dedup import DedupOutcome, dedup, expiry_event
from rules.model import AlertState, AlertStatus, Severity
from tests.rules.builders import T0, at, event

WINDOW = timedelta(minutes=1)
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


def stored(first_event_at: float = 0, **changes: object) -> AlertState:
    decision = dedup(None, event(), at(first_event_at), WINDOW)
    assert decision.alert is not None
    return replace(decision.alert, **changes)  # type: ignore[arg-type]


def test_first_firing_event_is_new_and_counted_once() -> None:
    decision = dedup(None, event(), at(0), WINDOW)
    assert decision.outcome is DedupOutcome.NEW
    assert decision.alert is not None
    assert (decision.alert.count, decision.alert.first_seen, decision.alert.status) == (
        1,
        at(0),
        FIRING,
    )


def test_resolve_of_an_unseen_alert_is_recorded_but_opens_nothing() -> None:
    decision = dedup(None, event(status=RESOLVED, ends_at=at(5)), at(6), WINDOW)
    assert decision.outcome is DedupOutcome.RESOLVED_UNSEEN
    assert decision.alert is not None
    assert decision.alert.status is RESOLVED
    assert not decision.outcome.fires


def test_identical_redelivery_within_the_window_changes_nothing() -> None:
    decision = dedup(stored(), event(), at(30), WINDOW)
    assert decision.outcome is DedupOutcome.DUPLICATE
    assert decision.alert is None


def test_identical_item_after_the_window_is_a_repeat_that_counts() -> None:
    decision = dedup(stored(), event(), at(61), WINDOW)
    assert decision.outcome is DedupOutcome.REPEAT
    assert decision.alert is not None
    assert (decision.alert.count, decision.alert.last_seen) == (2, at(61))
    assert decision.alert.first_seen == at(0)


def test_resend_with_moved_ends_at_is_a_repeat_even_inside_the_window() -> None:
    prior = stored()
    decision = dedup(prior, event(expires_at=at(20)), at(10), WINDOW)
    assert decision.outcome is DedupOutcome.REPEAT
    assert decision.alert is not None
    assert decision.alert.expires_at == at(20)


@pytest.mark.parametrize(
    "change",
    [
        {"annotations": {"summary": "disk 99% full"}},
        {"severity": Severity.CRITICAL},
    ],
)
def test_changed_annotation_or_severity_updates_the_alert(change: dict[str, object]) -> None:
    decision = dedup(stored(), event(**change), at(5), WINDOW)  # type: ignore[arg-type]
    assert decision.outcome is DedupOutcome.CHANGED
    assert decision.alert is not None
    for name, value in change.items():
        assert getattr(decision.alert, name) == value


def test_resolve_of_a_firing_alert_resolves_it_with_the_senders_end_time() -> None:
    decision = dedup(stored(), event(status=RESOLVED, ends_at=at(8)), at(10), WINDOW)
    assert decision.outcome is DedupOutcome.RESOLVED
    assert decision.alert is not None
    assert (decision.alert.status, decision.alert.ends_at) == (RESOLVED, at(8))


def test_second_resolve_is_a_duplicate() -> None:
    prior = stored(status=RESOLVED, ends_at=at(8))
    decision = dedup(prior, event(status=RESOLVED, ends_at=at(8), digest="other"), at(600), WINDOW)
    assert decision.outcome is DedupOutcome.DUPLICATE


def test_late_firing_for_an_ended_occurrence_is_stale() -> None:
    prior = stored(status=RESOLVED, ends_at=at(8))
    decision = dedup(prior, event(digest="late"), at(9), WINDOW)
    assert decision.outcome is DedupOutcome.STALE


def test_new_occurrence_after_resolve_refires_and_restarts_the_count() -> None:
    prior = stored(status=RESOLVED, ends_at=at(8), count=7)
    decision = dedup(prior, event(starts_at=at(100)), at(101), WINDOW)
    assert decision.outcome is DedupOutcome.REFIRED
    assert decision.alert is not None
    assert (decision.alert.count, decision.alert.starts_at, decision.alert.ends_at) == (
        1,
        at(100),
        None,
    )


def test_level_triggered_alert_resolved_by_expiry_fires_again_on_the_next_send() -> None:
    prior = stored(status=RESOLVED, ends_at=at(8), expires_at=at(8))
    decision = dedup(prior, event(expires_at=at(30)), at(20), WINDOW)
    assert decision.outcome is DedupOutcome.REFIRED


def test_resolve_of_an_older_occurrence_is_stale() -> None:
    prior = stored(starts_at=at(100))
    decision = dedup(prior, event(status=RESOLVED, starts_at=T0, ends_at=at(8)), at(120), WINDOW)
    assert decision.outcome is DedupOutcome.STALE


def test_expiry_event_resolves_at_the_expiry_time() -> None:
    prior = stored(expires_at=at(8))
    expired = expiry_event(prior)
    decision = dedup(prior, expired, at(30), WINDOW)
    assert decision.outcome is DedupOutcome.RESOLVED
    assert decision.alert is not None
    assert decision.alert.ends_at == at(8)
