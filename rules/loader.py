"""Reads the rule directory and compiles it into one immutable `RuleSet`.

Input: a directory of `*.yaml` / `*.yml` files (read in file-name order, not recursive). Output:
a `RuleSet`, or `RuleLoadError` listing every problem of every file as `file:line: message`.
Nothing takes effect unless all files are valid, so a reload either swaps in a whole new rule
set or changes nothing. The YAML node tree is kept next to the parsed data so that a validation
error at `incidents[2].group_by[1]` is reported at the line of that key or list item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from rules.match import matchers_from_mapping, parse_matcher
from rules.ruleset import IncidentRule, RuleSet
from rules.schema import ERROR_INDEX, IncidentRuleSpec, RuleFile

TITLE_MAX_CHARS = 200
RULE_SUFFIXES = (".yaml", ".yml")

Loc = tuple[int | str, ...]

# What a sandboxed template can raise from the data it is given (e.g. `{{ labels.x | int / 0 }}`).
_RENDER_ERRORS = (
    jinja2.TemplateError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    RecursionError,
)


class RuleLoadError(Exception):
    """The rule files are invalid; `errors` holds one `file:line: message` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid rule files:\n" + "\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class JinjaTitle:
    """A compiled `title` template; it never raises, so a bad title cannot drop an alert."""

    source: str
    template: jinja2.Template = field(repr=False, compare=False)

    def render(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        try:
            text = self.template.render(labels=labels, annotations=annotations)
        except _RENDER_ERRORS:
            text = ""
        # Collapsing whitespace keeps a title on one line (mail subjects, chat headers).
        title = " ".join(text.split())[:TITLE_MAX_CHARS]
        # Empty means "no title": the incidents stage then builds its default one.
        return title


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


def load_rules(directory: Path) -> RuleSet:
    """Load and compile every rule file in `directory`; raise `RuleLoadError` on any problem."""
    if not directory.is_dir():
        raise RuleLoadError([f"{directory}:1: rules directory does not exist"])
    paths = sorted(p for p in directory.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())
    compiler = _Compiler()
    contents: dict[str, bytes] = {}
    for path in paths:
        try:
            contents[path.name] = path.read_bytes()
        except OSError as exc:
            compiler.errors.append(f"{path}:1: cannot read file: {exc.strerror}")
            continue
        compiler.add_file(str(path), contents[path.name])
    if compiler.errors:
        raise RuleLoadError(compiler.errors)
    return RuleSet(
        incident_rules=tuple(compiler.incident_rules),
        files=tuple(contents),
        digest=_digest(contents),
    )


class _Compiler:
    """Accumulates rules and errors across files, so one load reports every problem."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.incident_rules: list[IncidentRule] = []
        self._rule_sites: dict[str, str] = {}
        self._env = ImmutableSandboxedEnvironment(
            undefined=jinja2.ChainableUndefined, autoescape=False
        )

    def add_file(self, path: str, data: bytes) -> None:
        parsed = parse_yaml(path, data)
        if isinstance(parsed, str):
            self.errors.append(parsed)
            return
        source, document = parsed
        rule_file = self._validate(source, document)
        if rule_file is not None:
            for index, spec in enumerate(rule_file.incidents):
                self._add_incident_rule(source, ("incidents", index), spec)

    def _validate(self, source: YamlSource, document: object) -> RuleFile | None:
        if document is None:
            return RuleFile()
        if not isinstance(document, dict):
            self.errors.append(source.error((), "the top level must be a mapping of sections"))
            return None
        try:
            return RuleFile.model_validate(document)
        except ValidationError as exc:
            details = sorted(exc.errors(), key=lambda detail: source.line(_error_loc(detail)))
            self.errors.extend(describe_error(source, detail) for detail in details)
            return None

    def _add_incident_rule(self, source: YamlSource, loc: Loc, spec: IncidentRuleSpec) -> None:
        first = self._rule_sites.get(spec.name)
        if first is not None:
            message = f"duplicate rule name {spec.name!r} (first defined at {first})"
            self.errors.append(source.error((*loc, "name"), message, where=loc))
        else:
            self._rule_sites[spec.name] = f"{source.path}:{source.line((*loc, 'name'))}"
        title = self._compile_title(source, (*loc, "title"), spec.title)
        matchers = tuple(parse_matcher(text) for text in spec.matchers)
        self.incident_rules.append(
            IncidentRule(
                name=spec.name,
                matchers=(matchers + matchers_from_mapping(spec.match)),
                group_by=tuple(spec.group_by),
                title=title,
                source_file=source.path,
                source_line=source.line(loc),
            )
        )

    def _compile_title(self, source: YamlSource, loc: Loc, text: str | None) -> JinjaTitle | None:
        if text is None:
            return None
        try:
            return JinjaTitle(text, self._env.from_string(text))
        except jinja2.TemplateSyntaxError as exc:
            message = f"invalid template: {exc.message} (template line {exc.lineno})"
            self.errors.append(source.error(loc, message))
            return None


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


def _error_loc(detail: ErrorDetails) -> Loc:
    """Pydantic's `loc`, narrowed to the list item that a whole-list check names."""
    loc: Loc = tuple(detail["loc"])
    index = (detail.get("ctx") or {}).get(ERROR_INDEX)
    return (*loc, index) if isinstance(index, int) else loc


def describe_error(source: YamlSource, detail: ErrorDetails) -> str:
    loc = _error_loc(detail)
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


def _digest(contents: Mapping[str, bytes]) -> str:
    """sha256 over the sorted (file name, bytes) pairs; lengths keep the framing unambiguous."""
    digest = hashlib.sha256()
    for name in sorted(contents):
        data = contents[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
