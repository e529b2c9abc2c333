"""Sample messages and a recording fake receiver for the channel tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.notify.base import Message, Transition

OPENED_AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def incident(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 42,
        "key": "host-down:db-1",
        "rule": "host-down",
        "title": "db-1 is down",
        "status": "new",
        "priority": 1,
        "severity": "critical",
        "service": "payments",
        "ci": "db-1",
        "labels": {"alertname": "HostDown", "host": "db-1", "severity": "critical"},
        "opened_at": OPENED_AT.isoformat(),
        "acknowledged_at": None,
        "resolved_at": None,
        "closed_at": None,
        "assignment_group": "dba",
        "assignee": "",
        "alert_count": 2,
        "firing_alerts": 2,
    }
    base.update(changes)
    return base


ALERTS = (
    {
        "source": "alertmanager",
        "fingerprint": "a1b2c3",
        "status": "firing",
        "labels": {"alertname": "HostDown", "host": "db-1"},
        "annotations": {"summary": "db-1 does not answer"},
        "generator_url": "http://prometheus:9090/graph?g0.expr=up",
        "starts_at": OPENED_AT.isoformat(),
    },
    {
        "source": "nagios",
        "fingerprint": "d4e5f6",
        "status": "firing",
        "labels": {"alertname": "PING", "host": "db-1"},
        "annotations": {"summary": "CRITICAL - 100% packet loss"},
        "generator_url": "",
        "starts_at": OPENED_AT.isoformat(),
    },
)


def message(
    transition: Transition = Transition.OPENED,
    *,
    target: str = "oncall",
    external_id: str | None = None,
    reason: str = "",
    **incident_changes: Any,
) -> Message:
    return Message(
        key=f"bridge-incident-42:{target}:{transition}:0",
        target=target,
        transition=transition,
        incident=incident(**incident_changes),
        alerts=ALERTS,
        title="[P1] db-1 is down",
        body="HostDown on db-1 (payments)\n2 alerts firing",
        url="http://bridge.example:9470/api/v1/incidents/42",
        created_at=OPENED_AT,
        external_id=external_id,
        reason=reason,
    )


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


Handler = Callable[[web.Request, "Receiver"], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """An in-process HTTP server that records every request and answers with `handler`
    (default: 200 with an empty JSON object). Use `async with Receiver(handler) as r:`."""

    handler: Handler | None = None
    requests: list[Recorded] = field(default_factory=list)
    _server: TestServer | None = None

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()

    def url(self, path: str = "/") -> str:
        assert self._server is not None
        return str(self._server.make_url(path))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        if self.handler is None:
            return web.json_response({})
        return await self.handler(request, self)
