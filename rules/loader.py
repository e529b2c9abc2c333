"""Reads the rule directory and compiles it into one immutable `RuleSet`.

Input: a directory of `*.yaml` / `*.yml` files (read in file-name order, not recursive). Output:
a `RuleSet`, or `RuleLoadError` listing every problem of every file as `file:line: message`.
Nothing takes effect unless all files are valid, so a reload either swaps in a whole new rule
set or changes nothing. The YAML node tree is kept next to the parsed data so that a validation
error at `incidents[2].group_by[1]` is reported at the line of that key or list item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from rules.cmdb import CmdbLoadError, parse_cmdb
from rules.compile import COMPILERS, compile_correlate
from rules.flapping import compile_flapping
from rules.priority import PriorityPolicy
from rules.ruleset import Origin, RuleSet, Target, Topology
from rules.schema import RuleFile, TopologySpec
from rules.yamlsource import Loc, YamlSource, describe_error, error_loc, parse_yaml

TITLE_MAX_CHARS = 200
RULE_SUFFIXES = (".yaml", ".yml")

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


@dataclass(frozen=True, slots=True)
class JinjaMessage:
    """A target's `title` or `body` template; renders "" on error (the daemon then uses its
    default template), so a bad template cannot stop a notification."""

    source: str
    template: jinja2.Template = field(repr=False, compare=False)

    def render_message(self, context: Mapping[str, object]) -> str:
        try:
            return self.template.render(context)
        except _RENDER_ERRORS:
            return ""


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
        compiler.add_file(path, contents[path.name])
    if not compiler.errors:  # a file that failed would make its good targets look unknown
        compiler.check_references()
    if compiler.errors:
        raise RuleLoadError(compiler.errors)
    return compiler.rule_set(tuple(contents), _digest(contents, compiler.extra_files))


_LIST_SECTIONS = ("normalize", "dedup", "maintenance", "inhibit", "correlate", "heartbeats",
                  "problems", "targets", "escalations", "routes")  # fmt: skip
_SINGLE_SECTIONS = ("topology", "priority", "flapping")


class _Compiler:
    """Accumulates rules and errors across files, so one load reports every problem."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.sections: dict[str, list[Any]] = {name: [] for name in _LIST_SECTIONS}
        self.single: dict[str, tuple[str, Any]] = {}
        self.extra_files: dict[str, bytes] = {}
        self._names: dict[tuple[str, str], str] = {}
        # (what, name, naming rule, where) of every target or escalation a rule names.
        self._references: list[tuple[str, str, str, str]] = []
        self._env = ImmutableSandboxedEnvironment(
            undefined=jinja2.ChainableUndefined, autoescape=False
        )

    def add_file(self, path: Path, data: bytes) -> None:
        parsed = parse_yaml(str(path), data)
        if isinstance(parsed, str):
            self.errors.append(parsed)
            return
        source, document = parsed
        rule_file = self._validate(source, document)
        if rule_file is None:
            return
        for section in _LIST_SECTIONS:
            for index, spec in enumerate(getattr(rule_file, section)):
                compiled = self._compile(source, section, (section, index), spec)
                if compiled is not None:
                    self.sections[section].append(compiled)
        for section in _SINGLE_SECTIONS:
            spec = getattr(rule_file, section)
            if spec is not None:
                self._add_single(source, path, section, spec)

    def rule_set(self, files: tuple[str, ...], digest: str) -> RuleSet:
        topology = self.single.get("topology")
        priority = self.single.get("priority")
        flapping = self.single.get("flapping")
        return RuleSet(
            normalize=tuple(self.sections["normalize"]),
            dedup=tuple(self.sections["dedup"]),
            maintenance=tuple(self.sections["maintenance"]),
            inhibit=tuple(self.sections["inhibit"]),
            correlate=tuple(self.sections["correlate"]),
            topology=topology[1] if topology else None,
            priority=priority[1] if priority else PriorityPolicy.default(),
            flapping=flapping[1] if flapping else compile_flapping(None),
            heartbeats=tuple(self.sections["heartbeats"]),
            problems=tuple(self.sections["problems"]),
            targets=tuple(self.sections["targets"]),
            escalations=tuple(self.sections["escalations"]),
            routes=tuple(self.sections["routes"]),
            files=files,
            digest=digest,
        )

    def _validate(self, source: YamlSource, document: object) -> RuleFile | None:
        if document is None:
            return RuleFile()
        if not isinstance(document, dict):
            self.errors.append(source.error((), "the top level must be a mapping of sections"))
            return None
        try:
            return RuleFile.model_validate(document)
        except ValidationError as exc:
            details = sorted(exc.errors(), key=lambda detail: source.line(error_loc(detail)))
            self.errors.extend(describe_error(source, detail) for detail in details)
            return None

    def _compile(self, source: YamlSource, section: str, loc: Loc, spec: Any) -> Any:
        origin = Origin(source.path, source.line(loc))
        self._unique_name(source, section, loc, spec.name)
        if section == "correlate":
            title = self._compile_title(source, (*loc, "title"), spec.title)
            return compile_correlate(spec, title, origin)
        self._note_references(source, section, loc, spec)
        if section == "targets":
            return Target(
                name=spec.name,
                channel=spec.channel,
                options=dict(spec.options),
                fallback=spec.fallback,
                title=self._compile_message(source, (*loc, "title"), spec.title),
                body=self._compile_message(source, (*loc, "body"), spec.body),
                origin=origin,
            )
        return COMPILERS[section](spec, origin)

    def _note_references(self, source: YamlSource, section: str, loc: Loc, spec: Any) -> None:
        """Remember every target or escalation a rule names, with the line it is named on."""

        def note(what: str, name: str, where: Loc) -> None:
            self._references.append((what, name, spec.name, source.error(where, "")))

        if section == "targets" and spec.fallback is not None:
            note("fallback", spec.fallback, (*loc, "fallback"))
        elif section == "escalations":
            for i, step in enumerate(spec.steps):
                for j, name in enumerate(step.targets):
                    note("target", name, (*loc, "steps", i, "targets", j))
        elif section == "routes":
            for j, name in enumerate(spec.targets):
                note("target", name, (*loc, "targets", j))
            if spec.escalation is not None:
                note("escalation", spec.escalation, (*loc, "escalation"))

    def check_references(self) -> None:
        """Every target and escalation a route, step or fallback names exists (checked once
        all files compiled: a name may be defined in a later file)."""
        targets = {t.name for t in self.sections["targets"]}
        policies = {p.name for p in self.sections["escalations"]}
        for what, name, owner, where in self._references:
            what = "fallback target" if what == "fallback" else what
            prefix = where.removesuffix(": ")
            if what == "fallback target" and name == owner:
                self.errors.append(f"{prefix}: fallback target {name!r} is the target itself")
            elif name not in (policies if what == "escalation" else targets):
                self.errors.append(f"{prefix}: unknown {what} {name!r}")

    def _unique_name(self, source: YamlSource, section: str, loc: Loc, name: str) -> None:
        first = self._names.get((section, name))
        if first is not None:
            message = f"duplicate rule name {name!r} in {section} (first defined at {first})"
            self.errors.append(source.error((*loc, "name"), message, where=loc))
        else:
            self._names[section, name] = f"{source.path}:{source.line((*loc, 'name'))}"

    def _add_single(self, source: YamlSource, path: Path, section: str, spec: Any) -> None:
        first = self.single.get(section)
        if first is not None:
            message = f"section {section!r} is already defined in {first[0]}"
            self.errors.append(source.error((section,), message, where=()))
            return
        where = f"{source.path}:{source.line((section,))}"
        if section == "topology":
            compiled: Any = self._load_topology(source, path, spec)
        elif section == "priority":
            compiled = PriorityPolicy.from_spec(spec)
        else:
            compiled = compile_flapping(spec)
        # Recorded even when it failed (a CMDB that cannot be read), so that a second file
        # with the section is reported as such rather than compiled as if it were the first.
        self.single[section] = (where, compiled)

    def _load_topology(self, source: YamlSource, path: Path, spec: TopologySpec) -> Any:
        cmdb_path = (path.parent / spec.cmdb).resolve()
        try:
            data = cmdb_path.read_bytes()
        except OSError as exc:
            message = f"cannot read CMDB {str(cmdb_path)!r}: {exc.strerror}"
            self.errors.append(source.error(("topology", "cmdb"), message))
            return None
        try:
            cmdb = parse_cmdb(str(cmdb_path), data)
        except CmdbLoadError as exc:
            self.errors.extend(exc.errors)
            return None
        self.extra_files[str(cmdb_path)] = data
        return Topology(
            cmdb=cmdb,
            bind=spec.bind,
            source_file=str(cmdb_path),
            root_rules=frozenset(spec.root_rules),
            origin=Origin(source.path, source.line(("topology", "root_rules"))),
        )

    def _compile_message(
        self, source: YamlSource, loc: Loc, text: str | None
    ) -> JinjaMessage | None:
        if text is None:
            return None
        try:
            return JinjaMessage(text, self._env.from_string(text))
        except jinja2.TemplateSyntaxError as exc:
            message = f"invalid template: {exc.message} (template line {exc.lineno})"
            self.errors.append(source.error(loc, message))
            return None

    def _compile_title(self, source: YamlSource, loc: Loc, text: str | None) -> JinjaTitle | None:
        if text is None:
            return None
        try:
            return JinjaTitle(text, self._env.from_string(text))
        except jinja2.TemplateSyntaxError as exc:
            message = f"invalid template: {exc.message} (template line {exc.lineno})"
            self.errors.append(source.error(loc, message))
            return None


def _digest(contents: Mapping[str, bytes], extra: Mapping[str, bytes]) -> str:
    """sha256 over the sorted (file name, bytes) pairs of the rule files and the CMDB; lengths
    keep the framing unambiguous."""
    digest = hashlib.sha256()
    both = {**contents, **extra}
    for name in sorted(both):
        data = both[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
