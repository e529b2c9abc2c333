"""The CMDB: configuration items, the parents they depend on, and the services they serve.

Input: one YAML file (`config/cmdb.yaml`): `services` (name -> criticality, description) and
`items` (CI name -> type, `parent` or `parents`, service, criticality). A CI name is the value of
the label that binds an alert to its item, typically the host. Output: an immutable `Cmdb`, or
`CmdbLoadError` listing every problem as `file:line: message`. Used by the `topology` stage (an
item's ancestors) and for priority, where an item's criticality is the impact.

Everything a lookup needs is worked out once at load: ancestors nearest first, and the service
each item serves or inherits from its nearest ancestor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from rules.keys import MAX_KEY_BYTES
from rules.priority import Level, LevelName
from rules.yamlsource import Loc, YamlSource, describe_error, parse_yaml


class CmdbLoadError(Exception):
    """The CMDB file is invalid; `errors` holds one `file:line: message` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid CMDB file:\n" + "\n".join(errors))
        self.errors = errors


def _none_as_empty(value: object) -> object:
    # `items:` with every entry commented out is an empty section, not an error.
    return {} if value is None else value


class ServiceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    criticality: LevelName
    description: str = ""


class ItemSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Annotated[str, Field(min_length=1)]
    parent: str | None = None
    parents: list[str] | None = None
    service: str | None = None
    criticality: LevelName | None = None


class CmdbFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    services: Annotated[dict[str, ServiceSpec], BeforeValidator(_none_as_empty)] = Field(
        default_factory=dict
    )
    items: Annotated[dict[str, ItemSpec], BeforeValidator(_none_as_empty)] = Field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    criticality: Level
    description: str = ""


@dataclass(frozen=True, slots=True)
class ConfigItem:
    """One configuration item; `criticality`, when set, overrides its service's."""

    name: str
    type: str
    parents: tuple[str, ...] = ()
    service: str | None = None
    criticality: Level | None = None


@dataclass(frozen=True, slots=True)
class Cmdb:
    services: Mapping[str, Service]
    items: Mapping[str, ConfigItem]
    _ancestors: Mapping[str, tuple[str, ...]] = field(repr=False)
    _service_of: Mapping[str, str | None] = field(repr=False)

    @classmethod
    def empty(cls) -> Cmdb:
        return cls.build((), ())

    @classmethod
    def build(cls, services: Iterable[Service], items: Iterable[ConfigItem]) -> Cmdb:
        """A CMDB from compiled values. It expects what `load_cmdb` checks (known parents and
        services, no cycles); an unknown parent is still listed as an ancestor, and a cycle
        ends where it meets an item already seen."""
        by_name = {item.name: item for item in items}
        ancestors = {name: _breadth_first(by_name, name) for name in by_name}
        inherited = {name: _nearest_service(by_name, (name, *ancestors[name])) for name in by_name}
        return cls(
            services=MappingProxyType({service.name: service for service in services}),
            items=MappingProxyType(by_name),
            _ancestors=MappingProxyType(ancestors),
            _service_of=MappingProxyType(inherited),
        )

    def item(self, name: str) -> ConfigItem | None:
        return self.items.get(name)

    def ancestors(self, name: str) -> tuple[str, ...]:
        """Every item `name` depends on, nearest first (breadth-first, each once)."""
        return self._ancestors.get(name, ())

    def service_of(self, name: str) -> str | None:
        """The item's own service, else the one of its nearest ancestor that has one."""
        return self._service_of.get(name)

    def criticality_of(self, name: str) -> Level | None:
        """The item's own criticality, else that of its (possibly inherited) service."""
        item = self.items.get(name)
        if item is None:
            return None
        if item.criticality is not None:
            return item.criticality
        service = self.services.get(self._service_of.get(name) or "")
        return service.criticality if service is not None else None


def _breadth_first(items: Mapping[str, ConfigItem], name: str) -> tuple[str, ...]:
    seen = {name}
    order: list[str] = []
    queue = deque([name])
    while queue:
        current = items.get(queue.popleft())
        for parent in current.parents if current is not None else ():
            if parent not in seen:
                seen.add(parent)
                order.append(parent)
                queue.append(parent)
    return tuple(order)


def _nearest_service(items: Mapping[str, ConfigItem], chain: Iterable[str]) -> str | None:
    for name in chain:
        item = items.get(name)
        if item is not None and item.service is not None:
            return item.service
    return None


