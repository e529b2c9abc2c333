"""Decision tables for maintenance schedules (`rules.schedule`): one-off, weekly and cron windows,
their next start, daylight saving time in Europe/Berlin and the validation of the spec (the
cron syntax itself and its error messages are in `test_cron.py`).

All instants in the tables are UTC; comments give the wall-clock time where a zone is involved.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from rules.schedule import (
    CronSchedule,
    MaintenanceSpec,
    OneOffSchedule,
    Schedule,
    WeeklySchedule,
    compile_schedule,
)

BERLIN = "Europe/Berlin"
# 2026 in Europe/Berlin: clocks go forward on Sun 29 March (02:00 CET -> 03:00 CEST, 01:00Z)
# and back on Sun 25 October (03:00 CEST -> 02:00 CET, 01:00Z).

Expected = tuple[str, str] | None


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(**spec: Any) -> Schedule:
    return compile_schedule(MaintenanceSpec.model_validate({"name": "w", **spec}))


def window(expected: Expected) -> tuple[datetime, datetime] | None:
    return None if expected is None else (z(expected[0]), z(expected[1]))


def weekly(days: list[str], start: str, end: str, timezone: str | None = None) -> Schedule:
    entry = {"days": days, "start": start, "end": end}
    return schedule(weekly=[entry], **({"timezone": timezone} if timezone else {}))


def cron(expression: str, duration: str, timezone: str | None = None) -> Schedule:
    zone = {"timezone": timezone} if timezone else {}
    return schedule(cron=expression, duration=duration, **zone)


ONE_OFF = schedule(start="2026-12-01T22:00:00+01:00", end="2026-12-02T02:00:00+01:00")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-12-01T20:59:59", None),
        ("2026-12-01T21:00:00", ("2026-12-01T21:00", "2026-12-02T01:00")),
        ("2026-12-02T00:59:59", ("2026-12-01T21:00", "2026-12-02T01:00")),
        ("2026-12-02T01:00:00", None),
    ],
)
def test_one_off(now: str, expected: Expected) -> None:
    assert ONE_OFF.window_at(z(now)) == window(expected)


def test_instants_come_back_in_utc() -> None:
    found = ONE_OFF.window_at(datetime.fromisoformat("2026-12-01T23:30:00+01:00"))
    assert found is not None
    assert [instant.tzinfo for instant in found] == [UTC, UTC]


WEEKEND_NIGHTS = weekly(["sat", "sun"], "22:00", "06:00")
OFFICE_HOURS = weekly(["mon", "tue", "wed", "thu", "fri"], "09:00", "17:00")
WHOLE_WEDNESDAY = weekly(["wed"], "00:00", "00:00")


@pytest.mark.parametrize(
    ("plan", "now", "expected"),
    [
        # 2026-06-13 is a Saturday.
        (WEEKEND_NIGHTS, "2026-06-13T21:59", None),
        (WEEKEND_NIGHTS, "2026-06-13T22:00", ("2026-06-13T22:00", "2026-06-14T06:00")),
        (WEEKEND_NIGHTS, "2026-06-14T03:00", ("2026-06-13T22:00", "2026-06-14T06:00")),
        (WEEKEND_NIGHTS, "2026-06-14T06:00", None),
        (WEEKEND_NIGHTS, "2026-06-14T23:00", ("2026-06-14T22:00", "2026-06-15T06:00")),
        # Sunday night's window runs into Monday, a day that is not listed.
        (WEEKEND_NIGHTS, "2026-06-15T05:59", ("2026-06-14T22:00", "2026-06-15T06:00")),
        (WEEKEND_NIGHTS, "2026-06-15T22:00", None),
        (WEEKEND_NIGHTS, "2026-06-12T23:00", None),
        (OFFICE_HOURS, "2026-06-12T16:59", ("2026-06-12T09:00", "2026-06-12T17:00")),
        (OFFICE_HOURS, "2026-06-12T17:00", None),
        (OFFICE_HOURS, "2026-06-13T12:00", None),
        # Equal start and end: a whole day.
        (WHOLE_WEDNESDAY, "2026-06-10T00:00", ("2026-06-10T00:00", "2026-06-11T00:00")),
        (WHOLE_WEDNESDAY, "2026-06-10T23:59", ("2026-06-10T00:00", "2026-06-11T00:00")),
        (WHOLE_WEDNESDAY, "2026-06-11T00:00", None),
    ],
)
def test_weekly(plan: Schedule, now: str, expected: Expected) -> None:
    assert plan.window_at(z(now)) == window(expected)


def test_weekly_overlapping_entries_give_the_occurrence_that_ends_last() -> None:
    plan = schedule(
        weekly=[
            {"days": ["wed"], "start": "08:00", "end": "12:00"},
            {"days": ["wed"], "start": "10:00", "end": "14:00"},
        ]
    )
    assert plan.window_at(z("2026-06-10T11:00")) == window(("2026-06-10T10:00", "2026-06-10T14:00"))
    assert plan.window_at(z("2026-06-10T09:00")) == window(("2026-06-10T08:00", "2026-06-10T12:00"))


BERLIN_NIGHTS = weekly(["sat", "sun"], "22:00", "06:00", BERLIN)
IN_THE_GAP = weekly(["sun"], "02:30", "04:00", BERLIN)
ALL_IN_THE_GAP = weekly(["sun"], "02:10", "02:50", BERLIN)
IN_THE_FOLD = weekly(["sun"], "02:30", "03:30", BERLIN)


@pytest.mark.parametrize(
    ("plan", "now", "expected"),
    [
        # Summer: CEST, UTC+2.
        (BERLIN_NIGHTS, "2026-06-13T20:00", ("2026-06-13T20:00", "2026-06-14T04:00")),
        (BERLIN_NIGHTS, "2026-06-13T19:59", None),
        # Autumn night: 22:00 CEST to 06:00 CET lasts 9 hours.
        (BERLIN_NIGHTS, "2026-10-24T20:00", ("2026-10-24T20:00", "2026-10-25T05:00")),
        (BERLIN_NIGHTS, "2026-10-25T04:59", ("2026-10-24T20:00", "2026-10-25T05:00")),
        (BERLIN_NIGHTS, "2026-10-25T05:00", None),
        # Spring night: 22:00 CET to 06:00 CEST lasts 7 hours.
        (BERLIN_NIGHTS, "2026-03-28T21:00", ("2026-03-28T21:00", "2026-03-29T04:00")),
        (BERLIN_NIGHTS, "2026-03-29T03:59", ("2026-03-28T21:00", "2026-03-29T04:00")),
        (BERLIN_NIGHTS, "2026-03-29T04:00", None),
        # 02:30 does not exist on 29 March: the window opens at 03:00 CEST.
        (IN_THE_GAP, "2026-03-29T00:59", None),
        (IN_THE_GAP, "2026-03-29T01:00", ("2026-03-29T01:00", "2026-03-29T02:00")),
        (IN_THE_GAP, "2026-04-05T00:30", ("2026-04-05T00:30", "2026-04-05T02:00")),
        # Both ends inside the gap: nothing is left of that night's window.
        (ALL_IN_THE_GAP, "2026-03-29T01:00", None),
        (ALL_IN_THE_GAP, "2026-04-05T00:10", ("2026-04-05T00:10", "2026-04-05T00:50")),
        # 02:30 happens twice on 25 October: the first (CEST) counts; 03:30 CET ends it.
        (IN_THE_FOLD, "2026-10-25T00:29", None),
        (IN_THE_FOLD, "2026-10-25T00:30", ("2026-10-25T00:30", "2026-10-25T02:30")),
        (IN_THE_FOLD, "2026-10-25T01:45", ("2026-10-25T00:30", "2026-10-25T02:30")),
        (IN_THE_FOLD, "2026-10-25T02:30", None),
    ],
)
def test_weekly_in_berlin(plan: Schedule, now: str, expected: Expected) -> None:
    assert plan.window_at(z(now)) == window(expected)


@pytest.mark.parametrize(
    ("expression", "duration", "now", "expected"),
    [
        # 2026-06-14 is a Sunday.
        ("0 2 * * sun", "2h", "2026-06-14T01:59", None),
        ("0 2 * * sun", "2h", "2026-06-14T02:00", ("2026-06-14T02:00", "2026-06-14T04:00")),
        ("0 2 * * sun", "2h", "2026-06-14T03:59:59", ("2026-06-14T02:00", "2026-06-14T04:00")),
        ("0 2 * * sun", "2h", "2026-06-14T04:00", None),
        ("0 2 * * sun", "2h", "2026-06-13T02:30", None),
        # 7 and 0 are Sunday too.
        ("0 2 * * 7", "2h", "2026-06-14T02:30", ("2026-06-14T02:00", "2026-06-14T04:00")),
        ("0 2 * * 0", "2h", "2026-06-14T02:30", ("2026-06-14T02:00", "2026-06-14T04:00")),
        ("0 2 * * fri-sun", "2h", "2026-06-14T02:30", ("2026-06-14T02:00", "2026-06-14T04:00")),
        ("0 2 * * fri-sun", "2h", "2026-06-15T02:30", None),
        # Steps.
        ("*/15 * * * *", "5m", "2026-06-10T12:14", None),
        ("*/15 * * * *", "5m", "2026-06-10T12:15", ("2026-06-10T12:15", "2026-06-10T12:20")),
        ("*/15 * * * *", "5m", "2026-06-10T12:20", None),
        ("0 1-5/2 * * *", "30m", "2026-06-10T03:10", ("2026-06-10T03:00", "2026-06-10T03:30")),
        ("0 1-5/2 * * *", "30m", "2026-06-10T02:10", None),
        ("0 1-5/2 * * *", "30m", "2026-06-10T07:10", None),
        ("0 20/2 * * *", "30m", "2026-06-10T22:10", ("2026-06-10T22:00", "2026-06-10T22:30")),
        ("0 20/2 * * *", "30m", "2026-06-10T21:10", None),
        # Lists.
        ("0,30 9,17 * * *", "10m", "2026-06-10T09:35", ("2026-06-10T09:30", "2026-06-10T09:40")),
        ("0,30 9,17 * * *", "10m", "2026-06-10T17:05", ("2026-06-10T17:00", "2026-06-10T17:10")),
        ("0,30 9,17 * * *", "10m", "2026-06-10T12:00", None),
        # Names, in any case.
        (
            "0 3 * JAN,jul Mon-Fri",
            "1h",
            "2026-01-05T03:30",
            ("2026-01-05T03:00", "2026-01-05T04:00"),
        ),
        ("0 3 * JAN,jul Mon-Fri", "1h", "2026-01-10T03:30", None),
        ("0 3 * JAN,jul Mon-Fri", "1h", "2026-02-02T03:30", None),
        # Both day fields restricted: either one matches (the 1st, a Wednesday, or any Monday).
        ("0 4 1 * mon", "1h", "2026-07-01T04:30", ("2026-07-01T04:00", "2026-07-01T05:00")),
        ("0 4 1 * mon", "1h", "2026-07-06T04:30", ("2026-07-06T04:00", "2026-07-06T05:00")),
        ("0 4 1 * mon", "1h", "2026-07-07T04:30", None),
        # One day field starting with `*` is not restricted (Vixie cron): both must match.
        ("0 4 1-7 * */7", "1h", "2026-06-07T04:30", ("2026-06-07T04:00", "2026-06-07T05:00")),
        ("0 4 1-7 * */7", "1h", "2026-06-14T04:30", None),
        ("0 4 1-7 * */7", "1h", "2026-06-01T04:30", None),
        ("0 4 */10 * mon", "1h", "2026-06-01T04:30", ("2026-06-01T04:00", "2026-06-01T05:00")),
        ("0 4 */10 * mon", "1h", "2026-06-08T04:30", None),
        # A window longer than the gap between its starts: the latest start covers now.
        ("*/15 * * * *", "1h", "2026-06-10T12:07", ("2026-06-10T12:00", "2026-06-10T13:00")),
        # A window over several days, from Friday night to Monday morning.
        ("0 22 * * fri", "60h", "2026-06-14T09:00", ("2026-06-12T22:00", "2026-06-15T10:00")),
        ("0 22 * * fri", "60h", "2026-06-15T10:00", None),
        ("0 0 29 2 *", "1d", "2028-02-29T23:59", ("2028-02-29T00:00", "2028-03-01T00:00")),
        ("0 0 29 2 *", "1d", "2027-03-01T00:00", None),
    ],
)
def test_cron(expression: str, duration: str, now: str, expected: Expected) -> None:
    assert cron(expression, duration).window_at(z(now)) == window(expected)


@pytest.mark.parametrize(
    ("expression", "duration", "now", "expected"),
    [
        # Summer: 02:30 CEST is 00:30Z.
        ("30 2 * * *", "1h", "2026-06-10T00:45", ("2026-06-10T00:30", "2026-06-10T01:30")),
        # Spring forward: 02:30 does not exist; the window starts at 03:00 CEST and lasts 1h.
        ("30 2 * * *", "1h", "2026-03-29T00:59", None),
        ("30 2 * * *", "1h", "2026-03-29T01:00", ("2026-03-29T01:00", "2026-03-29T02:00")),
        ("30 2 * * *", "1h", "2026-03-29T01:59", ("2026-03-29T01:00", "2026-03-29T02:00")),
        # Fall back: the first 02:30 (CEST) starts the window; the second 02:30 does not.
        ("30 2 * * *", "1h", "2026-10-25T01:15", ("2026-10-25T00:30", "2026-10-25T01:30")),
        ("30 2 * * *", "1h", "2026-10-25T01:45", None),
        # Every 20 minutes through the repeated hour: the second pass starts nothing new.
        ("*/20 2 * * *", "10m", "2026-10-25T01:30", None),
        ("*/20 2 * * *", "10m", "2026-10-25T00:45", ("2026-10-25T00:40", "2026-10-25T00:50")),
    ],
)
def test_cron_in_berlin(expression: str, duration: str, now: str, expected: Expected) -> None:
    assert cron(expression, duration, BERLIN).window_at(z(now)) == window(expected)


@pytest.mark.parametrize(
    ("plan", "now", "expected"),
    [
        (ONE_OFF, "2026-11-01T00:00", "2026-12-01T21:00"),
        (ONE_OFF, "2026-12-01T21:00", None),
        (ONE_OFF, "2026-12-01T23:00", None),
        (WEEKEND_NIGHTS, "2026-06-10T12:00", "2026-06-13T22:00"),
        (WEEKEND_NIGHTS, "2026-06-13T22:00", "2026-06-14T22:00"),
        (WEEKEND_NIGHTS, "2026-06-14T23:00", "2026-06-20T22:00"),
        (BERLIN_NIGHTS, "2026-10-24T12:00", "2026-10-24T20:00"),
        (BERLIN_NIGHTS, "2026-10-24T20:00", "2026-10-25T21:00"),
        (IN_THE_GAP, "2026-03-28T12:00", "2026-03-29T01:00"),
        (ALL_IN_THE_GAP, "2026-03-28T12:00", "2026-04-05T00:10"),
        (cron("0 2 * * sun", "2h"), "2026-06-10T12:00", "2026-06-14T02:00"),
        (cron("0 2 * * sun", "2h"), "2026-06-14T02:00", "2026-06-21T02:00"),
        (cron("0 2 * * sun", "2h"), "2026-06-14T01:59:59", "2026-06-14T02:00"),
        (cron("*/15 * * * *", "5m"), "2026-06-10T12:14:30", "2026-06-10T12:15"),
        (cron("0 0 29 2 *", "1d"), "2026-03-01T00:00", "2028-02-29T00:00"),
        (cron("0 0 1 jan *", "1d"), "2026-12-31T23:59", "2027-01-01T00:00"),
        (cron("30 2 * * *", "1h", BERLIN), "2026-03-28T12:00", "2026-03-29T01:00"),
        # At 02:45 CET (the second pass) the first 02:50 (CEST) has passed: next is tomorrow.
        (cron("50 2 * * *", "1h", BERLIN), "2026-10-25T01:45", "2026-10-26T01:50"),
        (cron("50 2 * * *", "1h", BERLIN), "2026-10-25T00:45", "2026-10-25T00:50"),
    ],
)
def test_next_start(plan: Schedule, now: str, expected: str | None) -> None:
    assert plan.next_start(z(now)) == (None if expected is None else z(expected))


def test_compiled_kinds() -> None:
    assert isinstance(ONE_OFF, OneOffSchedule)
    assert isinstance(WEEKEND_NIGHTS, WeeklySchedule)
    assert isinstance(cron("0 2 * * sun", "2h"), CronSchedule)


def test_the_yaml_form() -> None:
    text = """
    - name: db-patching
      matchers: ['host=~"db-.*"']
      match: {service: billing}
      reason: monthly patching
      start: 2026-12-01T22:00:00+01:00
      end: 2026-12-02T02:00:00+01:00
    - name: weekend
      weekly:
        - days: [sat, sun]
          start: "22:00"
          end: "06:00"
      timezone: Europe/Berlin
    - name: backups
      cron: "0 2 * * sun"
      duration: 2h
      timezone: Europe/Berlin
    """
    specs = [MaintenanceSpec.model_validate(item) for item in yaml.safe_load(text)]
    plans = [compile_schedule(spec) for spec in specs]
    assert specs[0].matchers == ['host=~"db-.*"']
    assert plans[0].window_at(z("2026-12-01T21:30")) is not None
    assert plans[1].next_start(z("2026-06-10T00:00")) == z("2026-06-13T20:00")
    assert plans[2].next_start(z("2026-06-10T00:00")) == z("2026-06-14T00:00")


ONE_OFF_SPEC = {"start": "2026-12-01T22:00:00+01:00", "end": "2026-12-02T02:00:00+01:00"}
WEEKLY_SPEC = {"weekly": [{"days": ["sat"], "start": "22:00", "end": "06:00"}]}


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        ({}, "schedule", "give exactly one schedule: start/end, weekly or cron (found none)"),
        (
            {**WEEKLY_SPEC, "cron": "0 2 * * *", "duration": "1h"},
            "schedule",
            "give exactly one schedule: start/end, weekly or cron (found weekly and cron)",
        ),
        ({"start": ONE_OFF_SPEC["start"]}, "schedule", "a one-off window needs both start and end"),
        (
            {"start": ONE_OFF_SPEC["end"], "end": ONE_OFF_SPEC["start"]},
            "schedule",
            "end must be after start",
        ),
        (
            {**ONE_OFF_SPEC, "end": "2026-12-01T22:00:00+01:00"},
            "schedule",
            "end must be after start",
        ),
        (
            {**ONE_OFF_SPEC, "start": "2026-12-01T22:00:00"},
            "naive_datetime",
            "'2026-12-01T22:00:00' has no UTC offset",
        ),
        (
            {**ONE_OFF_SPEC, "timezone": BERLIN},
            "schedule",
            "timezone is for weekly and cron; start and end carry their own UTC offset",
        ),
        ({"cron": "0 2 * * *"}, "schedule", "cron needs a duration, e.g. duration: 2h"),
        ({**WEEKLY_SPEC, "duration": "1h"}, "schedule", "duration is only used with cron"),
        ({"cron": "0 2 * * *", "duration": "0s"}, "duration", "duration must be longer than 0"),
        ({"cron": "0 2 * * *", "duration": "2 hours"}, "duration", "invalid duration '2 hours'"),
        (
            {**WEEKLY_SPEC, "timezone": "Mars/Olympus"},
            "time_zone",
            "unknown time zone 'Mars/Olympus'",
        ),
        ({**WEEKLY_SPEC, "timezone": "../etc"}, "time_zone", "unknown time zone '../etc'"),
        # Cron errors come back as kind "cron"; `test_cron.py` tables their messages.
        (
            {"cron": "0 2 * *", "duration": "1h"},
            "cron",
            "invalid cron expression '0 2 * *': expected 5 fields "
            "(minute hour day-of-month month day-of-week), got 4",
        ),
        (
            {"weekly": [{"days": ["funday"], "start": "22:00", "end": "06:00"}]},
            "day_name",
            "unknown day 'funday': use mon, tue, wed, thu, fri, sat, sun",
        ),
        (
            {"weekly": [{"days": ["sat"], "start": "24:00", "end": "06:00"}]},
            "clock_time",
            "invalid time '24:00': write \"HH:MM\" (00:00 to 23:59) in quotes",
        ),
        # What YAML makes of an unquoted 22:00.
        (
            {"weekly": [{"days": ["sat"], "start": 1320, "end": "06:00"}]},
            "clock_time",
            "invalid time '1320'",
        ),
        ({"weekly": []}, "empty", "give at least one entry"),
        (
            {"weekly": [{"days": [], "start": "22:00", "end": "06:00"}]},
            "empty",
            "give at least one entry",
        ),
        (
            {"weekly": [{"days": ["sat"], "start": "22:00", "end": "06:00", "every": 2}]},
            "extra_forbidden",
            "Extra inputs are not permitted",
        ),
        ({**WEEKLY_SPEC, "name": "DB Patching"}, "rule_name", "invalid rule name 'DB Patching'"),
        (
            {**WEEKLY_SPEC, "matchers": ['host=~"("']},
            "matcher",
            "invalid matcher 'host=~\"(\"': invalid regular expression '('",
        ),
        (
            {**WEEKLY_SPEC, "match": {"bad-label": "x"}},
            "label_name",
            "invalid label name 'bad-label'",
        ),
    ],
)
def test_spec_errors(spec: dict[str, Any], kind: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MaintenanceSpec.model_validate({"name": "w", **spec})
    errors = caught.value.errors()
    assert len(errors) == 1
    assert (errors[0]["type"], errors[0]["msg"][: len(message)]) == (kind, message)
