"""The generic webhook channel against a recording fake receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.notify import channels
from bridge.notify.base import Delivered, Message, Outcome, Rejected, Retry, Transition
from bridge.notify.webhook import Options, Webhook, signature, verify
from tests.notify.samples import ALERTS, OPENED_AT, Handler, Receiver, incident, message

SENT_AT = OPENED_AT + timedelta(seconds=5)
SENT_TIMESTAMP = "1795512605"  # SENT_AT in Unix seconds
SECRET = "whsec-test-0123456789"


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


async def send(options: Options, sent: Message | None = None) -> Outcome:
    async with aiohttp.ClientSession() as session:
        channel = Webhook(options, session, FixedClock(SENT_AT))
        return await channel.send(sent or message())


def answer(status: int, text: str = "", headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.Response(status=status, text=text, headers=headers)

    return handler


def hmac_sha256(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


def test_sent_at_constant_matches_the_clock() -> None:
    assert int(SENT_AT.timestamp()) == int(SENT_TIMESTAMP)


async def test_body_and_headers() -> None:
    async with Receiver() as receiver:
        outcome = await send(Options(url=receiver.url("/hooks/bridge"), secret=SECRET))

    assert outcome == Delivered(None, "HTTP 200")
    [recorded] = receiver.requests
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/hooks/bridge", {})
    assert recorded.json() == {
        "version": "1",
        "key": "bridge-incident-42:oncall:opened:0",
        "transition": "opened",
        "target": "oncall",
        "reason": "",
        "url": "http://bridge.example:9470/api/v1/incidents/42",
        "created_at": "2026-11-24T09:30:00+00:00",
        "incident": incident(),
        "alerts": [dict(alert) for alert in ALERTS],
        "title": "[P1] db-1 is down",
        "text": "HostDown on db-1 (payments)\n2 alerts firing",
    }
    assert recorded.headers["Content-Type"] == "application/json"
    assert recorded.headers["Idempotency-Key"] == "bridge-incident-42:oncall:opened:0"
    assert recorded.headers["X-Bridge-Timestamp"] == SENT_TIMESTAMP
    assert "Authorization" not in recorded.headers


async def test_signature_is_hmac_sha256_of_timestamp_dot_exact_body() -> None:
    async with Receiver() as receiver:
        await send(Options(url=receiver.url("/"), secret=SECRET))

    [recorded] = receiver.requests
    expected = hmac_sha256(SECRET, f"{SENT_TIMESTAMP}.".encode() + recorded.body)
    assert recorded.headers["X-Bridge-Signature"] == f"sha256={expected}"
    assert verify(
        SECRET.encode(),
        recorded.headers["X-Bridge-Timestamp"],
        recorded.body,
        recorded.headers["X-Bridge-Signature"],
        now=SENT_AT + timedelta(seconds=2),
    )


async def test_no_signature_without_a_secret() -> None:
    async with Receiver() as receiver:
        outcome = await send(Options(url=receiver.url("/")))

    assert isinstance(outcome, Delivered)
    [recorded] = receiver.requests
    assert "X-Bridge-Signature" not in recorded.headers
    assert recorded.headers["X-Bridge-Timestamp"] == SENT_TIMESTAMP


async def test_custom_headers_and_put() -> None:
    async with Receiver() as receiver:
        options = Options(
            url=receiver.url("/in"),
            headers={"Authorization": "Bearer abc", "X-Team": "dba"},
            method="PUT",
        )
        outcome = await send(options)

    assert isinstance(outcome, Delivered)
    [recorded] = receiver.requests
    assert (recorded.method, recorded.path) == ("PUT", "/in")
    assert recorded.headers["Authorization"] == "Bearer abc"
    assert recorded.headers["X-Team"] == "dba"
    assert recorded.headers["Idempotency-Key"] == "bridge-incident-42:oncall:opened:0"


SIGNED_BODY = b'{"version":"1"}'
GOOD = f"sha256={hmac_sha256('k', b'1795512605.' + SIGNED_BODY)}"


@pytest.mark.parametrize(
    ("timestamp", "body", "header", "now", "valid"),
    [
        ("1795512605", SIGNED_BODY, GOOD, SENT_AT, True),
        ("1795512605", SIGNED_BODY, f"  {GOOD} ", SENT_AT + timedelta(seconds=300), True),
        ("1795512605", SIGNED_BODY, GOOD, SENT_AT + timedelta(seconds=301), False),
        ("1795512605", SIGNED_BODY, GOOD, SENT_AT - timedelta(seconds=301), False),
        ("1795512605", b'{"version":"2"}', GOOD, SENT_AT, False),
        ("1795512606", SIGNED_BODY, GOOD, SENT_AT, False),
        ("1795512605", SIGNED_BODY, GOOD.upper(), SENT_AT, False),
        ("1795512605", SIGNED_BODY, "sha256=é", SENT_AT, False),
        ("1795512605", SIGNED_BODY, "", SENT_AT, False),
        ("-1", SIGNED_BODY, GOOD, SENT_AT, False),
        ("1795512605.0", SIGNED_BODY, GOOD, SENT_AT, False),
        ("١٧٩٥٥١٢٦٠٥", SIGNED_BODY, GOOD, SENT_AT, False),
        ("1795512605", SIGNED_BODY, "sha256=\udcff", SENT_AT, False),  # undecodable bytes
        ("9" * 5000, SIGNED_BODY, GOOD, SENT_AT, False),
    ],
)
def test_verify(timestamp: str, body: bytes, header: str, now: datetime, valid: bool) -> None:
    assert verify(b"k", timestamp, body, header, now) is valid


def test_signature_is_pure() -> None:
    assert signature(b"k", "1795512605", SIGNED_BODY) == GOOD


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (500, {}, Retry("HTTP 500: boom")),
        (503, {"Retry-After": "30"}, Retry("HTTP 503: boom", 30.0)),
        (429, {"Retry-After": "7"}, Retry("HTTP 429: boom", 7.0)),
        (404, {}, Rejected("HTTP 404: boom")),
        (401, {}, Rejected("HTTP 401: boom")),
        (204, {}, Delivered(None, "HTTP 204")),
    ],
)
async def test_status_mapping(status: int, headers: dict[str, str], expected: Outcome) -> None:
    text = "" if status == 204 else "boom"
    async with Receiver(answer(status, text, headers)) as receiver:
        outcome = await send(Options(url=receiver.url("/")))
    assert outcome == expected


async def test_connection_refused_is_retried() -> None:
    async with Receiver() as receiver:
        closed = receiver.url("/hook")
    outcome = await send(Options(url=closed))
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("connection failed: ")
    assert outcome.after is None


async def test_a_receiver_slower_than_the_timeout_is_retried() -> None:
    release = asyncio.Event()  # never set: the handler stalls until the server closes

    async def stall(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        await release.wait()
        return web.Response()

    async with Receiver(stall) as receiver:
        outcome = await send(Options(url=receiver.url("/"), timeout=0.2))

    assert outcome == Retry("no answer within 0.2s")
    assert len(receiver.requests) == 1


async def test_api_shaped_values_are_encoded() -> None:
    changed = message(
        Transition.RESOLVED,
        reason="all alerts resolved",
        resolved_at=OPENED_AT + timedelta(minutes=7),
        labels=frozenset({"a"}),
    )
    async with Receiver() as receiver:
        outcome = await send(Options(url=receiver.url("/")), changed)

    assert isinstance(outcome, Delivered)
    sent = receiver.requests[0].json()
    assert sent["transition"] == "resolved"
    assert sent["reason"] == "all alerts resolved"
    assert sent["incident"]["resolved_at"] == "2026-11-24T09:37:00+00:00"
    assert sent["incident"]["labels"] == ["a"]


async def test_unencodable_message_is_rejected_without_a_request() -> None:
    async with Receiver() as receiver:
        outcome = await send(Options(url=receiver.url("/")), message(assignee=object()))
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith("the notification cannot be encoded as JSON")
    assert receiver.requests == []


async def test_registry_builds_the_channel() -> None:
    async with Receiver() as receiver, aiohttp.ClientSession() as session:
        raw = {"url": receiver.url("/x"), "secret": "${HOOK_SECRET}", "timeout": 5}
        validated = channels.options("hook", "webhook", raw, environ={"HOOK_SECRET": SECRET})
        outcome = await channels.make("webhook", validated, session).send(message())

    assert isinstance(outcome, Delivered)
    [recorded] = receiver.requests
    timestamp = recorded.headers["X-Bridge-Timestamp"]
    now = datetime.now(UTC)
    assert verify(
        SECRET.encode(), timestamp, recorded.body, recorded.headers["X-Bridge-Signature"], now
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"url": "ftp://host/x"}, "url: Value error, must be an absolute http:// or https:// URL"),
        ({"url": "/relative"}, "url: Value error, must be an absolute http:// or https:// URL"),
        (
            {"url": "https://h/", "headers": {"x-bridge-signature": "forged"}},
            "headers: Value error, x-bridge-signature: set by the bridge, not configurable",
        ),
        (
            {"url": "https://h/", "secret": ""},
            "secret: Value error, empty; leave secret out to send unsigned requests",
        ),
        ({"url": "https://h/", "method": "GET"}, "method: Input should be 'POST' or 'PUT'"),
        ({"url": "https://h/", "timeout": 0}, "timeout: Input should be greater than 0"),
        ({"url": "https://h/", "token": "x"}, "token: Extra inputs are not permitted"),
    ],
)
def test_bad_options(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(channels.TargetError) as caught:
        channels.options("hook", "webhook", raw, environ={})
    assert str(caught.value) == f"target 'hook' (webhook): {problem}"


def test_secrets_stay_out_of_repr() -> None:
    options = Options(url="https://h/", secret=SECRET, headers={"Authorization": "Bearer abc"})
    assert SECRET not in repr(options)
    assert "Bearer abc" not in repr(options)
