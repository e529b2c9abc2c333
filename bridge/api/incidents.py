"""Read API for incidents and alerts, and operator actions (acknowledge, resolve)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bridge.api.responses import error_response, json_response
from bridge.errors import NotFound
from bridge.ingest import OperatorAction
from bridge.runtime import RUNTIME
from bridge.store import reads
from rules.model import AlertStatus, IncidentStatus

_INCIDENT_FILTERS = {"open", *(s.value for s in IncidentStatus)}
_ALERT_FILTERS = {s.value for s in AlertStatus}
_MAX_LIMIT = 1000


class _BadQuery(Exception):
    pass


def _paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise _BadQuery("limit and offset must be whole numbers") from None
    if not 1 <= limit <= _MAX_LIMIT or offset < 0:
        raise _BadQuery(f"limit must be 1..{_MAX_LIMIT} and offset >= 0")
    return limit, offset


def _choice(request: web.Request, name: str, allowed: set[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise _BadQuery(f"{name} must be one of {', '.join(sorted(allowed))}")
    return value


def _incident_id(request: web.Request) -> int:
    try:
        return int(request.match_info["incident_id"])
    except ValueError:
        raise NotFound(f"incident {request.match_info['incident_id']!r} not found") from None


async def list_incidents(request: web.Request) -> web.Response:
    try:
        status = _choice(request, "status", _INCIDENT_FILTERS)
        limit, offset = _paging(request)
    except _BadQuery as exc:
        return error_response(400, str(exc))
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.list_incidents(conn, status, limit, offset)
    return json_response({"incidents": found})


async def get_incident(request: web.Request) -> web.Response:
    incident_id = _incident_id(request)
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.get_incident(conn, incident_id)
    if found is None:
        raise NotFound(f"incident {incident_id} not found")
    return json_response(found)


async def list_alerts(request: web.Request) -> web.Response:
    try:
        status = _choice(request, "status", _ALERT_FILTERS)
        limit, offset = _paging(request)
    except _BadQuery as exc:
        return error_response(400, str(exc))
    source = request.query.get("source")
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.list_alerts(conn, status, source, limit, offset)
    return json_response({"alerts": found})


async def _action_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise _BadQuery(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _BadQuery("body must be a JSON object")
    actor, comment = body.get("actor"), body.get("comment", "")
    if not isinstance(actor, str) or not actor.strip():
        raise _BadQuery("actor: required, the name of who acts")
    if not isinstance(comment, str):
        raise _BadQuery("comment: must be a string")
    return {"actor": actor.strip()[:200], "comment": comment[:4000]}


def _action(verb: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        incident_id = _incident_id(request)
        try:
            body = await _action_body(request)
        except _BadQuery as exc:
            return error_response(422, str(exc))
        action = OperatorAction(incident_id, verb, body["actor"], body["comment"])
        updated = await request.app[RUNTIME].pipeline.act(action)
        return json_response(
            {"id": updated.id, "status": updated.status.value,
             "acknowledged_at": updated.acknowledged_at, "resolved_at": updated.resolved_at}
        )  # fmt: skip

    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{incident_id}", get_incident)
    app.router.add_post("/api/v1/incidents/{incident_id}/acknowledge", _action("acknowledge"))
    app.router.add_post("/api/v1/incidents/{incident_id}/resolve", _action("resolve"))
    app.router.add_get("/api/v1/alerts", list_alerts)
