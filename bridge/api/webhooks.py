"""Webhook receivers: body checks, the connector's parse, then the pipeline.

Answers follow what senders do on retry: 200 once the valid items are committed (listing the
rejected ones), 4xx when the whole body is unusable (a retry would not help), 503 with
`Retry-After` when the store is down (Alertmanager and Prometheus retry 5xx).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime

import orjson
from aiohttp import web

from bridge.api import limits
from bridge.api.responses import error_response, json_response, store_unavailable
from bridge.errors import NotFound, StoreUnavailable
from bridge.runtime import RUNTIME, Runtime
from connectors import alertmanager, generic, nagios, prometheus, zabbix
from connectors.parsed import BodyError, Parsed, RejectReason

Parser = Callable[[object, datetime, Runtime], Parsed]


def _alertmanager(body: object, now: datetime, runtime: Runtime) -> Parsed:
    return alertmanager.parse(body, now)


def _prometheus(body: object, now: datetime, runtime: Runtime) -> Parsed:
    return prometheus.parse(body, now, runtime.settings.resolve_timeout)


def _nagios(body: object, now: datetime, runtime: Runtime) -> Parsed:
    return nagios.parse(body, now)


def _zabbix(body: object, now: datetime, runtime: Runtime) -> Parsed:
    return zabbix.parse(body, now, server_tz=runtime.settings.zabbix_timezone)


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _refuse(
    runtime: Runtime, source: str, reason: RejectReason, status: int, message: str
) -> _Refused:
    runtime.metrics.requests_rejected.labels(source, reason.value).inc()
    return _Refused(error_response(status, message, reason=reason.value))


async def _decode(request: web.Request, runtime: Runtime, source: str) -> object:
    if request.content_type != "application/json":
        raise _refuse(
            runtime,
            source,
            RejectReason.UNSUPPORTED_MEDIA_TYPE,
            415,
            f"Content-Type must be application/json, got {request.content_type!r}",
        )
    limit = runtime.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _refuse(runtime, source, RejectReason.BODY_TOO_LARGE, 413, f"body over {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _refuse(
            runtime, source, RejectReason.BODY_TOO_LARGE, 413, f"body over {limit} bytes"
        ) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _refuse(
            runtime, source, RejectReason.INVALID_JSON, 400, f"invalid JSON: {exc}"
        ) from None


def receiver(source: str, parse: Parser) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return await ingest(request, source, parse)

    return handle


async def ingest(request: web.Request, source: str, parse: Parser) -> web.Response:
    """Decode, parse with the connector, commit through the pipeline, answer."""
    runtime = request.app[RUNTIME]
    try:
        body = await _decode(request, runtime, source)
    except _Refused as refused:
        return refused.response
    try:
        parsed = parse(body, runtime.clock.now(), runtime)
    except BodyError as exc:
        reject = exc.reject
        runtime.metrics.requests_rejected.labels(source, reject.reason.value).inc()
        return error_response(
            422, str(exc), reason=reject.reason.value, rejected=[reject.as_dict()]
        )
    if limits.too_many(parsed, runtime.limits):
        most = runtime.limits.max_batch_items
        too_big = _refuse(runtime, source, RejectReason.TOO_MANY_ITEMS, 413, f"over {most} items")
        return too_big.response
    parsed = limits.within_label_limits(parsed, runtime.limits)
    rejected = [r.as_dict() for r in parsed.rejects]
    _count(runtime, source, parsed)
    if not parsed.events and parsed.rejects:
        runtime.metrics.requests_rejected.labels(source, RejectReason.INVALID_BODY.value).inc()
        return error_response(422, "no valid item in the body", rejected=rejected)
    wait = runtime.rate_limiter.take(source, len(parsed.events))
    if wait is not None:
        runtime.metrics.requests_rejected.labels(source, RejectReason.RATE_LIMITED.value).inc()
        message = f"over {runtime.rate_limiter.rate:g} items per second for {source}"
        return error_response(
            429, message, limits.retry_after_header(wait), reason=RejectReason.RATE_LIMITED.value
        )
    try:
        await runtime.pipeline.submit(parsed.events)
    except StoreUnavailable:
        runtime.metrics.requests_rejected.labels(source, RejectReason.STORE_UNAVAILABLE.value).inc()
        return store_unavailable(runtime)
    if parsed.events:
        runtime.last_event_at[source] = runtime.clock.now()
    answer: dict[str, object] = {
        "status": "success",
        "accepted": len(parsed.events),
        "rejected": rejected,
    }
    if parsed.truncated:
        answer["truncated"] = parsed.truncated
    return json_response(answer)


def _count(runtime: Runtime, source: str, parsed: Parsed) -> None:
    if parsed.truncated:
        runtime.metrics.alerts_truncated.labels(source).inc(parsed.truncated)
    reasons = Counter(reject.reason for reject in parsed.rejects)
    for reason, count in reasons.items():
        runtime.metrics.events_rejected.labels(source, reason.value).inc(count)


async def _generic(request: web.Request) -> web.Response:
    """`/api/v1/webhooks/generic/{name}`: each mapping file is a source of its own."""
    name = request.match_info["name"]
    mapping = request.app[RUNTIME].generic_mappings.get(name)
    if mapping is None:
        raise NotFound(f"no generic webhook mapping named {name!r}")

    def parse(body: object, now: datetime, runtime: Runtime) -> Parsed:
        return generic.parse(mapping, name, body, now)

    return await ingest(request, name, parse)


def add_routes(app: web.Application) -> None:
    prometheus_receiver = receiver("prometheus", _prometheus)
    app.router.add_post("/api/v1/webhooks/alertmanager", receiver("alertmanager", _alertmanager))
    app.router.add_post("/api/v2/alerts", prometheus_receiver)
    # Prometheus before 3.0 can still be configured with `api_version: v1`.
    app.router.add_post("/api/v1/alerts", prometheus_receiver)
    app.router.add_post("/api/v1/webhooks/nagios", receiver("nagios", _nagios))
    app.router.add_post("/api/v1/webhooks/zabbix", receiver("zabbix", _zabbix))
    app.router.add_post("/api/v1/webhooks/generic/{name}", _generic)
