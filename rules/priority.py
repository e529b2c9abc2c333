"""ITIL priority: impact x urgency -> P1..P5.

Input: an alert's severity and labels, the criticality the CMDB gives its configuration item
(`rules.cmdb`), and optionally an impact fixed by the correlation rule that took it. Output: a
`Priority`. Driven by the `priority` section of the rule files (`PrioritySpec`, compiled into a
`PriorityPolicy`); a rule set without that section uses `PriorityPolicy.default()`.

Urgency comes from the severity alone. Impact is, in this order of precedence: what the rule
fixes, the CMDB criticality, the impact label of the alert (`impact` unless configured), and the
configured default. The matrix is ITIL's: priority = impact rank + urgency rank - 1, where high
ranks 1 and low ranks 3; the rule file may override single cells.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from rules.match import LABEL_NAME, is_label_name
from rules.model import Severity

DEFAULT_IMPACT_LABEL = "impact"


class Level(enum.StrEnum):
    """Impact, urgency and criticality share one scale."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """1 for high to 3 for low, as in the ITIL matrix."""
        return _LEVEL_RANK[self]


_LEVEL_RANK = {Level.HIGH: 1, Level.MEDIUM: 2, Level.LOW: 3}


class Priority(enum.IntEnum):
    """P1 (most urgent) to P5. The integer is what is stored; the text is what is shown and
    used as a metric label, so `str()` and f-strings both give "P1".."P5"."""

    P1 = 1
    P2 = 2
    P3 = 3
    P4 = 4
    P5 = 5

    def __str__(self) -> str:
        return self.name

    def __format__(self, format_spec: str) -> str:
        # IntEnum would format as the bare integer.
        return format(self.name, format_spec)


DEFAULT_URGENCY: Mapping[Severity, Level] = MappingProxyType(
    {
        Severity.CRITICAL: Level.HIGH,
        Severity.MAJOR: Level.HIGH,
        Severity.MINOR: Level.MEDIUM,
        Severity.WARNING: Level.MEDIUM,
        Severity.INFO: Level.LOW,
    }
)

# (impact, urgency) -> priority.
DEFAULT_MATRIX: Mapping[tuple[Level, Level], Priority] = MappingProxyType(
    {
        (impact, urgency): Priority(impact.rank + urgency.rank - 1)
        for impact in Level
        for urgency in Level
    }
)


def _one_of(kind: type[enum.StrEnum], what: str) -> BeforeValidator:
    """A check that names the bad value even where pydantic would not (a mapping key)."""
    values = [member.value for member in kind]
    choices = ", ".join(values[:-1]) + " or " + values[-1]

    def check(value: object) -> object:
        if isinstance(value, str) and value in values:
            return value
        raise PydanticCustomError(
            "enum",
            "unknown {what} '{value}': use {choices}",
            {"what": what, "value": str(value), "choices": choices},
        )

    return BeforeValidator(check)


LevelName = Annotated[Level, _one_of(Level, "level")]
SeverityName = Annotated[Severity, _one_of(Severity, "severity")]


# Kept apart from `rules.schema` (which will hold this section), so the import runs one way.
def _check_label_name(value: str) -> str:
    if not is_label_name(value):
        raise PydanticCustomError(
            "label_name",
            "invalid label name '{name}': must match {pattern}",
            {"name": value, "pattern": LABEL_NAME.pattern},
        )
    return value


PriorityNumber = Annotated[int, Field(strict=True, ge=1, le=5)]


class PrioritySpec(BaseModel):
    """The `priority` section of a rule file. Every key is optional; `urgency` and `matrix`
    override single entries of the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urgency: dict[SeverityName, LevelName] = Field(default_factory=dict)
    impact_label: Annotated[str, AfterValidator(_check_label_name)] = DEFAULT_IMPACT_LABEL
    default_impact: LevelName = Level.MEDIUM
    # impact -> urgency -> 1..5
    matrix: dict[LevelName, dict[LevelName, PriorityNumber]] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PriorityPolicy:
    """The compiled `priority` section. `urgency` covers every severity and `matrix` every
    (impact, urgency) pair."""

    urgency: Mapping[Severity, Level] = field(default_factory=lambda: DEFAULT_URGENCY)
    impact_label: str = DEFAULT_IMPACT_LABEL
    default_impact: Level = Level.MEDIUM
    matrix: Mapping[tuple[Level, Level], Priority] = field(default_factory=lambda: DEFAULT_MATRIX)

    @classmethod
    def default(cls) -> PriorityPolicy:
        return cls()

    @classmethod
    def from_spec(cls, spec: PrioritySpec) -> PriorityPolicy:
        matrix = dict(DEFAULT_MATRIX)
        for impact, row in spec.matrix.items():
            for urgency, number in row.items():
                matrix[impact, urgency] = Priority(number)
        return cls(
            urgency=MappingProxyType({**DEFAULT_URGENCY, **spec.urgency}),
            impact_label=spec.impact_label,
            default_impact=spec.default_impact,
            matrix=MappingProxyType(matrix),
        )

    def urgency_of(self, severity: Severity) -> Level:
        return self.urgency[severity]

    def impact_of(
        self,
        labels: Mapping[str, str],
        criticality: Level | None,
        rule_impact: Level | None = None,
    ) -> Level:
        """rule_impact > criticality (CMDB) > the impact label > default_impact."""
        if rule_impact is not None:
            return rule_impact
        if criticality is not None:
            return criticality
        return level_from_text(labels.get(self.impact_label, "")) or self.default_impact

    def lookup(self, impact: Level, urgency: Level) -> Priority:
        return self.matrix[impact, urgency]

    def priority(
        self,
        severity: Severity,
        labels: Mapping[str, str],
        criticality: Level | None,
        rule_impact: Level | None = None,
    ) -> Priority:
        impact = self.impact_of(labels, criticality, rule_impact)
        return self.lookup(impact, self.urgency_of(severity))


def level_from_text(text: str) -> Level | None:
    """A label value as a level; case and surrounding blanks are ignored, anything else is
    None (senders write "High" as readily as "high")."""
    try:
        return Level(text.strip().lower())
    except ValueError:
        return None
