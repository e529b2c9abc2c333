"""Decision tables for the correlate stage: which incident a firing alert opens or joins."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import pytest

from rules.correlate import routes
from rules.dedup import DedupOutcome
from rules.model import (
    Hold,
    IncidentStatus,
    JoinReason,
    Severity,
    TimelineKind,
)
from rules.ruleset import RuleSet
from tests.rules.builders import (
    at,
    correlate,
    event,
    firing,
    heartbeat,
    labels,
    resolved,
    window,
)
from tests.rules.world import Pipeline

# Routing: which rules take an alert, and the incident key they give it.

ROUTING = RuleSet(
    correlate=(
        correlate("host-down", 'alertname=~"HostDown|NodeDown"', group_by=("host",)),
        correlate("db-team", 'team="db"', group_by=("team",), cont=True),
        correlate("am-group", '__source__="alertmanager"', group_by=("__group_key__",)),
        correlate("per-alert", group_by=("alertname", "instance")),
    )
)


@pytest.mark.parametrize(
    ("source", "alert_labels", "expected"),
    [
        pytest.param(
            "prometheus",
            {"alertname": "HostDown", "host": "db-1"},
            ["host-down{host='db-1'}"],
            id="the first rule that matches takes the alert and keys it by its group_by values",
        ),
        pytest.param(
            "prometheus",
            {"alertname": "HostDown", "host": "db-1", "team": "db"},
            ["host-down{host='db-1'}"],
            id="a later rule never sees an alert the first matching rule took without continue",
        ),
        pytest.param(
            "prometheus",
            {"alertname": "DiskFull", "instance": "db-1:9100"},
            ["per-alert{alertname='DiskFull',instance='db-1:9100'}"],
            id="an alert no earlier rule matches falls through to the catch-all",
        ),
        pytest.param(
            "prometheus",
            {"alertname": "DiskFull", "team": "db"},
            ["db-team{team='db'}", "per-alert{alertname='DiskFull',instance=''}"],
            id="a rule with continue lets the next matching rule take the alert too",
        ),
        pytest.param(
            "alertmanager",
            {"alertname": "DiskFull", "team": "db"},
            ["db-team{team='db'}", "am-group{__group_key__='{}:{alertname=\"DiskFull\"}'}"],
            id="after continue only the next rule that matches takes it, not every later rule",
        ),
        pytest.param(
            "prometheus",
            {"alertname": "NodeDown"},
            ["host-down{host=''}"],
            id="a missing group_by label groups as the empty value",
        ),
    ],
)
def test_routes(source: str, alert_labels: dict[str, str], expected: list[str]) -> None:
    item = event(source=source, labels=alert_labels)
    assert [route.key for route in routes(ROUTING, item.match_labels())] == expected


@pytest.mark.parametrize(
    ("source", "group_key", "expected"),
    [
        pytest.param(
            "alertmanager",
            '{}:{alertname="DiskFull"}',
            "default-group-key{__group_key__='{}:{alertname=\"DiskFull\"}'}",
            id="without rules an Alertmanager item groups by its Alertmanager group",
        ),
        pytest.param(
            "prometheus",
            None,
            "default{alertname='DiskFull',instance='db-01:9100'}",
            id="without rules an item without a group key groups by alertname and instance",
        ),
    ],
)
def test_default_routes(source: str, group_key: str | None, expected: str) -> None:
    item = event(source=source, group_key=group_key)
    [route] = routes(RuleSet(), item.match_labels())
    assert route.key == expected


# Joining: the second alert of a key joins the first one's incident, or opens another.

JOINING = RuleSet(
    correlate=(
        correlate("db", 'team="db"', group_by=("host",), window=timedelta(minutes=10)),
        correlate("web", 'team="web"', group_by=("host",)),
    )
)
FIRST = labels("DiskFull", "db-1", team="db")


@pytest.mark.parametrize(
    ("second", "seconds", "joins", "seq"),
    [
        pytest.param(
            labels("HighLoad", "db-1", team="db"),
            60,
            True,
            0,
            id="same rule and group_by values join the first alert's incident",
        ),
        pytest.param(
            labels("HighLoad", "db-2", team="db"),
            60,
            False,
            0,
            id="other group_by values open a second incident",
        ),
        pytest.param(
            labels("HighLoad", "db-1", team="web"),
            60,
            False,
            0,
            id="another rule's alert never joins, even with the same group_by values",
        ),
        pytest.param(
            labels("HighLoad", "db-1", team="db"),
            600,
            True,
            0,
            id="an alert exactly at the end of the rule's window still joins",
        ),
        pytest.param(
            labels("HighLoad", "db-1", team="db"),
            601,
            False,
            1,
            id="an alert after the rule's window opens the next generation of the key",
        ),
    ],
)
def test_second_alert_joins_or_opens(
    second: dict[str, str], seconds: float, joins: bool, seq: int
) -> None:
    pipeline = Pipeline(JOINING)
    pipeline.send(firing("a", FIRST), at(0))
    result = pipeline.send(firing("b", second, since=seconds), at(seconds))
    first, joined = pipeline.incident_of("a"), pipeline.incident_of("b")
    assert (joined.id == first.id) is joins
    assert joined.seq == seq
    assert result.alert is not None
    assert result.alert.reason is (JoinReason.GROUPED if joins else JoinReason.OPENED)
    assert first.status is IncidentStatus.NEW  # a closed window does not resolve the incident


def test_the_first_alert_opens_an_incident_with_a_timeline_entry() -> None:
    pipeline = Pipeline()
    result = pipeline.send(event(), at(0))
    incident = pipeline.only_incident()
    assert (incident.status, incident.rule, incident.seq) == (
        IncidentStatus.NEW,
        "default-group-key",
        0,
    )
    assert incident.id < 0  # a placeholder until the shell stores it
    assert pipeline.kinds(incident) == [TimelineKind.OPENED]
    assert result.alert is not None
    assert (result.alert.incident_id, result.alert.reason) == (incident.id, JoinReason.OPENED)
    assert [(d.stage, d.rule, d.decision) for d in result.decisions] == [
        ("incidents", "default-group-key", "opened"),
        ("correlate", "default-group-key", "opened"),
    ]


def test_alerts_of_one_alertmanager_group_share_one_incident_and_its_worst_severity() -> None:
    pipeline = Pipeline()
    pipeline.send(event("a", labels={"alertname": "DiskFull", "instance": "db-01"}), at(0))
    second = pipeline.send(
        event(
            "b",
            labels={"alertname": "DiskFull", "instance": "db-02"},
            severity=Severity.CRITICAL,
        ),
        at(1),
    )
    incident = pipeline.only_incident()
    assert (incident.firing_alerts, incident.alert_count, incident.severity) == (
        2,
        2,
        Severity.CRITICAL,
    )
    assert pipeline.members(incident) == ["a", "b"]
    assert [(d.stage, d.decision) for d in second.decisions] == [
        ("correlate", "grouped"),
        ("incidents", "attached"),
    ]


def test_repeats_and_duplicates_open_nothing() -> None:
    pipeline = Pipeline()
    pipeline.send(event(), at(0))
    duplicate = pipeline.send(event(), at(10))
    assert duplicate.dedup.outcome is DedupOutcome.DUPLICATE
    assert (duplicate.alerts, duplicate.incidents, duplicate.timeline) == ((), (), ())
    repeat = pipeline.send(event(), at(120))
    assert repeat.dedup.outcome is DedupOutcome.REPEAT
    incident = pipeline.only_incident()
    assert repeat.incidents == (incident,)
    assert incident.last_alert_at == at(120)  # the incident shows the latest activity
    assert (incident.firing_alerts, incident.alert_count) == (1, 1)
    assert repeat.timeline == ()


def test_a_changed_alert_is_noted_on_its_incident_without_counting_twice() -> None:
    pipeline = Pipeline()
    pipeline.send(event(), at(0))
    changed = pipeline.send(event(severity=Severity.CRITICAL), at(5))
    assert changed.dedup.outcome is DedupOutcome.CHANGED
    incident = pipeline.only_incident()
    assert incident.severity is Severity.CRITICAL
    assert (incident.firing_alerts, incident.alert_count) == (1, 1)
    assert pipeline.kinds(incident) == [TimelineKind.OPENED, TimelineKind.ALERT_CHANGED]


def test_continue_puts_one_alert_into_two_incidents_and_its_resolve_counts_in_both() -> None:
    rules = RuleSet(
        correlate=(
            correlate("db-team", 'team="db"', group_by=("team",), cont=True),
            correlate("per-host", group_by=("host",)),
        )
    )
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", labels("DiskFull", "db-1", team="db")), at(0))
    team, host = pipeline.incidents()
    assert (team.rule, host.rule) == ("db-team", "per-host")
    alert = pipeline.alert("a")
    assert (alert.incident_id, alert.also) == (team.id, (host.id,))
    assert pipeline.decisions("correlate") == [("db-team", "opened"), ("per-host", "continued")]
    pipeline.send(resolved("a", labels("DiskFull", "db-1", team="db"), until=30), at(30))
    assert [i.status for i in pipeline.incidents()] == [IncidentStatus.RESOLVED] * 2


def test_an_alert_of_a_continued_rule_joins_the_second_incident_as_continued() -> None:
    rules = RuleSet(
        correlate=(
            correlate("db-team", 'team="db"', group_by=("team",), cont=True),
            correlate("per-host", group_by=("host",)),
        )
    )
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", labels("DiskFull", "db-1")), at(0))  # per-host only
    pipeline.send(firing("b", labels("HighLoad", "db-1", team="db")), at(5))
    host = pipeline.incident_of("a")
    assert pipeline.members(host) == ["a", "b"]
    assert [link.reason for link in pipeline.world.links if link.fingerprint == "b"] == [
        JoinReason.OPENED,
        JoinReason.CONTINUED,
    ]


# min_alerts: the first alerts of a group are held as pending until enough fire.


@dataclass(frozen=True)
class Step:
    fingerprint: str
    group: str = "shop"
    fire: bool = True


MIN_ALERTS = RuleSet(
    correlate=(correlate("outage", group_by=("service",), min_alerts=3),),
)


@pytest.mark.parametrize(
    ("steps", "members", "pending"),
    [
        pytest.param(
            [Step("a"), Step("b")],
            None,
            ["a", "b"],
            id="two alerts of three are held as pending and open nothing",
        ),
        pytest.param(
            [Step("a"), Step("b"), Step("c")],
            ["c", "a", "b"],
            [],
            id="the third alert opens the incident and the pending ones join it",
        ),
        pytest.param(
            [Step("a"), Step("b"), Step("a", fire=False), Step("c")],
            None,
            ["b", "c"],
            id="a pending alert that resolved no longer counts toward min_alerts",
        ),
        pytest.param(
            [Step("a"), Step("b"), Step("c", group="billing")],
            None,
            ["a", "b", "c"],
            id="alerts of other groups do not count toward each other's min_alerts",
        ),
        pytest.param(
            [Step("a"), Step("b"), Step("c"), Step("d")],
            ["c", "a", "b", "d"],
            [],
            id="once the incident is open later alerts simply join it",
        ),
    ],
)
def test_min_alerts(steps: list[Step], members: list[str] | None, pending: list[str]) -> None:
    pipeline = Pipeline(MIN_ALERTS)
    for second, step in enumerate(steps):
        alert_labels = labels("Down", service=step.group, instance=step.fingerprint)
        if step.fire:
            pipeline.send(firing(step.fingerprint, alert_labels, since=second), at(second))
        else:
            began = step_start(steps, step)
            item = resolved(step.fingerprint, alert_labels, since=began, until=second)
            pipeline.send(item, at(second))
    held = [a.fingerprint for a in pipeline.world.alerts.values() if a.hold is Hold.PENDING]
    assert sorted(held) == pending
    if members is None:
        assert pipeline.incidents() == []
        return
    incident = pipeline.only_incident()
    assert pipeline.members(incident) == members
    assert (incident.firing_alerts, incident.alert_count) == (len(members), len(members))
    assert all(pipeline.alert(fp).incident_id == incident.id for fp in members)


def step_start(steps: list[Step], step: Step) -> int:
    return next(i for i, s in enumerate(steps) if s.fingerprint == step.fingerprint)


def test_a_pending_alert_shows_how_many_alerts_its_group_still_needs() -> None:
    pipeline = Pipeline(MIN_ALERTS)
    result = pipeline.send(firing("a", labels("Down", service="shop")), at(0))
    alert = pipeline.alert("a")
    assert (alert.hold, alert.held_by) == (Hold.PENDING, "correlate:outage (1 of 3 alerts)")
    assert alert.incident_key == "outage{service='shop'}"
    assert [(d.stage, d.rule, d.decision) for d in result.decisions] == [
        ("correlate", "outage", "pending")
    ]


def test_pending_alerts_open_their_incident_at_the_tick_after_a_reload_lowers_min_alerts() -> None:
    pipeline = Pipeline(MIN_ALERTS)
    pipeline.send(firing("a", labels("Down", service="shop", instance="a")), at(0))
    pipeline.send(firing("b", labels("Down", service="shop", instance="b"), since=1), at(1))
    assert pipeline.incidents() == []
    pipeline.rules = RuleSet(correlate=(correlate("outage", group_by=("service",), min_alerts=2),))
    pipeline.tick(at(60))
    incident = pipeline.only_incident()
    assert sorted(pipeline.members(incident)) == ["a", "b"]
    assert (incident.firing_alerts, incident.alert_count) == (2, 2)
    assert [pipeline.alert(fp).hold for fp in ("a", "b")] == [Hold.NONE, Hold.NONE]


def test_an_alert_refiring_into_its_reopened_continued_incident_is_counted_once() -> None:
    rules = RuleSet(
        correlate=(
            correlate("db-team", 'team="db"', group_by=("team",), cont=True),
            correlate("per-host", group_by=("host",)),
        )
    )
    pipeline = Pipeline(rules)
    alert_labels = labels("DiskFull", "db-1", team="db")
    pipeline.send(firing("a", alert_labels), at(0))
    pipeline.send(resolved("a", alert_labels, until=30), at(30))
    pipeline.send(firing("a", alert_labels, since=60), at(60))
    team, host = pipeline.incidents()
    assert [(i.status, i.reopen_count) for i in (team, host)] == [(IncidentStatus.NEW, 1)] * 2
    assert [(i.firing_alerts, i.alert_count) for i in (team, host)] == [(1, 1), (1, 1)]
    assert pipeline.alert("a").also == (host.id,)


def test_alerts_of_two_sources_with_one_fingerprint_count_as_two_toward_min_alerts() -> None:
    # A dedup rule's `fingerprint` hashes label values only, so a Nagios and a Zabbix alert
    # with the same values share the fingerprint; they are still two alerts.
    rules = RuleSet(correlate=(correlate("outage", group_by=("service",), min_alerts=2),))
    pipeline = Pipeline(rules)
    down = labels("Down", service="shop")
    pipeline.send(firing("same", down, source="nagios"), at(0))
    pipeline.send(firing("same", down, source="zabbix", since=1), at(1))
    incident = pipeline.only_incident()
    assert (incident.firing_alerts, incident.alert_count) == (2, 2)
    assert pipeline.alert("same", "nagios").incident_id == incident.id


# min_alerts with continue: a pending alert is already in the incidents of its later routes.

PENDING_AND_CONTINUED = RuleSet(
    correlate=(
        correlate("outage", group_by=("service",), min_alerts=3, cont=True),
        correlate("per-host", group_by=("host",)),
    )
)


def test_a_pending_alert_that_resolves_leaves_its_continued_incident() -> None:
    pipeline = Pipeline(PENDING_AND_CONTINUED)
    a, b = labels("Down", "db-1", service="shop"), labels("Slow", "db-1", service="shop")
    pipeline.send(firing("a", a), at(0))
    pipeline.send(firing("b", b, since=1), at(1))
    host = pipeline.only_incident()
    assert (host.rule, host.firing_alerts) == ("per-host", 2)
    pipeline.send(resolved("a", a, until=10), at(10))
    assert pipeline.only_incident().firing_alerts == 1
    pipeline.send(resolved("b", b, since=1, until=20), at(20))
    assert pipeline.only_incident().status is IncidentStatus.RESOLVED


def test_a_pending_alert_looked_at_again_is_not_counted_twice_in_its_continued_incident() -> None:
    pipeline = Pipeline(PENDING_AND_CONTINUED)
    pipeline.send(firing("a", labels("Down", "db-1", service="shop")), at(0))
    pipeline.send(firing("b", labels("Slow", "db-1", service="shop"), since=1), at(1))
    pipeline.tick(at(60))  # a's pending count moves from 1 to 2 of 3
    assert pipeline.alert("a").held_by == "correlate:outage (2 of 3 alerts)"
    host = pipeline.only_incident()
    assert (host.firing_alerts, host.alert_count) == (2, 2)
    assert pipeline.kinds(host) == [TimelineKind.OPENED, TimelineKind.ALERT_ATTACHED]


def test_a_pending_alert_held_by_a_window_later_leaves_its_continued_incident() -> None:
    rules = replace(PENDING_AND_CONTINUED, maintenance=(window("db-work", 30, 600, 'host="db-1"'),))
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", labels("Down", "db-1", service="shop")), at(0))
    pipeline.send(firing("b", labels("Slow", "db-2", service="shop"), since=1), at(1))
    pipeline.tick(at(60))  # the window holds a
    assert pipeline.alert("a").hold is Hold.MAINTENANCE
    db_1 = pipeline.incidents()[0]
    assert (db_1.status, db_1.firing_alerts) == (IncidentStatus.RESOLVED, 0)


def test_an_incident_a_continued_rule_opens_says_so_first_on_its_timeline() -> None:
    rules = RuleSet(
        correlate=(
            correlate("db-team", 'team="db"', group_by=("team",), cont=True),
            correlate("per-host", group_by=("host",)),
        )
    )
    pipeline = Pipeline(rules)
    result = pipeline.send(firing("a", labels("DiskFull", "db-1", team="db")), at(0))
    host = pipeline.incidents()[1]
    assert pipeline.kinds(host) == [TimelineKind.OPENED]
    assert pipeline.timeline(host)[0].message == "opened by DiskFull db-1 (a) (continued)"
    assert [d.decision for d in result.decisions if d.stage == "incidents"] == ["opened"] * 2


def test_a_pending_alert_a_new_heartbeat_rule_holds_leaves_its_continued_incident() -> None:
    pipeline = Pipeline(PENDING_AND_CONTINUED)
    down = labels("Down", "db-1", service="shop")
    pipeline.send(firing("a", down), at(0))
    pipeline.rules = replace(
        PENDING_AND_CONTINUED, heartbeats=(heartbeat("down", 'alertname="Down"'),)
    )
    pipeline.send(firing("a", down, annotations={"n": "2"}), at(60))
    assert pipeline.alert("a").hold is Hold.HEARTBEAT
    assert pipeline.only_incident().status is IncidentStatus.RESOLVED
