"""`rules.evaluate`: the stage order (which stage holds an alert when several could) and
`lookups`, what the shell must load for a batch. The lookups are checked by what matters: an
event evaluated in a world holding only the rows the shell loads for them (the contract of
`bridge.store.repository.load_world`, mirrored by `shell_world`) decides exactly what it decides
in the whole world."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from rules.effects import Evaluation
from rules.evaluate import Lookups, evaluate, lookups, more_lookups, prepare
from rules.model import AlertStatus, Event, EventKind, Hold, IncidentStatus, evolve
from rules.recheck import as_event, needs_recheck, recheck
from rules.ruleset import ProblemBy, RuleSet
from rules.world import World
from tests.rules.builders import (
    action,
    at,
    correlate,
    event,
    firing,
    heartbeat,
    inhibit,
    labels,
    minutes,
    problem,
    resolved,
    shipped_rules,
    shipped_topology,
    window,
)
from tests.rules.world import Pipeline

# Stage order: maintenance -> inhibit -> topology -> correlate.

ORDER = RuleSet(
    maintenance=(window("db-work", 0, 1000, 'host="db-1"'),),
    inhibit=(inhibit("down", ('alertname="HostDown"',), ('alertname!="HostDown"',), ("host",)),),
    topology=shipped_topology(),
    heartbeats=(heartbeat("watchdog", 'alertname="Watchdog"'),),
)


@pytest.mark.parametrize(
    ("earlier", "alert_labels", "hold"),
    [
        pytest.param(
            [labels("HostDown", "db-1")],
            labels("DiskFull", "db-1"),
            Hold.MAINTENANCE,
            id="an alert in a window and inhibited is held by the window",
        ),
        pytest.param(
            [labels("HostDown", "switch-1"), labels("HostDown", "hv-1")],
            labels("DiskFull", "hv-1"),
            Hold.INHIBITED,
            id="an inhibited alert behind a root cause incident is inhibited, not a symptom",
        ),
        pytest.param(
            [labels("HostDown", "switch-1")],
            labels("Watchdog", "db-1"),
            Hold.HEARTBEAT,
            id="a heartbeat event in a window is a heartbeat, not held by the window",
        ),
        pytest.param(
            [labels("HostDown", "switch-1")],
            labels("DiskFull", "hv-1"),
            Hold.NONE,
            id="an alert behind a root cause incident joins it",
        ),
    ],
)
def test_which_stage_holds_an_alert(
    earlier: list[dict[str, str]], alert_labels: dict[str, str], hold: Hold
) -> None:
    pipeline = Pipeline(ORDER)
    for second, item in enumerate(earlier):
        pipeline.send(firing(f"e{second}", item, since=second), at(second))
    pipeline.send(firing("a", alert_labels, since=10), at(10))
    assert pipeline.alert("a").hold is hold


# What `lookups` asks the shell to load.

LOOKUP_RULES = replace(
    shipped_rules(),
    correlate=(
        correlate("db-team", 'team="db"', group_by=("team",), cont=True),
        *shipped_rules().correlate,
    ),
)


def found_for(item: Event, rules: RuleSet = LOOKUP_RULES) -> Lookups:
    return lookups(rules, [prepare(rules, item).event])


def test_a_firing_alert_asks_for_everything_it_may_join_or_be_held_by() -> None:
    item = firing("a", labels("DiskFull", "web-1", team="db"), source="nagios")
    found = found_for(item)
    per_alert = "per-alert{alertname='DiskFull',instance='',host='web-1'}"
    assert found.alerts == {("nagios", "a")}
    assert found.incident_keys == {"db-team{team='db'}", per_alert}
    # A one-sided target is muted by one-sided and by two-sided sources of the rule.
    assert found.inhibit_keys == {
        ("host-down-mutes-its-services", "web-1"),
        ("host-down-mutes-its-services|both", "web-1"),
    }
    assert found.cis == {"web-1", "hv-1", "switch-1", "core-switch-1", "fw-1"}
    assert {"recurring:db-team{team='db'}", f"recurring:{per_alert}"} <= found.problem_keys
    assert "shared-root-cause:core-switch-1" in found.problem_keys


def test_a_normalized_and_refingerprinted_event_asks_for_its_own_identity() -> None:
    item = firing("a", labels("DiskFull", instance="x", host_host="db-1", host="DB one"))
    rules = replace(LOOKUP_RULES, dedup=())
    found = found_for(replace(item, source="zabbix"), rules)
    assert "per-alert{alertname='DiskFull',instance='x',host='db-1'}" in found.incident_keys


def test_a_heartbeat_event_asks_for_the_heartbeats_alert() -> None:
    found = found_for(event("wd", labels={"alertname": "Watchdog"}))
    assert ("heartbeat", "prometheus-watchdog") in found.alerts


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(
            resolved("a", labels("DiskFull", "web-1"), until=5),
            id="a resolve asks only for its alert",
        ),
        pytest.param(
            evolve(
                action(EventKind.ACKNOWLEDGE, "a", labels=labels("DiskFull", "web-1")),
                status=AlertStatus.RESOLVED,
            ),
            id="an action on a resolved alert asks only for its alert",
        ),
    ],
)
def test_events_that_fire_nothing_ask_only_for_their_alert(item: Event) -> None:
    found = found_for(item)
    assert found.alerts == {(item.source, "a")}
    assert (found.incident_keys, found.inhibit_keys, found.cis, found.problem_keys) == (
        set(),
        set(),
        set(),
        set(),
    )


def test_an_action_on_a_firing_alert_asks_where_it_may_go() -> None:
    # A downtime that ends releases a firing alert into its incident: its routes are needed.
    item = action(EventKind.MAINTENANCE_END, "a", labels=labels("DiskFull", "web-1"))
    assert found_for(item).incident_keys != set()


# The lookups are enough: a story, every event checked against a world built from them.


def shell_world(full: World, found: Lookups, since: datetime) -> World:
    """What `bridge.store.repository.load_world` loads for `found`, taken from `full`."""
    alerts = {key: full.alerts[key] for key in found.alerts if key in full.alerts}
    for key in found.incident_keys:
        for alert in full.pending(key):
            alerts.setdefault((alert.source, alert.fingerprint), alert)
    wanted = {i for alert in alerts.values() for i in alert.incident_ids}
    incidents = {i: full.incidents[i] for i in wanted if i in full.incidents}
    for incident in full.incidents.values():
        latest = full.latest_for_key(incident.key)
        recent = incident.opened_at >= since
        is_latest = latest is not None and latest.id == incident.id
        if incident.key in found.incident_keys and (recent or is_latest):
            incidents[incident.id] = incident
        if incident.ci in found.cis and (recent or incident.status.is_active):
            incidents[incident.id] = incident
    problem_ids = {i.problem_id for i in incidents.values() if i.problem_id is not None}
    problems = [
        p
        for p in full.problems.values()
        if p.id in problem_ids or (p.key in found.problem_keys and p.status.is_active)
    ]
    world = World(_next_placeholder=full._next_placeholder)
    world.load_alerts(alerts.values())
    world.load_incidents(incidents.values())
    world.load_problems(problems)
    for inhibit_key in found.inhibit_keys:
        for alert_key in full.inhibitors.get(inhibit_key, set()):
            world.load_inhibitor(inhibit_key, alert_key)
    world.heartbeats = dict(full.heartbeats)
    return world


def shell_load(rules: RuleSet, full: World, found: Lookups, since: datetime) -> World:
    """What `bridge.ingest.Pipeline._load` loads: the rows of `found`, then what they point
    to (`more_lookups`, the inhibiting alerts' states)."""
    world = shell_world(full, found, since)
    extra = shell_world(full, more_lookups(rules, world, found), since)
    world.load_incidents(i for k, i in extra.incidents.items() if k not in world.incidents)
    world.load_problems(p for k, p in extra.problems.items() if k not in world.problems)
    world.load_alerts(full.alerts[k] for k in world.unloaded_inhibitors() if k in full.alerts)
    return world


STORY_RULES = replace(
    shipped_rules(),
    correlate=(
        correlate("batch", 'alertname="BatchLate"', group_by=("service",), min_alerts=2),
        *shipped_rules().correlate,
    ),
)


class Checked(Pipeline):
    """A pipeline that evaluates every event a second time in a world of only its lookups."""

    def send(self, event: Event, now: datetime) -> Evaluation:
        ctx = self.context(now)
        prepared = prepare(self.rules, event)
        # As the daemon does: the stored alert first, then what the event needs beyond it.
        found = lookups(self.rules, [prepared.event], self.world.alert)
        partial = shell_load(self.rules, self.world, found, self._since(now))
        expected = evaluate(ctx, partial, prepared)
        actual = super().send(event, now)
        assert actual == expected, f"lookups miss something for {event.fingerprint} at {now}"
        return actual

    def tick(self, now: datetime) -> list[Evaluation]:
        ctx = self.context(now)
        for alert in sorted(self.world.alerts.values(), key=lambda a: (a.source, a.fingerprint)):
            if not needs_recheck(alert):
                continue
            found = lookups(self.rules, [as_event(alert)])
            partial = shell_load(self.rules, self.world, found, self._since(now))
            assert recheck(ctx, partial, alert) == recheck(ctx, self.world, alert)
        return super().tick(now)

    def _since(self, now: datetime) -> datetime:
        windows = [p.within for p in self.rules.problems] + [self.settings.reopen_window]
        return now - max(windows)


def story(pipeline: Pipeline) -> None:
    """A busy hour and a bit, touching every stage that reads stored rows."""
    watchdog = {"alertname": "Watchdog"}
    pipeline.step(at(0), event("wd", labels=watchdog))
    pipeline.step(at(10), firing("sw", labels("HostDown", "core-switch-1")))
    pipeline.step(at(20), firing("w1", labels("HttpDown", "web-1"), source="nagios"))
    pipeline.step(at(30), firing("db", labels("HostDown", "db-2"), source="zabbix"))
    pipeline.step(at(40), firing("dbload", labels("HighLoad", "db-2"), source="zabbix"))
    pipeline.step(at(50), firing("b1", labels("BatchLate", service="billing")))
    pipeline.step(at(60), firing("b2", labels("BatchLate", service="billing"), since=60))
    pipeline.step(at(70), action(EventKind.ACKNOWLEDGE, "w1", labels=labels("HttpDown", "web-1")))
    pipeline.step(at(100), resolved("sw", labels("HostDown", "core-switch-1"), until=100))
    pipeline.step(at(400))  # the Watchdog is late
    pipeline.step(at(500), event("wd", labels=watchdog, annotations={"beat": "500"}))
    pipeline.step(at(510), resolved("db", labels("HostDown", "db-2"), source="zabbix", until=510))
    pipeline.step(at(600))  # the tick releases the inhibited load alert
    for start in (700, 900, 1100, 1300, 1500, 1700, 1900, 2100):
        flapping = labels("Ping", "app-2")
        pipeline.step(at(start), firing("ping", flapping, since=start))
        pipeline.step(at(start + 50), resolved("ping", flapping, since=start, until=start + 50))
    for start in (0, 2, 4):  # hours
        disk = labels("DiskFull", "wiki-1")
        begin = 3000 + start * 3600
        pipeline.step(at(begin), firing("disk", disk, since=begin), event("wd", labels=watchdog))
        pipeline.step(at(begin + 60), resolved("disk", disk, since=begin, until=begin + 60))
    pipeline.step(at(3000 + 4 * 3600 + minutes(40)))


def test_the_story_decides_the_same_with_only_the_looked_up_rows() -> None:
    checked = Checked(STORY_RULES)
    story(checked)
    # The story did reach the stages it is meant to exercise.
    stages = {(d.stage, d.decision) for e in checked.evaluations for d in e.decisions}
    assert {
        ("correlate", "symptom"),
        ("correlate", "pending"),
        ("inhibit", "inhibited"),
        ("heartbeats", "missed"),
        ("heartbeats", "recovered"),
        ("flapping", "started"),
        ("flapping", "stopped"),
        ("problems", "opened"),
        ("incidents", "acknowledged"),
        ("incidents", "reopened"),
    } <= stages


def test_the_story_checker_notices_a_missing_row() -> None:
    # Without the CIs, the web-1 alert would open its own incident instead of joining the
    # switch's: the comparison in `Checked.send` must catch that.
    pipeline = Pipeline(STORY_RULES)
    pipeline.send(firing("sw", labels("HostDown", "core-switch-1")), at(10))
    item = firing("w1", labels("HttpDown", "web-1"), source="nagios")
    found = lookups(STORY_RULES, [prepare(STORY_RULES, item).event])
    found.cis.clear()
    partial = shell_world(pipeline.world, found, at(0) - timedelta(days=1))
    ctx = pipeline.context(at(20))
    assert evaluate(ctx, partial, item) != evaluate(ctx, pipeline.world, item)


def test_a_reopen_from_another_ci_decides_the_same_with_only_the_looked_up_rows() -> None:
    # The group's incident has db-1's CI; db-2's alert reopens it, and the reopen counts for
    # db-1's problem: db-1's other incident is only found through `more_lookups`.
    rules = RuleSet(
        topology=shipped_topology(),
        correlate=(
            correlate("disk-burst", 'alertname="DiskFull"', group_by=("alertname",)),
            correlate("per-alert", group_by=("alertname", "host")),
        ),
        problems=(problem("shared", by=ProblemBy.CI, count=2, within=3600),),
    )
    checked = Checked(rules)
    checked.step(at(0), firing("a", labels("DiskFull", "db-1")))
    checked.step(at(1800), resolved("a", labels("DiskFull", "db-1"), until=1800))
    checked.step(at(4200), firing("b", labels("HighLoad", "db-1"), since=4200))
    checked.step(at(4500), firing("c", labels("DiskFull", "db-2"), since=4500))
    [found] = checked.problems()
    assert (found.ci, found.incident_count) == ("db-1", 2)


def test_a_resolve_that_beats_a_heartbeat_decides_the_same_with_only_the_looked_up_rows() -> None:
    rules = RuleSet(heartbeats=(heartbeat("backup", 'alertname="BackupDone"'),))
    checked = Checked(rules)
    done = labels("BackupDone", "backup-1")
    checked.step(at(0), resolved("a", done, until=0))
    checked.step(at(400))
    checked.step(at(500), resolved("a", done, since=500, until=500))
    assert checked.only_incident().status is IncidentStatus.RESOLVED


def test_a_source_registered_after_a_reload_decides_the_same_with_only_the_looked_up_rows() -> None:
    checked = Checked(replace(STORY_RULES, inhibit=()))
    checked.step(at(0), firing("src", labels("HostDown", "db-1")))
    checked.rules = STORY_RULES
    checked.step(at(60), firing("src", labels("HostDown", "db-1"), annotations={"n": "2"}))
    checked.step(at(70), firing("dst", labels("DiskFull", "db-1"), since=70))
    checked.step(at(120), firing("src", labels("HostDown", "db-1"), annotations={"n": "3"}))
    assert checked.alert("dst").hold is Hold.INHIBITED
