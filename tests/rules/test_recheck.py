"""`rules.recheck.still_held`: the daemon's recheck job skips held alerts whose hold surely
continues, and looks again at every other one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules.dedup import dedup
from rules.model import AlertState, Hold, evolve
from rules.recheck import inhibitor_of, still_held
from rules.ruleset import MaintenanceWindow
from rules.schedule import OneOffSchedule
from tests.rules.builders import T0, at, event

WINDOW = MaintenanceWindow(
    name="patching", matchers=(), schedule=OneOffSchedule(T0, T0 + timedelta(minutes=10))
)
SOURCE = ("prometheus", "host-down")


def held(hold: Hold, held_by: str, **more: object) -> AlertState:
    alert = dedup(None, event("a"), T0, timedelta(0)).alert
    assert alert is not None
    return evolve(alert, hold=hold, held_by=held_by, **more)


@pytest.mark.parametrize(
    ("alert", "seconds", "source_fires", "expected"),
    [
        pytest.param(held(Hold.MAINTENANCE, "maintenance:patching"), 60, True, True,
                     id="a window that is still active holds"),
        pytest.param(held(Hold.MAINTENANCE, "maintenance:patching"), 601, True, False,
                     id="a window that ended: look again"),
        pytest.param(held(Hold.MAINTENANCE, "maintenance:gone"), 60, True, False,
                     id="a window that no longer exists: look again"),
        pytest.param(held(Hold.MAINTENANCE, "downtime:nagios", maintenance=True), 601, True,
                     True, id="a sender's downtime holds until the sender ends it"),
        pytest.param(held(Hold.INHIBITED, "inhibit:r by prometheus/host-down"), 60, True, True,
                     id="an inhibitor that still fires holds"),
        pytest.param(held(Hold.INHIBITED, "inhibit:r by prometheus/host-down"), 60, False,
                     False, id="an inhibitor that stopped: look again"),
        pytest.param(held(Hold.PENDING, "correlate:x (1 of 3 alerts)"), 60, True, False,
                     id="pending alerts are always looked at (a reload may lower min_alerts)"),
        pytest.param(held(Hold.NONE, "", flapping=True), 60, True, False,
                     id="flapping alerts are always looked at (they may settle)"),
    ],
)  # fmt: skip
def test_still_held(alert: AlertState, seconds: int, source_fires: bool, expected: bool) -> None:
    def firing(key: tuple[str, str]) -> bool:
        return source_fires and key == SOURCE

    assert still_held(alert, [WINDOW], at(seconds), firing) is expected


def test_the_inhibitor_is_read_back_from_held_by() -> None:
    assert inhibitor_of("inhibit:rule-a by zabbix/zabbix:123") == ("zabbix", "zabbix:123")
    assert inhibitor_of("maintenance:patching") is None
