"""Heartbeats: an expectation that an event arrives at least every so often. Armed by the first
beat; a missed beat opens an incident from source `heartbeat`; the next beat resolves it; the
beating events (Alertmanager's Watchdog) are held as `heartbeat` and open nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.heartbeats import ALERTNAME, SOURCE
from rules.model import AlertStatus, Hold, IncidentStatus, Severity
from rules.ruleset import DedupRule, RuleSet
from tests.rules.builders import at, event, heartbeat, shipped_rules
from tests.rules.world import Pipeline

RULE = heartbeat(
    "watchdog", 'alertname="Watchdog"', every=300, labels={"team": "sre"}, summary="no Watchdog"
)
RULES = RuleSet(heartbeats=(RULE,))


def beat(pipeline: Pipeline, seconds: float) -> None:
    pipeline.send(
        event("wd", labels={"alertname": "Watchdog"}, annotations={"n": str(seconds)}),
        at(seconds),
    )


def missed() -> Pipeline:
    pipeline = Pipeline(RULES)
    beat(pipeline, 0)
    pipeline.tick(at(301))
    return pipeline


def test_the_beating_event_is_stored_held_as_heartbeat_and_opens_nothing() -> None:
    pipeline = Pipeline(RULES)
    result = pipeline.send(event("wd", labels={"alertname": "Watchdog"}), at(0))
    alert = pipeline.alert("wd", "alertmanager")
    assert (alert.hold, alert.held_by, alert.incident_id) == (Hold.HEARTBEAT, "heartbeat", None)
    assert pipeline.incidents() == []
    assert result.beats == ("watchdog",)
    assert pipeline.world.heartbeats == {"watchdog": at(0)}


@pytest.mark.parametrize(
    ("beats", "tick", "misses"),
    [
        pytest.param(
            [], 3600, False, id="a heartbeat that never beat is not armed and never missed"
        ),
        pytest.param([0], 300, False, id="a heartbeat is on time up to its interval"),
        pytest.param([0], 301, True, id="a heartbeat is missed after its interval"),
        pytest.param([0, 200], 400, False, id="every beat restarts the interval"),
        pytest.param(
            [0, 30],
            320,
            False,
            id="a re-sent Watchdog that dedup calls a duplicate still beats",
        ),
    ],
)
def test_missed(beats: list[float], tick: float, misses: bool) -> None:
    pipeline = Pipeline(RULES)
    for seconds in beats:
        pipeline.send(event("wd", labels={"alertname": "Watchdog"}), at(seconds))
    pipeline.tick(at(tick))
    assert len(pipeline.incidents()) == (1 if misses else 0)


def test_a_missed_heartbeat_opens_an_incident_from_source_heartbeat() -> None:
    pipeline = missed()
    alert = pipeline.alert("watchdog", SOURCE)
    assert alert.status is AlertStatus.FIRING
    assert dict(alert.labels) == {
        "alertname": ALERTNAME,
        "heartbeat": "watchdog",
        "instance": "watchdog",
        "team": "sre",
    }
    assert alert.annotations["summary"] == "no Watchdog"
    assert alert.starts_at == at(300)  # when it was due
    incident = pipeline.incident_of("watchdog", SOURCE)
    assert (incident.severity, incident.status, incident.title) == (
        Severity.CRITICAL,
        IncidentStatus.NEW,
        "HeartbeatMissed on watchdog",
    )


def test_a_missed_heartbeat_is_counted_as_missed() -> None:
    pipeline = missed()
    assert pipeline.decisions("heartbeats") == [("watchdog", "missed")]


def test_a_missed_heartbeat_opens_one_incident_however_often_the_tick_runs() -> None:
    pipeline = missed()
    assert pipeline.tick(at(400)) == []
    assert pipeline.tick(at(3600)) == []
    assert len(pipeline.incidents()) == 1


def test_the_next_beat_resolves_the_incident() -> None:
    pipeline = missed()
    beat(pipeline, 500)
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (IncidentStatus.RESOLVED, at(500))
    assert pipeline.alert("watchdog", SOURCE).status is AlertStatus.RESOLVED
    assert ("watchdog", "recovered") in pipeline.decisions("heartbeats")


def test_a_second_miss_reopens_the_heartbeats_incident() -> None:
    pipeline = missed()
    beat(pipeline, 500)
    pipeline.tick(at(801))
    incident = pipeline.only_incident()
    assert (incident.status, incident.reopen_count) == (IncidentStatus.NEW, 1)


def test_shipped_watchdog_heartbeat() -> None:
    pipeline = Pipeline(shipped_rules())
    pipeline.send(event("wd", labels={"alertname": "Watchdog", "severity": "none"}), at(0))
    assert pipeline.incidents() == []
    pipeline.tick(at(301))
    incident = pipeline.only_incident()
    assert incident.rule == "per-alert"
    assert incident.title.startswith("Alertmanager's Watchdog has not arrived for 5 minutes")


def test_the_expiry_of_a_beating_alert_is_no_beat() -> None:
    # Prometheus pushes its Watchdog with an end time; when Prometheus dies the Watchdog
    # expires. That silence must not count as a beat and put the miss off.
    pipeline = Pipeline(RULES)
    pipeline.send(
        event("wd", source="prometheus", labels={"alertname": "Watchdog"}, expires_at=at(240)),
        at(0),
    )
    pipeline.tick(at(250))
    assert pipeline.alert("wd").status is AlertStatus.RESOLVED  # expired
    assert pipeline.world.heartbeats == {"watchdog": at(0)}
    pipeline.tick(at(301))
    assert pipeline.alert("watchdog", SOURCE).status is AlertStatus.FIRING


def test_a_dedup_fingerprint_rule_does_not_lose_the_heartbeats_alert() -> None:
    by_labels = DedupRule("by-labels", (), fingerprint=("alertname", "instance"))
    pipeline = Pipeline(replace(RULES, dedup=(by_labels,)))
    beat(pipeline, 0)
    pipeline.tick(at(301))
    beat(pipeline, 500)
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (IncidentStatus.RESOLVED, at(500))


@pytest.mark.parametrize(
    "reloaded",
    [
        pytest.param(RuleSet(), id="removed"),
        pytest.param(RuleSet(heartbeats=(replace(RULE, name="watchdog-2"),)), id="renamed"),
    ],
)
def test_a_missed_heartbeat_whose_rule_is_gone_after_a_reload_resolves(reloaded: RuleSet) -> None:
    pipeline = missed()
    pipeline.rules = reloaded
    pipeline.tick(at(400))
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (IncidentStatus.RESOLVED, at(400))
    assert pipeline.alert("watchdog", SOURCE).status is AlertStatus.RESOLVED


def test_an_alert_in_an_incident_before_its_heartbeat_rule_came_keeps_counting_there() -> None:
    # The Watchdog opened an incident before the heartbeat rule was added; after the reload
    # it is no longer placed anew, but when it resolves its incident resolves.
    pipeline = Pipeline()
    watchdog = {"alertname": "Watchdog"}
    pipeline.send(event("wd", labels=watchdog), at(0))
    pipeline.rules = RULES
    pipeline.send(event("wd", labels=watchdog, annotations={"n": "1"}), at(60))
    pipeline.send(event("wd", AlertStatus.RESOLVED, labels=watchdog, ends_at=at(120)), at(120))
    assert pipeline.only_incident().status is IncidentStatus.RESOLVED


def test_a_beating_alert_whose_heartbeat_rule_is_gone_is_placed_like_any_alert() -> None:
    pipeline = Pipeline(RULES)
    watchdog = {"alertname": "Watchdog"}
    pipeline.send(event("wd", labels=watchdog), at(0))
    pipeline.rules = RuleSet()
    pipeline.send(event("wd", labels=watchdog, annotations={"n": "1"}), at(60))
    alert = pipeline.alert("wd", "alertmanager")
    assert (alert.hold, alert.incident_id) == (Hold.NONE, pipeline.only_incident().id)
