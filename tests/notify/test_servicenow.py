"""The ServiceNow channel against an in-process fake of the Table API (`/api/now/table/incident`)
that keeps its incidents in a dict; the inbound parsers as pure decision tables."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.notify import servicenow, servicenow_inbound
from bridge.notify.base import Delivered, ItsmState, ItsmUpdate, Rejected, Retry, Transition
from bridge.notify.channels import TargetError, options
from tests.notify.samples import Receiver, message

TABLE = servicenow.TABLE
SYS_ID = "a" * 32
NOT_FOUND = {
    "error": {
        "message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval",
    },
    "status": "failure",
}


@dataclass
class FakeServiceNow:
    """Incidents by sys_id; answers the queries the channel makes (`correlation_id=..^active=
    true`, `sys_idIN...`), creates with POST and updates with PATCH; `fail` answers every
    request with (status, body, headers)."""

    records: dict[str, dict[str, str]] = field(default_factory=dict)
    fail: tuple[int, object, dict[str, str]] | None = None

    def add(self, **values: str) -> str:
        sys_id = values.get("sys_id") or f"{len(self.records) + 1:032x}"
        number = f"INC{len(self.records) + 10001:07d}"
        record = {"number": number, "state": "1", "active": "true", "correlation_id": ""}
        self.records[sys_id] = record | values | {"sys_id": sys_id}
        return sys_id

    async def __call__(self, request: web.Request, receiver: Receiver) -> web.StreamResponse:
        if self.fail is not None:
            status, body, headers = self.fail
            return web.json_response(body, status=status, headers=headers)
        if request.path == TABLE and request.method == "GET":
            return self._query(request.query["sysparm_query"])
        if request.path == TABLE and request.method == "POST":
            sys_id = self.add(**await request.json())
            return web.json_response({"result": self._fields(sys_id, request)}, status=201)
        sys_id = request.path.removeprefix(TABLE + "/")
        if request.method == "PATCH" and sys_id in self.records:
            self.records[sys_id].update(await request.json())
            return web.json_response({"result": self._fields(sys_id, request)})
        return web.json_response(NOT_FOUND, status=404)

    def _query(self, query: str) -> web.StreamResponse:
        found = list(self.records.values())
        for condition in query.split("^"):
            if condition.startswith("sys_idIN"):
                wanted = condition.removeprefix("sys_idIN").split(",")
                found = [r for r in found if r["sys_id"] in wanted]
            else:
                name, _, value = condition.partition("=")
                found = [r for r in found if r.get(name) == value]
        return web.json_response({"result": found})

    def _fields(self, sys_id: str, request: web.Request) -> dict[str, str]:
        names = request.query["sysparm_fields"].split(",")
        return {name: self.records[sys_id].get(name, "") for name in names}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def basic_options(receiver: Receiver, **changes: Any) -> servicenow.Options:
    values: dict[str, Any] = {
        "instance_url": receiver.url("/"),
        "username": "bridge",
        "password": "s3cret",
        "caller_id": "alert.bridge",
        "category": "software",
    }
    return servicenow.Options.model_validate(values | changes)


def token_options(receiver: Receiver) -> servicenow.Options:
    return servicenow.Options(instance_url=receiver.url(), token="tok-123")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- options ------------------------------------------------------------------------------


def test_options_through_the_registry_expand_secrets() -> None:
    raw = {"instance_url": "https://dev1234.service-now.com/", "token": "${SN_TOKEN}"}
    validated = options("sn", "servicenow", raw, environ={"SN_TOKEN": "tok-from-env"})
    assert isinstance(validated, servicenow.Options)
    assert validated.instance_url == "https://dev1234.service-now.com"
    assert validated.close_code == "Solution provided"
    assert "tok-from-env" not in repr(validated)
    assert servicenow.authorization(validated) == "Bearer tok-from-env"


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({}, "give username and password, or token"),
        ({"username": "u", "password": "p", "token": "t"}, "not both"),
        ({"username": "u"}, "needs both username and password"),
        ({"password": "p"}, "needs both username and password"),
        ({"token": ""}, "give username and password, or token"),
        ({"token": "t", "colour": "red"}, "Extra inputs are not permitted"),
        ({"username": "a:b", "password": "p"}, "username: String should match pattern"),
    ],
)
def test_options_want_exactly_one_way_to_sign_in(auth: dict[str, str], problem: str) -> None:
    raw = {"instance_url": "https://dev1234.service-now.com"} | auth
    with pytest.raises(TargetError, match=problem):
        options("sn", "servicenow", raw, environ={})


def test_options_want_a_base_url() -> None:
    with pytest.raises(TargetError, match="instance_url"):
        options("sn", "servicenow", {"instance_url": "dev1234", "token": "t"}, environ={})


# --- outbound -----------------------------------------------------------------------------


async def test_create_looks_up_then_posts_the_incident_with_basic_auth(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeServiceNow()
    async with Receiver(fake) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(message())
    lookup, create = receiver.requests
    sys_id = next(iter(fake.records))
    assert outcome == Delivered(sys_id, "created INC0010001")
    assert (lookup.method, lookup.path) == ("GET", TABLE)
    assert lookup.query == {
        "sysparm_query": "correlation_id=bridge-incident-42^active=true",
        "sysparm_fields": "sys_id,number,state",
        "sysparm_limit": "1",
    }
    assert (create.method, create.path) == ("POST", TABLE)
    assert create.query == {"sysparm_fields": "sys_id,number,state"}
    for sent in (lookup, create):
        assert sent.headers["Authorization"] == basic("bridge", "s3cret")
        assert sent.headers["Accept"] == "application/json"
    assert create.headers["Content-Type"] == "application/json"
    assert create.json() == {
        "short_description": "[P1] db-1 is down",
        "description": (
            "HostDown on db-1 (payments)\n2 alerts firing\n\n"
            "Incident: 42 (bridge-incident-42)\nPriority: P1\nSeverity: critical\n"
            "Service: payments\nCI: db-1\nOpened at: 2026-11-24T09:30:00+00:00\n"
            "Alerts: 2 firing of 2\n"
            "- [firing] alertmanager: HostDown on db-1: db-1 does not answer\n"
            "- [firing] nagios: PING on db-1: CRITICAL - 100% packet loss\n\n"
            "Incident in alert-bridge: http://bridge.example:9470/api/v1/incidents/42"
        ),
        "correlation_id": "bridge-incident-42",
        "correlation_display": "alert-bridge",
        "caller_id": "alert.bridge",
        "assignment_group": "dba",
        "category": "software",
        "cmdb_ci": "db-1",
        "impact": "1",
        "urgency": "1",
    }


async def test_create_with_an_oauth_token_sends_a_bearer_header(
    session: aiohttp.ClientSession,
) -> None:
    async with Receiver(FakeServiceNow()) as receiver:
        outcome = await servicenow.make(token_options(receiver), session).send(message())
    assert isinstance(outcome, Delivered)
    assert [r.headers["Authorization"] for r in receiver.requests] == ["Bearer tok-123"] * 2
    created = receiver.requests[1].json()
    assert "caller_id" not in created
    assert "category" not in created


async def test_target_group_wins_and_empty_fields_are_left_out(
    session: aiohttp.ClientSession,
) -> None:
    note = message(ci="", priority="P4")
    async with Receiver(FakeServiceNow()) as receiver:
        channel = servicenow.make(basic_options(receiver, assignment_group="Database"), session)
        await channel.send(note)
    created = receiver.requests[1].json()
    assert created["assignment_group"] == "Database"
    assert "cmdb_ci" not in created
    assert (created["impact"], created["urgency"]) == ("2", "3")


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        (1, ("1", "1")),
        (2, ("1", "2")),
        (3, ("2", "2")),
        (4, ("2", "3")),
        (5, ("3", "3")),
        ("P2", ("1", "2")),
        ("p5", ("3", "3")),
        (9, None),
        ("urgent", None),
        (None, None),
    ],
)
def test_priority_sets_impact_and_urgency(
    priority: object, expected: tuple[str, str] | None
) -> None:
    assert servicenow.impact_and_urgency({"priority": priority}) == expected


def test_priority_level_of_the_api_shape_wins() -> None:
    assert servicenow.impact_and_urgency({"priority": "P9", "priority_level": 2}) == ("1", "2")


def test_long_titles_are_clipped_to_160_characters() -> None:
    options = servicenow.Options(instance_url="https://x.service-now.com", token="t")
    long = dataclasses.replace(message(), title="t" * 400)
    sent = servicenow.new_incident(long, options)["short_description"]
    assert len(sent) == 160
    assert sent.endswith("…")


async def test_an_existing_ticket_found_by_correlation_is_reused(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeServiceNow()
    fake.add(sys_id=SYS_ID, correlation_id="bridge-incident-42", state="2")
    fake.add(correlation_id="bridge-incident-42", active="false")
    async with Receiver(fake) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(message())
    assert outcome == Delivered(SYS_ID, "updated INC0010001")
    assert [(r.method, r.path) for r in receiver.requests] == [
        ("GET", TABLE),
        ("PATCH", f"{TABLE}/{SYS_ID}"),
    ]
    assert len(fake.records) == 2
    assert fake.records[SYS_ID]["work_notes"].startswith("alert-bridge: opened - [P1] db-1")
    assert fake.records[SYS_ID]["state"] == "2"


async def test_acknowledged_adds_a_work_note_and_moves_to_in_progress(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeServiceNow()
    fake.add(sys_id=SYS_ID, correlation_id="bridge-incident-42")
    note = message(Transition.ACKNOWLEDGED, external_id=SYS_ID, assignee="jdoe")
    async with Receiver(fake) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(note)
    assert outcome == Delivered(SYS_ID, "updated INC0010001")
    (patch,) = receiver.requests
    assert (patch.method, patch.path) == ("PATCH", f"{TABLE}/{SYS_ID}")
    assert patch.json() == {
        "work_notes": (
            "alert-bridge: acknowledged - [P1] db-1 is down\nAssignee: jdoe\n\n"
            "HostDown on db-1 (payments)\n2 alerts firing\n\n"
            "Incident in alert-bridge: http://bridge.example:9470/api/v1/incidents/42"
        ),
        "state": "2",
    }


async def test_resolved_sets_state_6_with_close_code_and_notes(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeServiceNow()
    fake.add(sys_id=SYS_ID, state="2")
    note = message(Transition.RESOLVED, external_id=SYS_ID)
    async with Receiver(fake) as receiver:
        channel = servicenow.make(
            basic_options(receiver, close_code="Workaround provided"), session
        )
        outcome = await channel.send(note)
    assert isinstance(outcome, Delivered)
    sent = receiver.requests[0].json()
    assert sent["state"] == "6"
    assert sent["close_code"] == "Workaround provided"
    assert sent["close_notes"] == "HostDown on db-1 (payments)\n2 alerts firing"
    assert sent["work_notes"].startswith("alert-bridge: resolved - ")


@pytest.mark.parametrize(
    ("transition", "state"),
    [
        (Transition.REOPENED, "1"),
        (Transition.CLOSED, None),
        (Transition.ESCALATED, None),
        (Transition.SLA_BREACH, None),
        (Transition.REPEAT, None),
    ],
)
async def test_other_transitions_set_state_only_on_reopen(
    session: aiohttp.ClientSession, transition: Transition, state: str | None
) -> None:
    fake = FakeServiceNow()
    fake.add(sys_id=SYS_ID, state="6")
    note = message(transition, external_id=SYS_ID, reason="not acknowledged after 10m")
    async with Receiver(fake) as receiver:
        await servicenow.make(basic_options(receiver), session).send(note)
    sent = receiver.requests[0].json()
    assert sent.get("state") == state
    assert set(sent) <= {"work_notes", "state"}
    assert "\nReason: not acknowledged after 10m\n" in sent["work_notes"]


async def test_an_update_without_any_ticket_sends_nothing(
    session: aiohttp.ClientSession,
) -> None:
    async with Receiver(FakeServiceNow()) as receiver:
        channel = servicenow.make(basic_options(receiver), session)
        outcome = await channel.send(message(Transition.RESOLVED))
    assert isinstance(outcome, Delivered)
    assert outcome.external_id is None
    assert [r.method for r in receiver.requests] == ["GET"]


async def test_a_deleted_ticket_is_rejected_with_servicenows_message(
    session: aiohttp.ClientSession,
) -> None:
    note = message(Transition.ACKNOWLEDGED, external_id=SYS_ID)
    async with Receiver(FakeServiceNow()) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(note)
    assert outcome == Rejected(
        "HTTP 404: No Record found: Record doesn't exist or ACL restricts the record retrieval"
    )


async def test_unauthorized_is_rejected(session: aiohttp.ClientSession) -> None:
    fake = FakeServiceNow()
    body = {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth"}}
    fake.fail = (401, body | {"status": "failure"}, {})
    async with Receiver(fake) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(message())
    assert outcome == Rejected("HTTP 401: User Not Authenticated: Required to provide Auth")
    assert len(receiver.requests) == 1


async def test_unavailable_is_retried_after_the_wait_asked_for(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeServiceNow()
    fake.fail = (503, {"error": {"message": "Instance unavailable"}}, {"Retry-After": "120"})
    async with Receiver(fake) as receiver:
        channel = servicenow.make(basic_options(receiver), session)
        outcome = await channel.send(message(external_id=SYS_ID))
    assert outcome == Retry("HTTP 503: Instance unavailable", 120.0)


async def test_an_error_without_servicenows_body_keeps_the_text(
    session: aiohttp.ClientSession,
) -> None:
    async def gateway(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.Response(status=502, text="Bad Gateway")

    async with Receiver(gateway) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(message())
    assert outcome == Retry("HTTP 502: Bad Gateway", None)


async def test_a_created_answer_without_sys_id_is_retried(session: aiohttp.ClientSession) -> None:
    async def hibernating(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        if request.method == "GET":
            return web.json_response({"result": []})
        return web.Response(status=200, text="<html>Instance hibernating</html>")

    async with Receiver(hibernating) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(message())
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("HTTP 200 without a sys_id")


async def test_a_query_answer_that_is_not_a_result_list_is_retried(
    session: aiohttp.ClientSession,
) -> None:
    async def odd(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.json_response({"result": {"sys_id": SYS_ID}})

    async with Receiver(odd) as receiver:
        outcome = await servicenow.make(basic_options(receiver), session).send(message())
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("unexpected answer to a query")


async def test_an_instance_that_does_not_answer_is_retried(session: aiohttp.ClientSession) -> None:
    async with Receiver() as receiver:
        gone = basic_options(receiver)
    outcome = await servicenow.make(gone, session).send(message(external_id=SYS_ID))
    assert isinstance(outcome, Retry)
    assert outcome.reason.startswith("connection failed")


# --- inbound ------------------------------------------------------------------------------


def test_parse_update_reads_the_business_rule_body() -> None:
    body = {
        "sys_id": SYS_ID,
        "number": "INC0010001",
        "correlation_id": "bridge-incident-42",
        "state": "6",
        "sys_updated_by": "jdoe",
        "work_notes": "restarted the database",
        "close_notes": "db-1 replaced",
        "extra": "ignored",
    }
    assert servicenow_inbound.parse_update(body) == ItsmUpdate(
        external_id=SYS_ID,
        correlation_id="bridge-incident-42",
        state=ItsmState.RESOLVED,
        actor="jdoe",
        comment="db-1 replaced",
        number="INC0010001",
    )


def test_parse_update_takes_a_numeric_state_and_the_work_note() -> None:
    body = {
        "sys_id": SYS_ID,
        "correlation_id": "bridge-incident-7",
        "state": 2,
        "work_notes": "on it",
    }
    update = servicenow_inbound.parse_update(body)
    assert (update.state, update.comment, update.actor, update.number) == (
        ItsmState.ACKNOWLEDGED,
        "on it",
        "",
        "",
    )


GOOD = {"sys_id": SYS_ID, "correlation_id": "bridge-incident-42", "state": "2"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([GOOD], "expected a JSON object, got list"),
        ("state=2", "expected a JSON object, got str"),
        ({k: v for k, v in GOOD.items() if k != "sys_id"}, "sys_id: Field required"),
        (GOOD | {"sys_id": ""}, "sys_id: String should have at least 1 character"),
        (GOOD | {"correlation_id": ""}, "correlation_id: String should have at least 1"),
        ({k: v for k, v in GOOD.items() if k != "state"}, "state: Field required"),
        (GOOD | {"state": "Resolved"}, "state: Value error, expected the numeric state value"),
        (GOOD | {"state": True}, "state: Value error"),
        (GOOD | {"state": None}, "state: Value error"),
        (GOOD | {"sys_updated_by": 5}, "sys_updated_by: Input should be a valid string"),
    ],
)
def test_parse_update_names_what_is_wrong(body: object, problem: str) -> None:
    with pytest.raises(ValueError, match=r"^ServiceNow update: ") as raised:
        servicenow_inbound.parse_update(body)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("value", "state"),
    [
        (1, ItsmState.OPEN),
        ("1", ItsmState.OPEN),
        ("2", ItsmState.ACKNOWLEDGED),
        (3, ItsmState.ACKNOWLEDGED),
        ("6", ItsmState.RESOLVED),
        (" 7 ", ItsmState.CLOSED),
        (8, ItsmState.CLOSED),
        ("4", ItsmState.OPEN),  # a custom or legacy state: no transition for it
        (-5, ItsmState.OPEN),
    ],
)
def test_state_of(value: object, state: ItsmState) -> None:
    assert servicenow_inbound.state_of(value) is state


@pytest.mark.parametrize("value", ["", "In Progress", "6.0", 6.0, None, False, [6]])
def test_state_of_refuses_what_is_not_a_state_number(value: object) -> None:
    with pytest.raises(ValueError, match="expected the numeric state value"):
        servicenow_inbound.state_of(value)


async def test_poll_reads_the_incidents_in_chunks_of_100(session: aiohttp.ClientSession) -> None:
    fake = FakeServiceNow()
    ids = [
        fake.add(correlation_id=f"bridge-incident-{n}", sys_updated_by="jdoe") for n in range(150)
    ]
    fake.records[ids[120]] |= {"state": "6", "close_notes": "fixed"}
    async with Receiver(fake) as receiver:
        updates = await servicenow_inbound.poll(basic_options(receiver), session, ids + ids[:3])
    assert isinstance(updates, list)
    assert [u.external_id for u in updates] == ids
    assert updates[120] == ItsmUpdate(
        ids[120], "bridge-incident-120", ItsmState.RESOLVED, "jdoe", "fixed", "INC0010121"
    )
    assert {u.state for u in updates[:120]} == {ItsmState.OPEN}
    first, second = receiver.requests
    assert first.query["sysparm_query"] == "sys_idIN" + ",".join(ids[:100])
    assert second.query["sysparm_query"] == "sys_idIN" + ",".join(ids[100:])
    assert first.query["sysparm_fields"] == (
        "sys_id,number,correlation_id,state,sys_updated_by,close_notes"
    )
    assert (first.query["sysparm_display_value"], first.query["sysparm_limit"]) == ("false", "100")


async def test_poll_of_nothing_asks_nothing(session: aiohttp.ClientSession) -> None:
    async with Receiver(FakeServiceNow()) as receiver:
        assert await servicenow_inbound.poll(basic_options(receiver), session, []) == []
    assert receiver.requests == []


async def test_poll_skips_deleted_records(session: aiohttp.ClientSession) -> None:
    fake = FakeServiceNow()
    kept = fake.add(correlation_id="bridge-incident-1", state="3")
    async with Receiver(fake) as receiver:
        updates = await servicenow_inbound.poll(basic_options(receiver), session, [SYS_ID, kept])
    assert updates == [
        ItsmUpdate(kept, "bridge-incident-1", ItsmState.ACKNOWLEDGED, number="INC0010001")
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, Rejected), (403, Rejected), (429, Retry), (500, Retry)],
)
async def test_poll_failures(
    session: aiohttp.ClientSession, status: int, expected: type[Retry | Rejected]
) -> None:
    fake = FakeServiceNow()
    fake.fail = (status, {"error": {"message": "nope"}, "status": "failure"}, {})
    async with Receiver(fake) as receiver:
        outcome = await servicenow_inbound.poll(basic_options(receiver), session, [SYS_ID])
    assert isinstance(outcome, expected)
    assert outcome.reason == f"HTTP {status}: nope"


async def test_poll_rejects_a_record_it_cannot_read(session: aiohttp.ClientSession) -> None:
    async def odd(request: web.Request, receiver: Receiver) -> web.StreamResponse:
        return web.json_response({"result": [{"sys_id": SYS_ID, "state": "Resolved"}]})

    async with Receiver(odd) as receiver:
        outcome = await servicenow_inbound.poll(basic_options(receiver), session, [SYS_ID])
    assert isinstance(outcome, Rejected)
    assert "state" in outcome.reason
