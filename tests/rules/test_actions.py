"""The actions stage: acknowledgements, comments, flapping and downtime notices from senders."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.dedup import DedupOutcome
from rules.model import AlertStatus, EventKind, Hold, IncidentStatus, JoinReason, TimelineKind
from tests.rules.builders import action, at, firing, resolved
from tests.rules.world import Pipeline

NAGIOS = "nagios"


def opened() -> Pipeline:
    pipeline = Pipeline()
    pipeline.send(firing(source=NAGIOS), at(0))
    return pipeline


def test_a_sender_acknowledgement_acknowledges_the_incident_with_who_and_why() -> None:
    pipeline = opened()
    result = pipeline.send(action(EventKind.ACKNOWLEDGE, actor="alice", message="looking"), at(10))
    assert result.dedup.outcome is DedupOutcome.ACTION
    incident = pipeline.only_incident()
    assert (incident.status, incident.acknowledged_at) == (IncidentStatus.ACKNOWLEDGED, at(10))
    assert [(d.stage, d.decision) for d in result.decisions] == [("incidents", "acknowledged")]
    [entry] = result.timeline
    assert (entry.kind, entry.actor, entry.message, entry.fingerprint) == (
        TimelineKind.ACKNOWLEDGED,
        "nagios:alice",
        "looking",
        "fp1",
    )


def test_an_acknowledgement_without_a_user_names_the_sender() -> None:
    pipeline = Pipeline()
    pipeline.send(firing(source="zabbix"), at(0))
    result = pipeline.send(action(EventKind.ACKNOWLEDGE, actor="", source="zabbix"), at(5))
    assert [e.actor for e in result.timeline] == ["zabbix"]


def test_a_repeated_acknowledgement_changes_nothing() -> None:
    pipeline = opened()
    pipeline.send(action(EventKind.ACKNOWLEDGE), at(10))
    again = pipeline.send(action(EventKind.ACKNOWLEDGE), at(11))
    assert (again.decisions, again.timeline, again.incidents) == ((), (), ())
    assert pipeline.only_incident().acknowledged_at == at(10)


def test_unacknowledge_returns_the_incident_to_new() -> None:
    pipeline = opened()
    pipeline.send(action(EventKind.ACKNOWLEDGE), at(10))
    result = pipeline.send(action(EventKind.UNACKNOWLEDGE, actor="bob"), at(20))
    assert [(d.stage, d.decision) for d in result.decisions] == [("incidents", "unacknowledged")]
    incident = pipeline.only_incident()
    assert (incident.status, incident.acknowledged_at) == (IncidentStatus.NEW, None)
    assert [(e.kind, e.actor) for e in result.timeline] == [
        (TimelineKind.UNACKNOWLEDGED, "nagios:bob")
    ]


@pytest.mark.parametrize(
    ("kind", "timeline", "default", "flag"),
    [
        pytest.param(
            EventKind.COMMENT,
            TimelineKind.COMMENT,
            "comment",
            None,
            id="a comment goes on the timeline",
        ),
        pytest.param(
            EventKind.FLAPPING_START,
            TimelineKind.FLAPPING_STARTED,
            "started flapping",
            "flapping",
            id="a flapping start goes on the timeline and flags the alert flapping",
        ),
        pytest.param(
            EventKind.FLAPPING_STOP,
            TimelineKind.FLAPPING_STOPPED,
            "stopped flapping",
            None,
            id="a flapping stop for an alert not flapping only goes on the timeline",
        ),
        pytest.param(
            EventKind.MAINTENANCE_START,
            TimelineKind.MAINTENANCE_STARTED,
            "maintenance started",
            "maintenance",
            id="a downtime start goes on the timeline and flags the alert in maintenance",
        ),
        pytest.param(
            EventKind.MAINTENANCE_END,
            TimelineKind.MAINTENANCE_ENDED,
            "maintenance ended",
            None,
            id="a downtime end for an alert not in downtime only goes on the timeline",
        ),
    ],
)
def test_notices_go_on_the_timeline_and_leave_the_alerts_state_alone(
    kind: EventKind, timeline: TimelineKind, default: str, flag: str | None
) -> None:
    pipeline = opened()
    before = pipeline.alert("fp1", NAGIOS)
    result = pipeline.send(action(kind, actor="nagiosadmin"), at(10))
    assert [(d.stage, d.decision) for d in result.decisions] == [("incidents", "noted")]
    assert [(e.kind, e.actor, e.message) for e in result.timeline] == [
        (timeline, "nagios:nagiosadmin", default)
    ]
    after = pipeline.alert("fp1", NAGIOS)
    assert (after.status, after.count, after.digest, after.incident_id) == (
        before.status,
        before.count,
        before.digest,
        before.incident_id,
    )
    assert (after.flapping, after.maintenance) == (flag == "flapping", flag == "maintenance")
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts) == (IncidentStatus.NEW, 1)


def test_a_notice_with_a_message_shows_the_message() -> None:
    pipeline = opened()
    result = pipeline.send(action(EventKind.COMMENT, message="disk replaced"), at(10))
    assert [e.message for e in result.timeline] == ["disk replaced"]


def test_actions_on_unknown_alerts_or_resolved_incidents_change_nothing() -> None:
    pipeline = Pipeline()
    unknown = pipeline.send(action(EventKind.ACKNOWLEDGE), at(0))
    assert (unknown.alerts, unknown.incidents, unknown.timeline, unknown.decisions) == (
        (),
        (),
        (),
        (),
    )
    pipeline.send(firing(source=NAGIOS), at(0))
    pipeline.send(resolved(source=NAGIOS, until=5), at(5))
    late = pipeline.send(action(EventKind.ACKNOWLEDGE), at(10))
    assert (late.incidents, late.timeline, late.decisions) == ((), (), ())
    assert pipeline.only_incident().status is IncidentStatus.RESOLVED


@pytest.mark.parametrize(
    ("start", "stop", "flag"),
    [
        pytest.param(
            EventKind.FLAPPING_START,
            EventKind.FLAPPING_STOP,
            "flapping",
            id="the flapping flag stays through re-sends until the flapping stop",
        ),
        pytest.param(
            EventKind.MAINTENANCE_START,
            EventKind.MAINTENANCE_END,
            "maintenance",
            id="the downtime flag stays through re-sends until the downtime end",
        ),
    ],
)
def test_notices_set_and_clear_the_alerts_flag_and_repeats_keep_it(
    start: EventKind, stop: EventKind, flag: str
) -> None:
    pipeline = opened()
    started = pipeline.send(action(start), at(10))
    assert started.alert is not None
    assert getattr(started.alert, flag) is True
    pipeline.send(firing(source=NAGIOS), at(200))  # a re-send of the problem keeps the flag
    assert getattr(pipeline.alert("fp1", NAGIOS), flag) is True
    stopped = pipeline.send(action(stop), at(300))
    assert stopped.alert is not None
    assert getattr(stopped.alert, flag) is False
    assert pipeline.only_incident().status is IncidentStatus.NEW  # still firing


def test_a_flag_is_set_even_on_an_alert_without_an_incident() -> None:
    pipeline = Pipeline()
    pipeline.send(resolved(source=NAGIOS, until=0), at(0))  # resolved_unseen
    result = pipeline.send(action(EventKind.MAINTENANCE_START), at(5))
    assert (result.incidents, result.decisions) == ((), ())
    assert result.alert is not None
    assert result.alert.maintenance is True


# Flags through the new code paths: a flapping alert keeps its incident, a downtime holds.


def test_a_problem_during_the_senders_downtime_is_held_and_released_when_it_ends() -> None:
    pipeline = Pipeline()
    pipeline.send(resolved(source=NAGIOS, until=0), at(0))
    pipeline.send(action(EventKind.MAINTENANCE_START), at(5))
    pipeline.send(firing(source=NAGIOS, since=10), at(10))
    held = pipeline.alert("fp1", NAGIOS)
    assert (held.hold, held.held_by, held.incident_id) == (
        Hold.MAINTENANCE,
        "downtime:nagios",
        None,
    )
    assert pipeline.incidents() == []
    assert pipeline.decisions("maintenance") == [("downtime:nagios", "suppressed")]
    ended = pipeline.send(action(EventKind.MAINTENANCE_END), at(60))
    incident = pipeline.only_incident()
    assert ended.alert is not None
    assert (ended.alert.hold, ended.alert.incident_id) == (Hold.NONE, incident.id)
    assert incident.opened_at == at(60)


def test_a_problem_that_recovers_during_the_downtime_opens_nothing_when_it_ends() -> None:
    pipeline = Pipeline()
    pipeline.send(resolved(source=NAGIOS, until=0), at(0))
    pipeline.send(action(EventKind.MAINTENANCE_START), at(5))
    pipeline.send(firing(source=NAGIOS, since=10), at(10))
    pipeline.send(resolved(source=NAGIOS, since=10, until=20), at(20))
    pipeline.send(action(EventKind.MAINTENANCE_END), at(60))
    assert pipeline.incidents() == []
    assert pipeline.alert("fp1", NAGIOS).hold is Hold.NONE


def test_a_downtime_that_starts_while_the_alert_is_in_an_incident_keeps_it_there() -> None:
    pipeline = opened()
    pipeline.send(action(EventKind.MAINTENANCE_START), at(10))
    alert = pipeline.alert("fp1", NAGIOS)
    assert (alert.hold, alert.incident_id) == (Hold.NONE, pipeline.only_incident().id)


def test_a_recovery_while_the_sender_reports_flapping_keeps_the_incident_open() -> None:
    pipeline = opened()
    pipeline.send(action(EventKind.FLAPPING_START), at(10))
    pipeline.send(resolved(source=NAGIOS, until=20), at(20))
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts) == (IncidentStatus.NEW, 1)
    assert pipeline.alert("fp1", NAGIOS).flapping is True


def test_the_flapping_stop_of_a_recovered_alert_resolves_its_incident_then() -> None:
    pipeline = opened()
    pipeline.send(action(EventKind.FLAPPING_START), at(10))
    pipeline.send(resolved(source=NAGIOS, until=20), at(20))
    stopped = pipeline.send(action(EventKind.FLAPPING_STOP), at(30))
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (IncidentStatus.RESOLVED, at(30))
    assert ("incidents", "resolved") in [(d.stage, d.decision) for d in stopped.decisions]


def test_a_problem_again_while_the_sender_reports_flapping_does_not_reopen_or_recount() -> None:
    pipeline = opened()
    pipeline.send(action(EventKind.FLAPPING_START), at(10))
    pipeline.send(resolved(source=NAGIOS, until=20), at(20))
    again = pipeline.send(firing(source=NAGIOS, since=30), at(30))
    incident = pipeline.only_incident()
    assert (incident.status, incident.reopen_count, incident.firing_alerts) == (
        IncidentStatus.NEW,
        0,
        1,
    )
    assert again.alert is not None
    assert again.alert.reason is JoinReason.OPENED


def test_a_recovered_alert_the_sender_reports_flapping_keeps_its_incident_open() -> None:
    # a and b share an incident; a recovers, then Nagios reports it flapping: it keeps the
    # incident open after b resolves, until Nagios reports the flapping over.
    pipeline = Pipeline()
    pipeline.send(firing("a", source=NAGIOS), at(0))
    pipeline.send(firing("b", source=NAGIOS), at(5))
    pipeline.send(resolved("a", source=NAGIOS, until=10), at(10))
    pipeline.send(action(EventKind.FLAPPING_START, "a"), at(20))
    assert pipeline.only_incident().firing_alerts == 2
    pipeline.send(resolved("b", source=NAGIOS, until=30), at(30))
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts) == (IncidentStatus.NEW, 1)
    pipeline.send(action(EventKind.FLAPPING_STOP, "a"), at(40))
    incident = pipeline.only_incident()
    assert (incident.status, incident.firing_alerts, incident.resolved_at) == (
        IncidentStatus.RESOLVED,
        0,
        at(40),
    )


def test_a_downtime_that_ends_after_a_silent_recovery_opens_nothing() -> None:
    # Nagios sends no RECOVERY inside a downtime: its DOWNTIMEEND says the state is OK (the
    # connector makes it a resolved MAINTENANCE_END, then a resolve). The held alert must not
    # open an incident for the instant between the two.
    pipeline = Pipeline()
    pipeline.send(resolved(source=NAGIOS, until=0), at(0))
    pipeline.send(action(EventKind.MAINTENANCE_START), at(5))
    pipeline.send(firing(source=NAGIOS, since=10), at(10))
    ended = replace(action(EventKind.MAINTENANCE_END), status=AlertStatus.RESOLVED)
    pipeline.send(ended, at(60))
    pipeline.send(resolved(source=NAGIOS, since=10, until=60), at(60))
    assert pipeline.incidents() == []
    alert = pipeline.alert("fp1", NAGIOS)
    assert (alert.status, alert.hold, alert.maintenance) == (AlertStatus.RESOLVED, Hold.NONE, False)
