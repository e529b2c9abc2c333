"""The shape of the rule files, validated with pydantic before anything is compiled.

Input: the parsed YAML of one rule file. Output: a `RuleFile` whose top-level keys are the rule
sections, one per stage: normalize, dedup, maintenance, inhibit, correlate, topology, priority,
flapping, heartbeats, problems, and the notification sections targets, escalations, routes
(every section optional; lists from several files concatenate, the single-mapping sections may
appear in one file only).
`rules.loader` maps every validation error back to the file and line it came from, and compiles
the validated specs into `rules.ruleset.RuleSet`.

Validators raise `PydanticCustomError` so that messages read without pydantic's prefixes. An
error about one item of a list that is only detectable on the whole list (a duplicate) carries
the item's position as `index` in its context, and the loader points at that item.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from rules.duration import parse_duration
from rules.flapping import FlappingSpec
from rules.match import LABEL_NAME, MatcherError, is_label_name, parse_matcher
from rules.priority import LevelName, PrioritySpec, SeverityName
from rules.schedule import MaintenanceSpec
from rules.yamlsource import ERROR_INDEX

# Rule names become metric label values and appear in logs, so they stay plain.
# At most 100 characters: names are stored (with prefixes such as `maintenance:`) in columns of
# 200, which PostgreSQL enforces.
RULE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


def _check_rule_name(value: str) -> str:
    if RULE_NAME.fullmatch(value) is None:
        raise PydanticCustomError(
            "rule_name",
            "invalid rule name '{name}': use lower-case letters, digits and _ . - "
            "(starting with a letter or digit, at most 100 characters)",
            {"name": value[:120]},
        )
    return value


def _check_label_name(value: str) -> str:
    if not is_label_name(value):
        raise PydanticCustomError(
            "label_name",
            "invalid label name '{name}': must match {pattern}",
            {"name": value, "pattern": LABEL_NAME.pattern},
        )
    return value


def _check_matcher(value: str) -> str:
    try:
        parse_matcher(value)
    except MatcherError as exc:
        raise PydanticCustomError("matcher", "{reason}", {"reason": str(exc)}) from None
    return value


def _check_group_by(values: list[str]) -> list[str]:
    if not values:
        raise PydanticCustomError("group_by_empty", "group_by must name at least one label")
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise PydanticCustomError(
                "duplicate_label",
                "label '{label}' is listed twice",
                {"label": value, ERROR_INDEX: index},
            )
        seen.add(value)
    return values


RuleName = Annotated[str, AfterValidator(_check_rule_name)]
LabelName = Annotated[str, AfterValidator(_check_label_name)]
MatcherText = Annotated[str, AfterValidator(_check_matcher)]
GroupBy = Annotated[list[LabelName], AfterValidator(_check_group_by)]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise PydanticCustomError(
            "regex", "invalid regex: {reason}", {"reason": str(exc)}
        ) from None
    return value


def _duration(value: object) -> timedelta:
    try:
        found = parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
    if found <= timedelta(0):
        raise PydanticCustomError("duration", "must be longer than zero")
    return found


def _check_ignored(value: str) -> str:
    # A typo here would silently make every re-send `changed` again.
    name = value.removeprefix("annotations.")
    if value in ("severity", "annotations") or (name != value and name):
        return value
    raise PydanticCustomError(
        "ignore",
        "cannot ignore '{field}': use severity, annotations or annotations.<name>",
        {"field": value},
    )


Regex = Annotated[str, AfterValidator(_check_regex)]
Ignored = Annotated[str, AfterValidator(_check_ignored)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Selector(BaseModel):
    """Which alerts a rule takes: all `matchers` AND every `match` equality."""

    model_config = _STRICT

    matchers: list[MatcherText] = Field(default_factory=list)
    match: dict[LabelName, str] = Field(default_factory=dict)


class LabelDerivationSpec(BaseModel):
    model_config = _STRICT

    # `from` is a Python keyword: the YAML key is `from`, the attribute `sources`.
    sources: list[LabelName] = Field(alias="from", min_length=1)
    regex: Regex = "(.*)"
    replacement: str = "$1"
    overwrite: bool = False


class SeverityMapSpec(BaseModel):
    model_config = _STRICT

    # A label whose value is looked up in `map`; empty: the severity the connector gave.
    label: LabelName | Literal[""] = ""
    map: dict[str, SeverityName]


class NormalizeSpec(Selector):
    """One entry of `normalize`: derived labels and a severity mapping for matching alerts."""

    name: RuleName
    labels: dict[LabelName, LabelDerivationSpec] = Field(default_factory=dict)
    severity: SeverityMapSpec | None = None


class DedupSpec(Selector):
    """One entry of `dedup`: the labels that identify an alert, the fields that are no change."""

    name: RuleName
    fingerprint: list[LabelName] = Field(default_factory=list)
    ignore: list[Ignored] = Field(default_factory=list)


class InhibitSpec(BaseModel):
    """One entry of `inhibit`, with Alertmanager's keys."""

    model_config = _STRICT

    name: RuleName
    source_matchers: list[MatcherText] = Field(default_factory=list)
    source_match: dict[LabelName, str] = Field(default_factory=dict)
    target_matchers: list[MatcherText] = Field(default_factory=list)
    target_match: dict[LabelName, str] = Field(default_factory=dict)
    equal: list[LabelName] = Field(default_factory=list)


