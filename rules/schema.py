"""The shape of the rule files, validated with pydantic before anything is compiled.

Input: the parsed YAML of one rule file. Output: a `RuleFile` whose top-level keys are the rule
sections; each stage adds its own section as a further optional key (today: `incidents`).
`rules.loader` maps every validation error back to the file and line it came from, and compiles
the validated specs into `rules.ruleset.RuleSet`.

Validators raise `PydanticCustomError` so that messages read without pydantic's prefixes. An
error about one item of a list that is only detectable on the whole list (a duplicate) carries
the item's position as `index` in its context, and the loader points at that item.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from rules.match import LABEL_NAME, MatcherError, is_label_name, parse_matcher

# Rule names become metric label values and appear in logs, so they stay plain.
RULE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")

ERROR_INDEX = "index"


def _check_rule_name(value: str) -> str:
    if RULE_NAME.fullmatch(value) is None:
        raise PydanticCustomError(
            "rule_name",
            "invalid rule name '{name}': use lower-case letters, digits and _ . - "
            "(starting with a letter or digit)",
            {"name": value},
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


class IncidentRuleSpec(BaseModel):
    """One entry of `incidents`: which alerts it takes (`matchers` AND `match`) and how they
    group into incidents (`group_by`, which may use the pseudo-labels of `rules.model`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName
    matchers: list[MatcherText] = Field(default_factory=list)
    match: dict[LabelName, str] = Field(default_factory=dict)
    group_by: GroupBy
    title: str | None = None


class RuleFile(BaseModel):
    """One rule file. Every section is optional, so rules can be split across files freely."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incidents: list[IncidentRuleSpec] = Field(default_factory=list)
