"""Decision tables for the inhibit stage, with Alertmanager's semantics: a firing source alert
holds target alerts with equal `equal` labels (a missing label is empty, on both sides), an
alert never inhibits itself, and targets are released when no source fires any more."""

from __future__ import annotations

import pytest

from rules.dedup import DedupOutcome
from rules.model import Hold, IncidentStatus, JoinReason
from rules.ruleset import InhibitRule, RuleSet
from tests.rules.builders import at, correlate, firing, inhibit, labels, resolved
from tests.rules.world import Pipeline

HOST_DOWN = inhibit("host-down", ('alertname="HostDown"',), ('alertname!="HostDown"',), ("host",))


def inhibited_by(pipeline: Pipeline, fingerprint: str) -> str | None:
    alert = pipeline.alert(fingerprint)
    if alert.hold is not Hold.INHIBITED:
        assert alert.incident_id is not None
        return None
    assert alert.incident_id is None
    return alert.held_by


@pytest.mark.parametrize(
    ("rule", "source", "target", "expected"),
    [
        pytest.param(
            HOST_DOWN,
            labels("HostDown", "db-1"),
            labels("DiskFull", "db-1"),
            "inhibit:host-down by prometheus/src",
            id="a firing source inhibits a target with the same equal labels",
        ),
        pytest.param(
            HOST_DOWN,
            labels("HostDown", "db-1"),
            labels("DiskFull", "db-2"),
            None,
            id="a target with another value of an equal label is not inhibited",
        ),
        pytest.param(
            HOST_DOWN,
            labels("HostDown"),
            labels("DiskFull"),
            "inhibit:host-down by prometheus/src",
            id="an equal label missing on both sides counts as equal",
        ),
        pytest.param(
            HOST_DOWN,
            labels("HostDown", host=""),
            labels("DiskFull"),
            "inhibit:host-down by prometheus/src",
            id="an empty equal label equals a missing one",
        ),
        pytest.param(
            HOST_DOWN,
            labels("HostDown"),
            labels("DiskFull", "db-1"),
            None,
            id="an equal label missing on the source side only is not equal",
        ),
        pytest.param(
            inhibit("any", ('alertname="HostDown"',), ('alertname!="HostDown"',)),
            labels("HostDown", "db-1"),
            labels("DiskFull", "db-2"),
            "inhibit:any by prometheus/src",
            id="without equal labels a source inhibits every target",
        ),
        pytest.param(
            inhibit("dc", ('alertname="HostDown"',), ('alertname!="HostDown"',), ("host", "dc")),
            labels("HostDown", "db-1", dc="a"),
            labels("DiskFull", "db-1", dc="b"),
            None,
            id="every equal label must be equal",
        ),
        pytest.param(
            HOST_DOWN,
            labels("HostDown", "db-1"),
            labels("HostDown", "db-1", job="other"),
            None,
            id="an alert the target matchers do not match is not inhibited",
        ),
        pytest.param(
            inhibit("crit", ('severity="critical"',), ('severity="warning"',), ("host",)),
            labels("Down", "db-1", severity="warning"),
            labels("Slow", "db-1", severity="warning"),
            None,
            id="an alert the source matchers do not match inhibits nothing",
        ),
    ],
)
def test_inhibition(
    rule: InhibitRule, source: dict[str, str], target: dict[str, str], expected: str | None
) -> None:
    pipeline = Pipeline(RuleSet(inhibit=(rule,)))
    pipeline.send(firing("src", source), at(0))
    result = pipeline.send(firing("dst", target, since=10), at(10))
    assert inhibited_by(pipeline, "dst") == expected
    assert inhibited_by(pipeline, "src") is None
    inhibits = [(d.rule, d.decision) for d in result.decisions if d.stage == "inhibit"]
    assert inhibits == ([(rule.name, "inhibited")] if expected else [])


SELF = inhibit("critical-mutes-rest", ('severity="critical"',), ('alertname=~".+"',), ("host",))


def test_an_alert_that_matches_both_sides_never_inhibits_itself() -> None:
    pipeline = Pipeline(RuleSet(inhibit=(SELF,)))
    pipeline.send(firing("a", labels("Down", "db-1", severity="critical")), at(0))
    assert inhibited_by(pipeline, "a") is None
    pipeline.send(firing("b", labels("Slow", "db-1", severity="warning")), at(10))
    assert inhibited_by(pipeline, "b") == "inhibit:critical-mutes-rest by prometheus/a"


def test_two_alerts_that_each_match_both_sides_do_not_inhibit_each_other() -> None:
    pipeline = Pipeline(RuleSet(inhibit=(SELF,)))
    pipeline.send(firing("a", labels("Down", "db-1", severity="critical")), at(0))
    pipeline.send(firing("b", labels("Unreachable", "db-1", severity="critical")), at(10))
    assert inhibited_by(pipeline, "a") is None
    assert inhibited_by(pipeline, "b") is None


def inhibited() -> Pipeline:
    pipeline = Pipeline(RuleSet(inhibit=(HOST_DOWN,)))
    pipeline.send(firing("src", labels("HostDown", "db-1")), at(0))
    pipeline.send(firing("dst", labels("DiskFull", "db-1"), since=10), at(10))
    return pipeline


def test_the_source_opens_its_own_incident_and_the_target_waits_outside() -> None:
    pipeline = inhibited()
    incident = pipeline.only_incident()
    assert pipeline.members(incident) == ["src"]
    assert incident.firing_alerts == 1


