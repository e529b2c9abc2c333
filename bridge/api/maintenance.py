"""`/api/v1/maintenance`: maintenance windows created, listed and ended through the API.

A window has the shape of a `maintenance` rule-file entry (name, matchers/match, and one of
start+end, weekly, or cron+duration, with timezone), plus who creates it (`created_by`), why
(`reason`) and the change it belongs to (`change_ref`). It is validated by the same schema as
the rule files; a bad one is a 422 naming the field. Windows from the rule files are listed too
(read-only, `origin: rules`). Deleting a window ends it: alerts it held are released into
incidents by the next recheck.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bridge.api.params import BadRequest, json_object, record_id, text
from bridge.api.responses import error_response, json_response
from bridge.errors import NotFound
from bridge.runtime import RUNTIME, Runtime
from bridge.store import admin
from rules.ruleset import MaintenanceWindow
from rules.schedule import MaintenanceSpec

_META = ("created_by", "reason", "change_ref")


async def list_windows(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    include_deleted = request.query.get("include_deleted") == "true"
    async with runtime.engine.connect() as conn:
        stored = await admin.list_windows(conn, include_deleted=include_deleted)
    now = runtime.clock.now()
    api = [_shown(row, runtime, now) for row in stored]
    from_rules = [_rule_window(window, now) for window in runtime.rules.maintenance]
    return json_response({"windows": api + from_rules})


async def create_window(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        body = await json_object(request)
        meta = {name: text(body, name, required=name == "created_by") for name in _META}
        spec = _spec({k: v for k, v in body.items() if k not in _META and k != "reason"}, meta)
    except BadRequest as exc:
        return error_response(422, str(exc))
    now = runtime.clock.now()
    stored = spec.model_dump(mode="json", exclude_none=True)
    async with runtime.engine.begin() as conn:
        window_id = await admin.insert_window(
            conn, spec.name, stored, meta["created_by"], meta["reason"], meta["change_ref"], now
        )
        rows = await admin.list_windows(conn, include_deleted=False)
    runtime.set_api_windows(rows)
    created = next(row for row in rows if row["id"] == window_id)
    return json_response(_shown(created, runtime, now), status=201)


async def delete_window(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    window_id = record_id(request, "window_id", "maintenance window")
    by = request.query.get("by", "")
    async with runtime.engine.begin() as conn:
        if not await admin.delete_window(conn, window_id, by, runtime.clock.now()):
            raise NotFound(f"maintenance window {window_id} not found")
        rows = await admin.list_windows(conn, include_deleted=False)
    runtime.set_api_windows(rows)
    return web.Response(status=204)


def _spec(fields: dict[str, Any], meta: dict[str, str]) -> MaintenanceSpec:
    if meta["reason"]:
        fields["reason"] = meta["reason"]
    try:
        return MaintenanceSpec.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}" if where else first["msg"]) from None


def _shown(row: dict[str, Any], runtime: Runtime, now: Any) -> dict[str, Any]:
    window = next((w for w in runtime.api_windows if w.id == row["id"]), None)
    shown = {"origin": "api", **row}
    shown.update(_state(window, now))
    return shown


def _rule_window(window: MaintenanceWindow, now: Any) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "origin": "rules",
        "name": window.name,
        "reason": window.reason,
        "file": f"{window.origin.file}:{window.origin.line}",
    }
    shown.update(_state(window, now))
    return shown


def _state(window: MaintenanceWindow | None, now: Any) -> dict[str, Any]:
    if window is None:
        return {"active": False, "current": None, "next_start": None}
    current = window.schedule.window_at(now)
    return {
        "active": current is not None,
        "current": {"start": current[0], "end": current[1]} if current else None,
        "next_start": window.schedule.next_start(now),
    }


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/maintenance", list_windows)
    app.router.add_post("/api/v1/maintenance", create_window)
    app.router.add_delete("/api/v1/maintenance/{window_id}", delete_window)
