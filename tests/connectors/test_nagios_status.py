"""Nagios status.dat -> object states, proven by the captured status files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.nagios_status import ObjectState, StateType, StatusFileError, parse_status

NAGIOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "captured" / "nagios"
PROBLEMS = "status-1-problems.dat"
HANDLED = "status-2-handled-problems.dat"


def states(name: str) -> dict[str, ObjectState]:
    return {state.fingerprint: state for state in parse_status((NAGIOS / name).read_text())}


def summary(name: str) -> dict[str, tuple[str, bool, bool, int]]:
    """fingerprint -> (state, acknowledged, flapping, downtime depth)."""
    return {
        key: (
            s.state,
            s.problem_has_been_acknowledged,
            s.is_flapping,
            s.scheduled_downtime_depth,
        )
        for key, s in states(name).items()
    }


def test_the_captures_are_there() -> None:
    assert sorted(path.name for path in NAGIOS.glob("status-*.dat")) == [PROBLEMS, HANDLED]


def test_three_unhandled_service_problems() -> None:
    assert summary(PROBLEMS) == {
        "host:e2e-app-01": ("UP", False, False, 0),
        "host:e2e-db-01": ("UP", False, False, 0),
        "host:e2e-web-01": ("UP", False, False, 0),
        "service:e2e-db-01/PostgreSQL": ("CRITICAL", False, False, 0),
        "service:e2e-web-01/Disk /var": ("WARNING", False, False, 0),
        "service:e2e-web-01/HTTP": ("CRITICAL", False, False, 0),
        "service:e2e-web-01/Queue consumer": ("OK", False, False, 0),
    }
    problems = [s for s in states(PROBLEMS).values() if s.is_problem]
    assert len(problems) == 3
    assert not any(s.is_handled for s in problems)


def test_handled_problems() -> None:
    assert summary(HANDLED) == {
        "host:e2e-app-01": ("UNREACHABLE", False, False, 0),
        "host:e2e-db-01": ("DOWN", True, False, 0),
        "host:e2e-web-01": ("UP", False, False, 0),
        "service:e2e-db-01/PostgreSQL": ("CRITICAL", False, False, 1),
        "service:e2e-web-01/Disk /var": ("WARNING", False, False, 0),
        "service:e2e-web-01/HTTP": ("CRITICAL", True, False, 0),
        "service:e2e-web-01/Queue consumer": ("OK", False, True, 0),
    }
    handled = {key for key, s in states(HANDLED).items() if s.is_problem and s.is_handled}
    assert handled == {"host:e2e-db-01", "service:e2e-db-01/PostgreSQL", "service:e2e-web-01/HTTP"}


def test_one_object_in_detail() -> None:
    db = states(PROBLEMS)["service:e2e-db-01/PostgreSQL"]
    assert db == ObjectState(
        object_type="service",
        host="e2e-db-01",
        service="PostgreSQL",
        current_state=2,
        state_type=StateType.HARD,
        problem_has_been_acknowledged=False,
        scheduled_downtime_depth=0,
        is_flapping=False,
        last_state_change=datetime(2026, 11, 23, 20, 1, 48, tzinfo=UTC),
        last_check=datetime(2026, 11, 23, 20, 1, 48, tzinfo=UTC),
        plugin_output="CRITICAL - could not connect to server: Connection refused",
        long_plugin_output="Is the server running on host 127.0.0.1 and accepting TCP/IP"
        " connections on port 5433?\\nlast successful connection: 4 minutes ago",
        current_problem_id=3,
        last_problem_id=0,
        custom_variables={"RUNBOOK": "https://runbooks.e2e.example/nagios"},
    )


def test_problem_ids_match_the_notifications() -> None:
    handled = states(HANDLED)
    assert handled["host:e2e-app-01"].current_problem_id == 7
    assert handled["host:e2e-db-01"].current_problem_id == 6
    queue = handled["service:e2e-web-01/Queue consumer"]
    assert (queue.current_problem_id, queue.last_problem_id) == (0, 5)
    assert handled["host:e2e-db-01"].custom_variables == {"TEAM": "dba"}


def test_host_state_numbers_and_never_times() -> None:
    text = BLOCK.replace("current_state=0", "current_state=1")
    text = text.replace("state_type=1", "state_type=0")
    [host] = parse_status(text)
    assert (host.state, host.state_type, host.last_check) == ("DOWN", StateType.SOFT, None)


BLOCK = """# comment
info {
\tversion=4.4.6
\t}

hoststatus {
\thost_name=h1
\tcurrent_state=0
\tstate_type=1
\tlast_check=0
\tplugin_output=a=b; c
\t}
"""


def test_values_keep_everything_after_the_first_equals_sign() -> None:
    [host] = parse_status(BLOCK)
    assert host.plugin_output == "a=b; c"
    assert host.fingerprint == "host:h1"


def test_an_empty_file_has_no_objects() -> None:
    assert parse_status("") == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hoststatus {\n\thost_name=h1\n", "line 1: block 'hoststatus' is not closed"),
        ("host_name=h1\n", "line 1: expected 'name {'"),
        ("hoststatus {\n\tjunk\n\t}\n", "line 2: expected key=value"),
        ("hoststatus {\n\tcurrent_state=0\n\t}\n", "line 1: the block has no host_name"),
        ("servicestatus {\n\thost_name=h1\n\t}\n", "no service_description"),
        ("hoststatus {\n\thost_name=h1\n\tcurrent_state=x\n\t}\n", "current_state must be"),
    ],
)
def test_a_broken_file_is_an_error(text: str, says: str) -> None:
    with pytest.raises(StatusFileError, match=says):
        parse_status(text)
