"""The rule engine's API refuses bad input with a 4xx that says what is wrong, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.bridge.conftest import Bridge

WINDOW = {
    "name": "w",
    "matchers": ['host="db-1"'],
    "start": "2026-11-24T10:00:00Z",
    "end": "2026-11-24T11:00:00Z",
    "created_by": "alice",
}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param([], "body must be a JSON object", id="not an object"),
        pytest.param({**WINDOW, "created_by": ""}, "created_by: required", id="no author"),
        pytest.param({**WINDOW, "created_by": 7}, "created_by: must be a string", id="author"),
        pytest.param({**WINDOW, "name": 5}, "name", id="name not a string"),
        pytest.param({**WINDOW, "name": "Bad Name"}, "invalid rule name", id="name format"),
        pytest.param({**WINDOW, "matchers": 'host="x"'}, "matchers", id="matchers not a list"),
        pytest.param({**WINDOW, "matchers": ["host=~("]}, "matchers.0", id="bad regex"),
        pytest.param({**WINDOW, "start": "2026-11-24T10:00:00"}, "start", id="naive time"),
        pytest.param({**WINDOW, "end": "2026-11-24T09:00:00Z"}, "end must be after start",
                     id="end before start"),
        pytest.param({**WINDOW, "cron": "0 2 * * *", "duration": "1h"}, "exactly one schedule",
                     id="two schedules"),
        pytest.param({k: v for k, v in WINDOW.items() if k not in ("start", "end")},
                     "exactly one schedule", id="no schedule"),
        pytest.param({**WINDOW, "colour": "red"}, "colour", id="unknown field"),
    ],
)  # fmt: skip
async def test_a_bad_maintenance_window_is_a_422_naming_the_problem(
    bridge: Bridge, body: Any, fragment: str
) -> None:
    status, answer = await bridge.post_json("/api/v1/maintenance", body)
    assert status == 422, answer
    assert fragment in answer["error"]
    listed = await bridge.get_json("/api/v1/maintenance")
    assert [w for w in listed["windows"] if w["origin"] == "api"] == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param({"status": "fixed"}, "status: must be one of", id="unknown status"),
        pytest.param({"status": 3}, "status: must be one of", id="status not a string"),
        pytest.param({"root_cause": ["x"]}, "root_cause: must be a string", id="root cause"),
        pytest.param({"title": "x"}, "title: not editable", id="not editable"),
        pytest.param("known_error", "body must be a JSON object", id="not an object"),
    ],
)
async def test_a_bad_problem_edit_is_a_422(bridge: Bridge, body: Any, fragment: str) -> None:
    response = await bridge.client.patch("/api/v1/problems/1", json=body)
    assert response.status == 422
    assert fragment in (await response.json())["error"]


async def test_unknown_records_are_404_and_bad_filters_400(bridge: Bridge) -> None:
    assert (await bridge.client.patch("/api/v1/problems/99", json={})).status == 404
    assert (await bridge.client.get("/api/v1/problems/x")).status == 404
    assert (await bridge.client.delete("/api/v1/maintenance/99")).status == 404
    assert (await bridge.client.delete("/api/v1/maintenance/x")).status == 404
    assert (await bridge.client.get("/api/v1/problems?status=open-ish")).status == 400
    assert (await bridge.client.get("/api/v1/alerts?hold=sleeping")).status == 400
