"""Generic webhook channel: one signed JSON request per notification, for any receiver.

Input: a `Message`. Output: an `Outcome` by `bridge.notify.http.classify` (2xx delivered;
408, 425, 429 and 5xx retried with `Retry-After`; other 4xx rejected; no answer retried).
Driven by a rule file's `targets` entry with `channel: webhook`.

The body (`payload`, format version "1") is serialized once and sent as is, so the signature
covers the exact bytes on the wire. Headers:

* `Content-Type: application/json`
* `Idempotency-Key`: the notification key; a retry sends the same key, so a receiver that saw
  it already can drop the repeat.
* `X-Bridge-Timestamp`: Unix seconds when the request was signed.
* `X-Bridge-Signature: sha256=<hex>` when a `secret` is set: HMAC-SHA256 over
  `"<timestamp>." + body` (the Stripe and Slack scheme). The timestamp is signed too, so a
  receiver can refuse replays of an old request; `verify` is the check a receiver runs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.clock import Clock, SystemClock
from bridge.notify.base import Channel, Message, Outcome, Rejected, Retry
from bridge.notify.http import classify, request

VERSION = "1"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TIMESTAMP_HEADER = "X-Bridge-Timestamp"
SIGNATURE_HEADER = "X-Bridge-Signature"
_RESERVED = frozenset(
    name.lower()
    for name in ("Content-Type", IDEMPOTENCY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
)


class Options(BaseModel):
    # Inputs stay out of validation errors: the URL or a header may carry a credential.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: str
    secret: SecretStr | None = None  # HMAC key; unsigned requests without it
    # Custom headers may carry credentials (Authorization), so they stay out of repr().
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout: float = Field(default=10.0, gt=0)
    method: Literal["POST", "PUT"] = "POST"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("empty; leave secret out to send unsigned requests")
        return value

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        clashes = sorted(name for name in value if name.lower() in _RESERVED)
        if clashes:
            raise ValueError(f"{', '.join(clashes)}: set by the bridge, not configurable")
        return value


def _http_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL; the error never repeats the URL (it may hold a
    token)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def payload(message: Message) -> dict[str, Any]:
    """The JSON document a receiver gets (format version "1")."""
    return {
        "version": VERSION,
        "key": message.key,
        "transition": message.transition.value,
        "target": message.target,
        "reason": message.reason,
        "url": message.url,
        "created_at": message.created_at.isoformat(),
        "incident": dict(message.incident),
        "alerts": [dict(alert) for alert in message.alerts],
        "title": message.title,
        "text": message.body,
    }


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Bridge-Signature` value: `sha256=` and the hex HMAC-SHA256 of `"<timestamp>."`
    followed by the body bytes exactly as received."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    now: datetime,
    tolerance: float = 300,
) -> bool:
    """A receiver's check of one request: the signature matches the raw body and timestamp,
    and the timestamp is within `tolerance` seconds of `now` (an aware datetime), which
    refuses a replay of an old request. Compares in constant time."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 20:
        return False  # (Python refuses int() of very long digit strings)
    if abs(now.timestamp() - int(timestamp)) > tolerance:
        return False
    expected = signature(secret, timestamp, body).encode()
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header may hold any,
    # even undecodable bytes (surrogates, which plain encode() refuses).
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "surrogateescape"))


def _plain(value: object) -> object:
    """orjson's fallback for what the API shape may hold besides dicts and lists."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Webhook:
    def __init__(self, options: Options, session: aiohttp.ClientSession, clock: Clock) -> None:
        self._options = options
        self._session = session
        self._clock = clock

    async def send(self, message: Message) -> Outcome:
        try:
            body = orjson.dumps(payload(message), default=_plain)
        except orjson.JSONEncodeError as exc:
            return Rejected(f"the notification cannot be encoded as JSON: {exc}")
        reply = await request(
            self._session,
            self._options.method,
            self._options.url,
            data=body,
            headers=self.headers(message, body),
            timeout=self._options.timeout,
        )
        if isinstance(reply, Retry):
            return reply
        return classify(reply)

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        timestamp = str(int(self._clock.now().timestamp()))
        sent = dict(self._options.headers)
        sent["Content-Type"] = "application/json"
        sent[IDEMPOTENCY_HEADER] = message.key
        sent[TIMESTAMP_HEADER] = timestamp
        if self._options.secret is not None:
            key = self._options.secret.get_secret_value().encode()
            sent[SIGNATURE_HEADER] = signature(key, timestamp, body)
        return sent


def make(options: Options, session: aiohttp.ClientSession) -> Channel:
    return Webhook(options, session, SystemClock())
