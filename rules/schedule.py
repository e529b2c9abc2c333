"""When a maintenance window is open: one-off, weekly and cron schedules.

Input: one entry of the `maintenance` rule section (or a window created through the API),
validated as `MaintenanceSpec`. Output: a `Schedule` from `compile_schedule` that answers, for
an aware `now`, which occurrence covers it (`window_at`) and when the next one starts
(`next_start`); every instant it returns is in UTC. Label matching is the `maintenance` stage's
business; this module only knows time.

Wall-clock times (weekly and cron) are read in `timezone` (default UTC). A time that occurs
twice when the clocks go back means its first occurrence; a time skipped when the clocks go
forward means the first instant after the gap (02:30 on the spring-forward night in
Europe/Berlin starts at 03:00 CEST). So a weekly window lasts its wall-clock length (22:00-06:00
is 9 hours on the autumn night) while a cron window lasts exactly `duration` from each start.
Cron expressions are parsed and matched by `rules.cron` (Vixie cron rules); this module turns
their wall-clock minutes into instants. Time zone data is read once per zone by `zoneinfo` at
validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from rules.cron import DAY_NAMES, CronExpression, parse_cron
from rules.duration import parse_duration
from rules.match import LabelMatcher, MatchOp, parse_matcher

_HORIZON_DAYS = 366 * 50  # a valid cron expression fires within this (Feb 29 on a weekday)
_ONE_DAY = timedelta(days=1)
_ONE_MINUTE = timedelta(minutes=1)
_ONE_SECOND = timedelta(seconds=1)
# The same spelling as `rules.schema.RULE_NAME`; this module stays a leaf so that the schema
# can embed `MaintenanceSpec` without an import cycle.
_RULE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")

Window = tuple[datetime, datetime]


class Schedule(Protocol):
    """`now` is aware; the instants returned are UTC."""

    def window_at(self, now: datetime) -> Window | None:
        """The occurrence `(start, end)` with `start <= now < end`, or None."""

    def next_start(self, now: datetime) -> datetime | None:
        """The start of the next occurrence strictly after `now`, or None."""


def _zone(name: str | None) -> tzinfo:
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (LookupError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone '{name}': use an IANA name such as Europe/Berlin"
        ) from None


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of a naive wall-clock time in `zone` (see the module docstring)."""
    found = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if found.astimezone(zone).replace(tzinfo=None) == wall:
        return found
    # In a gap: fold=1 reads the wall time with the offset after the transition (an instant
    # before it), fold=0 with the offset before (an instant after it). Bisect to the transition,
    # which tzdata puts on a whole second.
    low, high = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), found
    while high - low > _ONE_SECOND:
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _wall(now: datetime, zone: tzinfo) -> datetime:
    """The latest naive wall time whose instant is not after `now`."""
    local = now.astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    if local.fold:  # the second pass of a repeated hour: its later walls map to earlier instants
        wall += now.astimezone(UTC) - local.replace(fold=0)
    return wall


@dataclass(frozen=True, slots=True)
class OneOffSchedule:
    start: datetime
    end: datetime

    def window_at(self, now: datetime) -> Window | None:
        return (self.start, self.end) if self.start <= now < self.end else None

    def next_start(self, now: datetime) -> datetime | None:
        return self.start if self.start > now else None


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    days: frozenset[int]  # date.weekday()
    start: time
    end: time  # at or before `start`: on the next day


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    windows: tuple[WeeklyWindow, ...]
    zone: tzinfo

    def window_at(self, now: datetime) -> Window | None:
        # Of overlapping occurrences, the one that ends last.
        today = now.astimezone(self.zone).date()
        covering = [
            found
            for offset in (-1, 0, 1)
            for found in self._on(today + offset * _ONE_DAY)
            if found[0] <= now < found[1]
        ]
        return max(covering, key=lambda found: (found[1], -found[0].timestamp()), default=None)

    def next_start(self, now: datetime) -> datetime | None:
        today = now.astimezone(self.zone).date()
        for offset in range(-1, 15):  # two weeks: a night in the spring gap has no window
            starts = [start for start, _ in self._on(today + offset * _ONE_DAY) if start > now]
            if starts:
                return min(starts)
        return None

    def _on(self, day: date) -> Iterator[Window]:
        for window in self.windows:
            if day.weekday() in window.days:
                end_day = day + _ONE_DAY if window.end <= window.start else day
                start = _instant(datetime.combine(day, window.start), self.zone)
                end = _instant(datetime.combine(end_day, window.end), self.zone)
                if start < end:  # both ends in one spring-forward gap: nothing is left
                    yield start, end


@dataclass(frozen=True, slots=True)
class CronSchedule:
    cron: CronExpression
    duration: timedelta
    zone: tzinfo

    def window_at(self, now: datetime) -> Window | None:
        # Every occurrence lasts `duration`, so only the latest start at or before now can cover
        # it, and only a start after `now - duration` does: a bounded walk back.
        floor = (now - self.duration).astimezone(self.zone).date() - _ONE_DAY
        wall: datetime | None = _wall(now, self.zone)
        while wall is not None:
            wall = self.cron.latest(wall, floor)
            if wall is None:
                return None
            start = _instant(wall, self.zone)
            if start <= now:
                end = start + self.duration
                return (start, end) if now < end else None
            wall -= _ONE_MINUTE
        return None

    def next_start(self, now: datetime) -> datetime | None:
        wall: datetime | None = now.astimezone(self.zone).replace(tzinfo=None, fold=0)
        horizon = now.date() + timedelta(days=_HORIZON_DAYS)
        while wall is not None:
            wall = self.cron.earliest(wall, horizon)
            if wall is None:
                return None
            start = _instant(wall, self.zone)
            if start > now:
                return start
        return None


