"""The app fixtures of `tests/bridge`, on SQLite and on PostgreSQL (which refuses some text
SQLite stores, such as NUL or an index row over its size limit), with a ServiceNow target `x`
so that its inbound endpoint reads bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bridge.conftest import bridge, clock, database_url, pg_server_dsn, settings
from tests.bridge.test_rule_scenarios import shipped_rules_with

__all__ = [
    "bridge",
    "clock",
    "database_url",
    "pg_server_dsn",
    "settings",
    "settings_overrides",
]

SERVICENOW_TOKEN = "fuzz-token"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    rules = shipped_rules_with(tmp_path)
    target = {
        "name": "x",
        "channel": "servicenow",
        "options": {
            "instance_url": "http://127.0.0.1:9",  # never called: no route sends to it
            "username": "u",
            "password": "p",
            "inbound_token": SERVICENOW_TOKEN,
        },
    }
    (rules / "40-fuzz.yaml").write_text(yaml.safe_dump({"targets": [target]}))
    return {"rules_dir": rules}


def pytest_configure(config: pytest.Config) -> None:
    # Reporting a failing example imports hypothesis.extra._patching -> libcst ->
    # mypy_extensions.TypedDict, whose DeprecationWarning (an error under filterwarnings) turns
    # the report into an INTERNALERROR that hides the example.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )
