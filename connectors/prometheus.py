"""Prometheus posting straight to the bridge as if it were Alertmanager -> events, source
"prometheus".

Input: the decoded body of `POST /api/v2/alerts` (or the deprecated `/api/v1/alerts`, same
shape): a bare JSON array of Alertmanager API v2 `postableAlert`s; `now`; and Alertmanager's
`resolve_timeout`. Output: `Parsed`, one `Event` per valid item and one `Reject` per invalid one
(field paths like `[3].startsAt`); a `BodyError` when the body is not an array. No rule section
drives this module; the shell counts the rejects.

Prometheus is level-triggered and sends no status, no fingerprint and no grouping; this module
fills them in the way Alertmanager's API does (`api/v2/api.go`, `postAlertsHandler`):
* empty-valued labels are dropped, then an item needs at least one label;
* fingerprint = Alertmanager's label-set fingerprint, equal to the one Alertmanager would put
  in its own webhook for the same labels;
* `endsAt` at or before `now` -> resolved (ends_at = endsAt). Otherwise firing, with
  `expires_at` = endsAt (Prometheus re-sends every resend delay, moving endsAt on), or
  `now + resolve_timeout` when endsAt is absent;
* `startsAt` absent -> `now` (or endsAt when that is already past);
* `endsAt` before `startsAt` is rejected.

Quirks seen in `shared/fixtures/captured/prometheus/`: timestamps may carry nanoseconds (cut to
microseconds); a resolution reuses the startsAt and often the endsAt of an earlier firing item,
so status alone tells them apart in the digest; a resolved item's endsAt can be only
milliseconds before arrival, so a bridge clock behind Prometheus's reads it as firing until
`expires_at` (= that endsAt) passes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from connectors.alertmanager import (
    BODY_FIELD,
    Timestamp,
    json_type,
    reject_from_error,
    start_time,
)
from connectors.labels import (
    Annotations,
    LabelSet,
    item_digest,
    label_set_fingerprint,
    severity_of,
    with_host,
)
from connectors.parsed import BodyError, Parsed, Reject, RejectReason, require_unicode
from rules.model import AlertStatus, Event

SOURCE = "prometheus"


class PostableAlert(BaseModel):
    """One item of the array (Alertmanager API v2 `postableAlert`)."""

    model_config = ConfigDict(extra="ignore")

    labels: LabelSet
    annotations: Annotations = Field(default_factory=dict)
    starts_at: Timestamp = Field(default=None, alias="startsAt")
    ends_at: Timestamp = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")

    @field_validator("ends_at")
    @classmethod
    def _not_before_start(cls, ends_at: datetime | None, info: ValidationInfo) -> datetime | None:
        starts_at = info.data.get("starts_at")
        if ends_at is not None and starts_at is not None and ends_at < starts_at:
            raise PydanticCustomError("ends_before_start", "endsAt is before startsAt")
        return ends_at


def parse(body: object, now: datetime, resolve_timeout: timedelta) -> Parsed:
    if not isinstance(body, list):
        message = f"must be a JSON array of alerts, got {json_type(body)}"
        raise BodyError(Reject(None, BODY_FIELD, message, RejectReason.INVALID_BODY))
    require_unicode(body)
    events: list[Event] = []
    rejects: list[Reject] = []
    for index, item in enumerate(body):
        try:
            alert = PostableAlert.model_validate(item)
        except ValidationError as exc:
            rejects.append(reject_from_error(exc, index, f"[{index}]"))
            continue
        events.append(_event(alert, now, resolve_timeout))
    return Parsed(events=events, rejects=rejects, items=len(body))


def _event(alert: PostableAlert, now: datetime, resolve_timeout: timedelta) -> Event:
    ends_at = alert.ends_at
    if ends_at is not None and ends_at <= now:
        status, expires_at = AlertStatus.RESOLVED, None
    else:
        status, expires_at, ends_at = AlertStatus.FIRING, ends_at or now + resolve_timeout, None
    labels = alert.labels
    return Event(
        source=SOURCE,
        fingerprint=label_set_fingerprint(labels),
        status=status,
        labels=with_host(labels),
        annotations=alert.annotations,
        severity=severity_of(labels),
        starts_at=start_time(alert.starts_at, alert.ends_at, now),
        ends_at=ends_at,
        expires_at=expires_at,
        generator_url=alert.generator_url,
        group_key=None,
        receiver=None,
        digest=item_digest(status, labels, alert.annotations, alert.starts_at, alert.ends_at),
    )
