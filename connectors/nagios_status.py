"""Nagios `status.dat` text -> the current state of every host and service.

Input: the text of the status file Nagios Core 4 rewrites every `status_update_interval`
(`status_file` in nagios.cfg, Debian: `/var/lib/nagios4/status.dat`). Output: one
`ObjectState` per `hoststatus` and `servicestatus` block, in file order; the other blocks
(`info`, `programstatus`, `contactstatus`, comments, downtimes) are skipped. A file that is not
in this shape raises `StatusFileError` naming the line. Pure: the reconciliation job reads the
file and compares these states with the open alerts of source "nagios" (fingerprints from
`connectors.nagios.fingerprint`). No rule section drives this module and it feeds no metric.

What the file holds, proven by the captures in `shared/fixtures/captured/nagios/`:
* Blocks are `name {`, then one `key=value` a line (tab-indented), then `}`; `#` lines are
  comments. Values are raw: `plugin_output` keeps the characters a notification in argument
  mode loses, `long_plugin_output` escapes newlines as `\\n`.
* States are numbers: host 0 UP, 1 DOWN, 2 UNREACHABLE; service 0 OK, 1 WARNING, 2 CRITICAL,
  3 UNKNOWN. `state_type` 0 is soft, 1 hard.
* "Handled" is `problem_has_been_acknowledged=1` or `scheduled_downtime_depth` > 0.
* Times are Unix seconds, 0 for never. Custom variables are `_NAME=<modified>;<value>`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.nagios import fingerprint

_STATE_NAMES = {
    "host": ("UP", "DOWN", "UNREACHABLE"),
    "service": ("OK", "WARNING", "CRITICAL", "UNKNOWN"),
}
_BLOCK_TYPES = {"hoststatus": "host", "servicestatus": "service"}


class StatusFileError(ValueError):
    """The text is not a Nagios status file; the message names the line."""


class StateType(enum.StrEnum):
    SOFT = "soft"
    HARD = "hard"


@dataclass(frozen=True, slots=True)
class ObjectState:
    """One host or service as `status.dat` last described it."""

    object_type: str
    host: str
    service: str  # "" for a host
    current_state: int
    state_type: StateType
    problem_has_been_acknowledged: bool
    scheduled_downtime_depth: int
    is_flapping: bool
    last_state_change: datetime | None
    last_check: datetime | None
    plugin_output: str
    long_plugin_output: str
    current_problem_id: int
    last_problem_id: int
    custom_variables: Mapping[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """The state's name as a notification spells it (CRITICAL, UNREACHABLE...)."""
        names = _STATE_NAMES[self.object_type]
        return names[self.current_state] if self.current_state < len(names) else "UNKNOWN"

    @property
    def is_problem(self) -> bool:
        return self.current_state != 0

    @property
    def is_handled(self) -> bool:
        return self.problem_has_been_acknowledged or self.scheduled_downtime_depth > 0

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.object_type, self.host, self.service)


def parse_status(text: str) -> list[ObjectState]:
    return [
        _object_state(_BLOCK_TYPES[name], values, line)
        for name, values, line in _blocks(text)
        if name in _BLOCK_TYPES
    ]


def _blocks(text: str) -> Iterator[tuple[str, dict[str, str], int]]:
    """(block name, its values, the line it starts on) for every block of the file."""
    name: str | None = None
    values: dict[str, str] = {}
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (name is None and line.startswith("#")):
            continue
        if name is None:
            if not line.endswith("{"):
                raise StatusFileError(f"line {number}: expected 'name {{', got {line[:40]!r}")
            name, values, start = line[:-1].strip(), {}, number
        elif line == "}":
            yield name, values, start
            name = None
        else:
            key, equals, value = raw.lstrip().partition("=")
            if not equals:
                raise StatusFileError(f"line {number}: expected key=value, got {line[:40]!r}")
            values[key] = value
    if name is not None:
        raise StatusFileError(f"line {start}: block {name!r} is not closed")


def _object_state(object_type: str, values: dict[str, str], line: int) -> ObjectState:
    block = _Block(values, line)
    return ObjectState(
        object_type=object_type,
        host=block.text("host_name", required=True),
        service=block.text("service_description", required=object_type == "service"),
        current_state=block.number("current_state"),
        state_type=StateType.HARD if block.number("state_type") == 1 else StateType.SOFT,
        problem_has_been_acknowledged=block.number("problem_has_been_acknowledged") != 0,
        scheduled_downtime_depth=block.number("scheduled_downtime_depth"),
        is_flapping=block.number("is_flapping") != 0,
        last_state_change=block.time("last_state_change"),
        last_check=block.time("last_check"),
        plugin_output=block.text("plugin_output"),
        long_plugin_output=block.text("long_plugin_output"),
        current_problem_id=block.number("current_problem_id"),
        last_problem_id=block.number("last_problem_id"),
        custom_variables=block.custom_variables(),
    )


@dataclass(frozen=True, slots=True)
class _Block:
    values: dict[str, str]
    line: int

    def text(self, key: str, *, required: bool = False) -> str:
        value = self.values.get(key)
        if value is None and required:
            raise StatusFileError(f"line {self.line}: the block has no {key}")
        return value or ""

    def number(self, key: str) -> int:
        value = self.values.get(key, "0")
        try:
            return int(value)
        except ValueError:
            raise StatusFileError(
                f"line {self.line}: {key} must be a whole number, got {value[:40]!r}"
            ) from None

    def time(self, key: str) -> datetime | None:
        seconds = self.number(key)
        return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None

    def custom_variables(self) -> dict[str, str]:
        # `_TEAM=0;infra`: the part before ";" says whether the value was changed at run time.
        return {
            key[1:]: value.partition(";")[2]
            for key, value in self.values.items()
            if key.startswith("_")
        }
