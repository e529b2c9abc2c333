"""Validated rule specs (`rules.schema`) -> the compiled rules of `rules.ruleset`.

One function per section; `rules.loader` calls them after a file validated, with the place the
rule was written. Matchers are parsed here once, so that evaluation never parses text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rules.match import matchers_from_mapping, parse_matcher
from rules.model import Severity, Transition
from rules.ruleset import (
    ALL_TRANSITIONS,
    CorrelateRule,
    DedupRule,
    EscalationPolicy,
    EscalationStep,
    HeartbeatRule,
    InhibitRule,
    LabelDerivation,
    MaintenanceWindow,
    Matcher,
    NormalizeRule,
    Origin,
    ProblemBy,
    ProblemRule,
    ResolveOn,
    Route,
    TitleTemplate,
)
from rules.schedule import MaintenanceSpec, compile_schedule
from rules.schema import (
    CorrelateSpec,
    DedupSpec,
    EscalationSpec,
    HeartbeatSpec,
    InhibitSpec,
    NormalizeSpec,
    ProblemSpec,
    RouteSpec,
)


def selector(matchers: list[str], match: dict[str, str]) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(text) for text in matchers) + matchers_from_mapping(match)


def compile_normalize(spec: NormalizeSpec, origin: Origin) -> NormalizeRule:
    labels = tuple(
        LabelDerivation(
            target=target,
            sources=tuple(d.sources),
            regex=re.compile(d.regex),
            replacement=d.replacement,
            overwrite=d.overwrite,
        )
        for target, d in spec.labels.items()
    )
    severity_map: dict[str, Severity] = {}
    severity_from = ""
    if spec.severity is not None:
        severity_map = {key: Severity(value) for key, value in spec.severity.map.items()}
        severity_from = spec.severity.label
    return NormalizeRule(
        name=spec.name,
        matchers=selector(spec.matchers, spec.match),
        labels=labels,
        severity_from=severity_from,
        severity_map=severity_map,
        origin=origin,
    )


def compile_dedup(spec: DedupSpec, origin: Origin) -> DedupRule:
    ignored = set(spec.ignore)
    return DedupRule(
        name=spec.name,
        matchers=selector(spec.matchers, spec.match),
        fingerprint=tuple(spec.fingerprint),
        ignore_annotations=frozenset(
            name.removeprefix("annotations.") for name in ignored if name.startswith("annotations.")
        ),
        ignore_all_annotations="annotations" in ignored,
        ignore_severity="severity" in ignored,
        origin=origin,
    )


def compile_maintenance(spec: MaintenanceSpec, origin: Origin) -> MaintenanceWindow:
    return MaintenanceWindow(
        name=spec.name,
        matchers=selector(spec.matchers, spec.match),
        schedule=compile_schedule(spec),
        reason=spec.reason or "",
        origin=origin,
    )


def compile_inhibit(spec: InhibitSpec, origin: Origin) -> InhibitRule:
    return InhibitRule(
        name=spec.name,
        source=selector(spec.source_matchers, spec.source_match),
        target=selector(spec.target_matchers, spec.target_match),
        equal=tuple(spec.equal),
        origin=origin,
    )


def compile_correlate(
    spec: CorrelateSpec, title: TitleTemplate | None, origin: Origin
) -> CorrelateRule:
    return CorrelateRule(
        name=spec.name,
        matchers=selector(spec.matchers, spec.match),
        group_by=tuple(spec.group_by),
        title=title,
        window=spec.window,
        min_alerts=spec.min_alerts,
        resolve_on=ResolveOn(spec.resolve_on),
        impact=spec.impact,
        cont=spec.cont,
        origin=origin,
    )


def compile_heartbeat(spec: HeartbeatSpec, origin: Origin) -> HeartbeatRule:
    return HeartbeatRule(
        name=spec.name,
        matchers=selector(spec.matchers, spec.match),
        every=spec.every,
        severity=Severity(spec.severity),
        labels=dict(spec.labels),
        summary=spec.summary,
        origin=origin,
    )


def compile_problem(spec: ProblemSpec, origin: Origin) -> ProblemRule:
    return ProblemRule(
        name=spec.name,
        by=ProblemBy(spec.by),
        count=spec.count,
        within=spec.within,
        rules=frozenset(spec.rules),
        origin=origin,
    )


def compile_escalation(spec: EscalationSpec, origin: Origin) -> EscalationPolicy:
    steps = tuple(EscalationStep(step.after, tuple(step.targets)) for step in spec.steps)
    return EscalationPolicy(spec.name, steps, spec.repeat, spec.repeat_after, origin)


def compile_route(spec: RouteSpec, origin: Origin) -> Route:
    send = ALL_TRANSITIONS if spec.send is None else frozenset(Transition(t) for t in spec.send)
    return Route(
        name=spec.name,
        matchers=selector(spec.matchers, spec.match),
        priorities=frozenset(spec.priority),
        services=frozenset(spec.services),
        sources=frozenset(spec.sources),
        severities=frozenset(Severity(s) for s in spec.severity),
        targets=tuple(spec.targets),
        escalation=spec.escalation,
        send=send,
        repeat_interval=spec.repeat_interval,
        cont=spec.cont,
        origin=origin,
    )


COMPILERS: dict[str, Callable[[Any, Origin], Any]] = {
    "normalize": compile_normalize,
    "dedup": compile_dedup,
    "maintenance": compile_maintenance,
    "inhibit": compile_inhibit,
    "heartbeats": compile_heartbeat,
    "problems": compile_problem,
    "escalations": compile_escalation,
    "routes": compile_route,
}
