"""Small builders for domain values in the pure-stage tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rules.model import AlertStatus, Event, Severity

T0 = datetime(2026, 11, 23, 20, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    fingerprint: str = "fp1",
    status: AlertStatus = AlertStatus.FIRING,
    *,
    source: str = "alertmanager",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    severity: Severity = Severity.WARNING,
    starts_at: datetime = T0,
    ends_at: datetime | None = None,
    expires_at: datetime | None = None,
    group_key: str | None = '{}:{alertname="DiskFull"}',
    digest: str | None = None,
    **extra: Any,
) -> Event:
    labels = labels if labels is not None else {"alertname": "DiskFull", "instance": "db-01:9100"}
    annotations = annotations if annotations is not None else {"summary": "disk full"}
    if digest is None:
        parts = (status, severity, sorted(labels.items()), sorted(annotations.items()))
        digest = repr((*parts, starts_at, ends_at, expires_at))
    return Event(
        source=source,
        fingerprint=fingerprint,
        status=status,
        labels=labels,
        annotations=annotations,
        severity=severity,
        starts_at=starts_at,
        ends_at=ends_at,
        expires_at=expires_at,
        generator_url="",
        group_key=group_key,
        receiver="bridge",
        digest=digest,
        **extra,
    )