def test_when_the_source_resolves_the_next_tick_releases_a_still_firing_target() -> None:
    pipeline = inhibited()
    pipeline.send(resolved("src", labels("HostDown", "db-1"), until=60), at(60))
    assert inhibited_by(pipeline, "dst") is not None  # until the tick looks again
    [released] = pipeline.tick(at(61))
    assert released.dedup.outcome is DedupOutcome.RECHECK
    source_incident = pipeline.incident_of("src")
    target_incident = pipeline.incident_of("dst")
    assert source_incident.status is IncidentStatus.RESOLVED
    assert target_incident.status is IncidentStatus.NEW
    assert target_incident.opened_at == at(61)


def test_a_repeat_of_the_target_after_the_source_resolved_releases_it_without_a_tick() -> None:
    pipeline = inhibited()
    pipeline.send(resolved("src", labels("HostDown", "db-1"), until=60), at(60))
    pipeline.send(firing("dst", labels("DiskFull", "db-1"), since=10), at(200))
    assert inhibited_by(pipeline, "dst") is None


def test_a_target_stays_inhibited_while_another_source_still_fires() -> None:
    pipeline = inhibited()
    pipeline.send(firing("src2", labels("HostDown", "db-1", job="zabbix")), at(20))
    pipeline.send(resolved("src", labels("HostDown", "db-1"), until=60), at(60))
    pipeline.tick(at(61))
    assert inhibited_by(pipeline, "dst") == "inhibit:host-down by prometheus/src2"


def test_a_released_target_joins_its_groups_incident_as_released() -> None:
    rules = RuleSet(inhibit=(HOST_DOWN,), correlate=(correlate("disk", 'alertname="DiskFull"'),))
    pipeline = Pipeline(rules)
    pipeline.send(firing("other", labels("DiskFull", "db-2")), at(0))
    pipeline.send(firing("src", labels("HostDown", "db-1")), at(1))
    pipeline.send(firing("dst", labels("DiskFull", "db-1"), since=10), at(10))
    pipeline.send(resolved("src", labels("HostDown", "db-1"), since=1, until=60), at(60))
    pipeline.tick(at(61))
    disk = pipeline.incident_of("other")
    assert pipeline.members(disk) == ["other", "dst"]
    assert pipeline.alert("dst").reason is JoinReason.RELEASED


def test_an_inhibited_target_that_resolves_opens_nothing_later() -> None:
    pipeline = inhibited()
    pipeline.send(resolved("dst", labels("DiskFull", "db-1"), since=10, until=30), at(30))
    pipeline.send(resolved("src", labels("HostDown", "db-1"), until=60), at(60))
    assert pipeline.tick(at(61)) == []
    assert [pipeline.members(i) for i in pipeline.incidents()] == [["src"]]


def test_a_target_already_in_an_incident_stays_there_when_a_source_starts() -> None:
    pipeline = Pipeline(RuleSet(inhibit=(HOST_DOWN,)))
    pipeline.send(firing("dst", labels("DiskFull", "db-1")), at(0))
    pipeline.send(firing("src", labels("HostDown", "db-1"), since=10), at(10))
    pipeline.send(firing("dst", labels("DiskFull", "db-1")), at(120))
    assert inhibited_by(pipeline, "dst") is None


def test_the_inhibitor_index_follows_the_sources_state() -> None:
    pipeline = inhibited()
    key = ("host-down", "db-1")
    assert pipeline.world.inhibitors[key] == {("prometheus", "src")}
    pipeline.send(resolved("src", labels("HostDown", "db-1"), until=60), at(60))
    assert pipeline.world.inhibitors[key] == set()
    pipeline.send(firing("src", labels("HostDown", "db-1"), since=100), at(100))
    assert pipeline.world.inhibitors[key] == {("prometheus", "src")}


def test_a_source_that_resolved_after_a_reload_changed_its_rule_holds_nothing_for_ever() -> None:
    # The source fires under the old rule; a reload narrows the rule's source side so that
    # the source no longer matches it; then the source resolves (and its resolve no longer
    # names the rule). The target must not stay inhibited by a source that is resolved.
    pipeline = inhibited()
    pipeline.rules = RuleSet(
        inhibit=(
            inhibit(
                "host-down",
                ('alertname="HostDown"', 'severity="critical"'),
                ('alertname!="HostDown"',),
                ("host",),
            ),
        )
    )
    pipeline.send(resolved("src", labels("HostDown", "db-1"), until=60), at(60))
    pipeline.tick(at(61))
    assert inhibited_by(pipeline, "dst") is None
    assert pipeline.world.inhibitors[("host-down", "db-1")] == set()  # the stale row is gone
    pipeline.send(firing("new", labels("HighLoad", "db-1"), since=70), at(70))
    assert inhibited_by(pipeline, "new") is None


def test_a_source_firing_since_before_a_reload_added_its_rule_inhibits_once_seen_again() -> None:
    pipeline = Pipeline()
    pipeline.send(firing("src", labels("HostDown", "db-1")), at(0))
    pipeline.rules = RuleSet(inhibit=(HOST_DOWN,))
    pipeline.send(firing("src", labels("HostDown", "db-1"), annotations={"n": "2"}), at(60))
    pipeline.send(firing("dst", labels("DiskFull", "db-1"), since=70), at(70))
    assert inhibited_by(pipeline, "dst") == "inhibit:host-down by prometheus/src"
