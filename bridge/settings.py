"""Settings: defaults < TOML file (`--config` / `BRIDGE_CONFIG`) < `BRIDGE_*` environment.

Every field is documented in the README's settings table and in
`config/bridge.example.toml`; `tests/bridge/test_settings.py` checks that both list them all.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rules.duration import format_duration, parse_duration

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def _zone(value: object) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin"
        ) from None


ZoneName = Annotated[ZoneInfo, BeforeValidator(_zone), PlainSerializer(str, return_type=str)]

DEFAULT_PORT = 9470


def _not_blank(secret: SecretStr) -> SecretStr:
    # An empty secret would match an empty credential (`Authorization: Bearer `).
    if not secret.get_secret_value().strip():
        raise ValueError("a secret must not be empty or only whitespace")
    return secret


Secret = Annotated[SecretStr, AfterValidator(_not_blank)]
"""A credential the bridge checks requests against: never empty or blank."""


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


OptionalFile = Annotated[Path | None, BeforeValidator(_empty_is_none)]
"""A file path where empty (`BRIDGE_X=`) means none, not the current directory."""


class BasicCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    username: str = Field(min_length=1, pattern="^[^:]*$")
    password: Secret


def _sla_targets(value: object) -> dict[str, timedelta]:
    if not isinstance(value, dict):
        raise ValueError('must map priorities P1..P5 to durations, e.g. {P1 = "15m"}')
    found: dict[str, timedelta] = {}
    for key, duration in value.items():
        name = str(key).upper()
        if name not in ("P1", "P2", "P3", "P4", "P5"):
            raise ValueError(f"unknown priority {key!r}: use P1 to P5")
        found[name] = duration if isinstance(duration, timedelta) else parse_duration(duration)
    return found


SlaTargets = Annotated[
    dict[str, timedelta],
    BeforeValidator(_sla_targets),
    PlainSerializer(lambda v: {k: format_duration(d) for k, d in v.items()}, return_type=dict),
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(Path("data"), description="Directory of the embedded SQLite database.")
    database_url: str = Field(
        "",
        description="SQLAlchemy async URL; empty means SQLite `bridge.db` in `data_dir`. "
        "PostgreSQL: `postgresql+asyncpg://user:pass@host:5432/db`.",
    )
    rules_dir: Path | None = Field(
        None, description="Directory of rule files; empty means the example rules shipped."
    )
    generic_dir: Path | None = Field(
        None,
        description="Directory of generic webhook mappings (one YAML file per sender); empty "
        "means the examples shipped.",
    )
    nagios_status_file: Path | None = Field(
        None,
        description="Nagios `status.dat` to reconcile with (lost notifications); empty: off.",
    )
    nagios_reconcile_interval: Duration = Field(
        timedelta(minutes=1), description="How often `nagios_status_file` is read."
    )
    zabbix_api_url: str = Field(
        "",
        description="Zabbix JSON-RPC endpoint (`https://zabbix.example/api_jsonrpc.php`) for "
        "polling mode; empty: off.",
    )
    zabbix_api_token: SecretStr | None = Field(
        None, description="Zabbix API token (or session id) for polling mode."
    )
    zabbix_poll_interval: Duration = Field(
        timedelta(minutes=1), description="How often Zabbix is polled."
    )
    zabbix_frontend_url: str = Field(
        "", description="Zabbix frontend base URL, for links back to events in polling mode."
    )
    zabbix_timezone: ZoneName = Field(
        ZoneInfo("UTC"),
        description="Time zone of the Zabbix server, whose event dates and times carry none.",
    )
    inbound_tokens: dict[str, list[Secret]] = Field(
        {},
        description="Bearer tokens senders must present, per source (`alertmanager`, "
        "`prometheus`, `nagios`, `zabbix`, a generic mapping's name, or `*` for every source); "
        "several per source for rotation. JSON in the environment.",
    )
    inbound_basic: dict[str, BasicCredentials] = Field(
        {},
        description="HTTP basic credentials per source (`{username, password}`), instead of or "
        "besides tokens.",
    )
    generic_hmac_secrets: dict[str, Secret] = Field(
        {},
        description="HMAC-SHA256 keys per generic webhook mapping: requests signed with "
        "`X-Bridge-Timestamp` and `X-Bridge-Signature` are accepted.",
    )
    api_read_tokens: list[Secret] = Field(
        [], description="Bearer tokens for the read API (GET: incidents, alerts, status, ...)."
    )
    api_write_tokens: list[Secret] = Field(
        [],
        description="Bearer tokens for the whole API: reads and actions (acknowledge, resolve, "
        "maintenance windows, problem edits, re-sends, reload).",
    )
    tls_cert_file: OptionalFile = Field(
        None,
        description="PEM certificate (chain) to serve HTTPS with; empty: plain HTTP.",
    )
    tls_key_file: OptionalFile = Field(
        None,
        description="PEM private key of `tls_cert_file`, not encrypted (empty: the key is in "
        "that file).",
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Start although bound to a non-loopback address with a source or the API "
        "open to anybody (warned at start and shown in the status API).",
    )
    max_batch_items: int = Field(
        10_000, ge=1, description="Most items (alerts) one request may carry (413 beyond)."
    )
    max_labels: int = Field(
        128, ge=1, description="Most labels one alert may have (the alert is refused beyond)."
    )
    max_label_length: int = Field(
        4096,
        ge=16,
        description="Longest label name or value, in characters (the alert is refused beyond).",
    )
    rate_limit: float = Field(
        50_000.0,
        ge=0,
        description="Items per second each source may send, in bursts of up to twice that; "
        "beyond it 429 with `Retry-After` (0: no limit).",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    resolve_timeout: Duration = Field(
        timedelta(minutes=5),
        description="Lifetime of a Prometheus alert sent without `endsAt` (Alertmanager's "
        "`resolve_timeout`).",
    )
    resolve_check_interval: Duration = Field(
        timedelta(seconds=10),
        description="How often alerts whose `endsAt` passed without a re-send are resolved.",
    )
    recheck_interval: Duration = Field(
        timedelta(seconds=15),
        description="How often held alerts (maintenance, inhibited, pending) and flapping "
        "alerts are looked at again: a window that ended or an inhibitor that resolved "
        "releases them into incidents within this time.",
    )
    heartbeat_check_interval: Duration = Field(
        timedelta(seconds=30),
        description="How often the `heartbeats` rules are checked for a missed heartbeat.",
    )
    close_after: Duration = Field(
        timedelta(days=7),
        description="A resolved incident closes by itself this long after it resolved (a "
        "closed incident never reopens; 0 turns auto-close off).",
    )
    reopen_window: Duration = Field(
        timedelta(hours=1),
        description="A new firing alert reopens the incident of its key if it resolved less "
        "than this long ago.",
    )
    duplicate_window: Duration = Field(
        timedelta(minutes=1),
        description="An item identical to the last one stored for its alert and received "
        "within this window is a duplicate delivery and changes nothing.",
    )
    retry_after: Duration = Field(
        timedelta(seconds=10), description="`Retry-After` sent with 503 when the store is down."
    )
    commit_max_events: int = Field(
        5000, ge=1, description="Most events written in one group commit."
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        "full",
        description="SQLite `synchronous` pragma: `full` survives power loss, `normal` only "
        "process crashes.",
    )
    sla_acknowledge: SlaTargets = Field(
        {"P1": timedelta(minutes=15), "P2": timedelta(minutes=30), "P3": timedelta(hours=4)},
        description="Time to acknowledge per priority (P1..P5; a priority left out has none). "
        "A new incident not acknowledged by then is an SLA breach.",
    )
    sla_resolve: SlaTargets = Field(
        {
            "P1": timedelta(hours=4),
            "P2": timedelta(hours=8),
            "P3": timedelta(days=3),
            "P4": timedelta(weeks=1),
        },
        description="Time to resolve per priority (P1..P5), counted from opening or reopening.",
    )
    sla_check_interval: Duration = Field(
        timedelta(seconds=30), description="How often SLA deadlines are checked for breaches."
    )
    escalation_check_interval: Duration = Field(
        timedelta(seconds=15),
        description="How often escalation steps and repeat notifications that are due run.",
    )
    public_url: str = Field(
        "",
        description="The bridge's URL as on-call staff reach it, for links in notifications; "
        "empty: `http://<host>:<port>` (`https://` with `tls_cert_file`).",
    )
    templates_dir: Path | None = Field(
        None,
        description="Directory of notification templates (`title.j2`, `body.j2`, "
        "`<channel>.title.j2`, ...); empty means the defaults shipped in `config/templates`.",
    )
    notify_max_attempts: int = Field(
        10, ge=1, description="Delivery attempts before a notification becomes a dead letter."
    )
    notify_max_age: Duration = Field(
        timedelta(hours=24),
        description="A notification still undelivered this long after it was queued becomes a "
        "dead letter.",
    )
    notify_backoff: Duration = Field(
        timedelta(seconds=5),
        description="Wait before the first retry; doubles with each attempt (with jitter).",
    )
    notify_backoff_max: Duration = Field(
        timedelta(minutes=10), description="Longest wait between two delivery attempts."
    )
    notify_timeout: Duration = Field(
        timedelta(seconds=15), description="Longest a single delivery attempt may take."
    )
    notify_concurrency: int = Field(
        10, ge=1, description="Notifications delivered at the same time (to different targets)."
    )
    notify_poll_interval: Duration = Field(
        timedelta(seconds=1),
        description="How often the dispatcher looks for due retries when nothing woke it.",
    )
    itsm_poll_interval: Duration = Field(
        timedelta(minutes=1),
        description="How often ServiceNow tickets of open incidents are read back (state "
        "changes made there flow into the bridge); 0 turns polling off.",
    )
    retain_resolved_alerts: Duration = Field(
        timedelta(days=30),
        description="Resolved alerts no incident still needs are deleted this long after they "
        "resolved (0: kept for ever).",
    )
    retain_closed_incidents: Duration = Field(
        timedelta(days=180),
        description="Closed incidents (with their timeline, member list and notifications) are "
        "deleted this long after they closed (0: kept for ever).",
    )
    retain_notifications: Duration = Field(
        timedelta(days=30),
        description="Delivered notifications are deleted this long after they were sent; dead "
        "letters stay until re-sent or their incident goes (0: kept for ever).",
    )
    retain_events: Duration = Field(
        timedelta(days=14),
        description="Rows of the raw event log are deleted this long after they were received "
        "(0: kept for ever).",
    )
    retention_interval: Duration = Field(
        timedelta(hours=1), description="How often the retention job runs (0: never)."
    )
    retention_batch: int = Field(
        1000,
        ge=1,
        description="Rows deleted per statement by the retention job (small batches never hold "
        "the write lock long enough to slow ingest).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @field_validator("tls_key_file")
    @classmethod
    def _key_needs_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # A key alone would quietly serve plain HTTP.
        cert_ok = "tls_cert_file" in info.data  # else its own error is reported
        if value is not None and cert_ok and info.data["tls_cert_file"] is None:
            raise ValueError("set tls_cert_file too: a key without a certificate serves no HTTPS")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments (see `load_settings`); the environment
        # overrides them.
        return env_settings, init_settings

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'bridge.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        """`public_url`, else this bridge's own address (https when it serves TLS)."""
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls_cert_file is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{scheme}://{host}:{self.port}"

    @property
    def database_backend(self) -> str:
        return self.effective_database_url.split(":", 1)[0].split("+", 1)[0]


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from the TOML file (if any) and the environment; raises on any bad value."""
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as handle:
            values = tomllib.load(handle)
    return Settings(**values)
