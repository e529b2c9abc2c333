"""The compiled, immutable rule set that the stages evaluate.

`rules.loader` builds a `RuleSet` from the YAML files (validated by `rules.schema`); the
stages only ever see this compiled form. A reload builds a new `RuleSet` and swaps it whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from rules.model import GROUP_KEY_LABEL


class Matcher(Protocol):
    """An Alertmanager-style matcher (`name=value`, `!=`, `=~`, `!~`)."""

    @property
    def name(self) -> str: ...

    def matches(self, labels: Mapping[str, str]) -> bool: ...


class TitleTemplate(Protocol):
    """Renders an incident title from the first alert's labels and annotations."""

    def render(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str: ...


@dataclass(frozen=True, slots=True)
class IncidentRule:
    """One entry of the `incidents` section: which alerts it takes and how they group."""

    name: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    title: TitleTemplate | None = None
    source_file: str = ""
    source_line: int = 0

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


# Used when no rule of the `incidents` section matches: Alertmanager's group for webhook items,
# alertname + instance for everything else.
DEFAULT_GROUP_RULE = IncidentRule(
    name="default-group-key", matchers=(), group_by=(GROUP_KEY_LABEL,)
)
DEFAULT_LABEL_RULE = IncidentRule(name="default", matchers=(), group_by=("alertname", "instance"))


@dataclass(frozen=True, slots=True)
class RuleSet:
    incident_rules: tuple[IncidentRule, ...] = ()
    files: tuple[str, ...] = ()
    digest: str = ""
