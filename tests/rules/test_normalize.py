"""Decision tables for the normalize stage: derived labels, severities and the CMDB service."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from rules.model import Severity
from rules.normalize import normalize
from rules.ruleset import NormalizeRule, RuleSet
from tests.rules.builders import at, derive, firing, matchers, shipped_rules, shipped_topology
from tests.rules.world import Pipeline

W, C = Severity.WARNING, Severity.CRITICAL


def rule(name: str, *texts: str, **options: object) -> NormalizeRule:
    return NormalizeRule(name, matchers(*texts), **options)  # type: ignore[arg-type]


HOST = rule("host", labels=(derive("host", "instance", regex="([^:]+):\\d+"),))


@pytest.mark.parametrize(
    ("rules", "given", "expected"),
    [
        pytest.param(
            (HOST,),
            {"instance": "db-1:9100"},
            {"instance": "db-1:9100", "host": "db-1"},
            id="a regex group rewrites the source label into the target",
        ),
        pytest.param(
            (HOST,),
            {"instance": "db-1"},
            {"instance": "db-1"},
            id="a value the anchored regex does not match derives nothing",
        ),
        pytest.param(
            (HOST,),
            {"instance": "db-1:9100", "host": "db-0"},
            {"instance": "db-1:9100", "host": "db-0"},
            id="an existing label is kept without overwrite",
        ),
        pytest.param(
            (HOST,),
            {"instance": "db-1:9100", "host": ""},
            {"instance": "db-1:9100", "host": "db-1"},
            id="an empty label counts as missing",
        ),
        pytest.param(
            (rule("h", labels=(derive("host", "instance", regex="([^:]+):.*", overwrite=True),)),),
            {"instance": "db-1:9100", "host": "db-0"},
            {"instance": "db-1:9100", "host": "db-1"},
            id="overwrite replaces an existing label",
        ),
        pytest.param(
            (rule("h", labels=(derive("host", "host_host", "hostname"),)),),
            {"host_host": "", "hostname": "web-2"},
            {"host_host": "", "hostname": "web-2", "host": "web-2"},
            id="the first non-empty source label is used",
        ),
        pytest.param(
            (rule("h", labels=(derive("host", "host_host"),)),),
            {"alertname": "X"},
            {"alertname": "X"},
            id="no source label derives nothing",
        ),
        pytest.param(
            (
                rule(
                    "h",
                    labels=(
                        derive(
                            "where",
                            "instance",
                            regex="(?P<host>[^:]+):(?P<port>\\d+)",
                            replacement="${host} port $2",
                        ),
                    ),
                ),
            ),
            {"instance": "db-1:9100"},
            {"instance": "db-1:9100", "where": "db-1 port 9100"},
            id="the replacement takes numbered and named groups",
        ),
        pytest.param(
            (rule("h", labels=(derive("host", "instance", regex="(x)?.*", replacement="$1"),)),),
            {"instance": "db-1"},
            {"instance": "db-1"},
            id="a replacement that comes out empty derives nothing",
        ),
        pytest.param(
            (
                HOST,
                rule("dc", 'host=~"db-.*"', labels=(derive("dc", "host", regex="db-(\\d)"),)),
            ),
            {"instance": "db-1:9100"},
            {"instance": "db-1:9100", "host": "db-1", "dc": "1"},
            id="a later rule matches and uses the labels an earlier rule derived",
        ),
        pytest.param(
            (rule("zabbix", '__source__="zabbix"', labels=(derive("host", "host_host"),)),),
            {"host_host": "db-1"},
            {"host_host": "db-1"},
            id="a rule whose matchers do not match the alert does nothing",
        ),
    ],
)
def test_label_derivations(
    rules: tuple[NormalizeRule, ...], given: dict[str, str], expected: dict[str, str]
) -> None:
    normalized, _ = normalize(RuleSet(normalize=rules), firing(labels=given))
    assert dict(normalized.labels) == expected


PRIORITY_MAP = {"P1": C, "P2": Severity.MAJOR, "P5": Severity.INFO}


@pytest.mark.parametrize(
    ("rules", "given", "severity", "expected"),
    [
        pytest.param(
            (rule("p", severity_from="priority", severity_map=PRIORITY_MAP),),
            {"priority": "P1"},
            W,
            C,
            id="a label's value maps to the bridge severity",
        ),
        pytest.param(
            (rule("p", severity_from="priority", severity_map=PRIORITY_MAP),),
            {"priority": "P3"},
            W,
            W,
            id="an unmapped value keeps the connector's severity",
        ),
        pytest.param(
            (rule("p", severity_from="priority", severity_map=PRIORITY_MAP),),
            {},
            W,
            W,
            id="a missing label keeps the connector's severity",
        ),
        pytest.param(
            (rule("tone-down", severity_map={"critical": Severity.MAJOR}),),
            {},
            C,
            Severity.MAJOR,
            id="without a label the connector's severity itself is mapped",
        ),
        pytest.param(
            (
                rule("tone-down", severity_map={"critical": Severity.MAJOR}),
                rule("then", '__severity__="major"', severity_map={"major": Severity.MINOR}),
            ),
            {},
            C,
            Severity.MINOR,
            id="a later rule matches the severity an earlier rule gave as __severity__",
        ),
    ],
)
def test_severity_mapping(
    rules: tuple[NormalizeRule, ...],
    given: dict[str, str],
    severity: Severity,
    expected: Severity,
) -> None:
    normalized, _ = normalize(RuleSet(normalize=rules), firing(labels=given, severity=severity))
    assert normalized.severity is expected


@pytest.mark.parametrize(
    ("given", "service"),
    [
        pytest.param({"host": "web-1"}, "shop", id="a host's CMDB item gives its service"),
        pytest.param(
            {"host": "billing-db-1"},
            "billing",
            id="an item without a service inherits its nearest parent's",
        ),
        pytest.param({"host": "core-switch-1"}, None, id="an item that serves none gives none"),
        pytest.param({"host": "laptop-7"}, None, id="a host not in the CMDB gives none"),
        pytest.param(
            {"host": "web-1", "service": "search"},
            "search",
            id="a service label the alert already has is kept",
        ),
        pytest.param(
            {"instance": "web-1:9100"},
            "shop",
            id="the service follows a host that a normalize rule derived",
        ),
    ],
)
def test_service_from_the_cmdb(given: dict[str, str], service: str | None) -> None:
    rules = RuleSet(normalize=(HOST,), topology=shipped_topology())
    normalized, _ = normalize(rules, firing(labels=given))
    assert normalized.labels.get("service") == service


@pytest.mark.parametrize(
    ("source", "given", "severity", "labels", "expected_severity"),
    [
        pytest.param(
            "zabbix",
            {"alertname": "Down", "host": "DB one", "host_host": "db-1"},
            W,
            {"host": "db-1", "service": "shop"},
            W,
            id="shipped: Zabbix alerts use the technical host name",
        ),
        pytest.param(
            "nagios",
            {"alertname": "Down", "host": "db-1.example.com"},
            W,
            {"host": "db-1", "service": "shop"},
            W,
            id="shipped: fully qualified host names become the CMDB's short names",
        ),
        pytest.param(
            "alertmanager",
            {"alertname": "Slow", "priority": "P2"},
            W,
            {"priority": "P2"},
            Severity.MAJOR,
            id="shipped: a Prometheus priority label sets the severity",
        ),
        pytest.param(
            "zabbix",
            {"alertname": "Slow", "priority": "P2"},
            W,
            {"priority": "P2"},
            W,
            id="shipped: a Zabbix priority label is not a Prometheus one",
        ),
    ],
)
def test_shipped_normalize_rules(
    source: str,
    given: dict[str, str],
    severity: Severity,
    labels: Mapping[str, str],
    expected_severity: Severity,
) -> None:
    normalized, _ = normalize(
        shipped_rules(), firing(labels=given, source=source, severity=severity)
    )
    assert {name: normalized.labels.get(name) for name in labels} == labels
    assert normalized.severity is expected_severity


def test_the_rules_that_applied_are_named_in_the_decisions() -> None:
    rules = RuleSet(normalize=(HOST, rule("zabbix", '__source__="zabbix"'), rule("all")))
    pipeline = Pipeline(rules)
    result = pipeline.send(firing(labels={"alertname": "Down", "instance": "db-1:9100"}), at(0))
    assert [(d.rule, d.decision) for d in result.decisions if d.stage == "normalize"] == [
        ("host", "applied"),
        ("all", "applied"),
    ]
    assert pipeline.alert("fp1").labels["host"] == "db-1"  # the alert is stored normalized


def test_an_event_no_rule_changes_is_passed_on_as_it_is() -> None:
    item = firing(labels={"alertname": "Down"})
    assert normalize(RuleSet(normalize=(HOST,)), item) == (item, ("host",))
    assert normalize(RuleSet(), item) == (item, ())
