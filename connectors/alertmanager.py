"""Alertmanager webhook notifications (webhook `version` "4") -> events, source "alertmanager".

Input: the decoded JSON body Alertmanager POSTs to a `webhook_configs` receiver, and `now`.
Output: `Parsed`, one `Event` per valid entry of `alerts` and one `Reject` per invalid one; a
`BodyError` when the body is not an object or has no `alerts` list. No rule section drives this
module; the shell counts the rejects (`bridge_events_rejected_total`,
`bridge_requests_rejected_total`).

What the sender does, proven by the captures in `shared/fixtures/captured/alertmanager/`:
* Status is per alert: a `"firing"` notification may list resolved alerts. The body's own
  `status` is ignored; so is `version` (any version whose shape matches is accepted).
* A firing alert's `endsAt` is Go's zero time `0001-01-01T00:00:00Z`, read as "no end".
* Alertmanager is edge-triggered: it sends the resolution itself, so `expires_at` is None and
  the bridge's own expiry (level-triggered resolution) does not apply to these events.
* With `max_alerts` on the receiver, `truncatedAlerts` counts alerts cut from the list. They
  are invisible here: a truncated alert's firing or resolution never reaches the bridge, and
  since nothing expires these events, a resolution that was cut off leaves the alert firing
  until a later notification lists it.
* `fingerprint` is Alertmanager's label-set fingerprint; it is computed from the labels when
  absent, so events for the same label set match whether they came from Alertmanager or
  straight from Prometheus.

The wire types shared with `connectors.prometheus` (same Alertmanager data model) live here:
`Timestamp` and `reject_from_error`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from connectors.labels import (
    LABEL_NAME_PATTERN,
    Annotations,
    LabelSet,
    item_digest,
    label_set_fingerprint,
    severity_of,
    with_host,
)
from connectors.parsed import BodyError, Parsed, Reject, RejectReason, require_unicode
from rules.model import AlertStatus, Event

SOURCE = "alertmanager"
# `Reject.field` when the body as a whole has the wrong shape.
BODY_FIELD = "body"

_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_SHOWN_INPUT_CHARS = 40
_TIMESTAMP_HINT = "an RFC 3339 timestamp with a time zone, like 2026-11-23T20:00:00Z"


def _timestamp(value: object) -> datetime | None:
    """RFC 3339 -> aware UTC datetime; Go's zero time -> None; digits past microseconds dropped.

    Only strings: pydantic's lax datetime would take numbers as Unix times, which no
    Alertmanager-family sender writes.
    """
    if not isinstance(value, str):
        raise PydanticCustomError("timestamp_type", f"must be {_TIMESTAMP_HINT}")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("no time zone")
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PydanticCustomError(
            "timestamp", "{value} is not {hint}", {"value": _shown(value), "hint": _TIMESTAMP_HINT}
        ) from None
    return None if parsed == _GO_ZERO_TIME else parsed


Timestamp = Annotated[datetime | None, PlainValidator(_timestamp)]


class WebhookAlert(BaseModel):
    """One entry of a notification's `alerts` (Alertmanager `template.Alert`)."""

    model_config = ConfigDict(extra="ignore")

    status: AlertStatus
    labels: LabelSet
    annotations: Annotations = Field(default_factory=dict)
    starts_at: Timestamp = Field(default=None, alias="startsAt")
    ends_at: Timestamp = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""


class WebhookNotification(BaseModel):
    """The envelope; entries of `alerts` are validated one by one so one bad entry stays local."""

    model_config = ConfigDict(extra="ignore")

    receiver: str | None = None
    group_key: str | None = Field(default=None, alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0, strict=True)
    alerts: list[Any]


def parse(body: object, now: datetime) -> Parsed:
    notification = _notification(body)
    events: list[Event] = []
    rejects: list[Reject] = []
    for index, item in enumerate(notification.alerts):
        try:
            alert = WebhookAlert.model_validate(item)
        except ValidationError as exc:
            rejects.append(reject_from_error(exc, index, f"alerts[{index}]"))
            continue
        events.append(_event(alert, notification, now))
    return Parsed(
        events=events,
        rejects=rejects,
        items=len(notification.alerts),
        truncated=notification.truncated_alerts,
    )


def _notification(body: object) -> WebhookNotification:
    if not isinstance(body, dict):
        message = f"must be a JSON object (a webhook notification), got {json_type(body)}"
        raise BodyError(Reject(None, BODY_FIELD, message, RejectReason.INVALID_BODY))
    require_unicode(body)
    try:
        return WebhookNotification.model_validate(body)
    except ValidationError as exc:
        raise BodyError(reject_from_error(exc, None, "")) from None


def _event(alert: WebhookAlert, notification: WebhookNotification, now: datetime) -> Event:
    labels = alert.labels
    return Event(
        source=SOURCE,
        fingerprint=alert.fingerprint or label_set_fingerprint(labels),
        status=alert.status,
        labels=with_host(labels),
        annotations=alert.annotations,
        severity=severity_of(labels),
        starts_at=start_time(alert.starts_at, alert.ends_at, now),
        ends_at=alert.ends_at,
        expires_at=None,
        generator_url=alert.generator_url,
        group_key=notification.group_key,
        receiver=notification.receiver,
        digest=item_digest(alert.status, labels, alert.annotations, alert.starts_at, alert.ends_at),
    )


def start_time(starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> datetime:
    """`startsAt`, else `now`, but never after `endsAt` (Alertmanager's API uses `endsAt`)."""
    if starts_at is not None:
        return starts_at
    if ends_at is not None and ends_at <= now:
        return ends_at
    return now


def reject_from_error(error: ValidationError, index: int | None, prefix: str) -> Reject:
    """The first problem pydantic found, as a `Reject` naming the field path under `prefix`.

    `index` None means the body itself is unusable (`INVALID_BODY`).
    """
    problems = error.errors(include_url=False)
    first = problems[0]
    message = _message(first)
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    reason = RejectReason.INVALID_BODY if index is None else RejectReason.INVALID_ITEM
    return Reject(index, field_path(prefix, first["loc"]), message, reason)


def field_path(prefix: str, loc: Sequence[int | str]) -> str:
    """`("labels", "severity")` under `alerts[2]` -> `alerts[2].labels.severity`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for "the key itself", the path already names it
            path = f"{path}.{part}" if path else part
    return path


def _message(problem: ErrorDetails) -> str:
    kind = problem["type"]
    if problem["loc"][-1:] == ("[key]",) and kind == "string_pattern_mismatch":
        name = _shown(problem["input"])
        return f"invalid label name {name}: must match {LABEL_NAME_PATTERN}"
    expected = _EXPECTED_TYPES.get(kind)
    if expected is not None:
        return f"must be {expected}, got {json_type(problem['input'])}"
    return problem["msg"]


def _shown(value: object) -> str:
    text = repr(value)
    if len(text) > _SHOWN_INPUT_CHARS:
        return text[:_SHOWN_INPUT_CHARS] + "..."
    return text


# pydantic error types whose message names a Python type: say it in JSON words instead.
_EXPECTED_TYPES = {
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "dict_type": "a JSON object",
    "list_type": "a JSON array",
    "string_type": "a string",
}
_JSON_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)
