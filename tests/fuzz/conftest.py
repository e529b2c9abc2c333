"""The app fixtures of `tests/bridge`, on SQLite only (fuzzing is about input, not the store),
with a ServiceNow target `x` so that its inbound endpoint reads bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bridge.conftest import bridge, clock, settings
from tests.bridge.test_rule_scenarios import shipped_rules_with

__all__ = ["bridge", "clock", "database_url", "settings", "settings_overrides"]

SERVICENOW_TOKEN = "fuzz-token"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"


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
