"""Notifications through the running daemon, on SQLite and PostgreSQL: routes, the outbox and
its dispatcher against in-process receivers, retries, dead letters, fallback, escalation, SLA
breaches, the resolve guarantee, and ServiceNow changes flowing back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bridge import jobs
from tests.bridge.conftest import CAPTURED, Bridge
from tests.bridge.test_rule_scenarios import prometheus, shipped_rules_with
from tests.notify.samples import Receiver


class Script:
    """What the fake receivers answer, per path: queued (status, headers, body) answers first,
    then 200 (or the path's ServiceNow emulation)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        self.tickets: dict[str, dict[str, Any]] = {}
        self.next_sys_id: str | None = None  # the id the next created ticket gets

    def fail(
        self, path: str, status: int, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        answer = (status, headers or {}, {"error": "x"})
        self.answers.setdefault(path, []).extend([answer] * times)

    async def handle(self, request: web.Request, receiver: Receiver) -> web.StreamResponse:
        queued = self.answers.get(request.path)
        if queued:
            status, headers, body = queued.pop(0)
            if isinstance(body, bytes):  # exactly these bytes
                return web.Response(body=body, status=status, headers=headers)
            return web.json_response(body, status=status, headers=headers)
        if request.path.startswith("/api/now/table/incident"):
            return await self._servicenow(request)
        return web.json_response({"ok": True})

    async def _servicenow(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and "sysparm_query" in request.query:
            query = request.query["sysparm_query"]
            if query.startswith("sys_idIN"):
                ids = query.removeprefix("sys_idIN").split(",")
                found = [t for sys_id, t in self.tickets.items() if sys_id in ids]
                return web.json_response({"result": found})
            return web.json_response({"result": []})  # no ticket with that correlation_id
        if request.method == "POST":
            body = await request.json()
            sys_id = self.next_sys_id or f"sys{len(self.tickets) + 1}"
            ticket = {**body, "sys_id": sys_id, "number": f"INC00{len(self.tickets) + 1}"}
            ticket["state"] = "1"
            self.tickets[sys_id] = ticket
            return web.json_response({"result": ticket}, status=201)
        sys_id = request.path.rsplit("/", 1)[-1]
        self.tickets[sys_id].update(await request.json())
        return web.json_response({"result": self.tickets[sys_id]})


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
async def receiver(script: Script) -> AsyncIterator[Receiver]:
    async with Receiver(script.handle) as found:
        yield found


def notify_rules(url: str) -> dict[str, Any]:
    def hook(name: str, fallback: str | None = None) -> dict[str, Any]:
        target: dict[str, Any] = {
            "name": name,
            "channel": "webhook",
            "options": {"url": f"{url}hooks/{name}", "secret": "s3cret"},
        }
        if fallback:
            target["fallback"] = fallback
        return target

    return {
        "targets": [
            hook("pager", fallback="backup"),
            hook("lead"),
            hook("backup"),
            {
                "name": "snow",
                "channel": "servicenow",
                "options": {
                    "instance_url": url.rstrip("/"),
                    "username": "u",
                    "password": "p",
                    "inbound_token": "sn-token",
                },
            },
        ],
        "escalations": [
            {
                "name": "oncall",
                "steps": [
                    {"after": "0s", "targets": ["pager"]},
                    {"after": "10m", "targets": ["lead"]},
                ],
            }
        ],
        "routes": [
            {"name": "tickets", "match": {"ticket": "yes"}, "targets": ["snow"], "continue": True},
            {"name": "everything", "escalation": "oncall"},
        ],
    }


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


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def sent(receiver: Receiver, path: str) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.requests if r.path == path]


async def notifications(bridge: Bridge, **query: str) -> list[dict[str, Any]]:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return list((await bridge.get_json(f"/api/v1/notifications?{params}"))["notifications"])


DB_DOWN = {"alertname": "DatabaseDown", "instance": "db-1:9100", "severity": "critical"}


async def test_an_opened_incident_is_delivered_signed_with_its_idempotency_key(
    bridge: Bridge, receiver: Receiver
) -> None:
    await prometheus(bridge, DB_DOWN)
    await until(lambda: _count(receiver, "/hooks/pager", 1), "the pager webhook")
    request = next(r for r in receiver.requests if r.path == "/hooks/pager")
    body = request.json()
    incident_id = body["incident"]["id"]
    assert body["transition"] == "opened"
    assert body["key"] == f"bridge-incident-{incident_id}:pager:opened:0"
    assert request.headers["Idempotency-Key"] == body["key"]
    assert request.headers["X-Bridge-Signature"].startswith("sha256=")
    assert body["url"] == f"https://bridge.example/api/v1/incidents/{incident_id}"
    assert body["alerts"][0]["labels"]["alertname"] == "DatabaseDown"
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert [t["target"] for t in detail["targets"]] == ["pager"]
    assert [n["status"] for n in detail["notifications"]] == ["sent"]
    assert any(e["kind"] == "notified" for e in detail["timeline"])
    text = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_notifications_total{channel="webhook",outcome="delivered"} 1.0' in text
    assert 'bridge_notifications_queued_total{channel="webhook",transition="opened"} 1.0' in text
    assert 'bridge_notification_latency_seconds_count{channel="webhook"} 1.0' in text


async def _count(receiver: Receiver, path: str, n: int) -> bool:
    return len(sent(receiver, path)) >= n


async def test_the_resolve_reaches_the_target_after_a_silence_and_a_reload(
    bridge: Bridge, receiver: Receiver, tmp_path: Path
) -> None:
    await prometheus(bridge, DB_DOWN)
    await until(lambda: _count(receiver, "/hooks/pager", 1), "opened")
    # A maintenance window silences the alert; then the route is removed by a reload.
    window = {
        "name": "db-work",
        "matchers": ['instance="db-1:9100"'],
        "start": (bridge.clock.now() - timedelta(minutes=1)).isoformat(),
        "end": (bridge.clock.now() + timedelta(hours=1)).isoformat(),
        "created_by": "alice",
        "reason": "patching",
    }
    status, answer = await bridge.post_json("/api/v1/maintenance", window)
    assert status == 201, answer
    rules = bridge.runtime.settings.rules_dir
    assert rules is not None
    stripped = notify_rules(receiver.url("/"))
    stripped["routes"] = []
    stripped["escalations"] = []
    (rules / "40-notify.yaml").write_text(yaml.safe_dump(stripped))
    assert (await bridge.client.post("/-/reload")).status == 200
    await prometheus(bridge, DB_DOWN, resolved=True)
    await jobs.recheck_held(bridge.runtime)
    await until(lambda: _count(receiver, "/hooks/pager", 2), "the resolve")
    transitions = [b["transition"] for b in sent(receiver, "/hooks/pager")]
    assert transitions == ["opened", "resolved"]


async def test_a_target_that_is_down_gets_the_notifications_later_in_order(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    script.fail("/hooks/pager", 503, headers={"Retry-After": "120"})
    await prometheus(bridge, DB_DOWN)
    await until(lambda: _has(bridge, status="pending", attempts=1), "the first attempt")
    [pending] = await notifications(bridge, status="pending")
    assert "HTTP 503" in pending["last_error"]
    assert pending["next_attempt_at"] == (bridge.clock.now() + timedelta(seconds=120)).isoformat()
    # Resolved while the target is away: it must hear "opened" first.
    await prometheus(bridge, DB_DOWN, resolved=True)
    bridge.clock.advance(121)
    bridge.runtime.dispatcher.wake()
    await until(lambda: _count(receiver, "/hooks/pager", 3), "both notifications")
    answered = [b["transition"] for b in sent(receiver, "/hooks/pager")]
    assert answered == ["opened", "opened", "resolved"]  # the 503, the retry, the resolve
    text = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_notifications_total{channel="webhook",outcome="retried"} 1.0' in text


async def _has(bridge: Bridge, status: str, attempts: int) -> bool:
    found = await notifications(bridge, status=status)
    return any(n["attempts"] == attempts for n in found)


async def test_a_refused_notification_is_a_dead_letter_that_goes_to_the_fallback(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    script.fail("/hooks/pager", 400)
    await prometheus(bridge, DB_DOWN)
    await until(lambda: _count(receiver, "/hooks/backup", 1), "the fallback")
    [dead] = await notifications(bridge, status="dead")
    assert dead["target"] == "pager"
    assert dead["last_error"].startswith("HTTP 400")
    backup = sent(receiver, "/hooks/backup")[0]
    assert backup["transition"] == "opened"
    assert backup["reason"].startswith("pager failed: HTTP 400")
    await bridge.runtime.dispatcher.refresh_gauges()
    text = await (await bridge.client.get("/metrics")).text()
    assert "bridge_outbox_dead_letters 1.0" in text
    status = await bridge.get_json("/api/v1/status")
    assert status["notifications"]["dead_letters"] == 1
    assert 'bridge_notifications_total{channel="webhook",outcome="rejected"} 1.0' in text
    # Re-sent through the API once the target is fixed.
    response = await bridge.client.post(f"/api/v1/notifications/{dead['id']}/resend")
    assert response.status == 200, await response.text()
    await until(lambda: _count(receiver, "/hooks/pager", 2), "the re-send")
    assert (await notifications(bridge, status="dead")) == []
    again = await bridge.client.post(f"/api/v1/notifications/{dead['id']}/resend")
    assert again.status == 409


async def test_retries_stop_after_the_attempts_limit(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    script.fail("/hooks/pager", 500, times=3)
    await prometheus(bridge, DB_DOWN)
    for attempt in (1, 2):
        await until(lambda a=attempt: _has(bridge, "pending", a), f"attempt {attempt}")  # type: ignore[misc]
        bridge.clock.advance(3600)
        bridge.runtime.dispatcher.wake()
    await until(lambda: _count(receiver, "/hooks/backup", 1), "the fallback after 3 attempts")
    [dead] = await notifications(bridge, status="dead")
    assert dead["attempts"] == 3
    assert dead["last_error"].startswith("gave up after 3 attempts: HTTP 500")


async def test_an_unacknowledged_incident_escalates_and_an_acknowledgement_stops_it(
    bridge: Bridge, receiver: Receiver
) -> None:
    await prometheus(bridge, DB_DOWN)
    await until(lambda: _count(receiver, "/hooks/pager", 1), "opened")
    bridge.clock.advance(9 * 60)
    assert await jobs.run_escalations(bridge.runtime) == 0
    bridge.clock.advance(61)
    assert await jobs.run_escalations(bridge.runtime) == 1
    await until(lambda: _count(receiver, "/hooks/lead", 1), "the escalation")
    escalated = sent(receiver, "/hooks/lead")[0]
    assert escalated["transition"] == "escalated"
    assert escalated["reason"] == "not acknowledged after 10m"
    incident_id = escalated["incident"]["id"]
    status, _ = await bridge.post_json(
        f"/api/v1/incidents/{incident_id}/acknowledge", {"actor": "bob"}
    )
    assert status == 200
    # Both targets told hear the acknowledgement; nothing escalates any more.
    await until(lambda: _count(receiver, "/hooks/lead", 2), "the acknowledgement")
    await until(lambda: _count(receiver, "/hooks/pager", 2), "the acknowledgement")
    bridge.clock.advance(24 * 3600)
    assert await jobs.run_escalations(bridge.runtime) == 0
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert [e["kind"] for e in detail["timeline"]].count("escalated") == 1


async def test_a_missed_acknowledge_deadline_is_a_breach_on_the_timeline_and_notified(
    bridge: Bridge, receiver: Receiver
) -> None:
    await prometheus(bridge, DB_DOWN)
    await until(lambda: _count(receiver, "/hooks/pager", 1), "opened")
    incident_id = sent(receiver, "/hooks/pager")[0]["incident"]["id"]
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert detail["priority"] == "P1"
    assert detail["ack_due_at"] is not None
    bridge.clock.advance(14 * 60)
    assert await jobs.check_sla(bridge.runtime) == 0
    bridge.clock.advance(61)
    assert await jobs.check_sla(bridge.runtime) == 1
    assert await jobs.check_sla(bridge.runtime) == 0  # recorded once
    await until(lambda: _count(receiver, "/hooks/pager", 2), "the breach notice")
    assert sent(receiver, "/hooks/pager")[1]["transition"] == "sla_breach"
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert detail["ack_breached_at"] is not None
    assert any(e["kind"] == "sla_breached" for e in detail["timeline"])
    text = await (await bridge.client.get("/metrics")).text()
    assert 'bridge_sla_breaches_total{kind="acknowledge",priority="P1"} 1.0' in text


async def test_servicenow_changes_flow_back_inbound_and_by_polling(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    await prometheus(bridge, {**DB_DOWN, "ticket": "yes"})
    await until(lambda: _count_snow(script, 1), "the ticket")
    [(sys_id, ticket)] = script.tickets.items()
    correlation = ticket["correlation_id"]
    # In progress there -> acknowledged here, with the ITSM source; the ticket is not told.
    body = {"sys_id": sys_id, "number": ticket["number"], "correlation_id": correlation,
            "state": "2", "sys_updated_by": "carol"}  # fmt: skip
    for auth in ({}, {"Authorization": "Bearer wrong"}):
        refused = await bridge.client.post("/api/v1/itsm/servicenow/snow", json=body, headers=auth)
        assert refused.status == 401
    status, answer = await itsm_call(bridge, body)
    assert (status, answer["result"]) == (200, "applied")
    incident_id = int(correlation.removeprefix("bridge-incident-"))
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert detail["status"] == "acknowledged"
    ack = next(e for e in detail["timeline"] if e["kind"] == "acknowledged")
    assert (ack["source"], ack["actor"]) == ("itsm", "snow:carol")
    await until(lambda: _count(receiver, "/hooks/pager", 2), "the pager hears the ack")
    assert not [n for n in detail["notifications"] if n["target"] == "snow" and
                n["transition"] == "acknowledged"]  # fmt: skip
    # Resolved there, read by the poll job.
    script.tickets[sys_id]["state"] = "6"
    script.tickets[sys_id]["sys_updated_by"] = "carol"
    assert await jobs.poll_itsm(bridge.runtime) == 1
    detail = await bridge.get_json(f"/api/v1/incidents/{incident_id}")
    assert detail["status"] == "resolved"
    assert await jobs.poll_itsm(bridge.runtime) == 0  # nothing new
    status, answer = await itsm_call(bridge, {**body, "correlation_id": "x", "sys_id": "nope"})
    assert (status, answer["result"]) == (404, "unknown")
    status, _ = await itsm_call(bridge, {"state": []})
    assert status == 422


async def itsm_call(bridge: Bridge, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": "Bearer sn-token"}
    response = await bridge.client.post("/api/v1/itsm/servicenow/snow", json=body, headers=headers)
    return response.status, await response.json()


async def _count_snow(script: Script, n: int) -> bool:
    return len(script.tickets) >= n


async def test_retries_back_off_exponentially_with_jitter_then_give_up(
    bridge: Bridge, receiver: Receiver, script: Script
) -> None:
    script.fail("/hooks/pager", 502, times=10)
    await prometheus(bridge, DB_DOWN)
    waits = []
    for attempt in (1, 2):
        await until(lambda a=attempt: _has(bridge, "pending", a), f"attempt {attempt}")  # type: ignore[misc]
        [pending] = await notifications(bridge, status="pending")
        due = datetime.fromisoformat(pending["next_attempt_at"])
        waits.append((due - bridge.clock.now()).total_seconds())
        if attempt == 1:
            bridge.clock.set(due)
            bridge.runtime.dispatcher.wake()
    # Backoff 5s doubling, half of it fixed and half random: [2.5, 5], then [5, 10].
    assert 2.5 <= waits[0] <= 5, waits
    assert 5 <= waits[1] <= 10, waits
    status = await bridge.get_json("/api/v1/status")
    assert status["notifications"]["pending"] == 1
    # The third failure is the last one (notify_max_attempts = 3).
    bridge.clock.advance(25 * 3600)
    bridge.runtime.dispatcher.wake()
    await until(lambda: _count(receiver, "/hooks/backup", 1), "the fallback")
    [dead] = await notifications(bridge, status="dead")
    assert dead["attempts"] == 3
    assert dead["last_error"].startswith("gave up after 3 attempts: HTTP 502")


async def test_an_acknowledgement_from_nagios_is_notified_like_one_through_the_api(
    bridge: Bridge, receiver: Receiver
) -> None:
    for name in ("nagios-03-service-problem-e2e-web-01-http-critical.json",
                 "nagios-04-service-acknowledgement-e2e-web-01-http-critical.json"):  # fmt: skip
        body = json.loads((CAPTURED / "nagios" / name).read_text())
        status, answer = await bridge.post_json("/api/v1/webhooks/nagios", body)
        assert status == 200, answer
    await until(lambda: _count(receiver, "/hooks/pager", 2), "opened and acknowledged")
    assert [b["transition"] for b in sent(receiver, "/hooks/pager")] == ["opened", "acknowledged"]
    incident = sent(receiver, "/hooks/pager")[1]["incident"]
    assert incident["status"] == "acknowledged"
