"""YAML files read for rules, the CMDB and generic mappings, with the line of every node kept.

`parse_yaml` refuses duplicate keys and returns the node tree next to the data, so that
`YamlSource.error` can report a validation error at `section[2].key` as `file:line: message`
at the line of that key or list item; `describe_error` turns a pydantic error into such a line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic_core import ErrorDetails

Loc = tuple[int | str, ...]

# An error about one item of a list that is only detectable on the whole list (a duplicate)
# carries the item's position under this key in its context, and is reported at that item.
ERROR_INDEX = "index"


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, which PyYAML would silently overwrite.

    The check runs when a mapping is composed, before construction flattens merge keys (`<<`),
    whose keys may legitimately be overridden.
    """

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            if (key.tag, key.value) in seen:
                first = seen[key.tag, key.value]
                message = f"duplicate key {key.value!r} (first at line {first})"
                raise yaml.composer.ComposerError(None, None, message, key.start_mark)
            seen[key.tag, key.value] = key.start_mark.line + 1
        return node


@dataclass(frozen=True, slots=True)
class YamlSource:
    """One parsed file: where to report, and the node tree to find lines in."""

    path: str
    root: yaml.Node | None

    def error(self, loc: Loc, message: str, where: Loc | None = None) -> str:
        shown = _format_loc(loc if where is None else where)
        prefix = f"{shown}: " if shown else ""
        return f"{self.path}:{self.line(loc)}: {prefix}{message}"

    def line(self, loc: Loc) -> int:
        """The line of the deepest key or list item on `loc` that exists in the file."""
        if self.root is None:
            return 1
        node, line = self.root, self.root.start_mark.line + 1
        for part in loc:
            step = _child(node, part)
            if step is not None:
                marker, node = step
                line = marker.start_mark.line + 1
        return line


def parse_yaml(path: str, data: bytes) -> tuple[YamlSource, object] | str:
    """The node tree and the data of one file, or its YAML error as `file:line: message`."""
    loader = _StrictLoader(data)
    try:
        root = loader.get_single_node()
        document = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        return _describe_yaml(path, exc)
    except yaml.YAMLError as exc:
        return f"{path}:1: invalid YAML: {exc}"
    finally:
        loader.dispose()
    return YamlSource(path, root), document


def _describe_yaml(path: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    message = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem and exc.context_mark is not None:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    return f"{path}:{line}: invalid YAML: {message}"


def error_loc(detail: ErrorDetails) -> Loc:
    """Pydantic's `loc`, narrowed to the list item that a whole-list check names."""
    loc: Loc = tuple(detail["loc"])
    index = (detail.get("ctx") or {}).get(ERROR_INDEX)
    return (*loc, index) if isinstance(index, int) else loc


def describe_error(source: YamlSource, detail: ErrorDetails) -> str:
    loc = error_loc(detail)
    kind = detail["type"]
    if kind == "extra_forbidden":
        return source.error(loc, f"unknown key {loc[-1]!r}", where=loc[:-1])
    if kind == "missing":
        return source.error(loc, f"missing required key {loc[-1]!r}", where=loc[:-1])
    if loc[-1:] == ("[key]",):
        # A bad mapping key: point at the key, name the mapping (the message names the key).
        return source.error(loc, detail["msg"], where=loc[:-2])
    if kind == "string_type":
        return source.error(loc, "expected a string (quote numbers and booleans in YAML)")
    return source.error(loc, detail["msg"])


def _child(node: yaml.Node, part: int | str) -> tuple[yaml.Node, yaml.Node] | None:
    """(the node to point at, the node to descend into) for one step of a pydantic `loc`."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        # The last occurrence wins, as in construction (and after merge keys are flattened).
        for key, value in reversed(node.value):
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item = node.value[part]
        return item, item
    return None


def _format_loc(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
