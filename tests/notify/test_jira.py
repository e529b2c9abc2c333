"""The Jira Service Management channel against an in-process fake of `/rest/servicedeskapi`
that keeps its requests, comments and statuses in a dict."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.notify import jira
from bridge.notify.base import Delivered, Rejected, Retry, Transition
from bridge.notify.channels import TargetError, options
from tests.notify.samples import Receiver, message

API = jira.API
RESOLVE, REOPEN = "761", "781"


@dataclass
class FakeJira:
    """Requests by key in project OPS; customer transitions 761 (-> Resolved) and 781
    (-> Waiting for support); `fail` answers every request with (status, body, headers)."""

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: tuple[int, object, dict[str, str]] | None = None

    async def __call__(self, request: web.Request, receiver: Receiver) -> web.StreamResponse:
        if self.fail is not None:
            status, body, headers = self.fail
            return web.json_response(body, status=status, headers=headers)
        if request.method != "POST":
            return web.json_response({"errorMessage": "Method not allowed"}, status=405)
        body = await request.json()
        if request.path == f"{API}/request":
            return self._create(body)
        key, _, action = request.path.removeprefix(f"{API}/request/").partition("/")
        if key not in self.requests:
            message = "The request could not be found or you do not have permission to view it."
            return web.json_response({"errorMessage": message}, status=404)
        if action == "comment":
            self.requests[key]["comments"].append(body)
            return web.json_response({"id": "1000", **body}, status=201)
        return self._transition(self.requests[key], body)

    def _create(self, body: dict[str, Any]) -> web.StreamResponse:
        if not body["requestFieldValues"].get("summary"):
            errors = {"summary": "You must specify a summary of the issue."}
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        key = f"OPS-{len(self.requests) + 1}"
        self.requests[key] = body | {"status": "Waiting for support", "comments": []}
        answer = {"issueId": str(10000 + len(self.requests)), "issueKey": key}
        return web.json_response(answer | {"requestTypeId": body["requestTypeId"]}, status=201)

    def _transition(self, found: dict[str, Any], body: dict[str, Any]) -> web.StreamResponse:
        statuses = {RESOLVE: "Resolved", REOPEN: "Waiting for support"}
        if body.get("id") not in statuses:
            message = f"The transition with ID '{body.get('id')}' is not valid."
            return web.json_response({"errorMessage": message}, status=400)
        found["status"] = statuses[body["id"]]
        found["comments"].append(body["additionalComment"] | {"public": True})
        return web.Response(status=204)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def cloud(receiver: Receiver, **changes: Any) -> jira.Options:
    values: dict[str, Any] = {
        "base_url": receiver.url("/"),
        "email": "bridge@example.com",
        "api_token": "ATATT-secret",
        "service_desk_id": "2",
        "request_type_id": "17",
        "resolve_transition_id": RESOLVE,
    }
    return jira.Options.model_validate(values | changes)


def data_center(receiver: Receiver) -> jira.Options:
    return jira.Options(
        base_url=receiver.url(),
        token="pat-123",
        service_desk_id="2",
        request_type_id="17",
        resolve_transition_id=RESOLVE,
    )


BASIC = "Basic " + base64.b64encode(b"bridge@example.com:ATATT-secret").decode()
DESK = {"service_desk_id": "2", "request_type_id": "17", "resolve_transition_id": RESOLVE}


# --- options ------------------------------------------------------------------------------


def test_options_through_the_registry() -> None:
    raw = {"base_url": "https://example.atlassian.net/", "token": "${PAT}"} | DESK
    validated = options("jsm", "jira", raw, environ={"PAT": "pat-from-env"})
    assert isinstance(validated, jira.Options)
    assert validated.base_url == "https://example.atlassian.net"
    assert validated.reopen_transition_id == ""
    assert "pat-from-env" not in repr(validated)
    assert jira.authorization(validated) == "Bearer pat-from-env"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, "give email and api_token"),
        ({"email": "a@b.c", "api_token": "t", "token": "p"}, "not both"),
        ({"email": "a@b.c"}, "needs both email and api_token"),
        ({"api_token": "t"}, "needs both email and api_token"),
        ({"token": "p", "request_type_id": ""}, "request_type_id: String should have at least"),
        ({"token": "p", "project": "OPS"}, "Extra inputs are not permitted"),
        ({"token": "p", "base_url": "example.atlassian.net"}, "base_url"),
    ],
)
def test_options_problems(changes: dict[str, str], problem: str) -> None:
    raw = {"base_url": "https://example.atlassian.net"} | DESK | changes
    with pytest.raises(TargetError, match=problem):
        options("jsm", "jira", raw, environ={})


# --- outbound -----------------------------------------------------------------------------


async def test_create_posts_a_request_with_basic_auth(session: aiohttp.ClientSession) -> None:
    fake = FakeJira()
    async with Receiver(fake) as receiver:
        outcome = await jira.make(cloud(receiver), session).send(message())
    assert outcome == Delivered("OPS-1", "created OPS-1")
    (sent,) = receiver.requests
    assert (sent.method, sent.path, sent.query) == ("POST", f"{API}/request", {})
    assert sent.headers["Authorization"] == BASIC
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "serviceDeskId": "2",
        "requestTypeId": "17",
        "requestFieldValues": {
            "summary": "[P1] db-1 is down",
            "description": (
                "HostDown on db-1 (payments)\n2 alerts firing\n\n"
                "Incident: 42 (bridge-incident-42)\nPriority: P1\nSeverity: critical\n"
                "Service: payments\nCI: db-1\nAssignment group: dba\n"
                "Opened at: 2026-11-24T09:30:00+00:00\n"
                "- [firing] alertmanager: HostDown on db-1: db-1 does not answer\n"
                "- [firing] nagios: PING on db-1: CRITICAL - 100% packet loss\n\n"
                "Incident in alert-bridge: http://bridge.example:9470/api/v1/incidents/42"
            ),
        },
    }


async def test_a_personal_access_token_is_a_bearer_header(session: aiohttp.ClientSession) -> None:
    async with Receiver(FakeJira()) as receiver:
        outcome = await jira.make(data_center(receiver), session).send(message())
    assert outcome == Delivered("OPS-1", "created OPS-1")
    assert receiver.requests[0].headers["Authorization"] == "Bearer pat-123"


def test_the_summary_is_one_line_of_at_most_255_characters() -> None:
    long = dataclasses.replace(message(), title="db-1\nis down " + "x" * 400)
    summary = jira.new_request(long, data_center_options())["requestFieldValues"]["summary"]
    assert len(summary) == 255
    assert summary.startswith("db-1 is down xxx")
    assert summary.endswith("…")


def data_center_options() -> jira.Options:
    return jira.Options(base_url="https://jira.example.com", token="p", **DESK)


async def test_create_then_comment_then_resolve(session: aiohttp.ClientSession) -> None:
    fake = FakeJira()
    async with Receiver(fake) as receiver:
        channel = jira.make(cloud(receiver), session)
        created = await channel.send(message())
        assert isinstance(created, Delivered)
        key = created.external_id
        acknowledged = await channel.send(
            message(Transition.ACKNOWLEDGED, external_id=key, assignee="jdoe")
        )
        resolved = await channel.send(message(Transition.RESOLVED, external_id=key))
    assert acknowledged == Delivered("OPS-1", "commented on OPS-1")
    assert resolved == Delivered("OPS-1", f"ran transition {RESOLVE} on OPS-1")
    assert [(r.method, r.path) for r in receiver.requests] == [
        ("POST", f"{API}/request"),
        ("POST", f"{API}/request/OPS-1/comment"),
        ("POST", f"{API}/request/OPS-1/transition"),
    ]
    assert {r.headers["Authorization"] for r in receiver.requests} == {BASIC}
    assert receiver.requests[1].json() == {
        "body": (
            "alert-bridge: acknowledged - [P1] db-1 is down\nAssignee: jdoe\n\n"
            "HostDown on db-1 (payments)\n2 alerts firing\n\n"
            "Incident in alert-bridge: http://bridge.example:9470/api/v1/incidents/42"
        ),
        "public": False,
    }
    transition = receiver.requests[2].json()
    assert transition["id"] == RESOLVE
    assert transition["additionalComment"]["body"].startswith("alert-bridge: resolved - [P1]")
    assert fake.requests["OPS-1"]["status"] == "Resolved"


@pytest.mark.parametrize(
    ("reopen", "path", "status"),
    [(REOPEN, "transition", "Waiting for support"), ("", "comment", "Resolved")],
)
async def test_reopen_runs_its_transition_when_configured(
    session: aiohttp.ClientSession, reopen: str, path: str, status: str
) -> None:
    fake = FakeJira()
    async with Receiver(fake) as receiver:
        channel = jira.make(cloud(receiver, reopen_transition_id=reopen), session)
        await channel.send(message())
        await channel.send(message(Transition.RESOLVED, external_id="OPS-1"))
        outcome = await channel.send(message(Transition.REOPENED, external_id="OPS-1"))
    assert isinstance(outcome, Delivered)
    assert receiver.requests[-1].path == f"{API}/request/OPS-1/{path}"
    assert fake.requests["OPS-1"]["status"] == status


@pytest.mark.parametrize(
    "transition",
    [Transition.CLOSED, Transition.ESCALATED, Transition.SLA_BREACH, Transition.REPEAT],
)
async def test_other_transitions_are_internal_comments(
    session: aiohttp.ClientSession, transition: Transition
) -> None:
    fake = FakeJira()
    async with Receiver(fake) as receiver:
        channel = jira.make(cloud(receiver), session)
        await channel.send(message())
        note = message(transition, external_id="OPS-1", reason="not acknowledged after 10m")
        await channel.send(note)
    sent = receiver.requests[-1]
    assert sent.path == f"{API}/request/OPS-1/comment"
    assert sent.json()["public"] is False
    assert "\nReason: not acknowledged after 10m\n" in sent.json()["body"]


async def test_an_update_without_a_request_sends_nothing(session: aiohttp.ClientSession) -> None:
    async with Receiver(FakeJira()) as receiver:
        outcome = await jira.make(cloud(receiver), session).send(message(Transition.RESOLVED))
    assert outcome == Delivered(None, "no Jira request for this incident; nothing to update")
    assert receiver.requests == []


async def test_a_deleted_request_is_rejected(session: aiohttp.ClientSession) -> None:
    async with Receiver(FakeJira()) as receiver:
        channel = jira.make(cloud(receiver), session)
        outcome = await channel.send(message(Transition.ACKNOWLEDGED, external_id="OPS-9"))
    assert outcome == Rejected(
        "HTTP 404: The request could not be found or you do not have permission to view it."
    )


async def test_an_unknown_transition_is_rejected(session: aiohttp.ClientSession) -> None:
    async with Receiver(FakeJira()) as receiver:
        channel = jira.make(cloud(receiver, resolve_transition_id="5"), session)
        await channel.send(message())
        outcome = await channel.send(message(Transition.RESOLVED, external_id="OPS-1"))
    assert outcome == Rejected("HTTP 400: The transition with ID '5' is not valid.")


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (
            400,
            {"errorMessage": "Field values are invalid", "errors": {"summary": "Too long"}},
            {},
            Rejected("HTTP 400: Field values are invalid; summary: Too long"),
        ),
        (
            400,
            {"errorMessages": [], "errors": {"description": "Required"}},
            {},
            Rejected("HTTP 400: description: Required"),
        ),
        (
            401,
            {"errorMessage": "Client must be authenticated to access this resource."},
            {},
            Rejected("HTTP 401: Client must be authenticated to access this resource."),
        ),
        (
            429,
            {"errorMessages": ["Rate limit exceeded."]},
            {"Retry-After": "30"},
            Retry("HTTP 429: Rate limit exceeded.", 30.0),
        ),
        (
            500,
            {"errorMessage": "Internal server error"},
            {},
            Retry("HTTP 500: Internal server error"),
        ),
        (503, "busy", {}, Retry('HTTP 503: "busy"')),
    ],
)
async def test_errors_map_to_outcomes_with_jiras_messages(
    session: aiohttp.ClientSession,
    status: int,
    body: object,
    headers: dict[str, str],
    expected: Retry | Rejected,
) -> None:
    fake = FakeJira(fail=(status, body, headers))
    async with Receiver(fake) as receiver:
        outcome = await jira.make(cloud(receiver), session).send(message())
    assert outcome == expected


async def test_a_created_answer_without_a_key_is_not_retried(
    session: aiohttp.ClientSession,
) -> None:
    async def odd(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.json_response({"issueId": "10001"}, status=201)

    async with Receiver(odd) as receiver:
        outcome = await jira.make(cloud(receiver), session).send(message())
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith("HTTP 201 without an issueKey")


async def test_a_site_that_does_not_answer_is_retried(session: aiohttp.ClientSession) -> None:
    async with Receiver() as receiver:
        gone = cloud(receiver)
    outcome = await jira.make(gone, session).send(message())
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("connection failed")
