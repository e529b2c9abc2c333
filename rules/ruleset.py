"""The compiled, immutable rule set that the stages evaluate.

`rules.loader` builds a `RuleSet` from the YAML files (validated by `rules.schema`); the
stages only ever see this compiled form. A reload builds a new `RuleSet` and swaps it whole.
One field per rule-file section, in pipeline order: normalize, dedup, maintenance, inhibit,
correlate (with topology and priority), flapping, heartbeats, problems.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Protocol

from rules.cmdb import Cmdb
from rules.flapping import FlappingPolicy
from rules.index import RuleIndex
from rules.model import GROUP_KEY_LABEL, Severity, Transition
from rules.priority import Level, PriorityPolicy
from rules.schedule import Schedule


class Matcher(Protocol):
    """An Alertmanager-style matcher (`name=value`, `!=`, `=~`, `!~`)."""

    @property
    def name(self) -> str: ...

    def matches(self, labels: Mapping[str, str]) -> bool: ...


class TitleTemplate(Protocol):
    """Renders a title from an alert's labels and annotations; never raises."""

    def render(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str: ...


def all_match(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a rule was written, for `bridge rules check` and the status API."""

    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class LabelDerivation:
    """`normalize` derives one label: the first non-empty `sources` label, rewritten by an
    anchored `regex` into `replacement` (`$1`, `${name}`), as Prometheus relabelling does."""

    target: str
    sources: tuple[str, ...]
    regex: re.Pattern[str]
    replacement: str
    overwrite: bool


@dataclass(frozen=True, slots=True)
class NormalizeRule:
    name: str
    matchers: tuple[Matcher, ...]
    labels: tuple[LabelDerivation, ...] = ()
    # Severity override: the value of `severity_from` (a label, or the bridge severity when
    # empty) looked up in `severity_map`.
    severity_from: str = ""
    severity_map: Mapping[str, Severity] = field(default_factory=dict)
    origin: Origin = Origin()


@dataclass(frozen=True, slots=True)
class DedupRule:
    """Which labels identify an alert (`fingerprint`, replacing the sender's), and what does
    not count as a change when the alert is seen again (`ignore`)."""

    name: str
    matchers: tuple[Matcher, ...]
    fingerprint: tuple[str, ...] = ()
    ignore_annotations: frozenset[str] = frozenset()
    ignore_all_annotations: bool = False
    ignore_severity: bool = False
    origin: Origin = Origin()


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A window from a rule file (`id` None) or created through the API."""

    name: str
    matchers: tuple[Matcher, ...]
    schedule: Schedule
    reason: str = ""
    id: int | None = None
    origin: Origin = Origin()

    @property
    def label(self) -> str:
        return f"maintenance:{self.name}" if self.id is None else f"maintenance:{self.id}"


@dataclass(frozen=True, slots=True)
class InhibitRule:
    name: str
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]
    origin: Origin = Origin()


class ResolveOn(enum.StrEnum):
    ALL = "all"  # the incident resolves when its last alert resolves
    ANY = "any"  # the first alert that resolves resolves the incident
    NEVER = "never"  # only an operator resolves it


@dataclass(frozen=True, slots=True)
class CorrelateRule:
    """One entry of `correlate`: which alerts it takes and how they group into incidents."""

    name: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    title: TitleTemplate | None = None
    window: timedelta | None = None
    min_alerts: int = 1
    resolve_on: ResolveOn = ResolveOn.ALL
    impact: Level | None = None
    cont: bool = False
    origin: Origin = Origin()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all_match(self.matchers, labels)


# Used when no `correlate` rule matches: Alertmanager's group for webhook items,
# alertname + instance for everything else.
DEFAULT_GROUP_RULE = CorrelateRule(
    name="default-group-key", matchers=(), group_by=(GROUP_KEY_LABEL,)
)
DEFAULT_LABEL_RULE = CorrelateRule(name="default", matchers=(), group_by=("alertname", "instance"))


@dataclass(frozen=True, slots=True)
class Topology:
    """`topology`: alerts bind to a CI of the CMDB by the value of the `bind` label."""

    cmdb: Cmdb
    bind: str = "host"
    source_file: str = ""
    root_rules: frozenset[str] = frozenset()
    origin: Origin = Origin()

    def is_root(self, incident_rule: str) -> bool:
        """Whether incidents of this correlate rule take the CIs behind theirs as symptoms."""
        return not self.root_rules or incident_rule in self.root_rules

    def ci_of(self, labels: Mapping[str, str]) -> str | None:
        name = labels.get(self.bind)
        return name if name and self.cmdb.item(name) is not None else None


@dataclass(frozen=True, slots=True)
class HeartbeatRule:
    """An expectation: an event matching `matchers` at least every `every`."""

    name: str
    matchers: tuple[Matcher, ...]
    every: timedelta
    severity: Severity = Severity.CRITICAL
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    origin: Origin = Origin()


class ProblemBy(enum.StrEnum):
    KEY = "key"  # the same incident key recurs
    CI = "ci"  # incidents share a root cause CI


@dataclass(frozen=True, slots=True)
class ProblemRule:
    name: str
    by: ProblemBy
    count: int
    within: timedelta
    rules: frozenset[str] = frozenset()  # correlate rules whose incidents count; empty = all
    origin: Origin = Origin()


class MessageTemplate(Protocol):
    """Renders a notification's title or body from its context; never raises."""

    def render_message(self, context: Mapping[str, object]) -> str: ...


@dataclass(frozen=True, slots=True)
class Target:
    """One entry of `targets`: a channel with its options (checked by the daemon, which owns
    the channels), an optional fallback target for dead letters, and template overrides."""

    name: str
    channel: str
    options: Mapping[str, object] = field(default_factory=dict)
    fallback: str | None = None
    title: MessageTemplate | None = None
    body: MessageTemplate | None = None
    origin: Origin = Origin()


@dataclass(frozen=True, slots=True)
class EscalationStep:
    after: timedelta
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Steps run while an incident stays unacknowledged, `repeat` more rounds, each round
    starting `repeat_after` after the previous round's last step."""

    name: str
    steps: tuple[EscalationStep, ...]
    repeat: int = 0
    repeat_after: timedelta = timedelta(minutes=30)
    origin: Origin = Origin()

    @property
    def round_length(self) -> timedelta:
        return self.steps[-1].after + self.repeat_after


ALL_TRANSITIONS = frozenset(Transition)


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of `routes`."""

    name: str
    matchers: tuple[Matcher, ...]
    priorities: frozenset[int] = frozenset()
    services: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    severities: frozenset[Severity] = frozenset()
    targets: tuple[str, ...] = ()
    escalation: str | None = None
    send: frozenset[Transition] = ALL_TRANSITIONS
    repeat_interval: timedelta | None = None
    cont: bool = False
    origin: Origin = Origin()


@dataclass(frozen=True)
class RuleSet:
    normalize: tuple[NormalizeRule, ...] = ()
    dedup: tuple[DedupRule, ...] = ()
    maintenance: tuple[MaintenanceWindow, ...] = ()
    inhibit: tuple[InhibitRule, ...] = ()
    correlate: tuple[CorrelateRule, ...] = ()
    topology: Topology | None = None
    priority: PriorityPolicy = field(default_factory=PriorityPolicy.default)
    flapping: FlappingPolicy = field(default_factory=FlappingPolicy)
    heartbeats: tuple[HeartbeatRule, ...] = ()
    problems: tuple[ProblemRule, ...] = ()
    targets: tuple[Target, ...] = ()
    escalations: tuple[EscalationPolicy, ...] = ()
    routes: tuple[Route, ...] = ()
    files: tuple[str, ...] = ()
    digest: str = ""

    def target(self, name: str) -> Target | None:
        return self._targets_by_name.get(name)

    def escalation(self, name: str) -> EscalationPolicy | None:
        return self._escalations_by_name.get(name)

    @cached_property
    def _targets_by_name(self) -> dict[str, Target]:
        return {target.name: target for target in self.targets}

    @cached_property
    def _escalations_by_name(self) -> dict[str, EscalationPolicy]:
        return {policy.name: policy for policy in self.escalations}

    def correlate_rule(self, name: str) -> CorrelateRule | None:
        return self._correlate_by_name.get(name)

    @cached_property
    def _correlate_by_name(self) -> dict[str, CorrelateRule]:
        return {rule.name: rule for rule in self.correlate}

    # Indexes by alertname and source (see `rules.index`), built on first use.
    @cached_property
    def correlate_index(self) -> RuleIndex[CorrelateRule]:
        return RuleIndex(self.correlate, lambda rule: rule.matchers)

    @cached_property
    def normalize_index(self) -> RuleIndex[NormalizeRule]:
        return RuleIndex(self.normalize, lambda rule: rule.matchers)

    @cached_property
    def dedup_index(self) -> RuleIndex[DedupRule]:
        return RuleIndex(self.dedup, lambda rule: rule.matchers)

    @cached_property
    def inhibit_source_index(self) -> RuleIndex[InhibitRule]:
        return RuleIndex(self.inhibit, lambda rule: rule.source)

    @cached_property
    def inhibit_target_index(self) -> RuleIndex[InhibitRule]:
        return RuleIndex(self.inhibit, lambda rule: rule.target)

    @cached_property
    def heartbeat_index(self) -> RuleIndex[HeartbeatRule]:
        return RuleIndex(self.heartbeats, lambda rule: rule.matchers)

    @cached_property
    def maintenance_index(self) -> RuleIndex[MaintenanceWindow]:
        return RuleIndex(self.maintenance, lambda rule: rule.matchers)

    def counts(self) -> dict[str, int]:
        """Rules per section, for `/metrics`, the status API and `bridge rules check`."""
        return {
            "normalize": len(self.normalize),
            "dedup": len(self.dedup),
            "maintenance": len(self.maintenance),
            "inhibit": len(self.inhibit),
            "correlate": len(self.correlate),
            "topology": len(self.topology.cmdb.items) if self.topology else 0,
            "heartbeats": len(self.heartbeats),
            "problems": len(self.problems),
            "targets": len(self.targets),
            "escalations": len(self.escalations),
            "routes": len(self.routes),
        }
