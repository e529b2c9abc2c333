"""What every connector returns: the events it decoded and the items it had to reject."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rules.model import Event


class RejectReason(enum.StrEnum):
    """Why input was refused; the value is the `reason` label of the reject metrics."""

    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    INVALID_ITEM = "invalid_item"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    STORE_UNAVAILABLE = "store_unavailable"
    TOO_MANY_ITEMS = "too_many_items"
    LABEL_LIMIT = "label_limit"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class Reject:
    """One refused item: its index in the batch (None for the whole body) and what is wrong."""

    index: int | None
    field: str
    message: str
    reason: RejectReason = RejectReason.INVALID_ITEM

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "message": self.message}


class BodyError(Exception):
    """The whole body is unusable (wrong top-level shape): the request gets a 422."""

    def __init__(self, reject: Reject) -> None:
        super().__init__(f"{reject.field}: {reject.message}")
        self.reject = reject


@dataclass(frozen=True, slots=True)
class Parsed:
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    items: int = 0
    # Alerts the sender says it left out of the body (Alertmanager's `truncatedAlerts`).
    truncated: int = 0
