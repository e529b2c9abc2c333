"""The PagerDuty channel against a recording fake of the Events API v2 (`/v2/enqueue`)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from bridge.notify import channels, pagerduty
from bridge.notify.base import Delivered, Message, Outcome, Rejected, Retry, Transition
from tests.notify import samples
from tests.notify.samples import Receiver

ROUTING_KEY = "R0123456789abcdef0123456789abcde"
DEDUP_KEY = "bridge-incident-42"
INCIDENT_URL = "http://bridge.example:9470/api/v1/incidents/42"


async def accepted(request: web.Request, receiver: Receiver) -> web.StreamResponse:
    """PagerDuty's answer to a valid event."""
    sent = await request.json()
    return web.json_response(
        {"status": "success", "message": "Event processed", "dedup_key": sent["dedup_key"]},
        status=202,
    )


def answer(status: int, body: str, headers: dict[str, str] | None = None) -> samples.Handler:
    async def handler(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.Response(
            text=body, status=status, headers=headers, content_type="application/json"
        )

    return handler


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def deliver(
    session: aiohttp.ClientSession, handler: samples.Handler, *messages: Message
) -> tuple[list[Outcome], list[Any]]:
    """Send `messages` in order to a fake Events API; the outcomes and the JSON it received."""
    async with Receiver(handler) as receiver:
        channel = pagerduty.make(options(url=receiver.url("/v2/enqueue")), session)
        outcomes = [await channel.send(message) for message in messages]
    assert {(r.method, r.path) for r in receiver.requests} == {("POST", "/v2/enqueue")}
    assert all(r.headers["Content-Type"] == "application/json" for r in receiver.requests)
    return outcomes, [r.json() for r in receiver.requests]


def options(**changes: Any) -> pagerduty.Options:
    values: dict[str, Any] = {"routing_key": ROUTING_KEY, **changes}
    return pagerduty.Options.model_validate(values)


async def test_trigger_event_carries_the_incident(session: aiohttp.ClientSession) -> None:
    outcomes, sent = await deliver(session, accepted, samples.message(Transition.OPENED))

    assert outcomes == [Delivered(DEDUP_KEY, "HTTP 202")]
    assert sent == [
        {
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": DEDUP_KEY,
            "payload": {
                "summary": "[P1] db-1 is down",
                "source": "db-1",
                "severity": "critical",
                "timestamp": "2026-11-24T09:30:00+00:00",
                "component": "db-1",
                "group": "payments",
                "class": "host-down",
                "custom_details": {
                    "transition": "opened",
                    "priority": 1,
                    "status": "new",
                    "labels": {"alertname": "HostDown", "host": "db-1", "severity": "critical"},
                    "alerts": 2,
                    "body": "HostDown on db-1 (payments)\n2 alerts firing",
                },
            },
            "links": [
                {"href": INCIDENT_URL, "text": "Incident in the bridge"},
                {"href": "http://prometheus:9090/graph?g0.expr=up", "text": "Alert source"},
            ],
            "client": "alert-bridge",
            "client_url": INCIDENT_URL,
        }
    ]


async def test_acknowledge_and_resolve_reach_the_triggered_alert(
    session: aiohttp.ClientSession,
) -> None:
    lifecycle = [
        samples.message(Transition.OPENED),
        samples.message(Transition.ACKNOWLEDGED, status="acknowledged"),
        samples.message(Transition.RESOLVED, status="resolved"),
    ]

    outcomes, sent = await deliver(session, accepted, *lifecycle)

    assert outcomes == [Delivered(DEDUP_KEY, "HTTP 202")] * 3
    assert sent[1:] == [
        {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": DEDUP_KEY},
        {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": DEDUP_KEY},
    ]
    assert {event["dedup_key"] for event in sent} == {DEDUP_KEY}


async def test_escalation_retriggers_with_its_reason(session: aiohttp.ClientSession) -> None:
    escalated = samples.message(Transition.ESCALATED, reason="not acknowledged after 10m")

    _, [sent] = await deliver(session, accepted, escalated)

    assert (sent["event_action"], sent["dedup_key"]) == ("trigger", DEDUP_KEY)
    assert sent["payload"]["custom_details"]["transition"] == "escalated"
    assert sent["payload"]["custom_details"]["reason"] == "not acknowledged after 10m"


def test_every_transition_has_an_event_action() -> None:
    assert pagerduty.ACTIONS == {
        Transition.OPENED: "trigger",
        Transition.REOPENED: "trigger",
        Transition.REPEAT: "trigger",
        Transition.ESCALATED: "trigger",
        Transition.SLA_BREACH: "trigger",
        Transition.ACKNOWLEDGED: "acknowledge",
        Transition.RESOLVED: "resolve",
        Transition.CLOSED: "resolve",
    }
    assert set(pagerduty.ACTIONS) == set(Transition)


@pytest.mark.parametrize(
    ("bridge_severity", "expected"),
    [
        ("critical", "critical"),
        ("major", "error"),
        ("minor", "warning"),
        ("warning", "warning"),
        ("info", "info"),
        ("unheard-of", "error"),
    ],
)
async def test_severity_mapping(
    session: aiohttp.ClientSession, bridge_severity: str, expected: str
) -> None:
    _, [sent] = await deliver(session, accepted, samples.message(severity=bridge_severity))

    assert sent["payload"]["severity"] == expected


async def test_without_ci_source_falls_back_to_host_label_then_option(
    session: aiohttp.ClientSession,
) -> None:
    by_host = samples.message(ci="", service="", rule="")
    by_option = samples.message(ci=None, labels={"alertname": "Watchdog"})

    _, sent = await deliver(session, accepted, by_host, by_option)

    assert sent[0]["payload"]["source"] == "db-1"
    assert sent[1]["payload"]["source"] == "alert-bridge"
    # Empty incident fields are left out rather than sent as "".
    assert not {"component", "group", "class"} & set(sent[0]["payload"])


async def test_long_title_is_cut_to_the_summary_limit(session: aiohttp.ClientSession) -> None:
    long = dataclasses.replace(samples.message(), title="x" * 2000)

    _, [sent] = await deliver(session, accepted, long)

    assert sent["payload"]["summary"] == "x" * 1024


async def test_invalid_event_is_rejected_with_pagerdutys_errors(
    session: aiohttp.ClientSession,
) -> None:
    invalid = answer(
        400,
        '{"status": "invalid event", "message": "Event object is invalid",'
        ' "errors": ["\'payload.summary\' is missing or blank"]}',
    )

    [outcome], _ = await deliver(session, invalid, samples.message())

    assert outcome == Rejected(
        "HTTP 400: Event object is invalid: 'payload.summary' is missing or blank"
    )


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, None, Retry('HTTP 429: {"status":"throttle event"}', None)),
        (429, {"Retry-After": "30"}, Retry('HTTP 429: {"status":"throttle event"}', 30.0)),
        (500, None, Retry('HTTP 500: {"status":"throttle event"}', None)),
        (503, None, Retry('HTTP 503: {"status":"throttle event"}', None)),
        (403, None, Rejected('HTTP 403: {"status":"throttle event"}')),
    ],
)
async def test_throttling_and_server_errors(
    session: aiohttp.ClientSession,
    status: int,
    headers: dict[str, str] | None,
    expected: Outcome,
) -> None:
    [outcome], _ = await deliver(
        session, answer(status, '{"status":"throttle event"}', headers), samples.message()
    )

    assert outcome == expected


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


async def test_no_answer_is_retried(session: aiohttp.ClientSession, closed_port: int) -> None:
    channel = pagerduty.make(options(url=f"http://127.0.0.1:{closed_port}/v2/enqueue"), session)

    outcome = await channel.send(samples.message())

    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("connection failed")


def test_options_are_validated_through_the_registry() -> None:
    validated = channels.options("oncall", "pagerduty", {"routing_key": ROUTING_KEY})

    assert isinstance(validated, pagerduty.Options)
    assert validated.url == "https://events.pagerduty.com/v2/enqueue"
    assert ROUTING_KEY not in repr(validated)


@pytest.mark.parametrize(
    "raw",
    [
        {"routing_key": "too-short"},
        {"routing_key": ROUTING_KEY, "url": "events.pagerduty.com/v2/enqueue"},
        {"routing_key": ROUTING_KEY, "timeout": 0},
        {"routing_key": ROUTING_KEY, "severity": "critical"},
    ],
)
def test_bad_options_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        pagerduty.Options.model_validate(raw)

    assert ROUTING_KEY not in str(caught.value)
