"""Decision tables for the maintenance stage: windows hold firing alerts, resolves pass, and a
window that ends releases what still fires (through `rules.timers.tick` / `rules.recheck`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from rules.dedup import DedupOutcome
from rules.model import EventKind, Hold, IncidentStatus, JoinReason
from rules.recheck import recheck
from rules.ruleset import MaintenanceWindow, RuleSet
from tests.rules.builders import (
    action,
    at,
    correlate,
    firing,
    labels,
    resolved,
    shipped_rules,
    window,
)
from tests.rules.world import Pipeline

DB = labels("DiskFull", "db-1", env="prod")
NIGHTLY = window("db-upgrade", 100, 200, 'host="db-1"')


@pytest.mark.parametrize(
    ("windows", "api", "seconds", "held_by"),
    [
        pytest.param(
            (NIGHTLY,), (), 150, "maintenance:db-upgrade", id="a window covering the alert holds it"
        ),
        pytest.param((NIGHTLY,), (), 100, "maintenance:db-upgrade", id="a window starts on time"),
        pytest.param((NIGHTLY,), (), 99, None, id="an alert before the window opens an incident"),
        pytest.param((NIGHTLY,), (), 200, None, id="a window is over at its end"),
        pytest.param(
            (window("web", 0, 1000, 'host="web-1"'),),
            (),
            150,
            None,
            id="a window for other alerts does not hold it",
        ),
        pytest.param(
            (window("prod", 0, 1000, 'env="prod"', 'alertname=~"Host.*"'),),
            (),
            150,
            None,
            id="every matcher of a window must match",
        ),
        pytest.param(
            (window("everything", 0, 1000),),
            (),
            150,
            "maintenance:everything",
            id="a window without matchers holds every alert",
        ),
        pytest.param(
            (),
            (replace(window("api", 100, 200, 'host="db-1"'), id=7),),
            150,
            "maintenance:7",
            id="a window created through the API holds it and is named by its id",
        ),
        pytest.param(
            (window("first", 0, 1000, 'host="db-1"'), window("second", 0, 1000)),
            (),
            150,
            "maintenance:first",
            id="of two covering windows the first one is named",
        ),
    ],
)
def test_windows(
    windows: tuple[MaintenanceWindow, ...],
    api: tuple[MaintenanceWindow, ...],
    seconds: float,
    held_by: str | None,
) -> None:
    pipeline = Pipeline(RuleSet(maintenance=windows), windows=api)
    result = pipeline.send(firing("a", DB, since=seconds), at(seconds))
    alert = pipeline.alert("a")
    if held_by is None:
        assert (alert.hold, alert.incident_id) == (Hold.NONE, pipeline.only_incident().id)
        assert pipeline.decisions("maintenance") == []
        return
    assert (alert.hold, alert.held_by, alert.incident_id) == (Hold.MAINTENANCE, held_by, None)
    assert pipeline.incidents() == []
    assert [(d.stage, d.rule, d.decision) for d in result.decisions] == [
        ("maintenance", held_by.removeprefix("maintenance:"), "suppressed")
    ]


def held() -> Pipeline:
    pipeline = Pipeline(RuleSet(maintenance=(NIGHTLY,)))
    pipeline.send(firing("a", DB, since=150), at(150))
    return pipeline


def test_repeats_of_a_held_alert_stay_held_and_are_not_counted_again() -> None:
    pipeline = held()
    repeat = pipeline.send(firing("a", DB, since=150), at(180))
    assert repeat.dedup.outcome is DedupOutcome.DUPLICATE
    changed = pipeline.send(firing("a", DB, since=150, annotations={"summary": "x"}), at(190))
    assert changed.decisions == ()
    assert pipeline.alert("a").hold is Hold.MAINTENANCE


def test_an_alert_held_in_maintenance_that_resolves_opens_nothing_when_the_window_ends() -> None:
    pipeline = held()
    pipeline.send(resolved("a", DB, since=150, until=170), at(170))
    assert pipeline.alert("a").hold is Hold.NONE
    assert pipeline.tick(at(300)) == []
    assert pipeline.incidents() == []


def test_resolves_pass_during_a_window() -> None:
    pipeline = Pipeline(RuleSet(maintenance=(NIGHTLY,)))
    pipeline.send(firing("a", DB), at(0))
    pipeline.send(firing("a", DB), at(120))  # a repeat inside the window keeps its incident
    assert pipeline.alert("a").incident_id == pipeline.only_incident().id
    pipeline.send(resolved("a", DB, until=150), at(150))
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (IncidentStatus.RESOLVED, at(150))


def test_the_tick_after_the_window_ends_releases_a_still_firing_alert_into_an_incident() -> None:
    pipeline = held()
    assert pipeline.tick(at(199)) == []  # still inside
    [released] = pipeline.tick(at(200))
    assert released.dedup.outcome is DedupOutcome.RECHECK
    incident = pipeline.only_incident()
    alert = pipeline.alert("a")
    assert (alert.hold, alert.held_by, alert.incident_id) == (Hold.NONE, "", incident.id)
    assert (incident.opened_at, incident.firing_alerts) == (at(200), 1)


def test_a_released_alert_joins_the_incident_its_group_already_has_as_released() -> None:
    rules = RuleSet(maintenance=(NIGHTLY,), correlate=(correlate("disk"),))
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", DB, since=150), at(150))
    pipeline.send(firing("b", labels("DiskFull", "db-2"), since=160), at(160))
    pipeline.tick(at(200))
    incident = pipeline.only_incident()
    assert pipeline.members(incident) == ["b", "a"]
    assert pipeline.alert("a").reason is JoinReason.RELEASED
    assert (incident.firing_alerts, incident.alert_count) == (2, 2)


def test_a_repeat_after_the_window_ends_releases_the_alert_without_a_tick() -> None:
    pipeline = held()
    pipeline.send(firing("a", DB, since=150, annotations={"summary": "still"}), at(250))
    assert pipeline.alert("a").incident_id == pipeline.only_incident().id


def test_recheck_reports_nothing_while_the_window_lasts() -> None:
    pipeline = held()
    ctx = pipeline.context(at(160))
    assert recheck(ctx, pipeline.world, pipeline.alert("a")) is None
    later = recheck(pipeline.context(at(201)), pipeline.world, pipeline.alert("a"))
    assert later is not None
    assert later.alert is not None
    assert later.alert.hold is Hold.NONE
    assert [(d.stage, d.decision) for d in later.decisions] == [
        ("incidents", "opened"),
        ("correlate", "opened"),
    ]


def test_a_held_alert_moves_to_the_next_window_that_covers_it() -> None:
    rules = RuleSet(maintenance=(NIGHTLY, window("follow-up", 180, 400, 'alertname="DiskFull"')))
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", DB, since=150), at(150))
    pipeline.tick(at(250))
    alert = pipeline.alert("a")
    assert (alert.hold, alert.held_by) == (Hold.MAINTENANCE, "maintenance:follow-up")
    assert pipeline.incidents() == []
    pipeline.tick(at(400))
    assert pipeline.alert("a").hold is Hold.NONE


@pytest.mark.parametrize(
    ("when", "held_by"),
    [
        pytest.param(
            datetime(2026, 11, 29, 0, 30, tzinfo=UTC),  # Sunday 01:30 in Berlin
            "maintenance:staging-weekly-reset",
            id="shipped: staging alerts on Sunday night are held",
        ),
        pytest.param(
            datetime(2026, 11, 29, 4, 0, tzinfo=UTC),  # Sunday 05:00 in Berlin
            None,
            id="shipped: staging alerts after the Sunday reset open incidents",
        ),
        pytest.param(
            datetime(2026, 11, 24, 1, 45, tzinfo=UTC),  # 02:45 in Berlin
            None,
            id="shipped: the backup window holds only the backup server's load alerts",
        ),
    ],
)
def test_shipped_windows(when: datetime, held_by: str | None) -> None:
    pipeline = Pipeline(shipped_rules())
    item = replace(firing("a", labels("DiskFull", "stage-1", env="staging")), starts_at=when)
    pipeline.send(item, when)
    alert = pipeline.alert("a")
    assert (alert.held_by or None) == held_by


def test_shipped_backup_window_holds_the_backup_servers_load() -> None:
    when = datetime(2026, 11, 24, 1, 45, tzinfo=UTC)  # 02:45 in Berlin, inside 02:30 + 2h
    pipeline = Pipeline(shipped_rules())
    item = replace(firing("a", labels("HighLoad", "backup-1")), starts_at=when)
    pipeline.send(item, when)
    assert pipeline.alert("a").held_by == "maintenance:backup-window"


def test_the_senders_downtime_holds_like_a_window_and_is_named_before_one() -> None:
    pipeline = Pipeline(RuleSet(maintenance=(window("all", 0, 1000),)))
    pipeline.send(resolved("a", DB, source="nagios", until=0), at(0))
    pipeline.send(action(EventKind.MAINTENANCE_START, "a", labels=DB), at(5))
    pipeline.send(firing("a", DB, source="nagios", since=10), at(10))
    alert = pipeline.alert("a", "nagios")
    assert (alert.hold, alert.held_by) == (Hold.MAINTENANCE, "downtime:nagios")
    # The downtime ends inside the rule file's window: the window holds it now.
    pipeline.send(action(EventKind.MAINTENANCE_END, "a", labels=DB), at(20))
    alert = pipeline.alert("a", "nagios")
    assert (alert.hold, alert.held_by) == (Hold.MAINTENANCE, "maintenance:all")
    pipeline.tick(at(1000))
    assert pipeline.alert("a", "nagios").incident_id == pipeline.only_incident().id