# The spec: the YAML form of one `maintenance` entry.


def _reported(kind: str, parse: Callable[[Any], Any], keep: bool = False) -> Callable[[Any], Any]:
    """`parse` as a validator: its ValueError becomes the message of a `kind` error; with
    `keep`, the input is kept rather than what `parse` returns."""

    def validate(value: Any) -> Any:
        try:
            parsed = parse(value)
        except ValueError as exc:
            raise PydanticCustomError(kind, "{reason}", {"reason": str(exc)}) from None
        return value if keep else parsed

    return validate


def _rule_name(text: str) -> str:
    if _RULE_NAME.fullmatch(text) is None:
        hint = "use lower-case letters, digits and _ . - (starting with a letter or digit)"
        raise ValueError(f"invalid rule name '{text}': {hint}")
    return text


def _label_name(text: str) -> LabelMatcher:
    return LabelMatcher(text, MatchOp.EQUAL, "")


def _aware(value: datetime) -> datetime:
    if value.utcoffset() is None:
        hint = "write e.g. 2026-12-01T22:00:00+01:00 or 2026-12-01T21:00:00Z"
        raise ValueError(f"'{value.isoformat()}' has no UTC offset: {hint}")
    return value


def _positive_duration(value: object) -> timedelta:
    found = parse_duration(value)
    if found <= timedelta(0):
        raise ValueError("duration must be longer than 0")
    return found


def _day_name(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in DAY_NAMES:
        raise ValueError(f"unknown day '{value}': use {', '.join(DAY_NAMES)}")
    return value.lower()


def _clock_time(value: object) -> time:
    # YAML reads an unquoted 22:00 as the base-60 number 1320, hence the hint to quote.
    found = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"invalid time '{value}': write \"HH:MM\" (00:00 to 23:59) in quotes")
    return time(int(found[1]), int(found[2]))


def _non_empty(values: list[Any]) -> list[Any]:
    if not values:
        raise ValueError("give at least one entry")
    return values


RuleName = Annotated[str, AfterValidator(_reported("rule_name", _rule_name))]
LabelName = Annotated[str, AfterValidator(_reported("label_name", _label_name, keep=True))]
MatcherText = Annotated[str, AfterValidator(_reported("matcher", parse_matcher, keep=True))]
CronText = Annotated[str, AfterValidator(_reported("cron", parse_cron, keep=True))]
ZoneName = Annotated[str, AfterValidator(_reported("time_zone", _zone, keep=True))]
AwareDatetime = Annotated[datetime, AfterValidator(_reported("naive_datetime", _aware))]
Duration = Annotated[timedelta, BeforeValidator(_reported("duration", _positive_duration))]
DayName = Annotated[str, BeforeValidator(_reported("day_name", _day_name))]
ClockTime = Annotated[time, BeforeValidator(_reported("clock_time", _clock_time))]
NonEmpty = AfterValidator(_reported("empty", _non_empty))


class WeeklySpec(BaseModel):
    """One entry of `weekly`: from `start` on each of `days` to `end` (the next day when `end`
    is not after `start`; equal times make a whole day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: Annotated[list[DayName], NonEmpty]
    start: ClockTime
    end: ClockTime


class MaintenanceSpec(BaseModel):
    """One entry of `maintenance`: which alerts (`matchers` AND `match`; none = all) and when,
    as exactly one of `start`/`end`, `weekly` or `cron` with `duration`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName
    matchers: list[MatcherText] = Field(default_factory=list)
    match: dict[LabelName, str] = Field(default_factory=dict)
    reason: str | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    weekly: Annotated[list[WeeklySpec], NonEmpty] | None = None
    cron: CronText | None = None
    duration: Duration | None = None
    timezone: ZoneName | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> MaintenanceSpec:
        forms = {"start/end": self.start or self.end, "weekly": self.weekly, "cron": self.cron}
        given = [form for form, value in forms.items() if value is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "schedule",
                "give exactly one schedule: start/end, weekly or cron (found {found})",
                {"found": " and ".join(given) or "none"},
            )
        problem = _form_problem(self)
        if problem is not None:
            raise PydanticCustomError("schedule", problem)
        return self


def _form_problem(spec: MaintenanceSpec) -> str | None:
    if spec.cron is not None:
        return "cron needs a duration, e.g. duration: 2h" if spec.duration is None else None
    if spec.duration is not None:
        return "duration is only used with cron"
    if spec.weekly is not None:
        return None
    if spec.start is None or spec.end is None:
        return "a one-off window needs both start and end"
    if spec.end <= spec.start:
        return "end must be after start"
    if spec.timezone is not None:
        return "timezone is for weekly and cron; start and end carry their own UTC offset"
    return None


def compile_schedule(spec: MaintenanceSpec) -> Schedule:
    zone = _zone(spec.timezone)
    if spec.cron is not None and spec.duration is not None:
        return CronSchedule(parse_cron(spec.cron), spec.duration, zone)
    if spec.weekly is not None:
        return WeeklySchedule(tuple(_weekly_window(entry) for entry in spec.weekly), zone)
    if spec.start is not None and spec.end is not None:
        return OneOffSchedule(spec.start.astimezone(UTC), spec.end.astimezone(UTC))
    raise ValueError(f"maintenance {spec.name!r} has no schedule; validate it first")


def _weekly_window(entry: WeeklySpec) -> WeeklyWindow:
    return WeeklyWindow(frozenset(map(DAY_NAMES.index, entry.days)), entry.start, entry.end)
