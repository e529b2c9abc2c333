"""Small builders for domain values and compiled rules in the pure-stage tests."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rules.cmdb import load_cmdb
from rules.loader import load_rules
from rules.match import parse_matcher
from rules.model import AlertStatus, Event, EventKind, Severity
from rules.ruleset import (
    CorrelateRule,
    HeartbeatRule,
    InhibitRule,
    LabelDerivation,
    MaintenanceWindow,
    Matcher,
    ProblemBy,
    ProblemRule,
    RuleSet,
    Topology,
)
from rules.schedule import OneOffSchedule

T0 = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)
CONFIG = Path(__file__).resolve().parents[2] / "config"
SHIPPED_RULES = CONFIG / "rules"
SHIPPED_CMDB = CONFIG / "cmdb.yaml"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def minutes(value: float) -> float:
    """Seconds in `value` minutes, for `at(...)` in timelines."""
    return value * 60


def event(
    fingerprint: str = "fp1",
    status: AlertStatus = AlertStatus.FIRING,
    *,
    source: str = "alertmanager",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    severity: Severity = Severity.WARNING,
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    expires_at: datetime | None = None,
    group_key: str | None = '{}:{alertname="DiskFull"}',
    digest: str | None = None,
    **extra: Any,
) -> Event:
    labels = labels if labels is not None else {"alertname": "DiskFull", "instance": "db-01:9100"}
    annotations = annotations if annotations is not None else {"summary": "disk full"}
    if digest is None:
        parts = (status, severity, sorted(labels.items()), sorted(annotations.items()))
        digest = repr((*parts, starts_at, ends_at, expires_at))
    return Event(
        source=source,
        fingerprint=fingerprint,
        status=status,
        labels=labels,
        annotations=annotations,
        severity=severity,
        starts_at=starts_at,
        ends_at=ends_at,
        expires_at=expires_at,
        generator_url="",
        group_key=group_key,
        receiver="bridge",
        digest=digest,
        **extra,
    )


def firing(
    fingerprint: str = "fp1",
    labels: Mapping[str, str] | None = None,
    *,
    since: float = 0,
    source: str = "prometheus",
    severity: Severity = Severity.WARNING,
    annotations: dict[str, str] | None = None,
    group_key: str | None = None,
) -> Event:
    """A firing alert from a sender without Alertmanager groups, started `since` seconds in."""
    return event(
        fingerprint,
        source=source,
        labels=dict(labels) if labels is not None else None,
        annotations=annotations,
        severity=severity,
        starts_at=at(since),
        group_key=group_key,
    )


def resolved(
    fingerprint: str = "fp1",
    labels: Mapping[str, str] | None = None,
    *,
    since: float = 0,
    until: float,
    source: str = "prometheus",
    severity: Severity = Severity.WARNING,
    group_key: str | None = None,
) -> Event:
    """The resolve of the occurrence that started `since` seconds in, ended `until` seconds in."""
    return event(
        fingerprint,
        AlertStatus.RESOLVED,
        source=source,
        labels=dict(labels) if labels is not None else None,
        severity=severity,
        starts_at=at(since),
        ends_at=at(until),
        group_key=group_key,
    )


def action(
    kind: EventKind,
    fingerprint: str = "fp1",
    *,
    actor: str = "alice",
    message: str = "",
    source: str = "nagios",
    labels: Mapping[str, str] | None = None,
) -> Event:
    """What a sender reports besides state: an acknowledgement, comment or notice."""
    base = firing(fingerprint, labels, source=source)
    return replace(base, kind=kind, actor=actor, message=message, digest=f"{kind}:{actor}")


def labels(alertname: str, host: str = "", **more: str) -> dict[str, str]:
    found = {"alertname": alertname, **more}
    if host:
        found["host"] = host
    return found


# Rules


def matchers(*texts: str) -> tuple[Matcher, ...]:
    return tuple(parse_matcher(text) for text in texts)


def correlate(
    name: str, *texts: str, group_by: tuple[str, ...] = ("alertname",), **options: Any
) -> CorrelateRule:
    return CorrelateRule(name=name, matchers=matchers(*texts), group_by=group_by, **options)


def derive(
    target: str,
    *sources: str,
    regex: str = "(.*)",
    replacement: str = "$1",
    overwrite: bool = False,
) -> LabelDerivation:
    return LabelDerivation(target, sources, re.compile(regex), replacement, overwrite)


def window(name: str, start: float, end: float, *texts: str, **options: Any) -> MaintenanceWindow:
    """A one-off maintenance window from `start` to `end` seconds in."""
    return MaintenanceWindow(name, matchers(*texts), OneOffSchedule(at(start), at(end)), **options)


def inhibit(
    name: str, source: tuple[str, ...], target: tuple[str, ...], equal: tuple[str, ...] = ()
) -> InhibitRule:
    return InhibitRule(name, matchers(*source), matchers(*target), equal)


def heartbeat(name: str, *texts: str, every: float = 300, **options: Any) -> HeartbeatRule:
    return HeartbeatRule(name, matchers(*texts), timedelta(seconds=every), **options)


def problem(
    name: str, by: ProblemBy = ProblemBy.KEY, count: int = 2, within: float = 3600, **options: Any
) -> ProblemRule:
    return ProblemRule(name, by, count, timedelta(seconds=within), **options)


@functools.cache
def shipped_rules() -> RuleSet:
    return load_rules(SHIPPED_RULES)


@functools.cache
def shipped_topology() -> Topology:
    return Topology(cmdb=load_cmdb(SHIPPED_CMDB), bind="host")
