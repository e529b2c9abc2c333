"""Health, readiness, the status document and `/metrics`."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from bridge.api.responses import error_response, json_response
from bridge.runtime import RUNTIME, JobHealth
from bridge.store import database, outbox, reads


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def ready(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        await database.ping(runtime.engine)
    except (SQLAlchemyError, OSError) as exc:
        runtime.metrics.database_errors.labels("ping").inc()
        return error_response(503, f"database unreachable: {exc.__class__.__name__}")
    return web.Response(text="OK\n")


async def status(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    now = runtime.clock.now()
    async with runtime.engine.connect() as conn:
        counts = await reads.counts(conn)
        pending, oldest, dead = await outbox.depth(conn)
    rules = runtime.rules
    return json_response(
        {
            "version": runtime.version,
            "started_at": runtime.started_at,
            "uptime_seconds": round((now - runtime.started_at).total_seconds(), 3),
            "database": {"backend": runtime.settings.database_backend},
            "rules": {
                "files": list(rules.files),
                "hash": rules.digest,
                "loaded_at": runtime.rules_loaded_at,
                "sections": rules.counts(),
                "correlate": [rule.name for rule in rules.correlate],
                "last_reload_error": {
                    "at": runtime.reload_failed_at,
                    "errors": runtime.reload_errors,
                }
                if runtime.reload_errors
                else None,
            },
            "maintenance_windows": len(runtime.api_windows) + len(rules.maintenance),
            "auth": {
                "open_to_anybody": runtime.open_to_anybody,
                "warning": "BRIDGE_ALLOW_UNAUTHENTICATED is set"
                if runtime.settings.allow_unauthenticated and runtime.open_to_anybody
                else None,
            },
            "notifications": {
                "targets": {t.name: t.channel for t in rules.targets},
                "routes": [route.name for route in rules.routes],
                "pending": pending,
                "oldest_pending_age_seconds": (
                    round((now - oldest).total_seconds(), 3) if oldest is not None else 0.0
                ),
                "dead_letters": dead,
            },
            "counts": counts,
            "last_event_at": dict(sorted(runtime.last_event_at.items())),
            "jobs": {name: _job(health, now) for name, health in sorted(runtime.jobs.items())},
        }
    )


def _job(health: JobHealth, now: datetime) -> dict[str, object]:
    shown: dict[str, object] = asdict(health)
    last = health.last_success_at
    shown["lag_seconds"] = round((now - last).total_seconds(), 3) if last else None
    return shown


async def reload(request: web.Request) -> web.Response:
    """`POST /-/reload`: the same as SIGHUP. 200 when the new rules took effect; 422 with the
    `file:line: message` errors when a file is invalid (then nothing changed)."""
    runtime = request.app[RUNTIME]
    errors = runtime.reload()
    if errors:
        return json_response(
            {"status": "error", "error": "invalid rule files; nothing changed", "errors": errors},
            status=422,
        )
    return json_response(
        {"status": "reloaded", "hash": runtime.rules.digest, "sections": runtime.rules.counts()}
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[RUNTIME].metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/metrics", metrics)
