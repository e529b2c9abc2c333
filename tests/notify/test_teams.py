"""The Teams workflow channel against a recording fake workflow endpoint."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.notify import channels, teams
from bridge.notify.base import Delivered, Message, Outcome, Rejected, Retry, Transition
from tests.notify.samples import Handler, Receiver, message

FLOW_PATH = "/workflows/0a1b2c/triggers/manual/paths/invoke"
FLOW_QUERY = "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=flow-signature"
BRIDGE_URL = "http://bridge.example:9470/api/v1/incidents/42"
SOURCE_URL = "http://prometheus:9090/graph?g0.expr=up"
BODY = "HostDown on db-1 (payments)\n2 alerts firing"


def expected(colour: str, status: str, alerts: str, actions: list[dict[str, Any]]) -> Any:
    facts = [
        ("Priority", "P1"),
        ("Status", status),
        ("Severity", "critical"),
        ("Service", "payments"),
        ("CI", "db-1"),
        ("Alerts", alerts),
    ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": "[P1] db-1 is down",
                            "weight": "bolder",
                            "size": "medium",
                            "color": colour,
                            "wrap": True,
                        },
                        {
                            "type": "FactSet",
                            "facts": [{"title": t, "value": v} for t, v in facts],
                        },
                        {"type": "TextBlock", "text": BODY, "wrap": True},
                    ],
                    "actions": actions,
                },
            }
        ],
    }


BOTH_ACTIONS = [
    {"type": "Action.OpenUrl", "title": "Open in bridge", "url": BRIDGE_URL},
    {"type": "Action.OpenUrl", "title": "Open source", "url": SOURCE_URL},
]


def answer(status: int, text: str = "", headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.Response(status=status, text=text, headers=headers)

    return handler


async def send(url: str, sent: Message | None = None) -> Outcome:
    options = channels.options("team", "teams", {"url": url, "timeout": 5}, environ={})
    async with aiohttp.ClientSession() as session:
        return await channels.make("teams", options, session).send(sent or message())


async def test_posts_the_card() -> None:
    async with Receiver(answer(202)) as receiver:
        outcome = await send(receiver.url(FLOW_PATH) + FLOW_QUERY)

    assert outcome == Delivered(None, "HTTP 202")
    [recorded] = receiver.requests
    assert (recorded.method, recorded.path) == ("POST", FLOW_PATH)
    assert recorded.query == {
        "api-version": "2016-06-01",
        "sp": "/triggers/manual/run",
        "sv": "1.0",
        "sig": "flow-signature",
    }
    assert recorded.headers["Content-Type"] == "application/json"
    assert recorded.json() == expected(
        "attention", "Opened (incident new)", "2 (2 firing)", BOTH_ACTIONS
    )


async def test_resolve_posts_a_new_green_card() -> None:
    resolved = message(Transition.RESOLVED, status="resolved", firing_alerts=0)
    async with Receiver(answer(202)) as receiver:
        outcome = await send(receiver.url(FLOW_PATH), resolved)

    assert outcome == Delivered(None, "HTTP 202")
    assert receiver.requests[0].json() == expected("good", "Resolved", "2 (0 firing)", BOTH_ACTIONS)


async def test_no_source_button_without_generator_url() -> None:
    sent = dataclasses.replace(message(), alerts=(message().alerts[1],))
    async with Receiver(answer(202)) as receiver:
        await send(receiver.url(FLOW_PATH), sent)

    content = receiver.requests[0].json()["attachments"][0]["content"]
    assert content["actions"] == [BOTH_ACTIONS[0]]


async def test_escalation_reason_is_a_fact() -> None:
    escalated = message(Transition.ESCALATED, reason="not acknowledged after 10m")
    async with Receiver(answer(202)) as receiver:
        await send(receiver.url(FLOW_PATH), escalated)

    content = receiver.requests[0].json()["attachments"][0]["content"]
    assert content["body"][0]["color"] == "attention"
    assert content["body"][1]["facts"][-1] == {
        "title": "Reason",
        "value": "not acknowledged after 10m",
    }


@pytest.mark.parametrize(
    ("transition", "colour"),
    [
        (Transition.OPENED, "attention"),
        (Transition.REOPENED, "attention"),
        (Transition.REPEAT, "attention"),
        (Transition.ESCALATED, "attention"),
        (Transition.SLA_BREACH, "attention"),
        (Transition.ACKNOWLEDGED, "default"),
        (Transition.RESOLVED, "good"),
        (Transition.CLOSED, "good"),
    ],
)
def test_colour(transition: Transition, colour: str) -> None:
    assert teams.colour(transition) == colour


@pytest.mark.parametrize(
    ("status", "text", "headers", "outcome"),
    [
        (200, "", {}, Delivered(None, "HTTP 200")),
        (400, "Bad Request: card invalid", {}, Rejected("HTTP 400: Bad Request: card invalid")),
        (
            401,
            "DirectApiAuthorizationRequired",
            {},
            Rejected("HTTP 401: DirectApiAuthorizationRequired"),
        ),
        (503, "Service Unavailable", {}, Retry("HTTP 503: Service Unavailable")),
        (429, "too many runs", {"Retry-After": "20"}, Retry("HTTP 429: too many runs", 20.0)),
    ],
)
async def test_status_mapping(
    status: int, text: str, headers: dict[str, str], outcome: Outcome
) -> None:
    async with Receiver(answer(status, text, headers)) as receiver:
        assert await send(receiver.url(FLOW_PATH), message()) == outcome


async def test_unreachable_is_retried() -> None:
    async with Receiver() as receiver:
        closed = receiver.url(FLOW_PATH) + FLOW_QUERY
    outcome = await send(closed)
    assert isinstance(outcome, Retry)
    assert "flow-signature" not in outcome.reason


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({}, "url: Field required"),
        (
            {"url": "prod-01.logic.azure.com/x?sig=secret-sig"},
            "url: Value error, must be an absolute http:// or https:// URL",
        ),
        ({"url": "https://h/x", "timeout": -1}, "timeout: Input should be greater than 0"),
        ({"url": "https://h/x", "card": "x"}, "card: Extra inputs are not permitted"),
    ],
)
def test_bad_options(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(channels.TargetError) as caught:
        channels.options("team", "teams", raw, environ={})
    assert str(caught.value) == f"target 'team' (teams): {problem}"
    assert "secret-sig" not in str(caught.value)


def test_url_stays_out_of_repr() -> None:
    options = teams.Options(url="https://h/x?sig=secret-sig")
    assert "secret-sig" not in repr(options)


async def test_rendered_body_loses_its_trailing_newline() -> None:
    sent = dataclasses.replace(message(), body=BODY + "\n")
    async with Receiver(answer(202)) as receiver:
        await send(receiver.url(FLOW_PATH), sent)

    content = receiver.requests[0].json()["attachments"][0]["content"]
    assert content["body"][2] == {"type": "TextBlock", "text": BODY, "wrap": True}
