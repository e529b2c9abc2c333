"""Who may call the bridge: senders per source, and the read and action API by role.

Senders (the webhook routes) authenticate per source with a bearer token (several, for
rotation; `*` covers every source), HTTP basic credentials, or, for a generic webhook, an
HMAC-SHA256 signature over `<timestamp>.<body>` (`X-Bridge-Timestamp`, `X-Bridge-Signature:
sha256=<hex>`, the scheme the bridge's own webhook channel signs with). The read and action API
(incidents, alerts, problems, maintenance, notifications, status, reload) takes API tokens:
read tokens for GET, write tokens for everything. `/-/healthy`, `/-/ready` and `/metrics` stay
open (probes and scrapers), the ServiceNow inbound endpoint checks its own target token.

A source (or the API) with nothing configured is open, which is the default posture only on
loopback: `check_posture` refuses to start a bridge bound to any other address unless every
source and the API have credentials, or `allow_unauthenticated` says otherwise. Secrets are
compared in constant time and never logged; a refusal is a 401 counted in
`bridge_requests_rejected_total{source,reason="unauthorized"}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from bridge.api.responses import error_response
from bridge.settings import Settings

BUILT_IN_SOURCES = ("alertmanager", "prometheus", "nagios", "zabbix")
ANY_SOURCE = "*"
SIGNATURE_TOLERANCE = 300.0  # seconds a signed request may be old (replays)
_OPEN_PATHS = frozenset({"/-/healthy", "/-/ready", "/metrics"})
_SENDER_PATHS = {
    "/api/v1/webhooks/alertmanager": "alertmanager",
    "/api/v2/alerts": "prometheus",
    "/api/v1/alerts": "prometheus",
    "/api/v1/webhooks/nagios": "nagios",
    "/api/v1/webhooks/zabbix": "zabbix",
}
_GENERIC_PREFIX = "/api/v1/webhooks/generic/"
_OWN_AUTH_PREFIX = "/api/v1/itsm/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _same(given: str, expected: SecretStr) -> bool:
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


@dataclass(frozen=True)
class Policy:
    tokens: Mapping[str, tuple[SecretStr, ...]]
    basic: Mapping[str, tuple[str, SecretStr]]
    hmac_secrets: Mapping[str, SecretStr]
    read_tokens: tuple[SecretStr, ...]
    write_tokens: tuple[SecretStr, ...]
    open_by_default: bool  # loopback, or allow_unauthenticated

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            tokens={k: tuple(v) for k, v in settings.inbound_tokens.items()},
            basic={k: (v.username, v.password) for k, v in settings.inbound_basic.items()},
            hmac_secrets=dict(settings.generic_hmac_secrets),
            read_tokens=tuple(settings.api_read_tokens),
            write_tokens=tuple(settings.api_write_tokens),
            open_by_default=is_loopback(settings.host) or settings.allow_unauthenticated,
        )

    def guards_source(self, source: str) -> bool:
        return (
            source in self.tokens
            or ANY_SOURCE in self.tokens
            or source in self.basic
            or source in self.hmac_secrets
        )

    @property
    def guards_api(self) -> bool:
        return bool(self.read_tokens or self.write_tokens)

    def sender_allowed(self, source: str, headers: Mapping[str, str], body: bytes) -> bool:
        if not self.guards_source(source):
            return self.open_by_default
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            tokens = (*self.tokens.get(source, ()), *self.tokens.get(ANY_SOURCE, ()))
            if any(_same(value.strip(), token) for token in tokens):
                return True
        if scheme == "basic" and source in self.basic and _basic_matches(value, self.basic[source]):
            return True
        secret = self.hmac_secrets.get(source)
        return secret is not None and signature_matches(secret, headers, body, time.time())

    def api_allowed(self, method: str, headers: Mapping[str, str]) -> bool:
        if not self.guards_api:
            return self.open_by_default
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        writers = any(_same(value.strip(), token) for token in self.write_tokens)
        if method in ("GET", "HEAD"):
            return writers or any(_same(value.strip(), token) for token in self.read_tokens)
        return writers


def _basic_matches(value: str, expected: tuple[str, SecretStr]) -> bool:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    user_ok = hmac.compare_digest(user.encode(), expected[0].encode())
    return _same(password, expected[1]) and user_ok


def signature_matches(
    secret: SecretStr, headers: Mapping[str, str], body: bytes, now: float
) -> bool:
    """`X-Bridge-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>." + body)>` with a
    `X-Bridge-Timestamp` (unix seconds) no more than `SIGNATURE_TOLERANCE` away from now."""
    stamp = headers.get("X-Bridge-Timestamp", "")
    given = headers.get("X-Bridge-Signature", "")
    try:
        age = abs(now - float(stamp))
    except ValueError:
        return False
    if age > SIGNATURE_TOLERANCE or not given.startswith("sha256="):
        return False
    key = secret.get_secret_value().encode()
    expected = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.removeprefix("sha256=").encode(), expected.encode())


def source_of(path: str) -> str | None:
    """The sender a webhook path belongs to; None for any other path."""
    if path in _SENDER_PATHS:
        return _SENDER_PATHS[path]
    if path.startswith(_GENERIC_PREFIX):
        return path.removeprefix(_GENERIC_PREFIX) or None
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unguarded(policy: Policy, sources: Iterable[str]) -> list[str]:
    """What would answer anybody: the sources without credentials, and the API without tokens."""
    found = [source for source in sources if not policy.guards_source(source)]
    if not policy.guards_api:
        found.append("api")
    return found


def middleware(policy: Policy, count: Callable[[str], None]) -> Middleware:
    """The aiohttp middleware enforcing `policy`; `count(source)` counts a refusal."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in _OPEN_PATHS or path.startswith(_OWN_AUTH_PREFIX):
            return await handler(request)
        source = source_of(path) if request.method == "POST" else None
        if source is not None:
            body = await request.read() if source in policy.hmac_secrets else b""
            if policy.sender_allowed(source, request.headers, body):
                return await handler(request)
            count(source)
            return _refused()
        if policy.api_allowed(request.method, request.headers):
            return await handler(request)
        count("api")
        return _refused()

    return authenticate


def _refused() -> web.Response:
    return error_response(
        401, "missing or wrong credentials", {"WWW-Authenticate": 'Bearer realm="alert-bridge"'}
    )
