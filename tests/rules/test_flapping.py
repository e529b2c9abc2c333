"""Decision tables for flap detection (Nagios' weighted percent state change and hysteresis),
and what flapping does to incidents through the pipeline: it keeps one incident open and quiet
instead of resolve/reopen cycles, and settling resolves it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from rules.flapping import (
    FlapChange,
    FlappingPolicy,
    FlappingSpec,
    assess,
    compile_flapping,
    percent_state_change,
    record,
    settled,
    steady_history,
)
from rules.incidents import Refusal, resolve
from rules.model import AlertStatus, IncidentStatus, TimelineKind
from rules.ruleset import RuleSet
from tests.rules.builders import at, firing, labels, minutes, resolved
from tests.rules.world import Pipeline

ALTERNATING = "FR" * 10 + "F"  # 21 states, 20 changes
# The example of the Nagios flapping documentation: 21 states, changes at t3, t4, t5, t9, t12,
# t16 and t19 (35% unweighted).
NAGIOS_EXAMPLE = "RRFRFFFFRRRFFFFRRRFFF"


def nagios_percent(change_at: list[int]) -> float:
    """Nagios' formula written out: the change into state t(k) of 21 is change x = k - 1 and
    weighs 0.75 + (x - 1) * (1.25 - 0.75) / 19; the sum is divided by 20 possible changes."""
    return sum(0.75 + (k - 2) * 0.5 / 19 for k in change_at) * 100 / 20


def states_changing_at(change_at: list[int]) -> str:
    state, states = "R", []
    for k in range(1, 22):
        if k in change_at:
            state = "F" if state == "R" else "R"
        states.append(state)
    return "".join(states)


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ("", 0.0),
        ("F", 0.0),
        ("F" * 21, 0.0),
        ("R" * 21, 0.0),
        (ALTERNATING, 100.0),
        ("R" * 20 + "F", 1.25 * 100 / 20),  # only the newest change: full weight 1.25
        ("R" + "F" * 20, 0.75 * 100 / 20),  # only the oldest change: weight 0.75
        ("R" * 10 + "F" * 11, (0.75 + 9 * 0.5 / 19) * 100 / 20),  # change x = 10 of 20
    ],
)
def test_percent_state_change_of_full_histories(history: str, expected: float) -> None:
    assert percent_state_change(history) == pytest.approx(expected)


def test_nagios_documentation_example_by_hand() -> None:
    # weights 0.75 + i * 0.5 / 19 for i = 1, 2, 3, 7, 10, 14, 17 -> 7 * 0.75 + 54 * 0.5 / 19
    # = 507 / 76 weighted changes; / 20 * 100 = 2535 / 76 = 33.36% (the docs' "slightly less
    # than 35%" once newer changes carry more weight than older ones).
    assert states_changing_at([3, 4, 5, 9, 12, 16, 19]) == NAGIOS_EXAMPLE
    assert percent_state_change(NAGIOS_EXAMPLE) == pytest.approx(2535 / 76)
    assert percent_state_change(NAGIOS_EXAMPLE, 21) == pytest.approx(33.3552631)


@pytest.mark.parametrize(
    "change_at", [[2], [21], [2, 21], [5, 6, 7], [3, 4, 5, 9, 12, 16, 19], list(range(2, 22))]
)
def test_percent_state_change_follows_the_nagios_formula(change_at: list[int]) -> None:
    history = states_changing_at(change_at)
    assert percent_state_change(history, 21) == pytest.approx(nagios_percent(change_at))


def test_newer_changes_weigh_more_than_older_ones() -> None:
    old = "RFR" + "R" * 18
    new = "R" * 18 + "RFR"
    assert percent_state_change(old) < 10.0 < percent_state_change(new)


@pytest.mark.parametrize(
    ("history", "size", "same_as"),
    [
        # a short history is padded at its old end with its oldest state
        ("FR", 21, "F" * 20 + "R"),
        ("RFRF", 21, "R" * 17 + "RFRF"),
        ("", 21, "R" * 21),
        # a long history is cut to the newest `size` states
        ("F" * 30 + "R", 21, "F" * 20 + "R"),
    ],
)
def test_history_is_measured_against_the_window(history: str, size: int, same_as: str) -> None:
    assert percent_state_change(history, size) == pytest.approx(percent_state_change(same_as))


def test_a_young_history_does_not_flap_on_its_first_changes() -> None:
    assert percent_state_change("FR", 21) == pytest.approx(6.25)
    assert percent_state_change("FR") == pytest.approx(100.0)  # measured against itself


@pytest.mark.parametrize(
    ("history", "firing", "size", "expected"),
    [
        ("", True, 21, "F"),
        ("", False, 21, "R"),
        ("FR", True, 21, "FRF"),
        ("FRF", False, 3, "RFR"),
        ("F" * 21, False, 21, "F" * 20 + "R"),
        ("F" * 40, False, 21, "F" * 20 + "R"),  # a longer stored history is trimmed too
        ("RRR", True, 1, "F"),
    ],
)
def test_record_appends_newest_last_and_trims_the_oldest(
    history: str, firing: bool, size: int, expected: str
) -> None:
    assert record(history, firing, size) == expected


def test_recorded_history_never_exceeds_its_size() -> None:
    history = ""
    for step in range(100):
        history = record(history, step % 2 == 0, 21)
        assert len(history) == min(step + 1, 21)
    assert percent_state_change(history, 21) == pytest.approx(100.0)


@pytest.mark.parametrize("history", ["FX", "firing", "F R", "f"])
def test_only_f_and_r_are_states(history: str) -> None:
    with pytest.raises(ValueError, match="only 'F' and 'R'"):
        percent_state_change(history)
    with pytest.raises(ValueError, match="only 'F' and 'R'"):
        record(history, True, 21)


def test_record_needs_room_for_one_state() -> None:
    with pytest.raises(ValueError, match="at least one state"):
        record("F", True, 0)


POLICY = FlappingPolicy()  # low 20, high 30
HIGH = "R" * 15 + "FRFRFR"  # 6 newest changes: 35.5%
MIDDLE = "R" * 17 + "FRFR"  # 4 newest changes: 24.2%
LOW = "R" * 18 + "FRF"  # 3 newest changes: 18.4%


def test_the_hysteresis_histories_sit_where_intended() -> None:
    assert percent_state_change(HIGH, 21) > POLICY.high
    assert POLICY.low < percent_state_change(MIDDLE, 21) < POLICY.high
    assert percent_state_change(LOW, 21) < POLICY.low


@pytest.mark.parametrize(
    ("was_flapping", "history", "expected"),
    [
        (False, "F" * 21, (False, FlapChange.NONE)),
        (False, LOW, (False, FlapChange.NONE)),
        (False, MIDDLE, (False, FlapChange.NONE)),  # between thresholds: keeps not flapping
        (False, HIGH, (True, FlapChange.STARTED)),
        (False, ALTERNATING, (True, FlapChange.STARTED)),
        (True, ALTERNATING, (True, FlapChange.NONE)),
        (True, HIGH, (True, FlapChange.NONE)),
        (True, MIDDLE, (True, FlapChange.NONE)),  # between thresholds: keeps flapping
        (True, LOW, (False, FlapChange.STOPPED)),
        (True, "R" * 21, (False, FlapChange.STOPPED)),
    ],
)
def test_assess_applies_hysteresis(
    was_flapping: bool, history: str, expected: tuple[bool, FlapChange]
) -> None:
    assert assess(was_flapping, history, POLICY) == expected


@pytest.mark.parametrize(
    ("was_flapping", "expected"),
    [(False, (True, FlapChange.STARTED)), (True, (False, FlapChange.STOPPED))],
)
def test_thresholds_are_inclusive_as_in_nagios(
    was_flapping: bool, expected: tuple[bool, FlapChange]
) -> None:
    # Nagios starts at `percent >= high` and stops at `percent <= low`.
    percent = percent_state_change(HIGH, 21)
    policy = (
        FlappingPolicy(low=percent, high=90.0)
        if was_flapping
        else FlappingPolicy(low=10.0, high=percent)
    )
    assert assess(was_flapping, HIGH, policy) == expected


def test_assess_measures_against_the_policy_window() -> None:
    # 4 states with 3 changes are 100% of a 4-state window but far below 20% of 21 states.
    assert assess(False, "FRFR", FlappingPolicy(history=4)) == (True, FlapChange.STARTED)
    assert assess(False, "FRFR", FlappingPolicy(history=21)) == (False, FlapChange.NONE)


@pytest.mark.parametrize(
    ("was_flapping", "expected"),
    [(False, (False, FlapChange.NONE)), (True, (False, FlapChange.STOPPED))],
)
def test_disabled_detection_never_flaps(
    was_flapping: bool, expected: tuple[bool, FlapChange]
) -> None:
    assert assess(was_flapping, ALTERNATING, FlappingPolicy(enabled=False)) == expected


@pytest.mark.parametrize(
    ("quiet_seconds", "expected"),
    [(0, False), (29 * 60 + 59, False), (30 * 60, True), (6 * 3600, True)],
)
def test_settled_after_the_settle_time_in_one_state(quiet_seconds: int, expected: bool) -> None:
    assert settled(at(0), at(quiet_seconds), POLICY) is expected


def test_a_settled_alert_continues_from_a_steady_history() -> None:
    steady = steady_history(ALTERNATING, 21)
    assert steady == "F" * 21
    assert assess(True, steady, POLICY) == (False, FlapChange.STOPPED)
    # one more change after the quiet period is not flapping again
    assert assess(False, record(steady, False, 21), POLICY) == (False, FlapChange.NONE)
    assert steady_history("", 21) == ""


def test_flapping_enum_values_are_label_values() -> None:
    assert [change.value for change in FlapChange] == ["started", "stopped", "none"]


def test_defaults_are_nagios_service_defaults() -> None:
    assert FlappingPolicy() == FlappingPolicy(
        history=21, low=20.0, high=30.0, settle=timedelta(minutes=30), enabled=True
    )
    assert compile_flapping(None) == FlappingPolicy()
    assert compile_flapping(FlappingSpec()) == FlappingPolicy()


def test_spec_compiles_the_yaml_section() -> None:
    spec = FlappingSpec.model_validate(
        {"history": 11, "low_threshold": 10, "high_threshold": 40.5, "settle": "1h30m"}
    )
    assert compile_flapping(spec) == FlappingPolicy(
        history=11, low=10.0, high=40.5, settle=timedelta(minutes=90), enabled=True
    )
    assert compile_flapping(FlappingSpec.model_validate({"enabled": False})).enabled is False
    assert FlappingSpec.model_validate({"settle": 600}).settle == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("section", "field", "message"),
    [
        ({"history": 2}, "history", "greater than or equal to 3"),
        ({"history": 101}, "history", "less than or equal to 100"),
        ({"history": "21"}, "history", "valid integer"),
        ({"history": True}, "history", "valid integer"),
        ({"low_threshold": -1}, "low_threshold", "greater than or equal to 0"),
        ({"high_threshold": 100.5}, "high_threshold", "less than or equal to 100"),
        ({"high_threshold": "30"}, "high_threshold", "valid number"),
        (
            {"low_threshold": 30, "high_threshold": 30},
            "high_threshold",
            "high_threshold (30.0) must be above low_threshold (30.0)",
        ),
        (
            {"low_threshold": 40},
            "high_threshold",
            "high_threshold (30.0) must be above low_threshold (40.0)",
        ),
        ({"settle": "soon"}, "settle", "invalid duration 'soon'"),
        ({"settle": "-5m"}, "settle", "invalid duration"),
        ({"settle": 0}, "settle", "settle must be longer than zero"),
        ({"enabled": "maybe"}, "enabled", "valid boolean"),
        ({"window": "5m"}, "window", "Extra inputs are not permitted"),
    ],
)
def test_spec_validation_errors(section: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FlappingSpec.model_validate(section)
    errors = caught.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == (field,)
    assert message in errors[0]["msg"]


def test_custom_errors_read_without_pydantic_prefixes() -> None:
    with pytest.raises(ValidationError) as caught:
        FlappingSpec.model_validate({"settle": "soon"})
    assert caught.value.errors()[0]["msg"].startswith("invalid duration")


# Through the pipeline.

FLAPPY = labels("Ping", "db-1")


def flap(pipeline: Pipeline, cycles: int, start: float = 0, every: float = 60) -> float:
    """Fire at every `every` seconds and resolve half way between; returns the last resolve."""
    end = start
    for cycle in range(cycles):
        fired = start + cycle * every
        end = fired + every / 2
        pipeline.send(firing("a", FLAPPY, since=fired), at(fired))
        pipeline.send(resolved("a", FLAPPY, since=fired, until=end), at(end))
    return end


def test_before_detection_every_cycle_resolves_and_reopens_the_same_incident() -> None:
    pipeline = Pipeline()
    flap(pipeline, 3)
    incident = pipeline.only_incident()
    assert (incident.status, incident.reopen_count) == (IncidentStatus.RESOLVED, 2)
    assert pipeline.alert("a").flapping is False


def test_once_flapping_the_incident_stays_open_and_is_not_reopened_again() -> None:
    pipeline = Pipeline()
    flap(pipeline, 20)
    incident = pipeline.only_incident()  # one incident for the whole story
    # Detection starts at the 7th observed state (35.5%, a firing): the 4th opening was the
    # last one; from there on resolves and re-fires leave the incident open and quiet.
    assert (incident.status, incident.reopen_count, incident.firing_alerts) == (
        IncidentStatus.NEW,
        3,
        1,
    )
    assert pipeline.kinds(incident).count(TimelineKind.REOPENED) == 3
    assert pipeline.kinds(incident).count(TimelineKind.FLAPPING_STARTED) == 1
    alert = pipeline.alert("a")
    assert (alert.status, alert.flapping) == (AlertStatus.RESOLVED, True)
    assert pipeline.decisions("flapping") == [("flapping", "started")]


def test_a_flapping_alert_that_settles_resolved_resolves_its_incident() -> None:
    pipeline = Pipeline()
    last = flap(pipeline, 10)
    assert pipeline.tick(at(last + minutes(30) - 1)) == []
    [settled_evaluation] = pipeline.tick(at(last + minutes(30)))
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (
        IncidentStatus.RESOLVED,
        at(last + minutes(30)),
    )
    assert pipeline.kinds(incident)[-3:] == [
        TimelineKind.FLAPPING_STOPPED,
        TimelineKind.ALERT_RESOLVED,
        TimelineKind.RESOLVED,
    ]
    assert [(d.stage, d.decision) for d in settled_evaluation.decisions] == [
        ("flapping", "stopped"),
        ("incidents", "resolved"),
    ]
    assert pipeline.alert("a").flapping is False


def test_a_flapping_alert_that_settles_firing_keeps_its_incident_until_it_resolves() -> None:
    pipeline = Pipeline()
    last = flap(pipeline, 10)
    pipeline.send(firing("a", FLAPPY, since=last + 30), at(last + 30))
    pipeline.tick(at(last + 30 + minutes(30)))
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts) == (IncidentStatus.NEW, 1)
    assert pipeline.alert("a").flapping is False
    done = last + 30 + minutes(31)
    pipeline.send(resolved("a", FLAPPY, since=last + 30, until=done), at(done))
    assert pipeline.only_incident().status is IncidentStatus.RESOLVED


def test_after_settling_one_more_change_does_not_flap_again() -> None:
    pipeline = Pipeline()
    last = flap(pipeline, 10)
    pipeline.tick(at(last + minutes(30)))
    again = last + minutes(31)
    pipeline.send(firing("a", FLAPPY, since=again), at(again))
    incident = pipeline.only_incident()
    assert (incident.status, incident.reopen_count) == (IncidentStatus.NEW, 4)
    assert pipeline.alert("a").flapping is False


def test_with_detection_disabled_every_cycle_resolves_and_reopens() -> None:
    pipeline = Pipeline(RuleSet(flapping=FlappingPolicy(enabled=False)))
    flap(pipeline, 10)
    incident = pipeline.only_incident()
    assert (incident.status, incident.reopen_count) == (IncidentStatus.RESOLVED, 9)
    assert pipeline.decisions("flapping") == []


def test_a_flapping_alert_firing_after_an_operator_resolved_its_incident_counts_once() -> None:
    # The incident of a flapping alert is resolved by hand; the alert fires again, reopens it
    # and resolves: once it settles, the incident resolves (its count does not stay at 1).
    pipeline = Pipeline()
    last = flap(pipeline, 10)
    decided = resolve(pipeline.only_incident(), "alice", "noisy", at(last + 10))
    assert not isinstance(decided, Refusal)
    pipeline.world.put_incident(decided[0])
    again = last + 60
    pipeline.send(firing("a", FLAPPY, since=again), at(again))
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts) == (IncidentStatus.NEW, 1)
    pipeline.send(resolved("a", FLAPPY, since=again, until=again + 30), at(again + 30))
    pipeline.tick(at(again + 30 + minutes(30)))
    assert pipeline.only_incident().status is IncidentStatus.RESOLVED