def load_cmdb(path: Path) -> Cmdb:
    """Load and check the CMDB file; raise `CmdbLoadError` listing every problem."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CmdbLoadError([f"{path}:1: CMDB file does not exist"]) from None
    except OSError as exc:
        raise CmdbLoadError([f"{path}:1: cannot read file: {exc.strerror}"]) from None
    return parse_cmdb(str(path), data)


def parse_cmdb(path: str, data: bytes) -> Cmdb:
    """The CMDB in `data`; `path` only names the file in errors."""
    parsed = parse_yaml(path, data)
    if isinstance(parsed, str):
        raise CmdbLoadError([parsed])
    source, document = parsed
    if document is None:
        return Cmdb.empty()
    if not isinstance(document, dict):
        message = "the top level must be a mapping with 'services' and 'items'"
        raise CmdbLoadError([source.error((), message)])
    try:
        spec = CmdbFile.model_validate(document)
    except ValidationError as exc:
        details = sorted(exc.errors(), key=lambda detail: source.line(tuple(detail["loc"])))
        raise CmdbLoadError([describe_error(source, detail) for detail in details]) from None
    return _Checker(source, spec).compile()


class _Checker:
    """Checks the references between items and services, collecting every problem."""

    def __init__(self, source: YamlSource, spec: CmdbFile) -> None:
        self.source = source
        self.spec = spec
        self.errors: list[tuple[int, str]] = []
        # (item, parent) -> where the edge is written, for pointing at cycles.
        self.edges: dict[tuple[str, str], Loc] = {}

    def compile(self) -> Cmdb:
        items = [self._item(name, spec) for name, spec in self.spec.items.items()]
        self._check_cycles(items)
        if self.errors:
            raise CmdbLoadError([message for _, message in sorted(self.errors)])
        services = [
            Service(name, spec.criticality, spec.description)
            for name, spec in self.spec.services.items()
        ]
        return Cmdb.build(services, items)

    def _error(self, loc: Loc, message: str, where: Loc | None = None) -> None:
        self.errors.append((self.source.line(loc), self.source.error(loc, message, where)))

    def _item(self, name: str, spec: ItemSpec) -> ConfigItem:
        loc: Loc = ("items", name)
        size = len(name.encode("utf-8", "surrogatepass"))
        if size > MAX_KEY_BYTES:
            # An incident stores its CI in an index (and problem keys hold it): keep it short.
            message = f"item name of {size} bytes: at most {MAX_KEY_BYTES} bytes of UTF-8"
            self._error(loc, message)
        if spec.parent is not None and spec.parents is not None:
            self._error((*loc, "parents"), "give either 'parent' or 'parents', not both", loc)
        written: list[tuple[Loc, str]] = []
        if spec.parent is not None:
            written.append(((*loc, "parent"), spec.parent))
        for index, parent in enumerate(spec.parents or ()):
            written.append(((*loc, "parents", index), parent))
        parents: list[str] = []
        for parent_loc, parent in written:
            if parent in parents:
                self._error(parent_loc, f"parent {parent!r} is listed twice")
            elif parent not in self.spec.items:
                self._error(parent_loc, f"unknown configuration item {parent!r}")
            else:
                parents.append(parent)
                self.edges[name, parent] = parent_loc
        if spec.service is not None and spec.service not in self.spec.services:
            self._error((*loc, "service"), f"unknown service {spec.service!r}")
        return ConfigItem(name, spec.type, tuple(parents), spec.service, spec.criticality)

    def _check_cycles(self, items: list[ConfigItem]) -> None:
        for cycle in _find_cycles(items):
            path = " -> ".join((*cycle, cycle[0]))
            loc = self.edges[cycle[0], cycle[1 % len(cycle)]]
            self._error(loc, f"dependency cycle {path}", ("items", cycle[0]))


def _find_cycles(items: list[ConfigItem]) -> list[tuple[str, ...]]:
    """Each cycle of the parent graph once, starting at its member written first. A depth-first
    walk without recursion, so a long chain of items cannot exhaust the stack."""
    by_name = {item.name: item for item in items}
    position = {item.name: index for index, item in enumerate(items)}
    done: set[str] = set()
    found: dict[tuple[str, ...], None] = {}
    for item in items:
        if item.name in done:
            continue
        stack = [item.name]
        pending = [iter(item.parents)]
        while pending:
            parent = next(pending[-1], None)
            if parent is None:
                done.add(stack.pop())
                pending.pop()
            elif parent in stack:
                cycle = stack[stack.index(parent) :]
                first = min(range(len(cycle)), key=lambda i: position[cycle[i]])
                found[(*cycle[first:], *cycle[:first])] = None
            elif parent not in done:
                stack.append(parent)
                pending.append(iter(by_name[parent].parents))
    return list(found)
