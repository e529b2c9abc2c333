"""Notification text: title and body from Jinja2 templates in the sandboxed environment.

Order for each part: the target's own template (rule file) > `<channel>.<part>.j2` >
`<part>.j2` in the templates directory > a built-in text. A template that fails to render
falls through to the next one, so a broken template never stops a notification.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.notify.base import Rendered
from rules.ruleset import MessageTemplate, Target

log = logging.getLogger(__name__)

PARTS = ("title", "body")
TITLE_MAX_CHARS = 250

_RENDER_ERRORS = (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError)


class TemplateLoadError(Exception):
    pass


class Templates:
    def __init__(self, directory: Path | None) -> None:
        self._env = ImmutableSandboxedEnvironment(
            undefined=jinja2.ChainableUndefined, autoescape=False, keep_trailing_newline=False
        )
        self._files: dict[str, jinja2.Template] = {}
        if directory is not None:
            self._load(directory)

    def _load(self, directory: Path) -> None:
        if not directory.is_dir():
            raise TemplateLoadError(f"{directory}: templates directory does not exist")
        for path in sorted(directory.glob("*.j2")):
            try:
                self._files[path.stem] = self._env.from_string(path.read_text("utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateLoadError(f"{path}: cannot read: {exc}") from None
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateLoadError(f"{path}:{exc.lineno}: {exc.message}") from None

    @property
    def names(self) -> list[str]:
        return sorted(self._files)

    def render(self, target: Target, context: Mapping[str, Any]) -> Rendered:
        title = self._part(target.title, target.channel, "title", context)
        body = self._part(target.body, target.channel, "body", context)
        title = " ".join(title.split())[:TITLE_MAX_CHARS] or _builtin_title(context)
        return Rendered(title, body.strip() + "\n")

    def _part(
        self,
        own: MessageTemplate | None,
        channel: str,
        part: str,
        context: Mapping[str, Any],
    ) -> str:
        if own is not None:
            text = own.render_message(context)
            if text.strip():
                return text
        for name in (f"{channel}.{part}", part):
            template = self._files.get(name)
            if template is None:
                continue
            try:
                text = template.render(context)
            except _RENDER_ERRORS as exc:
                log.warning("template %s.j2 failed: %s", name, exc)
                continue
            if text.strip():
                return text
        return _builtin_title(context) if part == "title" else _builtin_body(context)


def _builtin_title(context: Mapping[str, Any]) -> str:
    incident = context["incident"]
    transition = str(context["transition"])
    prefix = "" if transition == "opened" else f"[{transition.upper()}] "
    return f"{prefix}[P{incident.get('priority')}] {incident.get('title', '')}"


def _builtin_body(context: Mapping[str, Any]) -> str:
    incident = context["incident"]
    lines = [
        str(incident.get("title", "")),
        f"Status: {incident.get('status')}, priority P{incident.get('priority')}",
    ]
    if context.get("reason"):
        lines.append(f"Why: {context['reason']}")
    lines.append(str(context.get("url", "")))
    return "\n".join(lines)