class CorrelateSpec(Selector):
    """One entry of `correlate`: which alerts it takes and how they group into incidents."""

    name: RuleName
    group_by: GroupBy
    title: str | None = None
    window: Duration | None = None
    min_alerts: int = Field(default=1, ge=1, le=10_000, strict=True)
    resolve_on: Literal["all", "any", "never"] = "all"
    impact: LevelName | None = None
    # `continue` is a Python keyword: the YAML key is `continue`, the attribute `cont`.
    cont: bool = Field(default=False, alias="continue")


class TopologySpec(BaseModel):
    model_config = _STRICT

    cmdb: str  # path of the CMDB file, relative to the rule file
    bind: LabelName = "host"
    # The correlate rules whose incidents mean "this CI is down" and take the alerts of the
    # CIs behind it as symptoms; empty: any incident on the CI does.
    root_rules: list[RuleName] = Field(default_factory=list)


class HeartbeatSpec(Selector):
    name: RuleName
    every: Duration
    severity: SeverityName = Field(default="critical", validate_default=True)
    labels: dict[LabelName, str] = Field(default_factory=dict)
    summary: str = ""


class ProblemSpec(BaseModel):
    model_config = _STRICT

    name: RuleName
    by: Literal["key", "ci"] = "key"
    count: int = Field(ge=2, le=1000, strict=True)
    within: Duration
    rules: list[RuleName] = Field(default_factory=list)


TransitionName = Literal[
    "opened", "reopened", "acknowledged", "escalated", "resolved", "closed", "sla_breach", "repeat"
]
ChannelName = Literal["webhook", "slack", "teams", "email", "pagerduty", "servicenow", "jira"]


def _delay(value: object) -> timedelta:
    try:
        found = parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None
    if found < timedelta(0):
        raise PydanticCustomError("duration", "must not be negative")
    return found


Delay = Annotated[timedelta, BeforeValidator(_delay)]


class TargetSpec(BaseModel):
    """One entry of `targets`: where notifications go. `options` are the channel's own
    settings (validated by the daemon against the channel; `${NAME}` reads the environment);
    `title` and `body` override the message templates for this target."""

    model_config = _STRICT

    name: RuleName
    channel: ChannelName
    options: dict[str, object] = Field(default_factory=dict)
    fallback: RuleName | None = None
    title: str | None = None
    body: str | None = None


class EscalationStepSpec(BaseModel):
    model_config = _STRICT

    after: Delay  # since the incident opened (or the round began), if still not acknowledged
    targets: list[RuleName] = Field(min_length=1)


def _check_steps(steps: list[EscalationStepSpec]) -> list[EscalationStepSpec]:
    for index in range(1, len(steps)):
        if steps[index].after < steps[index - 1].after:
            raise PydanticCustomError(
                "step_order",
                "steps must be in order of `after`: this step comes before the one above it",
                {ERROR_INDEX: index},
            )
    return steps


class EscalationSpec(BaseModel):
    """One entry of `escalations`: ordered steps, run while the incident is unacknowledged."""

    model_config = _STRICT

    name: RuleName
    steps: Annotated[list[EscalationStepSpec], AfterValidator(_check_steps)] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=100, strict=True)
    repeat_after: Duration = timedelta(minutes=30)


class RouteSpec(Selector):
    """One entry of `routes`: which incidents (labels of the alert that opened it, priority,
    service, source, severity) go to which targets, with what escalation and which transitions."""

    name: RuleName
    priority: list[Annotated[int, Field(ge=1, le=5, strict=True)]] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    severity: list[SeverityName] = Field(default_factory=list)
    targets: list[RuleName] = Field(default_factory=list)
    escalation: RuleName | None = None
    send: list[TransitionName] | None = None
    repeat_interval: Duration | None = None
    cont: bool = Field(default=False, alias="continue")


class RuleFile(BaseModel):
    """One rule file. Every section is optional, so rules can be split across files freely."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    normalize: list[NormalizeSpec] = Field(default_factory=list)
    dedup: list[DedupSpec] = Field(default_factory=list)
    maintenance: list[MaintenanceSpec] = Field(default_factory=list)
    inhibit: list[InhibitSpec] = Field(default_factory=list)
    correlate: list[CorrelateSpec] = Field(default_factory=list)
    topology: TopologySpec | None = None
    priority: PrioritySpec | None = None
    flapping: FlappingSpec | None = None
    heartbeats: list[HeartbeatSpec] = Field(default_factory=list)
    problems: list[ProblemSpec] = Field(default_factory=list)
    targets: list[TargetSpec] = Field(default_factory=list)
    escalations: list[EscalationSpec] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)
