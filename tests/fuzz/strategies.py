"""Hypothesis strategies shared by the fuzz tests: JSON values, mutations of captured bodies,
and raw request bodies (bytes, not necessarily JSON)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.bridge.conftest import CAPTURED

HUGE = 1024 * 1024  # a 1 MB string
DEEP = 100_000  # nesting of the deepest raw body

# Numbers orjson can return: 64-bit integers and finite doubles (bigger integers come back as
# doubles). NaN and infinities only come from other decoders (stdlib `json`), see `EXTREMES`.
json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)

# Timestamps and numbers at and past the edges of what a sender writes.
OUT_OF_RANGE_TIMESTAMPS = [
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59Z",
    "99999-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-23T25:61:61Z",
    "2026-11-23T20:00:00",
    "2026-11-23T20:00:00.123456789123Z",
    "2026.11.23",
    "19:46:28",
    "0000.00.00",
    "9999.12.31",
    "99999.12.31",
    "24:00:00",
    "",
]
EXTREMES: list[Any] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    -1,
    -(2**63),
    2**64 - 1,
    10**400,  # stdlib json returns an int this big
    1e308,
    -1e308,
    0,
    "99999999999999999999999999",
    "-1",
    "NaN",
    "\ud800",  # a lone surrogate: what stdlib `json` makes of "\ud800"
    "a\udfffb",
    "\x00",
    "\u202e\ufeff\U0010ffff",
    "{EVENT.ID}",
    "{$ZABBIX.URL}",
]
SPECIAL_STRINGS: st.SearchStrategy[Any] = st.sampled_from(OUT_OF_RANGE_TIMESTAMPS + EXTREMES)


def deep(depth: int) -> Any:
    """`[[[...]]]` nested `depth` times, built without recursion."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def load_captured(source: str, pattern: str = "*.json") -> list[Any]:
    """The captured bodies of one sender, decoded (the files are never changed)."""
    paths = sorted((CAPTURED / source).glob(pattern))
    assert paths, f"no captured {pattern} in {CAPTURED / source}"
    return [json.loads(Path(path).read_bytes()) for path in paths]


Path_ = tuple[str | int, ...]


def _paths(value: Any) -> list[Path_]:
    """The paths into a JSON value (the root included) up to 13 steps deep, breadth first."""
    found: list[Path_] = [()]
    queue: list[tuple[Path_, Any]] = [((), value)]
    while queue:
        path, node = queue.pop(0)
        children: list[tuple[str | int, Any]] = []
        if isinstance(node, dict):
            children = list(node.items())
        elif isinstance(node, list):
            children = list(enumerate(node))
        for key, child in children:
            found.append((*path, key))
            if len(path) < 12:  # not into deep nesting: its paths would be quadratic in size
                queue.append(((*path, key), child))
    return found


def _replace(body: Any, path: Path_, make: Callable[[Any], Any]) -> Any:
    """`body` with the node at `path` replaced by `make(node)` (a `_DROP` result removes it)."""
    if not path:
        result = make(body)
        return None if result is _DROP else result
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    result = make(parent[key])
    if result is _DROP:
        del parent[key]
    else:
        parent[key] = result
    return body


_DROP = object()


HEAVY = ("huge", "deep", "many")  # at most one of these per body: sizes stay bounded


@st.composite
def _mutation(draw: st.DrawFn, heavy: bool) -> tuple[str, Callable[[Any], Any]]:
    kinds = ["drop", "value", "special", "type", "empty", "unknown", *(HEAVY if heavy else ())]
    kind = draw(st.sampled_from(kinds))
    return kind, _light(kind, draw) if kind not in HEAVY else _heavy(kind, draw)


def _light(kind: str, draw: st.DrawFn) -> Callable[[Any], Any]:
    if kind == "drop":
        return lambda _node: _DROP
    if kind == "value":
        value = draw(json_values)
        return lambda _node: copy.deepcopy(value)
    if kind == "special":
        special = draw(SPECIAL_STRINGS)
        return lambda _node: special
    if kind == "type":
        # The same content as another JSON type: "1" <-> 1, x -> [x], x -> {"x": x}.
        wrap = draw(st.sampled_from(["list", "dict", "str", "number"]))
        return lambda node: _retype(node, wrap)
    if kind == "empty":
        empty: Any = draw(st.sampled_from([None, "", [], {}, 0, False]))
        return lambda _node: copy.deepcopy(empty)
    if kind == "unknown":
        key, value = draw(st.text(max_size=20)), draw(json_values)
        return lambda node: {**node, key: value} if isinstance(node, dict) else node
    raise AssertionError(kind)


def _heavy(kind: str, draw: st.DrawFn) -> Callable[[Any], Any]:
    if kind == "huge":
        char = draw(st.sampled_from(["x", "é", "日", "\U0001f600", "\\", '"']))
        return lambda _node: char * (HUGE // len(char.encode()))
    if kind == "deep":
        depth = draw(st.sampled_from([50, 500]))
        return lambda _node: deep(depth)
    count = draw(st.sampled_from([0, 2, 1000]))  # many copies of a node, if it is small

    def many(node: Any) -> Any:
        return [copy.deepcopy(node) for _ in range(count if len(json.dumps(node)) < 2000 else 2)]

    return many


def _retype(node: Any, wrap: str) -> Any:
    if wrap == "list":
        return [node]
    if wrap == "dict":
        return {"x": node}
    if wrap == "str":
        return node if isinstance(node, str) else json.dumps(node)
    if isinstance(node, str):
        try:
            return int(node)
        except ValueError:
            return len(node)
    return 1


@st.composite
def mutated(draw: st.DrawFn, bodies: list[Any]) -> Any:
    """One of `bodies`, deep-copied, with one to three mutations at random places."""
    body = copy.deepcopy(draw(st.sampled_from(bodies)))
    heavy = False
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(body)))
        kind, mutation = draw(_mutation(not heavy))
        body = _replace(body, path, mutation)
        heavy = heavy or kind in HEAVY
    return body


def duplicate_key_text(body: Any, key: str, junk: Any) -> str:
    """`body` (an object) as JSON text with `key` written twice: `junk` first, then its value
    (decoders keep the last one), or junk last when the key is not in the body."""
    assert isinstance(body, dict)
    inner = json.dumps(body)[1:-1]
    extra = f"{json.dumps(key)}: {json.dumps(junk)}"
    if key in body:
        return "{" + extra + (", " + inner if inner else "") + "}"
    return "{" + (inner + ", " if inner else "") + extra + ", " + extra + "}"


def as_text(value: Any) -> str:
    """JSON text as a lenient encoder writes it: NaN, Infinity and lone surrogates (as
    `\\ud800` escapes) included."""
    return json.dumps(value, allow_nan=True, ensure_ascii=True)
