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
`bridge_requests_rejected_total{source,reason="unauthorized"}`. A header that is no valid
credential (bad base64, bytes that are not UTF-8, a timestamp that is not a whole number of
seconds) is a wrong credential, never an error.

Before any of this, a body sent with a `Content-Encoding` other than `identity` is refused with
415 (`unsupported_media_type`): no sender compresses, and the app reads bodies raw (aiohttp's
`auto_decompress` is off), so a small gzip bomb never inflates on the event loop and a
signature is always over the bytes sent. The body of an HMAC-guarded source is read here; one
over `max_body_bytes` gets the same 413 (`body_too_large`) as on every other webhook.

Metric labels stay bounded whatever paths are sent: a webhook source is counted under its own
name only when it is a built-in source or a loaded generic mapping, any other name from a
path as `unknown`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from bridge.api.responses import error_response
from bridge.settings import Settings
from connectors.parsed import RejectReason

BUILT_IN_SOURCES = ("alertmanager", "prometheus", "nagios", "zabbix")
ANY_SOURCE = "*"
UNKNOWN_SOURCE = "unknown"  # the metric label of a webhook path naming no known source
API = "api"  # the metric label of the read and action API
SIGNATURE_TOLERANCE = 300.0  # seconds a signed request may be old (replays)
_MOST_STAMP_DIGITS = 20  # far past any unix time; int() of a longer run of digits is slow
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
Count = Callable[[str, RejectReason], None]


def same_secret(given: str, expected: SecretStr) -> bool:
    """`given` (from a request) equals the secret; constant time."""
    return hmac.compare_digest(_utf8(given), _utf8(expected.get_secret_value()))


def _utf8(text: str) -> bytes:
    # Header bytes that are not UTF-8 arrive as lone surrogates; `surrogatepass` keeps the
    # encoding one-to-one, so they compare unequal instead of raising.
    return text.encode("utf-8", "surrogatepass")


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
            if any(same_secret(value.strip(), token) for token in tokens):
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
        writers = any(same_secret(value.strip(), token) for token in self.write_tokens)
        if method in ("GET", "HEAD"):
            return writers or any(same_secret(value.strip(), token) for token in self.read_tokens)
        return writers


def _basic_matches(value: str, expected: tuple[str, SecretStr]) -> bool:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 inside
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    user_ok = hmac.compare_digest(_utf8(user), _utf8(expected[0]))
    return same_secret(password, expected[1]) and user_ok


def signature_matches(
    secret: SecretStr, headers: Mapping[str, str], body: bytes, now: float
) -> bool:
    """`X-Bridge-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>." + body)>` with a
    `X-Bridge-Timestamp` (unix seconds, ASCII digits only: no sign, fraction, `nan` or `inf`)
    no more than `SIGNATURE_TOLERANCE` away from now."""
    stamp = headers.get("X-Bridge-Timestamp", "")
    given = headers.get("X-Bridge-Signature", "")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MOST_STAMP_DIGITS):
        return False
    if abs(now - int(stamp)) > SIGNATURE_TOLERANCE or not given.startswith("sha256="):
        return False
    key = _utf8(secret.get_secret_value())
    expected = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(_utf8(given.removeprefix("sha256=")), expected.encode())


def source_label(source: str, mappings: Collection[str]) -> str:
    """`source` (from a webhook path) as a metric label: a built-in source or a loaded generic
    mapping by its name, any other name `unknown`, so that label values stay bounded."""
    if source in BUILT_IN_SOURCES or source in mappings:
        return source
    return UNKNOWN_SOURCE


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


def middleware(
    policy: Policy, mappings: Callable[[], Collection[str]], count: Count, max_body: int
) -> Middleware:
    """The aiohttp middleware enforcing `policy` (and refusing encoded bodies); `mappings()`
    names the generic mappings loaded now, `count(label, reason)` counts a refusal."""

    async def refusal(
        request: web.Request, source: str | None
    ) -> tuple[RejectReason, web.Response] | None:
        if not identity_encoded(request):
            return RejectReason.UNSUPPORTED_MEDIA_TYPE, _unsupported_encoding()
        if request.path in _OPEN_PATHS or request.path.startswith(_OWN_AUTH_PREFIX):
            return None
        if source is None:
            allowed = policy.api_allowed(request.method, request.headers)
        else:
            try:
                signed = source in policy.hmac_secrets
                body = await _signed_body(request, max_body) if signed else b""
            except web.HTTPRequestEntityTooLarge:
                return RejectReason.BODY_TOO_LARGE, body_too_large(max_body)
            allowed = policy.sender_allowed(source, request.headers, body)
        return None if allowed else (RejectReason.UNAUTHORIZED, _refused())

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        source = source_of(request.path) if request.method == "POST" else None
        refused = await refusal(request, source)
        if refused is None:
            return await handler(request)
        reason, response = refused
        count(API if source is None else source_label(source, mappings()), reason)
        return response

    return authenticate


def identity_encoded(request: web.Request) -> bool:
    """The body is sent as is: no `Content-Encoding`, or only `identity`."""
    for header in request.headers.getall("Content-Encoding", ()):
        if any(part.strip().lower() not in ("", "identity") for part in header.split(",")):
            return False
    return True


async def _signed_body(request: web.Request, max_body: int) -> bytes:
    """The raw body, to check a signature over; over `max_body` bytes raises 413."""
    if request.content_length is not None and request.content_length > max_body:
        raise web.HTTPRequestEntityTooLarge(max_body, request.content_length)
    return await request.read()  # raises it too past `client_max_size` (= `max_body`)


def body_too_large(max_body: int) -> web.Response:
    """The 413 of every webhook (`bridge.api.webhooks` answers the same)."""
    reason = RejectReason.BODY_TOO_LARGE.value
    return error_response(413, f"body over {max_body} bytes", reason=reason)


def _unsupported_encoding() -> web.Response:
    return error_response(
        415,
        "Content-Encoding must be identity: send the body uncompressed",
        {"Accept-Encoding": "identity"},
        reason=RejectReason.UNSUPPORTED_MEDIA_TYPE.value,
    )


def _refused() -> web.Response:
    return error_response(
        401, "missing or wrong credentials", {"WWW-Authenticate": 'Bearer realm="alert-bridge"'}
    )
