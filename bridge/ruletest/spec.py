"""The rules test file format (docs/rules-testing.md), validated, with the line of every key.

Input: one test file. Output: a `TestFile`: the validated `FileSpec` (start, settings, steps
with inline alerts, payloads and maintenance windows, and the expectations) and the YAML node
tree, so that an error, or a mismatch found later, names `file:line`. Unknown keys are refused
everywhere; `TestFileError` lists every problem of a file that cannot run, including targets
that the expectations name and the rules do not have (`check_targets`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bridge.settings import Settings
from connectors.labels import SEVERITIES
from rules.duration import parse_duration
from rules.model import (
    AlertStatus,
    EventKind,
    Hold,
    IncidentStatus,
    JoinReason,
    ProblemStatus,
    Severity,
    Transition,
)
from rules.schedule import MaintenanceSpec
from rules.yamlsource import Loc, YamlSource, describe_error, error_loc, parse_yaml

DEFAULT_START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday
_SEVERITY_NAMES = frozenset(s.value for s in Severity)


class TestFileError(Exception):
    """The test file (or its rules or payloads) cannot be run; `file:line: message` each."""

    __test__ = False  # not a pytest class

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _offset(value: object) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None


def _severity(value: object) -> object:
    text = str(value).strip().lower()
    if text in _SEVERITY_NAMES or text not in SEVERITIES:
        return text  # a bridge severity, or an error naming the choices
    return SEVERITIES[text].value


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, dict) else value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("zone", "unknown time zone {zone!r}", {"zone": value}) from None
    return value


Offset = Annotated[timedelta, BeforeValidator(_offset)]
_DEFAULTS = Settings.model_fields


# Expectations (compared by `bridge.ruletest.diff`)


def _scalar_text(value: object) -> object:
    # YAML reads `code: 500` as a number; a label value is text.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


LabelValue = Annotated[str, BeforeValidator(_scalar_text)]
Labels = dict[str, LabelValue]
_TRANSITIONS = [t.value for t in Transition]


def _told(value: list[str]) -> list[str]:
    # The targets told are a set: order and repeats do not matter.
    return sorted(set(value))


def _notification(value: str) -> str:
    target, _, transition = value.rpartition(":")
    if not target or transition not in _TRANSITIONS:
        raise PydanticCustomError(
            "notification",
            "expected 'target:transition', transition one of {choices}; got '{value}'",
            {"choices": ", ".join(_TRANSITIONS), "value": value},
        )
    return value


TargetName = Annotated[str, Field(min_length=1)]
Notification = Annotated[str, AfterValidator(_notification)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemberExpect(_Strict):
    labels: Labels = Field(default_factory=dict)
    source: str | None = None
    reason: JoinReason | None = None


class IncidentExpect(_Strict):
    rule: str
    key: str | Labels | None = None
    title: str | None = None
    status: IncidentStatus | None = None
    priority: Annotated[str, Field(pattern=r"^P[1-5]$")] | None = None
    severity: Severity | None = None
    ci: str | None = None
    service: str | None = None
    alert_count: int | None = None
    firing_alerts: int | None = None
    reopen_count: int | None = None
    problem: str | None = None
    members: list[MemberExpect] = Field(default_factory=list)
    # The daemon's outbox for this incident so far: the targets told, and what was queued.
    notify: Annotated[list[TargetName], AfterValidator(_told)] | None = None
    notifications: list[Notification] | None = None


class AlertExpect(_Strict):
    labels: Labels = Field(default_factory=dict)
    source: str | None = None
    status: AlertStatus | None = None
    severity: Severity | None = None
    flapping: bool | None = None
    maintenance: bool | None = None
    hold: Hold | None = None
    held_by: str | None = None
    count: int | None = None
    incident: int | None = None


class ProblemExpect(_Strict):
    rule: str
    key: str | None = None
    title: str | None = None
    status: ProblemStatus | None = None
    incident_count: int | None = None
    ci: str | None = None
    incidents: list[int] | None = None


class DecisionExpect(_Strict):
    stage: str
    rule: str | None = None
    decision: str


class CountsExpect(_Strict):
    incidents: int | None = None
    open_incidents: int | None = None
    alerts: int | None = None
    firing_alerts: int | None = None
    held: int | None = None
    problems: int | None = None
    notifications: int | None = None


class Expectations(_Strict):
    incidents: list[IncidentExpect] | None = None
    incidents_exhaustive: bool = True
    problems: list[ProblemExpect] | None = None
    problems_exhaustive: bool = True
    held: list[AlertExpect] | None = None
    alerts: list[AlertExpect] | None = None
    counts: CountsExpect | None = None
    decisions: list[DecisionExpect] | None = None


# Timeline


class AlertSpec(_Strict):
    """One inline event, as its connector would have decoded it."""

    source: str = "prometheus"
    labels: Annotated[dict[str, LabelValue], Field(min_length=1)]
    annotations: dict[str, LabelValue] = Field(default_factory=dict)
    status: AlertStatus = AlertStatus.FIRING
    severity: Annotated[Severity, BeforeValidator(_severity)] | None = None
    fingerprint: str | None = None
    kind: EventKind = EventKind.STATE
    actor: str = ""
    message: str = ""
    group_key: str | None = None
    receiver: str | None = None
    starts_at: Offset | None = None
    expires: Offset | None = None


class StepSpec(_Strict):
    at: Offset
    alerts: list[AlertSpec] = Field(default_factory=list)
    payload: str | None = None
    source: str | None = None
    maintenance: Annotated[list[MaintenanceSpec], BeforeValidator(_one_or_many)] = Field(
        default_factory=list
    )
    expect: Expectations | None = None


class SettingsSpec(_Strict):
    duplicate_window: Offset = _DEFAULTS["duplicate_window"].default
    reopen_window: Offset = _DEFAULTS["reopen_window"].default
    resolve_timeout: Offset = _DEFAULTS["resolve_timeout"].default
    zabbix_timezone: Annotated[str, BeforeValidator(_zone)] = "UTC"


class FileSpec(_Strict):
    description: str = ""
    rules: str | None = None
    mappings: str | None = None
    start: AwareDatetime = DEFAULT_START
    settings: SettingsSpec = Field(default_factory=SettingsSpec)
    steps: list[StepSpec] = Field(min_length=1)
    expect: Expectations | None = None

    @model_validator(mode="before")
    @classmethod
    def _window_offsets(cls, data: Any) -> Any:
        """Maintenance `start`/`end` may be offsets from the test's start, like `at`; a
        one-off window without `start` starts at its step."""
        start = _instant(data.get("start", DEFAULT_START)) if isinstance(data, dict) else None
        if start is None or not isinstance(data.get("steps"), list):
            return data
        return {**data, "steps": [_step_windows(step, start) for step in data["steps"]]}


def _instant(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


def _step_windows(step: object, start: datetime) -> object:
    if not isinstance(step, dict) or "maintenance" not in step:
        return step
    try:
        at = start + parse_duration(step.get("at"))
    except ValueError:
        return step
    windows = _one_or_many(step["maintenance"])
    if not isinstance(windows, list):
        return step
    return {**step, "maintenance": [_window_times(w, start, at) for w in windows]}


def _window_times(window: object, start: datetime, at: datetime) -> object:
    if not isinstance(window, dict):
        return window
    found = dict(window)
    if "end" in found and "start" not in found and not {"weekly", "cron"} & found.keys():
        found["start"] = at
    for name in ("start", "end"):
        value = found.get(name)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            # Not a duration: an ISO 8601 instant, or an error the schema reports.
            with contextlib.suppress(ValueError):
                found[name] = start + parse_duration(value)
    return found


# Loading


@dataclass(frozen=True)
class TestFile:
    __test__ = False  # not a pytest class

    path: Path
    spec: FileSpec
    source: YamlSource

    def line(self, loc: Loc) -> int:
        return self.source.line(loc)

    def relative(self, name: str) -> Path:
        return (self.path.parent / name).resolve()


def load(path: Path) -> TestFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TestFileError([f"{path}:1: cannot read file: {exc.strerror}"]) from None
    parsed = parse_yaml(str(path), data)
    if isinstance(parsed, str):
        raise TestFileError([parsed])
    source, document = parsed
    if not isinstance(document, dict):
        raise TestFileError([source.error((), "the top level must be a mapping with 'steps'")])
    try:
        spec = FileSpec.model_validate(document)
    except ValidationError as exc:
        details = sorted(exc.errors(), key=lambda detail: source.line(error_loc(detail)))
        raise TestFileError([describe_error(source, d) for d in details]) from None
    test = TestFile(path, spec, source)
    _check_steps(test)
    return test


def _check_steps(test: TestFile) -> None:
    errors: list[str] = []
    previous = timedelta(0)
    for index, step in enumerate(test.spec.steps):
        loc: Loc = ("steps", index)
        if step.at < previous:
            errors.append(test.source.error((*loc, "at"), "steps must be in time order"))
        previous = max(previous, step.at)
        if step.payload is not None and step.alerts:
            errors.append(test.source.error(loc, "give either alerts or payload, not both"))
        if step.source is not None and step.payload is None:
            errors.append(test.source.error((*loc, "source"), "source names a payload's sender"))
        if step.payload is not None and not test.relative(step.payload).is_file():
            message = f"payload file {str(test.relative(step.payload))!r} does not exist"
            errors.append(test.source.error((*loc, "payload"), message))
    if errors:
        raise TestFileError(errors)


def check_targets(test: TestFile, known: Collection[str]) -> None:
    """Every target the expectations name is a target of the rules the test runs on."""
    errors: list[str] = []
    for loc, expect in _expectations(test):
        for index, entry in enumerate(expect.incidents or ()):
            at: Loc = (*loc, "incidents", index)
            named = [((*at, "notify"), name) for name in entry.notify or ()]
            named += [
                ((*at, "notifications", number), text.rpartition(":")[0])
                for number, text in enumerate(entry.notifications or ())
            ]
            errors += [
                test.source.error(where, _unknown_target(name, known))
                for where, name in named
                if name not in known
            ]
    if errors:
        raise TestFileError(errors)


def _expectations(test: TestFile) -> list[tuple[Loc, Expectations]]:
    found: list[tuple[Loc, Expectations]] = [
        (("steps", index, "expect"), step.expect)
        for index, step in enumerate(test.spec.steps)
        if step.expect is not None
    ]
    return found + ([(("expect",), test.spec.expect)] if test.spec.expect is not None else [])


def _unknown_target(name: str, known: Collection[str]) -> str:
    if not known:
        return f"no target {name!r}: the rules have no targets section"
    return f"no target {name!r} in the rules (targets: {', '.join(sorted(known))})"
