"""The shipped example of notification rules loads with the shipped rules, every target's
options fit its channel once the environment variables it names are set, and without them
the check names each missing variable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.notify.channels import check_targets
from rules.loader import load_rules

CONFIG = Path(__file__).resolve().parents[2] / "config"
ENVIRONMENT = {
    "PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "TEAMS_WORKFLOW_URL": "https://prod-00.westus.logic.azure.com/workflows/x",
    "SMTP_PASSWORD": "secret",
    "SERVICENOW_PASSWORD": "secret",
    "SERVICENOW_INBOUND_TOKEN": "token",
    "JIRA_API_TOKEN": "token",
    "WEBHOOK_SECRET": "secret",
}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in [*(CONFIG / "rules").glob("*.yaml"), CONFIG / "notify" / "40-notify.yaml"]:
        shutil.copy(path, rules / path.name)
    shutil.copy(CONFIG / "cmdb.yaml", tmp_path / "cmdb.yaml")
    return rules


def test_the_example_loads_and_every_target_fits_its_channel(rules_dir: Path) -> None:
    rules = load_rules(rules_dir)
    assert sorted({t.channel for t in rules.targets}) == [
        "email", "jira", "pagerduty", "servicenow", "slack", "teams", "webhook",
    ]  # fmt: skip
    assert check_targets(rules, ENVIRONMENT) == []
    assert [r.name for r in rules.routes][:2] == ["database-urgent", "ops"]


def test_without_the_environment_each_missing_variable_is_named(rules_dir: Path) -> None:
    errors = check_targets(load_rules(rules_dir), {})
    assert any("environment variable PAGERDUTY_ROUTING_KEY is not set" in e for e in errors)
    assert all(e.startswith(f"{rules_dir / '40-notify.yaml'}:") for e in errors)
