"""Requests refused before any handler: metric labels stay bounded whatever paths are sent,
compressed bodies are refused unread, an oversized signed body gets the 413 of every webhook,
a malformed credential header is a 401 (never a 500), and ServiceNow target names cannot be
probed without a token."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bridge.conftest import CAPTURED, Bridge
from tests.bridge.test_rule_scenarios import shipped_rules_with

ALERTMANAGER = json.loads(sorted((CAPTURED / "alertmanager").glob("*.json"))[0].read_text())
SENDER_TOKEN = "sender-token"
HMAC_KEY = "grafana-key"
SERVICENOW_TOKEN = "sn-token"
MAX_BODY = 4096
REJECTED = "bridge_requests_rejected_total"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # Refusals happen before the store is touched: SQLite only.
    return f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    rules = shipped_rules_with(tmp_path)
    targets = [
        {
            "name": "snow",
            "channel": "servicenow",
            "options": {
                "instance_url": "http://127.0.0.1:9",  # never called: no route sends to it
                "username": "u",
                "password": "p",
                "inbound_token": SERVICENOW_TOKEN,
            },
        },
        {"name": "hook", "channel": "webhook", "options": {"url": "http://127.0.0.1:9/"}},
    ]
    (rules / "40-targets.yaml").write_text(yaml.safe_dump({"targets": targets}))
    return {
        "rules_dir": rules,
        "inbound_tokens": {"*": [SENDER_TOKEN]},
        "inbound_basic": {"nagios": {"username": "nagios", "password": "pw"}},
        "generic_hmac_secrets": {"grafana": HMAC_KEY},
        "api_write_tokens": ["writer"],
        "max_body_bytes": MAX_BODY,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(body: bytes, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp if stamp is not None else str(int(time.time()))
    mac = hmac.new(HMAC_KEY.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Bridge-Timestamp": stamp,
        "X-Bridge-Signature": f"sha256={mac}",
    }


def rejected(bridge: Bridge, source: str, reason: str) -> float:
    registry = bridge.runtime.metrics.registry
    return registry.get_sample_value(REJECTED, {"source": source, "reason": reason}) or 0.0


def rejected_sources(bridge: Bridge) -> set[str]:
    return {
        sample.labels["source"]
        for family in bridge.runtime.metrics.registry.collect()
        if family.name == REJECTED.removesuffix("_total")
        for sample in family.samples
    }


# Finding: any `/api/v1/webhooks/generic/<name>` became a label value of its own.


async def test_unknown_webhook_names_share_one_metric_label(bridge: Bridge) -> None:
    client = bridge.client
    names = [uuid.uuid4().hex for _ in range(50)]
    for name in names:
        refused = await client.post(f"/api/v1/webhooks/generic/{name}", json={})
        assert refused.status == 401
    # With a token the request reaches the route, which knows no such mapping (not counted).
    found = await client.post(
        "/api/v1/webhooks/generic/nope", json={}, headers=bearer(SENDER_TOKEN)
    )
    assert found.status == 404
    encoded = await client.post(
        f"/api/v1/webhooks/generic/{uuid.uuid4().hex}",
        data=b"x",
        headers={"Content-Encoding": "gzip", **bearer(SENDER_TOKEN)},
    )
    assert encoded.status == 415
    # Loaded mappings and built-in sources keep their own name.
    assert (await client.post("/api/v1/webhooks/generic/solarwinds", json={})).status == 401
    assert (await client.post("/api/v1/webhooks/generic/grafana", json={})).status == 401
    assert (await client.post("/api/v1/webhooks/zabbix", json={})).status == 401
    assert (await client.get("/api/v1/incidents")).status == 401

    assert rejected(bridge, "unknown", "unauthorized") == len(names)
    assert rejected(bridge, "unknown", "unsupported_media_type") == 1
    assert rejected_sources(bridge) == {"unknown", "solarwinds", "grafana", "zabbix", "api"}
    text = await (await client.get("/metrics")).text()
    assert not any(name in text for name in names)


async def test_a_reloaded_mapping_is_counted_under_its_name(bridge: Bridge) -> None:
    bridge.runtime.generic_mappings = {}  # as after a reload that removed every mapping file
    assert (await bridge.client.post("/api/v1/webhooks/generic/grafana", json={})).status == 401
    assert rejected(bridge, "unknown", "unauthorized") == 1
    assert rejected(bridge, "grafana", "unauthorized") == 0


# Finding: gzip bodies were inflated on the event loop, before the auth check could refuse them.


async def test_compressed_bodies_are_refused_unread(bridge: Bridge) -> None:
    client = bridge.client
    path = "/api/v1/webhooks/alertmanager"
    headers = {"Content-Type": "application/json", **bearer(SENDER_TOKEN)}
    packed = gzip.compress(json.dumps(ALERTMANAGER).encode())
    for encoding in ("gzip", "deflate", "br", "GZIP", "identity, gzip"):
        refused = await client.post(
            path, data=packed, headers={**headers, "Content-Encoding": encoding}
        )
        assert refused.status == 415, encoding
        assert refused.headers["Accept-Encoding"] == "identity"
        assert (await refused.json())["reason"] == "unsupported_media_type"
    assert rejected(bridge, "alertmanager", "unsupported_media_type") == 5
    # A signature over the compressed bytes does not get a gzip body in either.
    grafana = await client.post(
        "/api/v1/webhooks/generic/grafana",
        data=packed,
        headers={**signed(packed), "Content-Encoding": "gzip"},
    )
    assert grafana.status == 415
    # aiohttp does not inflate the body it drains after the answer: invalid gzip used to break
    # the connection (the next request on it failed), and a gzip bomb to stall the event loop.
    garbage = await client.post(
        path, data=b"not gzip", headers={**headers, "Content-Encoding": "gzip"}
    )
    assert garbage.status == 415
    assert (await client.get("/-/healthy")).status == 200
    body = json.dumps(ALERTMANAGER).encode()
    for plain in ({}, {"Content-Encoding": "identity"}):
        accepted = await client.post(path, data=body, headers={**headers, **plain})
        assert accepted.status == 200, await accepted.text()


# Finding: the body of an HMAC-guarded source is read in the auth middleware, whose 413 was
# aiohttp's own answer and not counted.


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1024):
        yield body[start : start + 1024]


async def test_an_oversized_signed_body_gets_the_413_of_every_webhook(bridge: Bridge) -> None:
    client = bridge.client
    body = json.dumps({"padding": "x" * MAX_BODY}).encode()
    by_token = await client.post(
        "/api/v1/webhooks/alertmanager",
        data=body,
        headers={"Content-Type": "application/json", **bearer(SENDER_TOKEN)},
    )
    assert by_token.status == 413
    expected = await by_token.json()
    assert expected["reason"] == "body_too_large"
    for data in (body, _chunks(body)):  # with a Content-Length, and chunked without one
        by_signature = await client.post(
            "/api/v1/webhooks/generic/grafana", data=data, headers=signed(body)
        )
        assert by_signature.status == 413
        assert await by_signature.json() == expected
    assert rejected(bridge, "grafana", "body_too_large") == 2
    assert rejected(bridge, "alertmanager", "body_too_large") == 1


# Finding: some malformed credential headers raised (500) instead of being wrong credentials.


async def raw_status(bridge: Bridge, head: bytes, body: bytes = b"{}") -> int:
    """The status of a request written byte for byte (header bytes that are not UTF-8)."""
    server = bridge.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        length = f"Content-Length: {len(body)}\r\n".encode()
        close = b"Connection: close\r\nContent-Type: application/json\r\n\r\n"
        writer.write(head + b"Host: bridge\r\n" + length + close + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


NOW = str(int(time.time())).encode()
MALFORMED = [
    b"POST /api/v1/webhooks/alertmanager HTTP/1.1\r\nAuthorization: Bearer \xe9\xff\r\n",
    b"POST /api/v1/webhooks/nagios HTTP/1.1\r\nAuthorization: Basic \xc3\xa9\r\n",  # "Basic é"
    b"POST /api/v1/webhooks/nagios HTTP/1.1\r\nAuthorization: Basic \xe9\r\n",
    b"POST /api/v1/webhooks/generic/grafana HTTP/1.1\r\nX-Bridge-Timestamp: " + NOW
    + b"\r\nX-Bridge-Signature: sha256=\xe9\r\n",
    b"POST /api/v1/webhooks/generic/grafana HTTP/1.1\r\nX-Bridge-Timestamp: \xe9\r\n"
    b"X-Bridge-Signature: sha256=00\r\n",
    b"GET /api/v1/incidents HTTP/1.1\r\nAuthorization: Bearer \xe9\r\n",
    b"POST /api/v1/itsm/servicenow/snow HTTP/1.1\r\nAuthorization: Bearer \xe9\r\n",
]  # fmt: skip


@pytest.mark.parametrize("head", MALFORMED)
async def test_malformed_credential_headers_are_wrong_credentials(
    bridge: Bridge, head: bytes
) -> None:
    assert await raw_status(bridge, head) == 401
    registry = bridge.runtime.metrics.registry
    assert not registry.get_sample_value("bridge_internal_errors_total", {"boundary": "http"})


# Finding: an unknown ServiceNow target answered 404 naming it before any token check.


async def test_servicenow_target_names_cannot_be_probed(bridge: Bridge) -> None:
    client = bridge.client
    answers = []
    for name, token in [
        ("snow", "wrong"),
        ("nope", SERVICENOW_TOKEN),  # no such target
        ("hook", SERVICENOW_TOKEN),  # a target, but no ServiceNow one
        ("nope", None),
    ]:
        headers = bearer(token) if token else {}
        response = await client.post(f"/api/v1/itsm/servicenow/{name}", json={}, headers=headers)
        answers.append(
            (response.status, response.headers["WWW-Authenticate"], await response.read())
        )
    assert answers[0][0] == 401
    assert all(answer == answers[0] for answer in answers), answers
    # The right token reaches the body checks.
    good = await client.post(
        "/api/v1/itsm/servicenow/snow", json={}, headers=bearer(SERVICENOW_TOKEN)
    )
    assert good.status == 422


async def test_a_compressed_body_to_servicenow_is_refused(bridge: Bridge) -> None:
    headers = {"Content-Encoding": "gzip", **bearer(SERVICENOW_TOKEN)}
    response = await bridge.client.post(
        "/api/v1/itsm/servicenow/snow", data=gzip.compress(b"{}"), headers=headers
    )
    assert response.status == 415
    assert rejected(bridge, "api", "unsupported_media_type") == 1
