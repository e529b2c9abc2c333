"""What every connector returns: the events it decoded and the items it had to reject."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import orjson

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


def require_unicode(body: object) -> None:
    """A `BodyError` naming a string (key or value) in a decoded body that is not
    Unicode text: a lone surrogate such as `"\\ud800"`, which orjson (the daemon's decoder)
    refuses but the standard library's `json` lets through. Such text cannot be encoded as
    UTF-8, so no fingerprint, digest or stored row could be made of it.

    The usual body costs one `orjson.dumps`; only when that fails is the body walked.
    """
    try:
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        path = _surrogate_path(body)
        if path is not None:
            message = "holds a lone surrogate: not valid Unicode text"
            raise BodyError(Reject(None, path, message, RejectReason.INVALID_BODY)) from None


def _surrogate_path(body: object) -> str | None:
    stack: list[tuple[str, object]] = [("body", body)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str) and not _encodable(node):
            return path
        if isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and not _encodable(key):
                    return path
                stack.append((f"{path}.{key[:40]}", child))
        elif isinstance(node, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(node))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Parsed:
    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    items: int = 0
    # Alerts the sender says it left out of the body (Alertmanager's `truncatedAlerts`).
    truncated: int = 0
