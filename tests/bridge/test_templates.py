"""Notification text: the shipped templates, a directory's overrides per channel, a target's own
templates, and a broken template falling through to the next one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.notify.templates import TemplateLoadError, Templates
from rules.loader import JinjaMessage
from rules.ruleset import Target
from tests.notify.samples import ALERTS, incident

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "templates"


def context(transition: str = "opened", **changes: Any) -> dict[str, Any]:
    return {
        "incident": incident(**changes),
        "alerts": list(ALERTS),
        "transition": transition,
        "reason": "",
        "url": "https://bridge.example/api/v1/incidents/42",
        "target": "oncall",
    }


def own(text: str) -> JinjaMessage:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.ChainableUndefined)
    return JinjaMessage(text, env.from_string(text))


def test_the_shipped_templates_say_what_happened_and_link_back() -> None:
    rendered = Templates(SHIPPED).render(Target("oncall", "webhook"), context())
    assert rendered.title == "[P1] db-1 is down"
    assert "Service: payments" in rendered.body
    assert "- [firing] HostDown on db-1: db-1 does not answer" in rendered.body
    assert rendered.body.rstrip().endswith("https://bridge.example/api/v1/incidents/42")
    resolved = Templates(SHIPPED).render(Target("oncall", "webhook"), context("resolved"))
    assert resolved.title == "[RESOLVED] [P1] db-1 is down"


def test_a_channel_file_overrides_the_default_and_a_target_overrides_both(
    tmp_path: Path,
) -> None:
    (tmp_path / "title.j2").write_text("default {{ incident.title }}")
    (tmp_path / "slack.title.j2").write_text("slack {{ incident.title }}")
    templates = Templates(tmp_path)
    assert templates.render(Target("a", "email"), context()).title == "default db-1 is down"
    assert templates.render(Target("b", "slack"), context()).title == "slack db-1 is down"
    mine = Target("c", "slack", title=own("mine: {{ incident.ci }}"))
    assert templates.render(mine, context()).title == "mine: db-1"


def test_a_template_that_fails_falls_through_and_never_stops_the_message(
    tmp_path: Path,
) -> None:
    (tmp_path / "title.j2").write_text("{{ incident.priority / 0 }}")
    (tmp_path / "body.j2").write_text("{{ incident.title | int + [] }}")
    broken = Target("a", "webhook", body=own("{{ 1 / 0 }}"))
    rendered = Templates(tmp_path).render(broken, context())
    assert rendered.title == "[P1] db-1 is down"  # the built-in text
    assert "db-1 is down" in rendered.body


def test_the_sandbox_refuses_unsafe_templates(tmp_path: Path) -> None:
    (tmp_path / "title.j2").write_text("{{ incident.__class__.__mro__ }}")
    rendered = Templates(tmp_path).render(Target("a", "webhook"), context())
    assert "class" not in rendered.title


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [("title.j2", "{% if %}", "title.j2:1"), ("body.j2", b"\xff\xfe", "cannot read")],
)
def test_a_bad_templates_directory_is_refused_at_start(
    tmp_path: Path, name: str, text: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(TemplateLoadError, match=message):
        Templates(tmp_path)
    with pytest.raises(TemplateLoadError, match="does not exist"):
        Templates(tmp_path / "missing")
