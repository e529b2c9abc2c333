"""Any sender's JSON webhook -> events, read through a per-name YAML mapping (no code per sender).

Input: a `Mapping` loaded from `config/generic/<name>.yaml`, the mapping's name, the decoded
JSON body POSTed to `/api/v1/webhooks/generic/<name>`, and `now`. Output: `Parsed`, one `Event`
per valid item and one `Reject` per invalid one; a `BodyError` when the body has the wrong shape
(not an object or array, or its `items` path is not an array). No rule section drives this
module; the shell counts the rejects (`bridge_events_rejected_total`,
`bridge_requests_rejected_total`).

Each mapping is its own source: the events of `grafana.yaml` have `source="grafana"`, so the
name is part of the alert identity and a metric label. Names are therefore plain
(`[a-z][a-z0-9_-]{0,31}`) and may not be those of the built-in connectors.

Paths (see `config/generic/README.md`): dotted keys, `[N]` list indexes, `"quoted"` keys for keys
holding dots, brackets or blanks, and a leading `$` for the body root instead of the item:
`alerts[0].labels."app.kubernetes.io/name"`, `$.groupKey`. JSON null, an empty string and a
missing key all read as absent; only the identity and status paths make an item a reject.

Senders are edge-triggered (they send the resolution), so `expires_at` is None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, Self, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from connectors.alertmanager import Timestamp, json_type, reject_from_error, start_time
from connectors.jsonpath import JsonPath, parse_path
from connectors.labels import (
    DEFAULT_SEVERITY,
    LABEL_NAME_PATTERN,
    SEVERITIES,
    item_digest,
    label_set_fingerprint,
    severity_of,
)
from connectors.parsed import BodyError, Parsed, Reject, RejectReason, require_unicode
from rules.loader import RULE_SUFFIXES
from rules.model import AlertStatus, Event, Severity
from rules.yamlsource import Loc, YamlSource, describe_error, parse_yaml

MAPPING_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
BUILT_IN_SOURCES = frozenset({"alertmanager", "prometheus", "nagios", "zabbix"})
# The `source` label values the bridge uses for what is no mapping's: the read and action API,
# and webhook names that match no source.
RESERVED_NAMES = frozenset({"api", "unknown"})
HOST_LABEL = "host"
ALERTNAME_LABEL = "alertname"
BODY_FIELD = "body"

_LABEL_NAME = re.compile(LABEL_NAME_PATTERN)
_NOT_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_EPOCH_MILLIS_FROM = 1e11  # as seconds that is the year 5138; as milliseconds, 1973
_ERROR_FIELD = "field"  # context key naming the option a whole-mapping check is about
_TIMESTAMP = TypeAdapter[datetime | None](Timestamp)
_V = TypeVar("_V")


def _check_label_name(name: str) -> str:
    if _LABEL_NAME.fullmatch(name) is None:
        raise PydanticCustomError(
            "label_name",
            "invalid label name '{name}': must match {pattern}",
            {"name": name, "pattern": LABEL_NAME_PATTERN},
        )
    return name


def _lower_keys(values: dict[str, _V]) -> dict[str, _V]:
    return {key.strip().lower(): value for key, value in values.items()}


FieldPath = Annotated[JsonPath, PlainValidator(parse_path)]
LabelName = Annotated[str, AfterValidator(_check_label_name)]
StatusMap = Annotated[dict[str, AlertStatus], AfterValidator(_lower_keys)]
SeverityMap = Annotated[dict[str, Severity], AfterValidator(_lower_keys)]


class Mapping(BaseModel):
    """How to read one sender's JSON; one YAML file per mapping, the file stem is its name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: FieldPath | None = None
    fingerprint: list[FieldPath] | None = Field(default=None, min_length=1)
    fingerprint_path: FieldPath | None = None
    status: FieldPath
    status_map: Annotated[StatusMap, Field(min_length=1)]
    severity: FieldPath | None = None
    severity_map: SeverityMap = {}
    alertname: FieldPath | None = None
    alertname_value: str | None = Field(default=None, min_length=1)
    host: FieldPath | None = None
    labels: dict[LabelName, FieldPath] = {}
    labels_from: FieldPath | None = None
    annotations: dict[Annotated[str, Field(min_length=1)], FieldPath] = {}
    annotations_from: FieldPath | None = None
    starts_at: FieldPath | None = None
    ends_at: FieldPath | None = None
    generator_url: FieldPath | None = None
    group_key: FieldPath | None = None

    @model_validator(mode="after")
    def _exclusive_options(self) -> Self:
        if (self.fingerprint is None) == (self.fingerprint_path is None):
            _mapping_error("fingerprint_path", "give exactly one of fingerprint, fingerprint_path")
        if self.alertname is not None and self.alertname_value is not None:
            _mapping_error("alertname_value", "give at most one of alertname, alertname_value")
        if self.severity_map and self.severity is None:
            _mapping_error("severity_map", "severity_map needs a severity path")
        return self


def _mapping_error(option: str, message: str) -> NoReturn:
    raise PydanticCustomError("mapping", message, {_ERROR_FIELD: option})


