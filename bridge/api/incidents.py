"""Read API for incidents and alerts, and operator actions (acknowledge, resolve)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.api.params import BadRequest, choice, json_object, paging, record_id, text
from bridge.api.responses import error_response, json_response
from bridge.errors import NotFound
from bridge.ingest import OperatorAction
from bridge.runtime import RUNTIME
from bridge.store import reads
from rules.model import AlertStatus, Hold, IncidentStatus

_INCIDENT_FILTERS = {"open", *(s.value for s in IncidentStatus)}
_ALERT_FILTERS = {s.value for s in AlertStatus}
_HOLD_FILTERS = {h.value for h in Hold}


def _incident_id(request: web.Request) -> int:
    return record_id(request, "incident_id", "incident")


async def list_incidents(request: web.Request) -> web.Response:
    try:
        status = choice(request, "status", _INCIDENT_FILTERS)
        limit, offset = paging(request)
    except BadRequest as exc:
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
        status = choice(request, "status", _ALERT_FILTERS)
        limit, offset = paging(request)
        hold = choice(request, "hold", _HOLD_FILTERS)
    except BadRequest as exc:
        return error_response(400, str(exc))
    source = request.query.get("source")
    async with request.app[RUNTIME].engine.connect() as conn:
        found = await reads.list_alerts(conn, status, source, limit, offset, hold=hold)
    return json_response({"alerts": found})


async def _action_body(request: web.Request) -> dict[str, str]:
    body = await json_object(request)
    actor = text(body, "actor", required=True, limit=200)
    return {"actor": actor, "comment": text(body, "comment")}


def _action(verb: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        incident_id = _incident_id(request)
        try:
            body = await _action_body(request)
        except BadRequest as exc:
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
