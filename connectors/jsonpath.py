"""Paths into JSON bodies, as the generic webhook mappings write them.

Syntax: dotted keys (`alerts.labels.severity`), `[N]` indexes (`alerts[0]`), `"double quoted"`
keys for keys holding dots, brackets, blanks or `$` (`labels."app.kubernetes.io/name"`), and a
leading `$` to start at the whole body instead of the item (`$.groupKey`). No wildcards. A path
is checked when its mapping loads; `parse_path` raises a pydantic error naming the character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic_core import PydanticCustomError

_STEP = re.compile(
    r'(?P<dot>\.)?(?:"(?P<quoted>[^"]+)"|(?P<bare>[^.\[\]"\s$]+))|\[(?P<index>\d+)\]'
)


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A parsed path: `text` as written (it names the field in rejects), `steps` to walk."""

    text: str
    steps: tuple[str | int, ...]
    from_root: bool = False

    def lookup(self, item: object, body: object) -> object:
        """The value at this path in `item` (or in `body` for `$` paths); None when a key or
        index is missing."""
        value = body if self.from_root else item
        for step in self.steps:
            if isinstance(step, int):
                value = value[step] if isinstance(value, list) and step < len(value) else None
            else:
                value = value.get(step) if isinstance(value, dict) else None
        return value


def parse_path(value: object) -> JsonPath:
    if not isinstance(value, str):
        raise PydanticCustomError("path_type", "a path must be a string, like alerts[0].status")
    from_root = value == "$" or value.startswith(("$.", "$["))
    rest = value[1:] if from_root else value
    steps: list[str | int] = []
    position = 0
    while position < len(rest):
        match = _STEP.match(rest, position)
        key_needs_dot = position > 0 or from_root
        if match is None or (match["index"] is None and bool(match["dot"]) != key_needs_dot):
            raise PydanticCustomError(
                "path",
                "invalid path '{path}' at character {at}: write keys.with.dots, [N] indexes "
                'and "quoted keys" for keys that hold dots, brackets or blanks',
                {"path": value, "at": position + 1 + from_root},
            )
        index = match["index"]
        steps.append(int(index) if index is not None else match["quoted"] or match["bare"])
        position = match.end()
    if not steps and not from_root:
        raise PydanticCustomError("path", "a path must not be empty")
    return JsonPath(value, tuple(steps), from_root)
