"""Review findings for notification delivery, through the running daemon (SQLite and
PostgreSQL). Each test is a bug a review found, fixed since."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge import jobs
from bridge.ingest import OperatorAction
from bridge.notify import itsm
from bridge.notify.base import ItsmState, ItsmUpdate
from bridge.store import outbox
from rules import incidents as incident_stage
from rules.model import IncidentState
from tests.bridge.conftest import Bridge
from tests.bridge.test_notifications import (
    DB_DOWN,
    Script,
    notifications,
    notify_rules,
    sent,
    until,
)
from tests.bridge.test_rule_scenarios import prometheus, shipped_rules_with
from tests.notify.samples import Receiver


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
async def receiver(script: Script) -> AsyncIterator[Receiver]:
    async with Receiver(script.handle) as found:
        yield found


@pytest.fixture
def settings_overrides(tmp_path: Path, receiver: Receiver) -> dict[str, Any]:
    rules = shipped_rules_with(tmp_path)
    (rules / "40-notify.yaml").write_text(yaml.safe_dump(notify_rules(receiver.url("/"))))
    return {
        "rules_dir": rules,
        "sla_acknowledge": {"P1": "15m"},
        "notify_max_attempts": 3,
        "public_url": "https://bridge.example",
    }


async def _act(bridge: Bridge, incident_id: int, verb: str) -> None:
    status, answer = await bridge.post_json(
        f"/api/v1/incidents/{incident_id}/{verb}", {"actor": "bob"}
    )
    assert status == 200, answer


async def _opened(bridge: Bridge, receiver: Receiver, labels: dict[str, str]) -> int:
    await prometheus(bridge, labels)
    await until(lambda: _has_sent(receiver, "/hooks/pager", 1), "opened")
    return int(sent(receiver, "/hooks/pager")[0]["incident"]["id"])


async def _has_sent(receiver: Receiver, path: str, n: int) -> bool:
    return len(sent(receiver, path)) >= n


async def test_an_escalation_after_an_unacknowledge_pages_the_step_again(
    bridge: Bridge, receiver: Receiver
) -> None:
    incident_id = await _opened(bridge, receiver, DB_DOWN)
    bridge.clock.advance(10 * 60 + 1)
    assert await jobs.run_escalations(bridge.runtime) == 1
    await until(lambda: _has_sent(receiver, "/hooks/lead", 1), "the first escalation")
    await _act(bridge, incident_id, "acknowledge")
    await _act(bridge, incident_id, "unacknowledge")
    # Nobody works on it any more: 10 minutes later the lead is paged again.
    bridge.clock.advance(10 * 60 + 1)
    assert await jobs.run_escalations(bridge.runtime) == 1
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert [e["kind"] for e in detail["timeline"]].count("escalated") == 2
    queued = await notifications(bridge, target="lead", incident_id=str(incident_id))
    assert [n["transition"] for n in queued].count("escalated") == 2


async def test_polling_does_not_undo_an_unacknowledge_made_in_the_bridge(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    incident_id = await _opened(bridge, receiver, {**DB_DOWN, "ticket": "yes"})
    await until(lambda: _ticket_state(script, "1"), "the ticket")
    await _act(bridge, incident_id, "acknowledge")
    await until(lambda: _ticket_state(script, "2"), "the ticket in progress")
    # The bridge records the state it gave the ticket with the delivery's outcome, a moment
    # after the ticket changed: the poll below must find it recorded.
    await until(lambda: _all_sent(bridge), "the acknowledgement recorded as delivered")
    bridge.clock.advance(60)
    await _act(bridge, incident_id, "unacknowledge")
    bridge.clock.advance(60)
    assert await jobs.poll_itsm(bridge.runtime) == 0
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert detail["status"] == "new"


async def _all_sent(bridge: Bridge) -> bool:
    return all(n["status"] == "sent" for n in await notifications(bridge))


async def _ticket_state(script: Script, state: str) -> bool:
    return [t["state"] for t in script.tickets.values()] == [state]


async def test_a_huge_retry_after_is_capped_not_a_failed_round(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    script.fail("/hooks/pager", 503, headers={"Retry-After": "100000000000000"})
    await prometheus(bridge, DB_DOWN)

    async def settled() -> bool:
        text = await (await bridge.client.get("/metrics")).text()
        failed = 'bridge_internal_errors_total{boundary="dispatcher"} 1.0' in text
        return failed or any(n["attempts"] == 1 for n in await notifications(bridge))

    await until(settled, "the outcome of the first attempt")
    [pending] = await notifications(bridge, target="pager")
    assert pending["attempts"] == 1
    assert "HTTP 503" in pending["last_error"]


async def test_only_the_itsm_change_itself_is_kept_from_its_ticket(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    incident_id = await _opened(bridge, receiver, {**DB_DOWN, "ticket": "yes"})
    await until(lambda: _ticket_state(script, "1"), "the ticket")
    [(sys_id, ticket)] = script.tickets.items()
    update = ItsmUpdate(sys_id, ticket["correlation_id"], ItsmState.ACKNOWLEDGED, "carol")

    def resolve(incident: IncidentState, now: datetime) -> incident_stage.Transition:
        return incident_stage.resolve(incident, "bob", "fixed", now)

    # Carol takes the ticket in ServiceNow while Bob resolves the incident in the bridge: the
    # writer commits both in one batch.
    runtime = bridge.runtime
    await asyncio.gather(
        itsm.apply(runtime, "snow", update, "inbound"),
        runtime.pipeline.act(OperatorAction(incident_id, "resolve", resolve)),
    )
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert detail["status"] == "resolved"
    queued = await notifications(bridge, target="snow", incident_id=str(incident_id))
    assert "resolved" in [n["transition"] for n in queued]


async def test_a_nul_byte_in_a_targets_answer_is_stored_not_retried_for_ever(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    """PostgreSQL refuses NUL in text: an error body quoted in the outcome failed its store,
    so the attempt was never counted and the notification went out again every lease."""
    script.answers["/hooks/pager"] = [(500, {}, b"upstream error\x00 binary junk")]
    await prometheus(bridge, DB_DOWN)

    async def attempted() -> bool:
        return any(n["attempts"] == 1 for n in await notifications(bridge, target="pager"))

    await until(attempted, "the first attempt recorded")
    [pending] = await notifications(bridge, target="pager")
    assert pending["status"] == "pending"
    assert "upstream error\ufffd binary junk" in pending["last_error"]
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_database_errors_total{operation="dispatch"}' not in metrics


async def test_a_claim_whose_lease_ended_is_neither_sent_nor_recorded(
    bridge: Bridge, receiver: Receiver
) -> None:
    """A round held up (its outcomes waiting for a database that is away) past its claims'
    lease: another dispatcher may hold them now, so the rows still waiting for a slot are not
    sent, and nothing is recorded for them."""
    dispatcher = bridge.runtime.dispatcher
    await dispatcher.stop()  # this test drives the round's steps itself
    await prometheus(bridge, DB_DOWN)
    lease = dispatcher.settings.lease
    async with bridge.runtime.engine.begin() as conn:
        rows = await outbox.claim(conn, bridge.clock.now(), lease, 10)
    assert rows
    bridge.clock.advance(lease.total_seconds())
    loaded = await dispatcher._load(rows)
    await asyncio.gather(*(dispatcher._deliver(r, loaded, asyncio.Semaphore(1)) for r in rows))
    assert receiver.requests == []
    assert all(n["attempts"] == 0 for n in await notifications(bridge))


async def test_an_id_too_long_for_an_index_is_not_kept_and_fails_nothing(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    """A ticket system answering with a 4 kB id (random, so PostgreSQL cannot compress it under
    its index row limit): the delivery is recorded, the id is not kept."""
    script.next_sys_id = secrets.token_hex(2000)
    incident_id = await _opened(bridge, receiver, {**DB_DOWN, "ticket": "yes"})
    await until(lambda: _all_sent(bridge), "every notification recorded as delivered")
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    [ticket] = [t for t in detail["targets"] if t["channel"] == "servicenow"]
    assert ticket["external_id"] is None, ticket
