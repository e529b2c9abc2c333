"""HTTP delivery for the channels: one POST/PUT/PATCH with a deadline, and the outcome a
status code means (2xx delivered; 408, 425, 429 and 5xx retried, honouring `Retry-After`; any other
4xx rejected; timeouts and connection errors retried)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from pydantic import SecretStr

from bridge.notify.base import Delivered, Outcome, Rejected, Retry

_RETRIED = frozenset({408, 425, 429})
_MAX_RETRY_AFTER = 7 * 24 * 3600.0  # a week: longer is a misconfigured server, not a plan
_EXCERPT = 300


@dataclass(frozen=True, slots=True)
class Reply:
    """A response the channel may read further (a created ticket's id)."""

    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        try:
            return orjson.loads(self.text)
        except orjson.JSONDecodeError:
            return None


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    body: object = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - aiohttp's own per-request ClientTimeout
) -> Reply | Retry:
    """Send one request; a `Retry` when it never got an answer (timeout, connection error)."""
    sent_headers = dict(headers or {})
    if body is not None:
        data = orjson.dumps(body)
        sent_headers.setdefault("Content-Type", "application/json")
    try:
        async with session.request(
            method,
            url,
            data=data,
            headers=sent_headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text(errors="replace")
            return Reply(response.status, dict(response.headers), text)
    except TimeoutError:
        return Retry(f"no answer within {timeout:g}s")
    except aiohttp.ClientConnectorError as exc:
        # Host and port only: a webhook URL's path is often its secret (Slack, Teams).
        return Retry(f"connection failed: cannot connect to {exc.host}:{exc.port}")
    except aiohttp.ClientError as exc:
        return Retry(f"connection failed: {exc.__class__.__name__}")
    except asyncio.CancelledError:
        raise


def classify(reply: Reply, external_id: str | None = None) -> Outcome:
    """What a status code means for the notification."""
    if 200 <= reply.status < 300:
        return Delivered(external_id, f"HTTP {reply.status}")
    excerpt = reply.text[:_EXCERPT].strip()
    reason = f"HTTP {reply.status}: {excerpt}" if excerpt else f"HTTP {reply.status}"
    if reply.status in _RETRIED or reply.status >= 500:
        return Retry(reason, retry_after(reply.headers))
    return Rejected(reason)


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def filled(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value())


def sign_in_problem(user: str, password: SecretStr | None, token: SecretStr | None) -> str | None:
    """What is wrong with a channel's credentials: basic auth (user and password) or a bearer
    token, exactly one way; None when they are right."""
    basic = bool(user) or filled(password)
    if basic and filled(token):
        return "not both"
    if basic and not (user and filled(password)):
        return "basic auth needs both"
    if not basic and not filled(token):
        return "none given"
    return None


def authorization(user: str, password: SecretStr | None, token: SecretStr | None) -> str:
    """The `Authorization` header: the bearer token, else basic auth (RFC 7617). Built here
    rather than with `aiohttp.BasicAuth`, which aiohttp 3.14 deprecates."""
    if token is not None and token.get_secret_value():
        return f"Bearer {token.get_secret_value()}"
    secret = password.get_secret_value() if password else ""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
