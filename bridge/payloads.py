"""Captured sender payloads -> events, for the offline tools (`bridge rules test`, `bridge replay`).

Input: a file holding one body exactly as a sender POSTed it, the source that sent it (named,
else the name of the file's folder, else guessed from the body's shape) and what the daemon
takes from its settings to decode it (`resolve_timeout`, the Zabbix server's time zone, the
generic webhook mappings). Output: the connector's `Parsed`. The connectors the webhooks use
decode the bodies; this module only picks one.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import orjson

from connectors import alertmanager, generic, nagios, prometheus, zabbix
from connectors.parsed import BodyError, Parsed
from rules.loader import RULE_SUFFIXES

BUILT_IN = ("alertmanager", "prometheus", "nagios", "zabbix")


class PayloadError(Exception):
    """A payload file cannot be read or decoded; the message names the file."""


class Decoder:
    """Decodes bodies of the built-in sources and of the generic mappings in `mappings_dir`
    (loaded at the first body that needs them)."""

    def __init__(self, resolve_timeout: timedelta, zabbix_tz: tzinfo, mappings_dir: Path) -> None:
        self.resolve_timeout = resolve_timeout
        self.zabbix_tz = zabbix_tz
        self.mappings_dir = mappings_dir
        self._mappings: dict[str, generic.Mapping] | None = None

    def known(self, source: str) -> bool:
        if source in BUILT_IN:
            return True
        return any((self.mappings_dir / f"{source}{suffix}").is_file() for suffix in RULE_SUFFIXES)

    def source_of(self, path: Path, body: object, named: str | None = None) -> str:
        """The source of a payload: `named`, else the folder's name if it is a source, else
        what the body looks like."""
        if named:
            return named
        if self.known(path.parent.name):
            return path.parent.name
        guessed = guess_source(body)
        if guessed is None:
            raise PayloadError(f"{path}: cannot tell which sender this body is from; name it")
        return guessed

    def decode(self, source: str, body: object, now: datetime) -> Parsed:
        """The events of one body; `BodyError` when the connector refuses it whole."""
        if source == "alertmanager":
            return alertmanager.parse(body, now)
        if source == "prometheus":
            return prometheus.parse(body, now, self.resolve_timeout)
        if source == "nagios":
            return nagios.parse(body, now)
        if source == "zabbix":
            return zabbix.parse(body, now, server_tz=self.zabbix_tz)
        return generic.parse(self._mapping(source), source, body, now)

    def _mapping(self, source: str) -> generic.Mapping:
        if self._mappings is None:
            try:
                self._mappings = generic.load_mappings(self.mappings_dir)
            except generic.MappingLoadError as exc:
                raise PayloadError("\n".join(exc.errors)) from None
        mapping = self._mappings.get(source)
        if mapping is None:
            known = ", ".join([*BUILT_IN, *sorted(self._mappings)])
            raise PayloadError(f"unknown source {source!r}: use one of {known}")
        return mapping


def read_body(path: Path) -> object:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        raise PayloadError(f"{path}: cannot read file: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"{path}: not JSON: {exc}") from None


def guess_source(body: object) -> str | None:
    """Which built-in sender a body looks like it came from, by its top-level keys."""
    if isinstance(body, list):
        return "prometheus"  # a bare array of postable alerts
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("alerts"), list):
        return "alertmanager"
    if "object_type" in body and "NOTIFICATIONTYPE" in body:
        return "nagios"
    if str(body.get("payload_format", "")).startswith("zabbix") or "event_value" in body:
        return "zabbix"
    return None


def describe_body_error(path: Path, source: str, exc: BodyError) -> str:
    reject = exc.reject
    return f"{path}: not a {source} payload: {reject.field}: {reject.message}"
