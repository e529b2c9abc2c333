"""Label sets as Alertmanager understands them, shared by the Prometheus-family connectors.

Input: the label and annotation mappings of one wire item, already validated. Output: the
pieces of an `Event` that depend only on them: the label-set fingerprint, the severity and the
item digest. No rule section drives this module and it feeds no metric; later connectors
(Zabbix, Nagios) reuse `SEVERITIES` and `severity_of` so one sender's "high" means the same as
another's.

Severity, read from the `severity` label, case-insensitive, surrounding blanks ignored:

| label value                                                   | `Severity` |
|---------------------------------------------------------------|------------|
| critical, crit, fatal, page, disaster                         | CRITICAL   |
| major, high, error, err                                       | MAJOR      |
| minor, average                                                | MINOR      |
| warning, warn                                                 | WARNING    |
| info, informational, information, none, notice, low, debug, ok | INFO       |
| absent or anything else                                       | WARNING    |
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

import orjson
from pydantic import AfterValidator, StringConstraints
from pydantic_core import PydanticCustomError

from rules.model import AlertStatus, Severity

LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"

SEVERITY_LABEL = "severity"
DEFAULT_SEVERITY = Severity.WARNING
SEVERITIES: dict[str, Severity] = {
    **dict.fromkeys(("critical", "crit", "fatal", "page", "disaster"), Severity.CRITICAL),
    **dict.fromkeys(("major", "high", "error", "err"), Severity.MAJOR),
    **dict.fromkeys(("minor", "average"), Severity.MINOR),
    **dict.fromkeys(("warning", "warn"), Severity.WARNING),
    **dict.fromkeys(
        ("info", "informational", "information", "none", "notice", "low", "debug", "ok"),
        Severity.INFO,
    ),
}

# FNV-1a, 64 bit, as in github.com/prometheus/common/model (fnv.go, labelset.go).
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK_64 = 0xFFFFFFFFFFFFFFFF
_SEPARATOR = b"\xff"


def severity_of(labels: Mapping[str, str]) -> Severity:
    """The `severity` label mapped through `SEVERITIES`; WARNING when absent or unknown."""
    value = labels.get(SEVERITY_LABEL)
    if value is None:
        return DEFAULT_SEVERITY
    return SEVERITIES.get(value.strip().lower(), DEFAULT_SEVERITY)


def label_set_fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (`model.LabelSet.Fingerprint`), as 16 hex digits.

    FNV-1a 64 over the names in sorted order, each followed by 0xff, its value, and 0xff.
    Python's code-point order of `str` equals Go's byte order of the UTF-8 strings.
    """
    parts: list[bytes] = []
    for name in sorted(labels):
        parts += (name.encode(), _SEPARATOR, labels[name].encode(), _SEPARATOR)
    # The hot loop of the Prometheus connector (~0.1 us a byte): constants held in locals.
    value, prime, mask = _FNV_OFFSET, _FNV_PRIME, _MASK_64
    for byte in b"".join(parts):
        value = (value ^ byte) * prime & mask
    return f"{value:016x}"


def item_digest(
    status: AlertStatus,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    starts_at: datetime | None,
    ends_at: datetime | None,
    *extra: str,
) -> str:
    """A short hash of what tells a redelivery from a later re-send of the same alert.

    Mapping order does not matter. The status is part of it: Prometheus sends a firing and a
    resolved item with otherwise identical content (the resolution reuses the announced endsAt).
    `extra` holds what else a sender reports outside labels (a severity field, a link).
    """
    canonical = orjson.dumps(
        (status.value, labels, annotations, starts_at, ends_at, extra),
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def _without_empty_values(labels: dict[str, str]) -> dict[str, str]:
    # Alertmanager drops empty-valued labels before it validates and fingerprints an alert.
    if "" in labels.values():
        labels = {name: value for name, value in labels.items() if value}
    if not labels:
        raise PydanticCustomError("empty_label_set", "at least one label pair is required")
    return labels


LabelName = Annotated[str, StringConstraints(pattern=LABEL_NAME_PATTERN)]
# Wire type of a label set: str -> str, valid names, empty values dropped, not empty.
LabelSet = Annotated[dict[LabelName, str], AfterValidator(_without_empty_values)]
Annotations = dict[str, str]


_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9_]")


def label_name(name: str) -> str:
    """A sender's name for a value (a Nagios custom variable, a Zabbix tag) as a valid
    Prometheus label name: lower case, other characters `_`, "" when nothing is left.

    Leading underscores go: names starting with "__" are reserved (the rules' pseudo-labels).
    """
    cleaned = _NOT_LABEL_CHARS.sub("_", name.lower()).lstrip("_")
    return f"_{cleaned}" if cleaned[:1].isdigit() else cleaned


def host_of(instance: str) -> str:
    """The host of a Prometheus `instance`: without its port, brackets or URL parts."""
    value = instance.strip()
    if "://" in value:  # blackbox-style targets: https://shop.example:8443/health
        return urlsplit(value).hostname or ""
    if value.startswith("["):  # [2001:db8::1]:9100
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.rsplit(":", 1)[0]
    return value  # a bare name, or a bare IPv6 address


def with_host(labels: Mapping[str, str]) -> Mapping[str, str]:
    """The labels with `host` derived from `instance` when the sender gave none, so rules can
    correlate one host across Prometheus (`instance`), Nagios and Zabbix (`host`). Added after
    the fingerprint is taken: the alert's identity stays the sender's."""
    if "host" in labels or "instance" not in labels:
        return labels
    host = host_of(labels["instance"])
    return {**labels, "host": host} if host else labels
