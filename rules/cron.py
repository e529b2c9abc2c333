"""Cron expressions: parse the five fields and find the wall-clock minutes that fire.

Input: a 5-field expression (`minute hour day-of-month month day-of-week`), as in the `cron`
key of a `maintenance` entry. Output: a `CronExpression` whose `latest` and `earliest` walk
naive wall-clock times; time zones and window lengths are `rules.schedule`'s business. Numbers,
names (`jan`, `mon`, in any case), ranges, lists and steps are read as Vixie cron reads them:
day-of-week 0 and 7 are both Sunday, and when both day fields are restricted (neither starts
with `*`), a day matching either one fires. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NUMBER = re.compile(r"[0-9]+")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = {name: number for number, name in enumerate(MONTH_NAMES, start=1)}
_WEEKDAYS = {name: (number + 1) % 7 for number, name in enumerate(DAY_NAMES)}  # cron: sun = 0
_CRON_NAMES: tuple[dict[str, int], ...] = ({}, {}, {}, _MONTHS, _WEEKDAYS)
_ONE_DAY = timedelta(days=1)


class CronError(ValueError):
    """A cron expression cannot be parsed or can never fire."""


@dataclass(frozen=True, slots=True)
class CronExpression:
    minutes: tuple[int, ...]  # sorted
    hours: tuple[int, ...]  # sorted
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # date.weekday(): mon = 0 ... sun = 6
    either_day: bool  # both day fields restricted: a day matching either fires

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        if self.either_day:
            return day.day in self.days or day.weekday() in self.weekdays
        return day.day in self.days and day.weekday() in self.weekdays

    def latest(self, at: datetime, floor: date) -> datetime | None:
        """The latest wall time at or before `at` that fires, searching back to `floor`."""
        day, hour, minute = at.date(), at.hour, at.minute
        while day >= floor:
            if self.matches_day(day):
                i = bisect_right(self.hours, hour) - 1
                if i >= 0 and self.hours[i] == hour:
                    j = bisect_right(self.minutes, minute) - 1
                    if j >= 0:
                        return datetime.combine(day, time(hour, self.minutes[j]))
                    i -= 1
                if i >= 0:
                    return datetime.combine(day, time(self.hours[i], self.minutes[-1]))
            day, hour, minute = day - _ONE_DAY, 23, 59
        return None

    def earliest(self, after: datetime, horizon: date) -> datetime | None:
        """The earliest wall time after `after` (a later minute) that fires, up to `horizon`."""
        day, hour, minute = after.date(), after.hour, after.minute
        while day <= horizon:
            if day.month not in self.months:
                day, hour = date(day.year + day.month // 12, day.month % 12 + 1, 1), -1
                continue
            if self.matches_day(day):
                i = bisect_left(self.hours, hour)
                if i < len(self.hours) and self.hours[i] == hour:
                    j = bisect_right(self.minutes, minute)
                    if j < len(self.minutes):
                        return datetime.combine(day, time(hour, self.minutes[j]))
                    i += 1
                if i < len(self.hours):
                    return datetime.combine(day, time(self.hours[i], self.minutes[0]))
            day, hour = day + _ONE_DAY, -1
        return None


def parse_cron(text: str) -> CronExpression:
    """Parse a 5-field cron expression (`minute hour day-of-month month day-of-week`)."""
    fields = text.split()
    if len(fields) != len(CRON_FIELDS):
        expected = f"expected 5 fields ({' '.join(CRON_FIELDS)})"
        raise CronError(f"invalid cron expression '{text}': {expected}, got {len(fields)}")
    minutes, hours, days, months, weekdays = (
        _cron_field(value, index) for index, value in enumerate(fields)
    )
    cron = CronExpression(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset((day - 1) % 7 for day in weekdays),
        either_day=not fields[2].startswith("*") and not fields[4].startswith("*"),
    )
    if not cron.either_day and not any(_MONTH_DAYS[m - 1] >= d for d in days for m in months):
        raise CronError(f"invalid cron expression '{text}': its days never occur in its months")
    return cron


def _cron_field(text: str, index: int) -> set[int]:
    try:
        return {value for item in text.split(",") for value in _cron_item(item, index)}
    except CronError as exc:
        raise CronError(f"invalid cron field '{CRON_FIELDS[index]}': {exc}") from None


def _cron_item(item: str, index: int) -> range:
    low, high = _CRON_RANGES[index]
    body, slash, step_text = item.partition("/")
    if slash and (_NUMBER.fullmatch(step_text) is None or int(step_text) == 0):
        raise CronError(f"invalid step '{step_text}' in '{item}': use a number from 1")
    if body != "*":
        first_text, dash, last_text = body.partition("-")
        first = _cron_value(first_text, index)
        last = _cron_value(last_text, index) if dash else (high if slash else first)
        if index == 4 and dash and last == 0:
            last = 7  # `fri-sun`
        if last < first:
            raise CronError(f"range '{body}' runs backwards")
        low, high = first, last
    return range(low, high + 1, int(step_text) if slash else 1)


def _cron_value(text: str, index: int) -> int:
    low, high = _CRON_RANGES[index]
    names = _CRON_NAMES[index]
    if text.lower() in names:
        return names[text.lower()]
    if _NUMBER.fullmatch(text) is None or not low <= int(text) <= high:
        hint = f" or a name ({', '.join(names)})" if names else ""
        raise CronError(f"'{text}' is not a number from {low} to {high}{hint}")
    return int(text)