class MappingLoadError(Exception):
    """The mapping files are invalid; `errors` holds one `file:line: message` per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid webhook mappings:\n" + "\n".join(errors))
        self.errors = errors


def load_mappings(directory: Path) -> dict[str, Mapping]:
    """Every `*.yaml` / `*.yml` in `directory`, by file stem; all problems in one error."""
    if not directory.is_dir():
        raise MappingLoadError([f"{directory}:1: mapping directory does not exist"])
    paths = sorted(p for p in directory.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())
    errors: list[str] = []
    mappings: dict[str, Mapping] = {}
    sites: dict[str, Path] = {}
    for path in paths:
        problem = _name_problem(path.stem)
        if path.stem in sites:
            problem = f"duplicate mapping name {path.stem!r} (also {sites[path.stem]})"
        sites.setdefault(path.stem, path)
        if problem is not None:
            errors.append(f"{path}:1: {problem}")
        mapping = _load_file(path, errors)
        if mapping is not None and problem is None:
            mappings[path.stem] = mapping
    if errors:
        raise MappingLoadError(errors)
    return mappings


def _name_problem(name: str) -> str | None:
    if MAPPING_NAME.fullmatch(name) is None:
        return (
            f"invalid mapping name {name!r} (the file name): use lower-case letters, digits,"
            " _ and -, starting with a letter, at most 32 characters"
        )
    if name in BUILT_IN_SOURCES:
        return f"mapping name {name!r} is a built-in source; rename the file"
    if name in RESERVED_NAMES:
        return f"mapping name {name!r} is reserved (a metric label value); rename the file"
    return None


def _load_file(path: Path, errors: list[str]) -> Mapping | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        errors.append(f"{path}:1: cannot read file: {exc.strerror}")
        return None
    parsed = parse_yaml(str(path), data)
    if isinstance(parsed, str):
        errors.append(parsed)
        return None
    source, document = parsed
    if not isinstance(document, dict):
        errors.append(source.error((), "the top level must be a mapping of options"))
        return None
    try:
        return Mapping.model_validate(document)
    except ValidationError as exc:
        details = sorted(exc.errors(), key=lambda detail: source.line(_loc(detail)))
        errors.extend(_describe_error(source, detail) for detail in details)
        return None


def _loc(detail: ErrorDetails) -> Loc:
    option = (detail.get("ctx") or {}).get(_ERROR_FIELD)
    return (option,) if isinstance(option, str) else tuple(detail["loc"])


def _describe_error(source: YamlSource, detail: ErrorDetails) -> str:
    if detail["type"] == "mapping":  # a whole-mapping check: point at the option it names
        return source.error(_loc(detail), detail["msg"], where=())
    return describe_error(source, detail)


class _ItemError(Exception):
    """One item is invalid: the path (None: the item itself) and what is wrong with it."""

    def __init__(self, path: JsonPath | None, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class _Item:
    """One item and the body it came from (for `$` paths)."""

    value: dict[str, Any]
    body: object

    def get(self, path: JsonPath) -> object:
        """The value at `path`; None when absent (missing key or index, JSON null, or "")."""
        value = path.lookup(self.value, self.body)
        return None if value == "" else value

    def text(self, path: JsonPath | None) -> str | None:
        return None if path is None else _scalar_text(path, self.get(path))

    def required(self, path: JsonPath) -> str:
        text = self.text(path)
        if text is None:
            raise _ItemError(path, "missing or empty; this path is required")
        return text


def _scalar_text(path: JsonPath, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # an integer past 64 bits, which orjson never decodes
            raise _ItemError(path, "number out of range (more than 64 bits)") from None
    raise _ItemError(path, f"must be a string, number or boolean, got {json_type(value)}")


def parse(mapping: Mapping, name: str, body: object, now: datetime) -> Parsed:
    require_unicode(body)
    items, prefix = _items(mapping, body)
    events: list[Event] = []
    rejects: list[Reject] = []
    for index, value in enumerate(items):
        where = "" if prefix is None else f"{prefix}[{index}]"
        try:
            events.append(_event(mapping, name, value, body, now))
        except _ItemError as exc:
            rejects.append(Reject(index, _field(where, exc.path), exc.message))
    return Parsed(events=events, rejects=rejects, items=len(items))


def _items(mapping: Mapping, body: object) -> tuple[list[Any], str | None]:
    """The items and the field prefix of their index (None: the body is the one item)."""
    if mapping.items is None:
        if isinstance(body, list):
            return body, ""
        if isinstance(body, dict):
            return [body], None
        _body_error(BODY_FIELD, f"must be a JSON object or array, got {json_type(body)}")
    if not isinstance(body, dict):
        _body_error(BODY_FIELD, f"must be a JSON object, got {json_type(body)}")
    items = _Item(body, body).get(mapping.items)
    if not isinstance(items, list):
        got = "nothing" if items is None else json_type(items)
        _body_error(mapping.items.text, f"must be a JSON array of items, got {got}")
    return items, mapping.items.text


def _body_error(field: str, message: str) -> NoReturn:
    raise BodyError(Reject(None, field, message, RejectReason.INVALID_BODY))


def _field(where: str, path: JsonPath | None) -> str:
    if path is None:
        return where
    if path.from_root or not where:
        return path.text
    return where + path.text if path.text.startswith("[") else f"{where}.{path.text}"


def _event(mapping: Mapping, name: str, value: object, body: object, now: datetime) -> Event:
    if not isinstance(value, dict):
        raise _ItemError(None, f"must be a JSON object, got {json_type(value)}")
    item = _Item(value, body)
    fingerprint = _fingerprint(mapping, item)
    status = _status(mapping, item)
    labels = _labels(mapping, item)
    annotations = _annotations(mapping, item)
    starts_at = _time(mapping.starts_at, item)
    ends_at = _time(mapping.ends_at, item)
    severity = _severity(mapping, item, labels)
    generator_url = item.text(mapping.generator_url) or ""
    return Event(
        source=name,
        fingerprint=fingerprint,
        status=status,
        labels=labels,
        annotations=annotations,
        severity=severity,
        starts_at=start_time(starts_at, ends_at, now),
        ends_at=ends_at,
        expires_at=None,
        generator_url=generator_url,
        group_key=item.text(mapping.group_key),
        receiver=None,
        digest=item_digest(
            status, labels, annotations, starts_at, ends_at, severity, generator_url
        ),
    )


def _fingerprint(mapping: Mapping, item: _Item) -> str:
    if mapping.fingerprint_path is not None:
        return item.required(mapping.fingerprint_path)
    paths = mapping.fingerprint or []
    return label_set_fingerprint({path.text: item.required(path) for path in paths})


def _status(mapping: Mapping, item: _Item) -> AlertStatus:
    text = item.required(mapping.status)
    status = mapping.status_map.get(text.strip().lower())
    if status is None:
        known = ", ".join(sorted(mapping.status_map))
        raise _ItemError(mapping.status, f"{text!r} is not in status_map (known: {known})")
    return status


def _labels(mapping: Mapping, item: _Item) -> dict[str, str]:
    """`labels_from` (names sanitized), then `labels`, `host` and `alertname`; later wins."""
    labels: dict[str, str] = {}
    for key, text in _object_texts(mapping.labels_from, item).items():
        if key:
            labels.setdefault(_label_name(key), text)
    fixed = {
        **{label: item.text(path) for label, path in mapping.labels.items()},
        HOST_LABEL: item.text(mapping.host),
        ALERTNAME_LABEL: mapping.alertname_value or item.text(mapping.alertname),
    }
    labels.update({label: text for label, text in fixed.items() if text})
    return labels


def _annotations(mapping: Mapping, item: _Item) -> dict[str, str]:
    annotations = _object_texts(mapping.annotations_from, item)
    for key, path in mapping.annotations.items():
        text = item.text(path)
        if text:
            annotations[key] = text
    return annotations


def _object_texts(path: JsonPath | None, item: _Item) -> dict[str, str]:
    """The scalar, non-empty members of the object at `path`; nested values are skipped."""
    if path is None:
        return {}
    value = item.get(path)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _ItemError(path, f"must be a JSON object, got {json_type(value)}")
    texts: dict[str, str] = {}
    for key, member in value.items():
        if member is not None and member != "" and not isinstance(member, dict | list):
            texts[key] = str(_scalar_text(path, member))
    return texts


def _label_name(key: str) -> str:
    """Characters a label name cannot hold become `_`; a leading digit gets a `_` prefix."""
    name = _NOT_LABEL_CHARS.sub("_", key)
    return f"_{name}" if name[:1].isdigit() else name


def _severity(mapping: Mapping, item: _Item, labels: dict[str, str]) -> Severity:
    """`severity_map`, then the shared table (`connectors.labels.SEVERITIES`), else WARNING.

    Without a severity path (or with it absent in the item) the `severity` label decides.
    """
    text = item.text(mapping.severity)
    if text is None:
        return severity_of(labels)
    key = text.strip().lower()
    return mapping.severity_map.get(key) or SEVERITIES.get(key, DEFAULT_SEVERITY)


def _time(path: JsonPath | None, item: _Item) -> datetime | None:
    """RFC 3339 with a zone (Go's zero time = absent), or epoch seconds or milliseconds."""
    value = None if path is None else item.get(path)
    if path is None or value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch(path, value)
    if not isinstance(value, str):
        message = f"must be an RFC 3339 string or epoch seconds, got {json_type(value)}"
        raise _ItemError(path, message)
    try:
        return _TIMESTAMP.validate_python(value)
    except ValidationError as exc:
        raise _ItemError(path, reject_from_error(exc, 0, "").message) from None


def _epoch(path: JsonPath, value: float) -> datetime:
    try:
        # An integer past 64 bits (only decoders other than orjson make one) overflows here too.
        seconds = value / 1000 if abs(value) >= _EPOCH_MILLIS_FROM else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _ItemError(path, f"epoch time {value} is out of range") from None
