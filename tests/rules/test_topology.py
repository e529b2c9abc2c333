"""Decision tables for topology (part of the correlate stage), over the shipped CMDB: an alert
whose CI sits behind a CI with an active incident joins that incident as a symptom, and the
incident names its root cause CI.

The shipped CMDB: fw-1 <- core-switch-1 <- switch-1 <- {hv-1, hv-2, db-1, db-2}; core-switch-1
<- switch-2 <- {hv-3, db-2, backup-1}; hv-1 <- {web-1, tickets-1}; hv-2 <- {app-1, billing-1}
<- billing-db-1; hv-3 <- {web-2, app-2, wiki-1}.
"""

from __future__ import annotations

import pytest

from rules.model import IncidentStatus, JoinReason, TimelineKind
from rules.ruleset import RuleSet
from tests.rules.builders import at, correlate, firing, labels, resolved, shipped_topology
from tests.rules.world import Pipeline

RULES = RuleSet(
    topology=shipped_topology(),
    correlate=(
        correlate("host-down", 'alertname="HostDown"', group_by=("host",)),
        correlate("per-alert", group_by=("alertname", "host")),
    ),
)


def down(host: str) -> dict[str, str]:
    return labels("HostDown", host)


@pytest.mark.parametrize(
    ("down_hosts", "alert_host", "joins"),
    [
        pytest.param(
            ["core-switch-1"],
            "web-1",
            "core-switch-1",
            id="an alert behind a down switch joins the switch's incident",
        ),
        pytest.param(
            ["hv-1"], "web-1", "hv-1", id="an alert of a VM joins its down hypervisor's incident"
        ),
        pytest.param(
            ["switch-1", "core-switch-1"],
            "web-1",
            "core-switch-1",
            id="of two active ancestors the root-most one's incident takes the alert",
        ),
        pytest.param(
            ["switch-1"],
            "db-2",
            "switch-1",
            id="an item with two parents joins through either of them",
        ),
        pytest.param(
            ["switch-2"],
            "web-1",
            None,
            id="an alert not behind the down item opens its own incident",
        ),
        pytest.param(
            ["web-1"],
            "hv-1",
            None,
            id="a parent's alert never joins a child's incident",
        ),
        pytest.param(
            ["core-switch-1"],
            "laptop-7",
            None,
            id="an alert of a host the CMDB does not know opens its own incident",
        ),
    ],
)
def test_symptoms(down_hosts: list[str], alert_host: str, joins: str | None) -> None:
    pipeline = Pipeline(RULES)
    for second, host in enumerate(down_hosts):
        pipeline.send(firing(f"down-{host}", down(host), since=second), at(second))
    result = pipeline.send(firing("a", labels("DiskFull", alert_host), since=30), at(30))
    incident = pipeline.incident_of("a")
    alert = pipeline.alert("a")
    if joins is None:
        assert (incident.ci, incident.rule) == (
            alert_host if alert_host != "laptop-7" else None,
            "per-alert",
        )
        assert alert.reason is JoinReason.OPENED
        return
    assert incident.ci == joins
    assert incident.id == pipeline.incident_of(f"down-{joins}").id
    assert (alert.reason, alert.rule) == (JoinReason.SYMPTOM, "topology")
    assert [(d.stage, d.rule, d.decision) for d in result.decisions] == [
        ("correlate", "topology", "symptom"),
        ("incidents", "host-down", "attached"),
    ]


