"""Rule indexes: the rules that may match an alert, found without scanning every rule.

A rule that requires an exact `alertname` (an equality matcher, or a regex that is a plain
alternation such as `HostDown|NodeDown`) is filed under each of those names; failing that, one
that requires an exact `__source__` under that source; the rest are general. The candidates
for an alert are the rules filed under its alertname and source plus the general ones, in rule
order, so "first match wins" means the same as a scan. Evaluation cost per alert then grows
with the rules that could apply to it, not with the size of the rule set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

from rules.match import LabelMatcher, MatchOp
from rules.model import SOURCE_LABEL

R = TypeVar("R")

_LITERALS = re.compile(r"[A-Za-z0-9_:-]+(?:\|[A-Za-z0-9_:-]+)*")
_KEYS = ("alertname", SOURCE_LABEL)


class RuleIndex(Generic[R]):
    def __init__(self, rules: Sequence[R], matchers_of: Callable[[R], Sequence[object]]) -> None:
        self._rules = tuple(rules)
        self._by: dict[str, dict[str, list[int]]] = {key: {} for key in _KEYS}
        self._general: list[int] = []
        for position, rule in enumerate(self._rules):
            self._file(position, matchers_of(rule))
        self._cache: dict[tuple[str, str], tuple[R, ...]] = {}

    def _file(self, position: int, matchers: Sequence[object]) -> None:
        for key in _KEYS:
            values = _required_values(matchers, key)
            if values is not None:
                for value in values:
                    self._by[key].setdefault(value, []).append(position)
                return
        self._general.append(position)

    def candidates(self, labels: Mapping[str, str]) -> tuple[R, ...]:
        """The rules that may match `labels`, in rule order."""
        name, source = labels.get("alertname", ""), labels.get(SOURCE_LABEL, "")
        found = self._cache.get((name, source))
        if found is None:
            positions = set(self._general)
            positions.update(self._by["alertname"].get(name, ()))
            positions.update(self._by[SOURCE_LABEL].get(source, ()))
            found = tuple(self._rules[p] for p in sorted(positions))
            if len(self._cache) < 100_000:  # alert names are few; a flood cannot grow it
                self._cache[name, source] = found
        return found


def _required_values(matchers: Sequence[object], key: str) -> list[str] | None:
    for matcher in matchers:
        if not isinstance(matcher, LabelMatcher) or matcher.name != key:
            continue
        if matcher.op is MatchOp.EQUAL:
            return [matcher.value]
        if matcher.op is MatchOp.REGEX and _LITERALS.fullmatch(matcher.value):
            return matcher.value.split("|")
    return None
