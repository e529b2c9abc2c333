"""Authentication: senders per source (bearer tokens with rotation, basic, HMAC for generic
webhooks), the API by role, and the start-up posture (open only on loopback)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError

from bridge.api.auth import Policy, signature_matches, source_label, source_of
from bridge.app import create_app
from bridge.cli import main
from bridge.errors import ConfigError
from bridge.runtime import RUNTIME
from bridge.settings import Settings
from tests.bridge.conftest import CAPTURED, Bridge

ALERTMANAGER = json.loads(
    (
        CAPTURED / "alertmanager" / sorted((CAPTURED / "alertmanager").glob("*.json"))[0].name
    ).read_text()
)
SECRET = SecretStr("grafana-key")


def policy(**changes: Any) -> Policy:
    values: dict[str, Any] = {
        "tokens": {"alertmanager": (SecretStr("old"), SecretStr("new")), "*": (SecretStr("all"),)},
        "basic": {"nagios": ("nagios", SecretStr("pw"))},
        "hmac_secrets": {"grafana": SECRET},
        "read_tokens": (SecretStr("reader"),),
        "write_tokens": (SecretStr("writer"),),
        "open_by_default": False,
    }
    values.update(changes)
    return Policy(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def signed(body: bytes, secret: str = "grafana-key", at: float | None = None) -> dict[str, str]:
    stamp = str(int(at if at is not None else time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Bridge-Timestamp": stamp, "X-Bridge-Signature": f"sha256={mac}"}


@pytest.mark.parametrize(
    ("source", "headers", "allowed"),
    [
        ("alertmanager", bearer("old"), True),  # rotation: both tokens work
        ("alertmanager", bearer("new"), True),
        ("alertmanager", bearer("all"), True),  # `*` covers every source
        ("alertmanager", bearer("nope"), False),
        ("alertmanager", {}, False),
        ("alertmanager", {"Authorization": "bearer old"}, True),  # scheme is case-insensitive
        ("nagios", basic("nagios", "pw"), True),
        ("nagios", basic("nagios", "wrong"), False),
        ("nagios", basic("other", "pw"), False),
        ("nagios", {"Authorization": "Basic !!!"}, False),
        ("nagios", bearer("all"), True),
        ("zabbix", bearer("old"), False),  # a source's token is for that source only
        ("zabbix", bearer("all"), True),
    ],
)
def test_senders_are_checked_per_source(
    source: str, headers: dict[str, str], allowed: bool
) -> None:
    assert policy().sender_allowed(source, headers, b"{}") is allowed


def test_a_generic_webhook_may_sign_its_body_instead() -> None:
    body = b'{"state": "alerting"}'
    guard = policy(tokens={})
    assert guard.sender_allowed("grafana", signed(body), body)
    assert not guard.sender_allowed("grafana", signed(body), body + b" ")  # body changed
    assert not guard.sender_allowed("grafana", signed(body, "other-key"), body)
    assert not guard.sender_allowed("grafana", signed(body, at=time.time() - 600), body)  # replay
    assert not guard.sender_allowed("grafana", {}, body)
    assert not signature_matches(SECRET, {"X-Bridge-Timestamp": "soon"}, body, time.time())


@pytest.mark.parametrize(
    ("method", "token", "allowed"),
    [
        ("GET", "reader", True),
        ("GET", "writer", True),
        ("POST", "reader", False),
        ("POST", "writer", True),
        ("DELETE", "writer", True),
        ("GET", "all", False),  # sender tokens are no API tokens
        ("GET", None, False),
    ],
)
def test_the_api_takes_read_and_write_tokens(method: str, token: str | None, allowed: bool) -> None:
    headers = bearer(token) if token else {}
    assert policy().api_allowed(method, headers) is allowed


def test_nothing_configured_is_open_only_where_the_posture_allows() -> None:
    empty = Policy({}, {}, {}, (), (), open_by_default=True)
    assert empty.sender_allowed("zabbix", {}, b"")
    assert empty.api_allowed("POST", {})
    closed = Policy({}, {}, {}, (), (), open_by_default=False)
    assert not closed.sender_allowed("zabbix", {}, b"")
    assert not closed.api_allowed("GET", {})


def test_webhook_paths_name_their_source() -> None:
    assert source_of("/api/v1/webhooks/alertmanager") == "alertmanager"
    assert source_of("/api/v2/alerts") == "prometheus"
    assert source_of("/api/v1/webhooks/generic/grafana") == "grafana"
    assert source_of("/api/v1/incidents") is None


def test_only_known_sources_are_metric_labels() -> None:
    mappings = {"grafana"}
    assert source_label("zabbix", mappings) == "zabbix"
    assert source_label("grafana", mappings) == "grafana"
    assert source_label("x" * 4000, mappings) == "unknown"
    assert source_label("solarwinds", mappings) == "unknown"  # not loaded (now)


# A header that is no valid credential is a wrong credential: these raised before (500).
SURROGATE = b"\xe9\xff".decode("utf-8", "surrogateescape")  # non-UTF-8 header bytes, as aiohttp
MALFORMED = [
    ("nagios", {"Authorization": "Basic é"}),
    ("nagios", {"Authorization": f"Basic {SURROGATE}"}),
    ("nagios", {"Authorization": "Basic " + base64.b64encode(b"nagios:pw\xff").decode()}),
    ("alertmanager", bearer(SURROGATE)),
    ("alertmanager", bearer("old\ud800")),
    ("grafana", {**signed(b"{}"), "X-Bridge-Signature": f"sha256={SURROGATE}"}),
    ("grafana", {**signed(b"{}"), "X-Bridge-Timestamp": SURROGATE}),
]


@pytest.mark.parametrize(("source", "headers"), MALFORMED)
def test_malformed_credentials_are_wrong_credentials(source: str, headers: dict[str, str]) -> None:
    assert policy().sender_allowed(source, headers, b"{}") is False
    assert policy().api_allowed("GET", headers) is False


def stamped(stamp: str, body: bytes = b"{}") -> dict[str, str]:
    mac = hmac.new(SECRET.get_secret_value().encode(), stamp.encode() + b"." + body, "sha256")
    return {"X-Bridge-Timestamp": stamp, "X-Bridge-Signature": f"sha256={mac.hexdigest()}"}


@pytest.mark.parametrize(
    "stamp",
    ["nan", "NaN", "inf", "-inf", "Infinity", "1e9", "+{now}", "-{now}", "{now}.0", " {now}",
     "{now}_0", "\u0661\u0662", "9" * 5000, ""],
)  # fmt: skip
def test_a_signature_timestamp_is_whole_unix_seconds(stamp: str) -> None:
    now = time.time()
    stamp = stamp.replace("{now}", str(int(now)))
    assert not signature_matches(SECRET, stamped(stamp), b"{}", now)
    assert signature_matches(SECRET, stamped(str(int(now))), b"{}", now)
    assert signature_matches(SECRET, stamped(f"0{int(now)}"), b"{}", now)


# Through the app


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "inbound_tokens": {"alertmanager": ["am-1", "am-2"]},
        "inbound_basic": {"nagios": {"username": "nagios", "password": "pw"}},
        "api_read_tokens": ["reader"],
        "api_write_tokens": ["writer"],
    }


async def test_a_sender_without_its_token_is_refused_and_counted(bridge: Bridge) -> None:
    client = bridge.client
    refused = await client.post("/api/v1/webhooks/alertmanager", json=ALERTMANAGER)
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await client.post(
        "/api/v1/webhooks/alertmanager", json=ALERTMANAGER, headers=bearer("am-3")
    )
    assert wrong.status == 401
    for token in ("am-1", "am-2"):
        accepted = await client.post(
            "/api/v1/webhooks/alertmanager", json=ALERTMANAGER, headers=bearer(token)
        )
        assert accepted.status == 200, await accepted.text()
    metrics = await (await client.get("/metrics")).text()
    expected = 'bridge_requests_rejected_total{reason="unauthorized",source="alertmanager"} 2.0'
    assert expected in metrics


async def test_the_api_is_read_with_a_read_token_and_changed_with_a_write_token(
    bridge: Bridge,
) -> None:
    client = bridge.client
    assert (await client.get("/api/v1/incidents")).status == 401
    assert (await client.get("/api/v1/incidents", headers=bearer("reader"))).status == 200
    assert (await client.get("/api/v1/status", headers=bearer("writer"))).status == 200
    body = {"actor": "alice"}
    as_reader = await client.post(
        "/api/v1/incidents/1/acknowledge", json=body, headers=bearer("reader")
    )
    assert as_reader.status == 401
    as_writer = await client.post(
        "/api/v1/incidents/1/acknowledge", json=body, headers=bearer("writer")
    )
    assert as_writer.status == 404  # authenticated; there is no incident 1
    assert (await client.post("/-/reload", headers=bearer("reader"))).status == 401
    # Probes and the scraper need nothing.
    for path in ("/-/healthy", "/-/ready", "/metrics"):
        assert (await client.get(path)).status == 200


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, sqlite_synchronous="normal", **values)


async def test_bound_beyond_loopback_the_bridge_refuses_to_start_without_auth(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as info:
        await create_app(_settings(tmp_path, host="0.0.0.0"))
    [message] = info.value.errors
    assert "alertmanager, prometheus, nagios, zabbix, grafana, solarwinds, api" in message
    assert "BRIDGE_ALLOW_UNAUTHENTICATED" in message


async def test_every_source_and_the_api_guarded_it_starts_anywhere(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        host="0.0.0.0",
        inbound_tokens={"*": ["t"]},
        api_write_tokens=["w"],
    )
    runner = web.AppRunner(await create_app(settings))
    await runner.setup()  # starts the writer, dispatcher and jobs
    await runner.cleanup()


async def test_allow_unauthenticated_starts_open_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        tmp_path, host="0.0.0.0", allow_unauthenticated=True, inbound_tokens={"nagios": ["n"]}
    )
    app = await create_app(settings)
    runtime = app[RUNTIME]
    assert "nagios" not in runtime.open_to_anybody
    assert {"alertmanager", "zabbix", "api"} <= set(runtime.open_to_anybody)
    assert "no authentication for alertmanager" in caplog.text
    runner = web.AppRunner(app)
    await runner.setup()
    await runner.cleanup()


# Empty secrets: `""` matched an empty credential (`Authorization: Bearer `).


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"inbound_tokens": {"*": [""]}}, "inbound_tokens.*.0"),
        ({"inbound_tokens": {"zabbix": ["ok", " \t"]}}, "inbound_tokens.zabbix.1"),
        (
            {"inbound_basic": {"nagios": {"username": "n", "password": ""}}},
            "inbound_basic.nagios.password",
        ),
        ({"generic_hmac_secrets": {"grafana": " "}}, "generic_hmac_secrets.grafana"),
        ({"api_read_tokens": [""]}, "api_read_tokens.0"),
        ({"api_write_tokens": ["\n"]}, "api_write_tokens.0"),
    ],
)  # fmt: skip
def test_empty_or_blank_secrets_are_refused(values: dict[str, Any], setting: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(host="0.0.0.0", **values)
    [error] = info.value.errors()
    assert ".".join(str(part) for part in error["loc"]) == setting
    assert "must not be empty" in error["msg"]
    assert "input_value" not in str(info.value)  # never the value


def test_an_empty_secret_is_a_config_error_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("BRIDGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BRIDGE_HOST", "0.0.0.0")
    monkeypatch.setenv("BRIDGE_INBOUND_TOKENS", '{"*": [""]}')
    monkeypatch.setenv("BRIDGE_API_WRITE_TOKENS", '["w"]')
    assert main(["check-config"]) == 1
    err = capsys.readouterr().err
    assert "BRIDGE_INBOUND_TOKENS: inbound_tokens.*.0: " in err
    assert "must not be empty or only whitespace" in err
