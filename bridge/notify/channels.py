"""The channel types a target may use: `channel:` in a rule file's `targets` section names one.

Each channel module defines `Options` (a strict pydantic model of the target's settings) and
`make(options, session) -> Channel`. A target's options are validated against its channel's
model when the rules load (start, reload, `bridge rules check`), after `${NAME}` references to
environment variables are replaced, so that secrets stay out of rule files.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import aiohttp
from pydantic import BaseModel, ValidationError

from bridge.notify.base import Channel, Transition
from rules.ruleset import RuleSet

MODULES = {
    "webhook": "bridge.notify.webhook",
    "slack": "bridge.notify.slack",
    "teams": "bridge.notify.teams",
    "email": "bridge.notify.email",
    "pagerduty": "bridge.notify.pagerduty",
    "servicenow": "bridge.notify.servicenow",
    "jira": "bridge.notify.jira",
}

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TargetError(ValueError):
    """A target's options do not fit its channel; the message names target and field."""


def module(channel: str) -> ModuleType:
    if channel not in MODULES:
        raise TargetError(f"unknown channel {channel!r}: use one of {', '.join(MODULES)}")
    return importlib.import_module(MODULES[channel])


def expand(value: Any, environ: Mapping[str, str]) -> Any:
    """Replace `${NAME}` in every string of an options tree with the environment's value;
    a missing variable is an error, not an empty string (an empty token fails late)."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise TargetError(f"environment variable {name} is not set")
            return environ[name]

        return _REFERENCE.sub(lookup, value)
    if isinstance(value, dict):
        return {k: expand(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, environ) for v in value]
    return value


def options(
    name: str, channel: str, raw: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> BaseModel:
    """The validated options of target `name`."""
    try:
        values = expand(dict(raw), os.environ if environ is None else environ)
    except TargetError as exc:
        raise TargetError(f"target {name!r}: {exc}") from None
    model: type[BaseModel] = module(channel).Options
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or channel}: {error['msg']}"
            for error in exc.errors()
        )
        raise TargetError(f"target {name!r} ({channel}): {problems}") from None


def ticket_state(channel: str, transition: Transition) -> str | None:
    """The state a delivered notification leaves the target's ticket in, for channels whose
    tickets are read back (a channel module's optional `ticket_state`)."""
    found = getattr(module(channel), "ticket_state", None)
    if found is None:
        return None
    state: str | None = found(transition)
    return state


def make(channel: str, validated: BaseModel, session: aiohttp.ClientSession) -> Channel:
    built: Channel = module(channel).make(validated, session)
    return built


def check_targets(rules: RuleSet, environ: Mapping[str, str] | None = None) -> list[str]:
    """`file:line: message` for every target of the rule set whose options its channel
    refuses (start, reload and `bridge rules check` report them with the rule errors)."""
    errors = []
    for target in rules.targets:
        try:
            options(target.name, target.channel, target.options, environ)
        except TargetError as exc:
            errors.append(f"{target.origin.file}:{target.origin.line}: {exc}")
    return errors
