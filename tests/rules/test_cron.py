"""Decision tables for cron expressions (`rules.cron`): spellings that mean the same and the
errors a bad expression gets. Firing times, with durations and time zones, are tested through
the schedules in `test_schedule.py`."""

from __future__ import annotations

import pytest

from rules.cron import CronError, parse_cron


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("0 2 * * 7", "0 2 * * sun"),
        ("0 2 * * 0", "0 2 * * SUN"),
        ("0 2 * * 5-7", "0 2 * * fri,sat,sun"),
        ("*/20 * * * *", "0,20,40 * * * *"),
        ("0 0 1 jan-mar/2 *", "0 0 1 1,3 *"),
        ("0 0 * * 1-5/2", "0 0 * * mon,wed,fri"),
        ("0 0 * * */7", "0 0 * * 0"),
    ],
)
def test_cron_spellings_mean_the_same(left: str, right: str) -> None:
    assert parse_cron(left) == parse_cron(right)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 2 * * *", "invalid cron field 'minute': '61' is not a number from 0 to 59"),
        (
            "0 2 * * fry",
            "invalid cron field 'day-of-week': 'fry' is not a number from 0 to 7 or a name "
            "(mon, tue, wed, thu, fri, sat, sun)",
        ),
        (
            "0 2 * smarch *",
            "invalid cron field 'month': 'smarch' is not a number from 1 to 12 or a name",
        ),
        (
            "*/0 2 * * *",
            "invalid cron field 'minute': invalid step '0' in '*/0': use a number from 1",
        ),
        ("0 5-1 * * *", "invalid cron field 'hour': range '5-1' runs backwards"),
        ("0 2 1,,2 * *", "invalid cron field 'day-of-month': '' is not a number from 1 to 31"),
        (
            "0 0 30 feb *",
            "invalid cron expression '0 0 30 feb *': its days never occur in its months",
        ),
    ],
)
def test_cron_errors(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert str(caught.value)[: len(message)] == message


def test_parse_cron_raises_cron_error() -> None:
    with pytest.raises(CronError, match="expected 5 fields"):
        parse_cron("@daily")