def test_a_root_cause_incident_names_its_ci_and_lists_its_symptoms() -> None:
    pipeline = Pipeline(RULES)
    pipeline.send(firing("sw", down("core-switch-1")), at(0))
    pipeline.send(firing("w1", labels("HttpDown", "web-1"), since=5), at(5))
    pipeline.send(firing("h1", down("hv-1"), since=6), at(6))
    incident = pipeline.only_incident()
    assert (incident.ci, incident.service, incident.rule) == ("core-switch-1", None, "host-down")
    assert pipeline.members(incident) == ["sw", "w1", "h1"]
    assert (incident.firing_alerts, incident.alert_count) == (3, 3)
    messages = [e.message for e in pipeline.timeline(incident)]
    assert messages[1].startswith("symptom of core-switch-1: HttpDown web-1")
    assert messages[1].endswith("(symptom)")
    # web-1 serves the shop (high criticality): its symptom raises the switch's incident from
    # P3 to P2 (the switch has no criticality: default medium impact; its severity gives the
    # urgency).
    assert messages[2] == "priority P3 -> P2 by HttpDown web-1 (w1)"
    assert incident.priority == 2
    assert pipeline.kinds(incident) == [
        TimelineKind.OPENED,
        TimelineKind.ALERT_ATTACHED,
        TimelineKind.PRIORITY_CHANGED,
        TimelineKind.ALERT_ATTACHED,
    ]


def test_an_incident_of_an_item_names_it_and_its_service() -> None:
    pipeline = Pipeline(RULES)
    pipeline.send(firing("w1", labels("HttpDown", "web-1")), at(0))
    incident = pipeline.only_incident()
    assert (incident.ci, incident.service) == ("web-1", "shop")


def test_the_root_cause_incident_stays_open_while_its_symptoms_fire() -> None:
    pipeline = Pipeline(RULES)
    pipeline.send(firing("sw", down("switch-1")), at(0))
    pipeline.send(firing("w1", labels("HttpDown", "web-1"), since=5), at(5))
    pipeline.send(resolved("sw", down("switch-1"), until=60), at(60))
    assert pipeline.only_incident().status is IncidentStatus.NEW
    pipeline.send(resolved("w1", labels("HttpDown", "web-1"), since=5, until=90), at(90))
    incident = pipeline.only_incident()
    assert (incident.status, incident.resolved_at) == (IncidentStatus.RESOLVED, at(90))


def test_once_the_root_cause_incident_resolved_a_child_alert_opens_its_own() -> None:
    pipeline = Pipeline(RULES)
    pipeline.send(firing("sw", down("switch-1")), at(0))
    pipeline.send(resolved("sw", down("switch-1"), until=60), at(60))
    pipeline.send(firing("w1", labels("HttpDown", "web-1"), since=90), at(90))
    switch, web = pipeline.incidents()
    assert (switch.status, web.ci, web.rule) == (IncidentStatus.RESOLVED, "web-1", "per-alert")


def test_the_same_host_down_from_three_sources_is_one_incident() -> None:
    pipeline = Pipeline(RULES)
    for second, source in enumerate(("prometheus", "zabbix", "nagios")):
        pipeline.send(firing("db", down("db-1"), source=source, since=second), at(second))
    incident = pipeline.only_incident()
    assert (incident.ci, incident.firing_alerts) == ("db-1", 3)


def test_a_symptom_that_was_in_a_continued_incident_before_leaves_it_only_once() -> None:
    # web-1's alert first opens two incidents (continue); after it resolved, it fires again
    # while its hypervisor is down and joins that incident as a symptom. Its second resolve
    # must not count against the per-host incident it is no longer in, where another alert
    # still fires.
    rules = RuleSet(
        topology=shipped_topology(),
        correlate=(
            correlate("host-down", 'alertname="HostDown"', group_by=("host",)),
            correlate("web-team", 'team="web"', group_by=("team",), cont=True),
            correlate("per-host", group_by=("host",)),
        ),
    )
    pipeline = Pipeline(rules)
    slow = labels("SlowPage", "web-1", team="web")
    pipeline.send(firing("a", slow), at(0))
    pipeline.send(firing("b", labels("CertExpiry", "web-1")), at(10))
    per_host = pipeline.incident_of("b")
    pipeline.send(resolved("a", slow, until=20), at(20))
    pipeline.send(firing("hv", down("hv-1"), since=30), at(30))
    pipeline.send(firing("a", slow, since=40), at(40))
    assert pipeline.incident_of("a") == pipeline.incident_of("hv")
    assert pipeline.alert("a").also == ()
    pipeline.send(resolved("a", slow, since=40, until=50), at(50))
    per_host = pipeline.world.incidents[per_host.id]
    assert (per_host.status, per_host.firing_alerts) == (IncidentStatus.NEW, 1)
