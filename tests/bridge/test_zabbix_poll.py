"""Zabbix polling mode against an in-process JSON-RPC server answering with captured replies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge import jobs
from tests.bridge.conftest import CAPTURED, Bridge

ZABBIX = CAPTURED / "zabbix"
TOKEN = "bridge-poll-token"


@dataclass
class FakeZabbix:
    """Answers problem.get and trigger.get from the captures of one scenario phase."""

    phase: str = "api-1-open"
    fail_with: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.fail_with is not None:
            return web.Response(status=self.fail_with)
        if body.get("auth") != TOKEN:
            error = {"code": -32602, "message": "Invalid params.", "data": "Not authorised."}
            return web.json_response({"jsonrpc": "2.0", "error": error, "id": body["id"]})
        method = body["method"].replace(".", "-")
        answer = json.loads((ZABBIX / f"{self.phase}-{method}.json").read_text())
        return web.json_response(answer)


@pytest.fixture
async def fake_zabbix() -> AsyncIterator[tuple[FakeZabbix, str]]:
    fake = FakeZabbix()
    app = web.Application()
    app.router.add_post("/api_jsonrpc.php", fake.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield fake, str(server.make_url("/api_jsonrpc.php"))
    finally:
        await server.close()


@pytest.fixture
def zabbix_token() -> str:
    return TOKEN


@pytest.fixture
def settings_overrides(fake_zabbix: tuple[FakeZabbix, str], zabbix_token: str) -> dict[str, Any]:
    return {"zabbix_api_url": fake_zabbix[1], "zabbix_api_token": zabbix_token}


async def firing(bridge: Bridge) -> set[str]:
    alerts = (await bridge.get_json("/api/v1/alerts?source=zabbix&status=firing"))["alerts"]
    return {a["fingerprint"] for a in alerts}


async def test_open_problems_fire_with_the_webhooks_identity(
    bridge: Bridge, fake_zabbix: tuple[FakeZabbix, str]
) -> None:
    fake, _ = fake_zabbix
    assert await jobs.poll_zabbix(bridge.runtime) == 6
    assert await firing(bridge) == {f"zabbix:{n}" for n in range(1, 7)}
    assert [r["method"] for r in fake.requests] == ["problem.get", "trigger.get"]
    assert all(r["auth"] == TOKEN for r in fake.requests)
    alerts = (await bridge.get_json("/api/v1/alerts?source=zabbix"))["alerts"]
    assert all(a["labels"].get("host") for a in alerts)  # trigger.get named the host


async def test_recovered_problems_resolve_and_vanished_ones_too(
    bridge: Bridge, fake_zabbix: tuple[FakeZabbix, str]
) -> None:
    fake, _ = fake_zabbix
    await jobs.poll_zabbix(bridge.runtime)
    bridge.clock.advance(60)
    fake.phase = "api-3-resolved"  # problem.get lists the six as recently resolved
    await jobs.poll_zabbix(bridge.runtime)
    assert await firing(bridge) == set()
    assert (await bridge.get_json("/api/v1/incidents?status=open"))["incidents"] == []


async def test_a_failed_poll_is_counted_and_shown(
    bridge: Bridge, fake_zabbix: tuple[FakeZabbix, str]
) -> None:
    fake, _ = fake_zabbix
    fake.fail_with = 503
    await jobs.guarded("poll_zabbix", jobs.poll_zabbix, bridge.runtime)()
    health = (await bridge.get_json("/api/v1/status"))["jobs"]["poll_zabbix"]
    assert (health["runs"], health["failures"], health["lag_seconds"]) == (1, 1, None)
    assert "HTTP 503" in health["last_error"]
    fake.fail_with = None
    await jobs.guarded("poll_zabbix", jobs.poll_zabbix, bridge.runtime)()
    health = (await bridge.get_json("/api/v1/status"))["jobs"]["poll_zabbix"]
    assert (health["runs"], health["failures"], health["lag_seconds"]) == (2, 1, 0.0)


@pytest.mark.parametrize("zabbix_token", ["wrong"])
async def test_a_json_rpc_error_fails_the_poll_with_its_message(bridge: Bridge) -> None:
    with pytest.raises(jobs.PollError, match="Not authorised"):
        await jobs.poll_zabbix(bridge.runtime)
