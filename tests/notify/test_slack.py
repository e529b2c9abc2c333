"""The Slack channel (incoming webhook and Web API) against a recording fake Slack."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.notify import channels, slack
from bridge.notify.base import Delivered, Message, Outcome, Rejected, Retry, Transition
from tests.notify.samples import Handler, Receiver, message

HOOK_PATH = "/services/T0001/B0001/hook-secret-part"
TOKEN = "xoxb-1111-2222-secret"
TS = "1700000000.000100"
POSTED = f"C123:{TS}"
BRIDGE_LINK = "<http://bridge.example:9470/api/v1/incidents/42|Open in bridge>"
SOURCE_LINK = "<http://prometheus:9090/graph?g0.expr=up|Open source>"
BODY = "HostDown on db-1 (payments)\n2 alerts firing"


def blocks(header: str, status: str, alerts: str = "2 (2 firing)") -> list[dict[str, Any]]:
    """The card for the sample incident, with what changes between transitions."""
    fields = [
        ("Priority", "P1"),
        ("Status", status),
        ("Severity", "critical"),
        ("Service", "payments"),
        ("CI", "db-1"),
        ("Alerts", alerts),
    ]
    return [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{n}*\n{v}"} for n, v in fields],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": BODY}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"{BRIDGE_LINK} · {SOURCE_LINK}"}],
        },
    ]


Answer = tuple[int, Any, dict[str, str]]  # status, JSON (or text) body, headers
OPENED_CARD = blocks(":red_circle: [P1] db-1 is down", "Opened (incident new)")
RESOLVED_CARD = blocks(":white_check_mark: [P1] db-1 is down", "Resolved", "2 (0 firing)")


def resolved(external_id: str | None = None) -> Message:
    return message(Transition.RESOLVED, external_id=external_id, status="resolved", firing_alerts=0)


class FakeSlack:
    """A Web API whose answers are queued per method; `ok` with the posted message when the
    queue is empty."""

    def __init__(self, **answers: list[Answer]) -> None:
        self.answers = {method.replace("_", "."): list(queue) for method, queue in answers.items()}

    async def __call__(self, request: web.Request, receiver: Receiver) -> web.StreamResponse:
        method = request.path.removeprefix("/api/")
        queue = self.answers.get(method, [])
        if queue:
            status, body, headers = queue.pop(0)
            if isinstance(body, str):
                return web.Response(status=status, text=body, headers=headers)
            return web.json_response(body, status=status, headers=headers)
        return web.json_response({"ok": True, "channel": "C123", "ts": TS})


def failing(error: str, headers: dict[str, str] | None = None) -> Answer:
    return 200, {"ok": False, "error": error}, headers or {}


def plain(status: int, text: str, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.Response(status=status, text=text, headers=headers)

    return handler


async def send(raw: Mapping[str, Any], *sent: Message) -> list[Outcome]:
    options = channels.options("chat", "slack", raw, environ={})
    async with aiohttp.ClientSession() as session:
        channel = channels.make("slack", options, session)
        return [await channel.send(one) for one in sent]


def web_api(receiver: Receiver) -> dict[str, str]:
    return {"token": TOKEN, "channel": "#oncall", "api_url": receiver.url("/api")}


# Incoming webhook


async def test_webhook_posts_the_card() -> None:
    async with Receiver(plain(200, "ok")) as receiver:
        outcomes = await send({"webhook_url": receiver.url(HOOK_PATH)}, message())

    assert outcomes == [Delivered(None, "HTTP 200")]
    [recorded] = receiver.requests
    assert (recorded.method, recorded.path) == ("POST", HOOK_PATH)
    assert recorded.headers["Content-Type"] == "application/json"
    assert "Authorization" not in recorded.headers
    assert recorded.json() == {
        "text": ":red_circle: Opened: [P1] db-1 is down",
        "blocks": OPENED_CARD,
    }


async def test_webhook_posts_a_new_message_on_resolve() -> None:
    async with Receiver(plain(200, "ok")) as receiver:
        outcomes = await send({"webhook_url": receiver.url(HOOK_PATH)}, message(), resolved())

    assert outcomes == [Delivered(None, "HTTP 200")] * 2
    first, second = receiver.requests
    assert first.json()["blocks"] == OPENED_CARD
    assert second.path == HOOK_PATH
    assert second.json() == {
        "text": ":white_check_mark: Resolved: [P1] db-1 is down",
        "blocks": RESOLVED_CARD,
    }


@pytest.mark.parametrize(
    ("status", "text", "headers", "expected"),
    [
        (400, "invalid_payload", {}, Rejected("HTTP 400: invalid_payload")),
        (403, "action_prohibited", {}, Rejected("HTTP 403: action_prohibited")),
        (404, "no_service", {}, Rejected("HTTP 404: no_service")),
        (404, "channel_not_found", {}, Rejected("HTTP 404: channel_not_found")),
        (410, "channel_is_archived", {}, Rejected("HTTP 410: channel_is_archived")),
        (429, "rate_limited", {"Retry-After": "30"}, Retry("HTTP 429: rate_limited", 30.0)),
        (500, "rollup_error", {}, Retry("HTTP 500: rollup_error")),
        (503, "upstream down", {}, Retry("HTTP 503: upstream down")),
    ],
)
async def test_webhook_errors(
    status: int, text: str, headers: dict[str, str], expected: Outcome
) -> None:
    async with Receiver(plain(status, text, headers)) as receiver:
        outcomes = await send({"webhook_url": receiver.url(HOOK_PATH)}, message())
    assert outcomes == [expected]


async def test_webhook_unreachable_is_retried() -> None:
    async with Receiver() as receiver:
        closed = receiver.url(HOOK_PATH)
    [outcome] = await send({"webhook_url": closed}, message())
    assert isinstance(outcome, Retry)
    assert "hook-secret-part" not in outcome.reason


# Web API


async def test_first_notification_posts_the_card() -> None:
    async with Receiver(FakeSlack()) as receiver:
        outcomes = await send(web_api(receiver), message())

    assert outcomes == [Delivered(POSTED, "chat.postMessage")]
    [recorded] = receiver.requests
    assert (recorded.method, recorded.path) == ("POST", "/api/chat.postMessage")
    assert recorded.headers["Authorization"] == f"Bearer {TOKEN}"
    assert recorded.headers["Content-Type"] == "application/json; charset=utf-8"
    assert recorded.json() == {
        "channel": "#oncall",
        "text": ":red_circle: Opened: [P1] db-1 is down",
        "blocks": OPENED_CARD,
    }


async def test_resolve_updates_the_card_and_replies_in_its_thread() -> None:
    async with Receiver(FakeSlack()) as receiver:
        outcomes = await send(web_api(receiver), resolved(POSTED))

    assert outcomes == [Delivered(POSTED, "chat.update and thread reply")]
    update, reply = receiver.requests
    assert update.path == "/api/chat.update"
    assert update.headers["Authorization"] == f"Bearer {TOKEN}"
    assert update.json() == {
        "channel": "C123",
        "ts": TS,
        "text": ":white_check_mark: Resolved: [P1] db-1 is down",
        "blocks": RESOLVED_CARD,
    }
    assert reply.path == "/api/chat.postMessage"
    assert reply.headers["Authorization"] == f"Bearer {TOKEN}"
    assert reply.json() == {
        "channel": "C123",
        "thread_ts": TS,
        "text": f":white_check_mark: *Resolved*\n{BODY}",
        "reply_broadcast": False,
    }


async def test_acknowledge_then_resolve_keep_the_same_card() -> None:
    acknowledged = message(
        Transition.ACKNOWLEDGED, external_id=POSTED, status="acknowledged", assignee="alice"
    )
    async with Receiver(FakeSlack()) as receiver:
        outcomes = await send(web_api(receiver), message(), acknowledged, resolved(POSTED))

    updated = Delivered(POSTED, "chat.update and thread reply")
    assert outcomes == [Delivered(POSTED, "chat.postMessage"), updated, updated]
    paths = [r.path for r in receiver.requests]
    assert paths == ["/api/chat.postMessage"] + ["/api/chat.update", "/api/chat.postMessage"] * 2
    ack_update, ack_reply = receiver.requests[1:3]
    assert ack_update.json()["blocks"][0]["text"]["text"] == ":eyes: [P1] db-1 is down"
    assert ack_reply.json()["text"] == f":eyes: *Acknowledged*\n{BODY}"


@pytest.mark.parametrize(
    ("transition", "broadcast"),
    [
        (Transition.REOPENED, True),
        (Transition.REPEAT, True),
        (Transition.ESCALATED, True),
        (Transition.SLA_BREACH, True),
        (Transition.ACKNOWLEDGED, False),
        (Transition.CLOSED, False),
    ],
)
async def test_triggers_and_escalations_are_broadcast(
    transition: Transition, broadcast: bool
) -> None:
    async with Receiver(FakeSlack()) as receiver:
        await send(web_api(receiver), message(transition, external_id=POSTED))
    assert receiver.requests[1].json()["reply_broadcast"] is broadcast


async def test_escalation_reason_is_in_card_and_reply() -> None:
    escalated = message(
        Transition.ESCALATED, external_id=POSTED, reason="not acknowledged after 10m"
    )
    async with Receiver(FakeSlack()) as receiver:
        await send(web_api(receiver), escalated)

    update, reply = receiver.requests
    fields = update.json()["blocks"][1]["fields"]
    assert fields[-1] == {"type": "mrkdwn", "text": "*Reason*\nnot acknowledged after 10m"}
    assert reply.json()["text"] == (
        f":rotating_light: *Escalated*: not acknowledged after 10m\n{BODY}"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (failing("channel_not_found"), Rejected("chat.postMessage: channel_not_found")),
        (failing("invalid_auth"), Rejected("chat.postMessage: invalid_auth")),
        (
            failing("ratelimited", {"Retry-After": "12"}),
            Retry("chat.postMessage: ratelimited", 12.0),
        ),
        (failing("internal_error"), Retry("chat.postMessage: internal_error")),
        ((200, {"ok": False}, {}), Rejected("chat.postMessage: unknown_error")),
        ((429, "slow down", {"Retry-After": "3"}), Retry("HTTP 429: slow down", 3.0)),
        ((502, "bad gateway", {}), Retry("HTTP 502: bad gateway")),
        (
            (200, "<html>portal</html>", {}),
            Rejected("chat.postMessage: not a Slack Web API answer: HTTP 200"),
        ),
        ((404, "not found", {}), Rejected("HTTP 404: not found")),
    ],
)
async def test_web_api_errors(answer: Answer, expected: Outcome) -> None:
    async with Receiver(FakeSlack(chat_postMessage=[answer])) as receiver:
        outcomes = await send(web_api(receiver), message())
    assert outcomes == [expected]


async def test_update_retried_sends_no_reply() -> None:
    fake = FakeSlack(chat_update=[failing("ratelimited", {"Retry-After": "5"})])
    async with Receiver(fake) as receiver:
        outcomes = await send(web_api(receiver), resolved(POSTED))

    assert outcomes == [Retry("chat.update: ratelimited", 5.0)]
    assert [r.path for r in receiver.requests] == ["/api/chat.update"]


async def test_update_rejected_sends_no_reply() -> None:
    fake = FakeSlack(chat_update=[failing("not_in_channel")])
    async with Receiver(fake) as receiver:
        outcomes = await send(web_api(receiver), resolved(POSTED))

    assert outcomes == [Rejected("chat.update: not_in_channel")]
    assert len(receiver.requests) == 1


async def test_failed_thread_reply_is_the_outcome() -> None:
    fake = FakeSlack(chat_postMessage=[failing("internal_error")])
    async with Receiver(fake) as receiver:
        outcomes = await send(web_api(receiver), resolved(POSTED))

    assert outcomes == [Retry("chat.postMessage: internal_error")]
    assert [r.path for r in receiver.requests] == ["/api/chat.update", "/api/chat.postMessage"]


@pytest.mark.parametrize("error", ["message_not_found", "cant_update_message"])
async def test_a_card_that_cannot_be_edited_is_posted_anew(error: str) -> None:
    fresh: Answer = (200, {"ok": True, "channel": "C999", "ts": "1700000500.000200"}, {})
    fake = FakeSlack(chat_update=[failing(error)], chat_postMessage=[fresh])
    async with Receiver(fake) as receiver:
        outcomes = await send(web_api(receiver), resolved(POSTED))

    assert outcomes == [Delivered("C999:1700000500.000200", "chat.postMessage")]
    update, post = receiver.requests
    assert update.path == "/api/chat.update"
    assert post.json() == {
        "channel": "#oncall",
        "text": ":white_check_mark: Resolved: [P1] db-1 is down",
        "blocks": RESOLVED_CARD,
    }


async def test_an_external_id_not_from_slack_posts_a_card() -> None:
    async with Receiver(FakeSlack()) as receiver:
        outcomes = await send(web_api(receiver), resolved("INC0010001"))
    assert outcomes == [Delivered(POSTED, "chat.postMessage")]
    assert "thread_ts" not in receiver.requests[0].json()


# Options


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"webhook_url": "https://hooks.slack.com/services/x", "token": "t", "channel": "c"},
            "slack: Value error, set webhook_url (incoming webhook) or token and channel "
            "(Web API), not both",
        ),
        (
            {},
            "slack: Value error, set either webhook_url (incoming webhook) or both token and "
            "channel (Web API)",
        ),
        (
            {"token": TOKEN},
            "slack: Value error, set either webhook_url (incoming webhook) or both token and "
            "channel (Web API)",
        ),
        (
            {"token": "", "channel": "#oncall"},
            "slack: Value error, set either webhook_url (incoming webhook) or both token and "
            "channel (Web API)",
        ),
        (
            {"webhook_url": "hooks.slack.com/services/secret-path"},
            "webhook_url: Value error, must be an absolute http:// or https:// URL",
        ),
        ({"webhook_url": "https://h/x", "colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_options(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(channels.TargetError) as caught:
        channels.options("chat", "slack", raw, environ={})
    assert str(caught.value) == f"target 'chat' (slack): {problem}"
    assert "secret-path" not in str(caught.value)


def test_options_keep_secrets_out_of_repr() -> None:
    hook = slack.Options(webhook_url="https://hooks.slack.com/services/secret-path")
    api = slack.Options(token=TOKEN, channel="C1", api_url="http://127.0.0.1:1/api/")
    assert "secret-path" not in repr(hook)
    assert TOKEN not in repr(api)
    assert api.api_url == "http://127.0.0.1:1/api"


# Rendering


def test_every_transition_has_an_emoji_and_a_label() -> None:
    assert set(slack.EMOJI) == set(Transition) == set(slack.LABEL)


@pytest.mark.parametrize(
    ("priority", "title", "header"),
    [
        (1, "[P1] db-1 is down", "[P1] db-1 is down"),
        (1, "[RESOLVED] [P1] db-1 is down", "[RESOLVED] [P1] db-1 is down"),
        ("P2", "db-1 is down", "[P2] db-1 is down"),
        (3, "db-1 is down", "[P3] db-1 is down"),
        (None, "db-1 is down", "db-1 is down"),
    ],
)
def test_headline(priority: Any, title: str, header: str) -> None:
    sent = dataclasses.replace(message(priority=priority), title=title)
    assert slack.headline(sent) == header


def test_alert_text_cannot_mention_or_link() -> None:
    sent = dataclasses.replace(message(), body="<!channel> see <http://evil|here> & more")
    body_block = slack.card(sent)[2]
    assert body_block["text"]["text"] == (
        "&lt;!channel&gt; see &lt;http://evil|here&gt; &amp; more"
    )


def test_long_text_is_clipped_outside_entities() -> None:
    sent = dataclasses.replace(message(), body="&" * 5000, title="x" * 400)
    card = slack.card(sent)
    assert len(card[0]["text"]["text"]) == 150
    text = card[2]["text"]["text"]
    assert len(text) <= 3000
    assert text.endswith("&amp;…")


def test_no_source_link_without_generator_url() -> None:
    sent = dataclasses.replace(message(), alerts=())
    assert slack.card(sent)[-1]["elements"][0]["text"] == BRIDGE_LINK
    assert slack.links(sent) == [
        ("Open in bridge", "http://bridge.example:9470/api/v1/incidents/42")
    ]


@pytest.mark.parametrize(
    ("external_id", "parsed"),
    [
        (POSTED, ("C123", TS)),
        (None, None),
        ("", None),
        ("INC0010001", None),
        ("C123:", None),
    ],
)
def test_parse_external_id(external_id: str | None, parsed: tuple[str, str] | None) -> None:
    assert slack.parse_external_id(external_id) == parsed


async def test_rendered_body_loses_its_trailing_newline() -> None:
    sent = dataclasses.replace(message(external_id=POSTED), body=BODY + "\n")
    async with Receiver(FakeSlack()) as receiver:
        await send(web_api(receiver), sent)

    update, reply = receiver.requests
    assert update.json()["blocks"][2]["text"]["text"] == BODY
    assert reply.json()["text"].endswith(BODY)
