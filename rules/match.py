"""Alertmanager-style label matchers: `name="value"`, `name!="value"`, `name=~"re"`, `name!~"re"`.

Input: matcher text from the rule files (the `matchers:` lists) or the `match:` equality
shorthand. Output: `LabelMatcher` values that satisfy `rules.ruleset.Matcher`. The semantics are
Alertmanager's, so that a matcher copied from an Alertmanager route or silence means the same
here: a missing label equals the empty string, and regular expressions are fully anchored.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# The operator alternatives are ordered so that `=~` wins over `=`.
_MATCHER = re.compile(r"\s*(?P<name>[^\s=!~\"]*)\s*(?P<op>=~|!=|!~|=)?\s*(?P<value>.*?)\s*", re.S)

_OPS_HINT = "op one of =, !=, =~, !~"
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n"}


class MatcherError(ValueError):
    """The text of a matcher cannot be parsed or its regular expression does not compile."""


class MatchOp(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"

    @property
    def is_regex(self) -> bool:
        return self in (MatchOp.REGEX, MatchOp.NOT_REGEX)

    @property
    def is_negative(self) -> bool:
        return self in (MatchOp.NOT_EQUAL, MatchOp.NOT_REGEX)


def is_label_name(text: str) -> bool:
    """True for a valid label name; the `__source__`-style pseudo-labels are valid too."""
    return LABEL_NAME.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One matcher; equal matchers compare equal (the compiled regex is not compared)."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not is_label_name(self.name):
            raise MatcherError(f"invalid label name {self.name!r}: must match {LABEL_NAME.pattern}")
        if self.op.is_regex:
            object.__setattr__(self, "_regex", _compile(self.value))

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self._regex is not None:
            found = self._regex.fullmatch(actual) is not None
        else:
            found = actual == self.value
        return found != self.op.is_negative

    def __str__(self) -> str:
        escaped = "".join(_ESCAPES.get(char, char) for char in self.value)
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> LabelMatcher:
    """Parse one matcher such as `severity=~"critical|major"` or `env!=prod`."""
    found = _MATCHER.fullmatch(text)
    if found is None or found["op"] is None:
        raise MatcherError(f"invalid matcher {text!r}: expected <label><op><value>, {_OPS_HINT}")
    if not found["name"]:
        raise MatcherError(f"invalid matcher {text!r}: missing label name before {found['op']!r}")
    try:
        return LabelMatcher(found["name"], MatchOp(found["op"]), _parse_value(found["value"]))
    except MatcherError as exc:
        raise MatcherError(f"invalid matcher {text!r}: {exc}") from None


def matchers_from_mapping(mapping: Mapping[str, str]) -> tuple[LabelMatcher, ...]:
    """The `match: {name: value}` shorthand: one equality matcher per entry."""
    return tuple(LabelMatcher(name, MatchOp.EQUAL, value) for name, value in mapping.items())


def _compile(expression: str) -> re.Pattern[str]:
    # Compiling the bare text first reports positions in the user's own text and refuses input
    # such as `a)|(b` that only becomes valid once wrapped. fullmatch() on `(?:re)` is the exact
    # equivalent of Alertmanager's `^(?:re)$` in Go; Python's `$` would accept a trailing newline.
    try:
        re.compile(expression)
        return re.compile(f"(?:{expression})")
    except re.error as exc:
        raise MatcherError(f"invalid regular expression {expression!r}: {exc}") from None


def _parse_value(raw: str) -> str:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"') or _ends_in_escape(raw[1:-1]):
            raise MatcherError("a quoted value must end with its closing double quote")
        return _unescape(raw[1:-1])
    if raw[:1] in ("=", "~"):
        # Most likely a typo such as `==` or `!=~`; a value that really starts so can be quoted.
        raise MatcherError(f"unquoted value {raw!r} starts with {raw[0]!r}; quote the value")
    return _unescape(raw)


def _ends_in_escape(body: str) -> bool:
    """True when the closing quote is escaped (an odd run of trailing backslashes)."""
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


def _unescape(body: str) -> str:
    # Like Alertmanager, an unknown escape keeps its backslash, so `instance=~"db\d+"` works.
    chars: list[str] = []
    pending_backslash = False
    for char in body:
        if pending_backslash:
            chars.append(_UNESCAPES.get(char, "\\" + char))
            pending_backslash = False
        elif char == "\\":
            pending_backslash = True
        elif char == '"':
            raise MatcherError('unescaped double quote in value (write \\")')
        else:
            chars.append(char)
    if pending_backslash:
        chars.append("\\")
    return "".join(chars)
