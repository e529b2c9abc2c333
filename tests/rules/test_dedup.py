"""Decision tables for the dedup stage: what a repeat, change, resolve or redelivery does, and
what a `dedup` rule changes (the fingerprint, the fields that are no change)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from rules.compile import compile_dedup
from rules.dedup import DedupOutcome, dedup, expiry_event, identify
from rules.model import AlertState, AlertStatus, Severity, TimelineKind
from rules.ruleset import DedupRule, NormalizeRule, Origin, RuleSet
from rules.schema import DedupSpec
from tests.rules.builders import T0, at, derive, event, firing
from tests.rules.world import Pipeline

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
        pytest.param({"annotations": {"summary": "disk 99% full"}}, id="a new annotation"),
        pytest.param({"severity": Severity.CRITICAL}, id="a new severity"),
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


# `dedup` rules: which labels identify an alert, and what does not count as a change.


def dedup_rule(name: str, *texts: str, **fields: object) -> DedupRule:
    spec = DedupSpec.model_validate({"name": name, "matchers": list(texts), **fields})
    return compile_dedup(spec, Origin())


HOST_FROM_INSTANCE = NormalizeRule(
    "host-from-instance",
    (),
    (derive("host", "instance", regex="([^:]+)(?::\\d+)?"),),
)


@pytest.mark.parametrize(
    ("rules", "first", "second", "same_alert"),
    [
        pytest.param(
            (),
            ("fp-a", {"alertname": "Down", "host": "db-1"}),
            ("fp-b", {"alertname": "Down", "host": "db-1"}),
            False,
            id="without a dedup rule the sender's fingerprint identifies the alert",
        ),
        pytest.param(
            (dedup_rule("by-host", fingerprint=["alertname", "host"]),),
            ("fp-a", {"alertname": "Down", "host": "db-1", "event_id": "1"}),
            ("fp-b", {"alertname": "Down", "host": "db-1", "event_id": "2"}),
            True,
            id="alerts equal in the fingerprint labels are one alert whatever the sender says",
        ),
        pytest.param(
            (dedup_rule("by-host", fingerprint=["alertname", "host"]),),
            ("fp-a", {"alertname": "Down", "host": "db-1"}),
            ("fp-a", {"alertname": "Down", "host": "db-2"}),
            False,
            id="alerts that differ in a fingerprint label are two alerts even with one sender id",
        ),
        pytest.param(
            (dedup_rule("by-host", fingerprint=["alertname", "host"]),),
            ("fp-a", {"alertname": "Down"}),
            ("fp-b", {"alertname": "Down", "host": ""}),
            True,
            id="a missing fingerprint label counts as the empty value",
        ),
        pytest.param(
            (
                dedup_rule("zabbix", '__source__="zabbix"', fingerprint=["alertname"]),
                dedup_rule("by-host", fingerprint=["alertname", "host"]),
            ),
            ("fp-a", {"alertname": "Down", "host": "db-1"}),
            ("fp-b", {"alertname": "Down", "host": "db-1"}),
            True,
            id="a rule that does not match leaves the alert to the next rule",
        ),
        pytest.param(
            (
                dedup_rule("by-name", fingerprint=["alertname"]),
                dedup_rule("by-host", fingerprint=["alertname", "host"]),
            ),
            ("fp-a", {"alertname": "Down", "host": "db-1"}),
            ("fp-b", {"alertname": "Down", "host": "db-2"}),
            True,
            id="the first matching dedup rule wins",
        ),
    ],
)
def test_fingerprint_rules(
    rules: tuple[DedupRule, ...],
    first: tuple[str, dict[str, str]],
    second: tuple[str, dict[str, str]],
    same_alert: bool,
) -> None:
    pipeline = Pipeline(RuleSet(dedup=rules))
    pipeline.send(firing(first[0], first[1]), at(0))
    result = pipeline.send(firing(second[0], second[1]), at(120))
    assert len(pipeline.world.alerts) == (1 if same_alert else 2)
    assert result.dedup.outcome is (DedupOutcome.REPEAT if same_alert else DedupOutcome.NEW)


def test_the_fingerprint_names_its_rule_and_is_stable() -> None:
    rule = dedup_rule("by-host", fingerprint=["alertname", "host"])
    one = identify(rule, firing("x", {"alertname": "Down", "host": "db-1"}))
    again = identify(rule, firing("y", {"alertname": "Down", "host": "db-1", "extra": "1"}))
    assert one.fingerprint == again.fingerprint
    assert one.fingerprint.startswith("by-host:")
    # Values cannot run into each other: ("ab", "") and ("a", "b") are different alerts.
    split = dedup_rule("pair", fingerprint=["a", "b"])
    assert (
        identify(split, firing("x", {"a": "ab", "b": ""})).fingerprint
        != identify(split, firing("x", {"a": "a", "b": "b"})).fingerprint
    )


def test_the_fingerprint_is_taken_from_the_normalized_labels() -> None:
    rules = RuleSet(
        normalize=(HOST_FROM_INSTANCE,),
        dedup=(dedup_rule("by-host", fingerprint=["alertname", "host"]),),
    )
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", {"alertname": "Down", "instance": "db-1:9100"}), at(0))
    pipeline.send(firing("b", {"alertname": "Down", "instance": "db-1:9200"}), at(120))
    [alert] = pipeline.world.alerts.values()
    assert (alert.count, alert.labels["host"]) == (2, "db-1")


@pytest.mark.parametrize(
    ("ignore", "change", "outcome"),
    [
        pytest.param(
            [],
            {"annotations": {"summary": "disk full", "description": "97% used"}},
            DedupOutcome.CHANGED,
            id="without ignore a new annotation value is a change",
        ),
        pytest.param(
            ["annotations.description"],
            {"annotations": {"summary": "disk full", "description": "97% used"}},
            DedupOutcome.REPEAT,
            id="an ignored annotation's new value is no change",
        ),
        pytest.param(
            ["annotations.description"],
            {"annotations": {"summary": "disk nearly full", "description": "95% used"}},
            DedupOutcome.CHANGED,
            id="an annotation that is not ignored still counts",
        ),
        pytest.param(
            ["annotations"],
            {"annotations": {"summary": "other", "runbook": "new"}},
            DedupOutcome.REPEAT,
            id="ignoring annotations ignores every annotation, added ones too",
        ),
        pytest.param(
            ["annotations"],
            {"severity": Severity.CRITICAL},
            DedupOutcome.CHANGED,
            id="ignoring annotations still counts a new severity",
        ),
        pytest.param(
            ["severity"],
            {"severity": Severity.CRITICAL},
            DedupOutcome.REPEAT,
            id="an ignored severity change is no change",
        ),
    ],
)
def test_ignored_fields(ignore: list[str], change: dict[str, Any], outcome: DedupOutcome) -> None:
    pipeline = Pipeline(RuleSet(dedup=(dedup_rule("values", ignore=ignore),)))
    base = {"summary": "disk full", "description": "95% used"}
    pipeline.send(firing("a", {"alertname": "DiskFull"}, annotations=base), at(0))
    fields: dict[str, Any] = {"annotations": base, **change}
    result = pipeline.send(firing("a", {"alertname": "DiskFull"}, **fields), at(120))
    assert result.dedup.outcome is outcome
    incident = pipeline.only_incident()
    changed = outcome is DedupOutcome.CHANGED
    assert (TimelineKind.ALERT_CHANGED in pipeline.kinds(incident)) is changed
    # Either way the alert shows what the sender sent last.
    alert = pipeline.alert("a")
    assert (dict(alert.annotations), alert.count) == (fields["annotations"], 2)


def test_a_level_triggered_alert_not_re_sent_before_it_expires_resolves_at_the_next_tick() -> None:
    pipeline = Pipeline()
    pipeline.send(replace(firing("a"), expires_at=at(300)), at(0))
    pipeline.send(replace(firing("a"), expires_at=at(400), digest="again"), at(100))
    assert pipeline.tick(at(399)) == []
    [expired] = pipeline.tick(at(400))
    assert expired.dedup.outcome is DedupOutcome.RESOLVED
    alert = pipeline.alert("a")
    assert (alert.status, alert.ends_at) == (AlertStatus.RESOLVED, at(400))
    incident = pipeline.only_incident()
    assert (incident.status.value, incident.resolved_at) == ("resolved", at(400))
