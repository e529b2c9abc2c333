"""`rules.priority`: the ITIL matrix, where impact and urgency come from, the `priority`
section's validation, and the priority that incidents get through the pipeline."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from rules.model import Severity
from rules.priority import (
    DEFAULT_MATRIX,
    Level,
    Priority,
    PriorityPolicy,
    PrioritySpec,
    level_from_text,
)
from rules.ruleset import CorrelateRule, RuleSet
from rules.yamlsource import describe_error, parse_yaml
from tests.rules.builders import at, correlate, firing, labels, shipped_topology
from tests.rules.world import Pipeline

H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW
DEFAULT = PriorityPolicy.default()


@pytest.mark.parametrize(
    ("impact", "urgency", "expected"),
    [
        (H, H, Priority.P1),
        (H, M, Priority.P2),
        (M, H, Priority.P2),
        (H, L, Priority.P3),
        (M, M, Priority.P3),
        (L, H, Priority.P3),
        (M, L, Priority.P4),
        (L, M, Priority.P4),
        (L, L, Priority.P5),
    ],
)
def test_default_matrix(impact: Level, urgency: Level, expected: Priority) -> None:
    assert DEFAULT.lookup(impact, urgency) is expected


def test_default_matrix_covers_every_pair() -> None:
    assert len(DEFAULT_MATRIX) == 9


@pytest.mark.parametrize(
    ("severity", "urgency"),
    [
        (Severity.CRITICAL, H),
        (Severity.MAJOR, H),
        (Severity.MINOR, M),
        (Severity.WARNING, M),
        (Severity.INFO, L),
    ],
)
def test_default_urgency(severity: Severity, urgency: Level) -> None:
    assert DEFAULT.urgency_of(severity) is urgency


@pytest.mark.parametrize(
    ("rule_impact", "criticality", "labels", "expected"),
    [
        (None, None, {}, M),
        (None, None, {"impact": "high"}, H),
        (None, None, {"impact": "LOW"}, L),
        (None, None, {"impact": " Medium "}, M),
        (None, None, {"impact": "critical"}, M),
        (None, None, {"impact": ""}, M),
        (None, None, {"priority": "high"}, M),
        (None, L, {"impact": "high"}, L),
        (None, H, {}, H),
        (H, L, {"impact": "low"}, H),
        (L, H, {"impact": "high"}, L),
    ],
)
def test_impact_precedence(
    rule_impact: Level | None,
    criticality: Level | None,
    labels: Mapping[str, str],
    expected: Level,
) -> None:
    """rule_impact > criticality (CMDB) > the impact label > default_impact."""
    assert DEFAULT.impact_of(labels, criticality, rule_impact) is expected


@pytest.mark.parametrize(
    ("severity", "labels", "criticality", "rule_impact", "expected"),
    [
        (Severity.CRITICAL, {}, H, None, Priority.P1),
        (Severity.CRITICAL, {}, None, None, Priority.P2),
        (Severity.MAJOR, {"impact": "low"}, None, None, Priority.P3),
        (Severity.WARNING, {}, L, None, Priority.P4),
        (Severity.INFO, {}, L, None, Priority.P5),
        (Severity.INFO, {}, L, H, Priority.P3),
        (Severity.MINOR, {"impact": "high"}, None, None, Priority.P2),
    ],
)
def test_priority(
    severity: Severity,
    labels: Mapping[str, str],
    criticality: Level | None,
    rule_impact: Level | None,
    expected: Priority,
) -> None:
    assert DEFAULT.priority(severity, labels, criticality, rule_impact) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("high", H), ("High", H), ("  low\n", L), ("MEDIUM", M), ("med", None), ("", None)],
)
def test_level_from_text(text: str, expected: Level | None) -> None:
    assert level_from_text(text) is expected


def test_priority_renders_as_p_number_and_orders_by_urgency() -> None:
    assert str(Priority.P1) == "P1"
    assert f"{Priority.P5}" == "P5"
    assert f"{Priority.P3:>4}" == "  P3"
    assert int(Priority.P2) == 2
    assert min(Priority.P3, Priority.P1, Priority.P4) is Priority.P1


def test_empty_spec_compiles_to_the_default_policy() -> None:
    assert PriorityPolicy.from_spec(PrioritySpec()) == DEFAULT


def test_spec_overrides_single_entries() -> None:
    spec = PrioritySpec.model_validate(
        {
            "urgency": {"warning": "low"},
            "impact_label": "business_impact",
            "default_impact": "low",
            "matrix": {"high": {"low": 2}, "low": {"low": 4}},
        }
    )
    policy = PriorityPolicy.from_spec(spec)
    assert policy.urgency_of(Severity.WARNING) is L
    assert policy.urgency_of(Severity.MINOR) is M
    assert policy.lookup(H, L) is Priority.P2
    assert policy.lookup(L, L) is Priority.P4
    assert policy.lookup(H, H) is Priority.P1
    assert policy.impact_of({"impact": "high"}, None) is L
    assert policy.impact_of({"business_impact": "high"}, None) is H
    assert policy.priority(Severity.WARNING, {}, None) is Priority.P4


class _RuleFile(BaseModel):
    """Stands in for the rule file that holds the section."""

    model_config = ConfigDict(extra="forbid")

    priority: PrioritySpec


def section_errors(text: str) -> list[str]:
    parsed = parse_yaml("r.yaml", text.encode())
    assert not isinstance(parsed, str)
    source, document = parsed
    with pytest.raises(ValidationError) as info:
        _RuleFile.model_validate(document)
    return [describe_error(source, detail) for detail in info.value.errors()]


LEVELS = "use high, medium or low"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "  urgency: {critical: urgent}",
            f"r.yaml:2: priority.urgency.critical: unknown level 'urgent': {LEVELS}",
        ),
        (
            "  urgency:\n    fatal: high",
            "r.yaml:3: priority.urgency: unknown severity 'fatal': "
            "use critical, major, minor, warning or info",
        ),
        ("  urgency: [critical]", "r.yaml:2: priority.urgency: Input should be a valid dictionary"),
        (
            "  default_impact: none",
            f"r.yaml:2: priority.default_impact: unknown level 'none': {LEVELS}",
        ),
        (
            "  impact_label: business-impact",
            "r.yaml:2: priority.impact_label: invalid label name 'business-impact': "
            "must match [a-zA-Z_][a-zA-Z0-9_]*",
        ),
        (
            "  impact_label: 5",
            "r.yaml:2: priority.impact_label: "
            "expected a string (quote numbers and booleans in YAML)",
        ),
        (
            "  matrix:\n    high: {low: 6}",
            "r.yaml:3: priority.matrix.high.low: Input should be less than or equal to 5",
        ),
        (
            "  matrix:\n    high: {low: '2'}",
            "r.yaml:3: priority.matrix.high.low: Input should be a valid integer",
        ),
        (
            "  matrix:\n    high:\n      high: true",
            "r.yaml:4: priority.matrix.high.high: Input should be a valid integer",
        ),
        (
            "  matrix:\n    top: {low: 1}",
            f"r.yaml:3: priority.matrix: unknown level 'top': {LEVELS}",
        ),
        ("  weights: {}", "r.yaml:2: priority: unknown key 'weights'"),
    ],
)
def test_section_errors_point_at_the_line(section: str, expected: str) -> None:
    assert section_errors(f"priority:\n{section}\n") == [expected]


# Through the pipeline: the priority an incident opens with, and how a joining alert raises it.

CATCH_ALL = correlate("per-alert", group_by=("alertname", "host"))


@pytest.mark.parametrize(
    ("rule", "alert_labels", "severity", "expected"),
    [
        pytest.param(
            CATCH_ALL,
            labels("Down", "web-1"),
            Severity.CRITICAL,
            Priority.P1,
            id="a critical alert of a host serving a high criticality service is P1",
        ),
        pytest.param(
            CATCH_ALL,
            labels("Down", "wiki-1"),
            Severity.CRITICAL,
            Priority.P3,
            id="a critical alert of a low criticality service is P3",
        ),
        pytest.param(
            CATCH_ALL,
            labels("Down", "backup-1"),
            Severity.CRITICAL,
            Priority.P2,
            id="an item's own criticality overrides its service's",
        ),
        pytest.param(
            CATCH_ALL,
            labels("Down", "billing-db-1"),
            Severity.CRITICAL,
            Priority.P2,
            id="an item without a service takes the criticality of the one it inherits",
        ),
        pytest.param(
            CATCH_ALL,
            labels("Down", "laptop-7", impact="High"),
            Severity.CRITICAL,
            Priority.P1,
            id="without a CMDB item the impact label gives the impact",
        ),
        pytest.param(
            CATCH_ALL,
            labels("Down", "web-1", impact="low"),
            Severity.CRITICAL,
            Priority.P1,
            id="the CMDB criticality wins over the impact label",
        ),
        pytest.param(
            CATCH_ALL,
            labels("Down", "laptop-7"),
            Severity.CRITICAL,
            Priority.P2,
            id="without CMDB item or label the default impact is medium",
        ),
        pytest.param(
            CATCH_ALL,
            labels("Down", "laptop-7"),
            Severity.INFO,
            Priority.P4,
            id="an info alert has low urgency",
        ),
        pytest.param(
            correlate("noise", group_by=("alertname",), impact=L),
            labels("Down", "web-1"),
            Severity.CRITICAL,
            Priority.P3,
            id="a correlate rule's impact wins over the CMDB criticality",
        ),
    ],
)
def test_incident_priority(
    rule: CorrelateRule, alert_labels: dict[str, str], severity: Severity, expected: Priority
) -> None:
    pipeline = Pipeline(RuleSet(correlate=(rule,), topology=shipped_topology()))
    pipeline.send(firing("a", alert_labels, severity=severity), at(0))
    assert pipeline.only_incident().priority == expected


def test_a_more_urgent_joining_alert_raises_the_priority_and_a_less_urgent_never_lowers_it() -> (
    None
):
    pipeline = Pipeline(RuleSet(correlate=(correlate("disk", group_by=("alertname",)),)))
    pipeline.send(firing("a", labels("DiskFull", "x"), severity=Severity.WARNING), at(0))
    assert pipeline.only_incident().priority == Priority.P3
    raised = pipeline.send(firing("b", labels("DiskFull", "y"), severity=Severity.CRITICAL), at(5))
    assert pipeline.only_incident().priority == Priority.P2
    [entry] = [e for e in raised.timeline if e.kind == "priority_changed"]
    assert entry.message.startswith("priority P3 -> P2 by DiskFull y")
    pipeline.send(firing("c", labels("DiskFull", "z"), severity=Severity.INFO), at(10))
    assert pipeline.only_incident().priority == Priority.P2


def test_a_configured_matrix_cell_is_what_incidents_get() -> None:
    policy = PriorityPolicy.from_spec(
        PrioritySpec.model_validate({"matrix": {"medium": {"high": 1}}})
    )
    pipeline = Pipeline(RuleSet(priority=policy))
    pipeline.send(firing("a", labels("Down", "x"), severity=Severity.CRITICAL), at(0))
    assert pipeline.only_incident().priority == Priority.P1
