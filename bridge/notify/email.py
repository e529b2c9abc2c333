"""E-mail channel: one mail per notification over SMTP (aiosmtplib), plain text with an HTML
alternative.

Input: a `Message`. Output: an `Outcome` by the SMTP reply: 5xx (550 no such mailbox, 535 bad
credentials, 554 refused) rejected, a retry cannot help; 4xx (421, 450, 451, 452), connection
errors and timeouts retried. Driven by a rule file's `targets` entry with `channel: email`.

Headers that matter to the reader's mail client:

* `Message-ID`: the incident's first mail (transition `opened`) is the thread root,
  `<bridge-incident-<id>.<target>@alert-bridge>`; every other mail gets an id derived from its
  notification key, so a resend (after a reply that got lost) carries the same id and is
  recognisable as a duplicate.
* `In-Reply-To` and `References`: the thread root, on every mail but the first, so an
  incident's mails show as one conversation.
* `Auto-Submitted: auto-generated` (RFC 3834), so that auto-responders stay quiet.
* `X-Bridge-Key` (the notification key) and `X-Bridge-Transition`, for mail filters.

The delivered outcome's external id is the thread root's Message-ID.
"""

from __future__ import annotations

import email.errors
import email.policy
import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from email import headerregistry
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Annotated, Any, Literal, Self

import aiohttp
import aiosmtplib
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    model_validator,
)

from bridge.notify.base import Channel, Delivered, Message, Outcome, Rejected, Retry, Transition

DOMAIN = "alert-bridge"
PORTS = {"starttls": 587, "tls": 465, "none": 25}
_EXCERPT = 300
_NOT_IN_ID = re.compile(r"[^a-z0-9-]+")


def mailbox(value: str) -> headerregistry.Address:
    """The one address `value` names ("name@example.org" or "Name <name@example.org>"), parsed
    as a To header is; ValueError for anything else (two addresses, a line break)."""
    try:
        header = email.policy.default.header_factory("To", value)
        addresses: tuple[headerregistry.Address, ...] = header.addresses
    except (IndexError, ValueError, email.errors.HeaderParseError):
        addresses = ()
    else:
        addresses = () if header.defects else addresses
    if len(addresses) != 1 or not (addresses[0].username and addresses[0].domain):
        raise ValueError("must be one e-mail address (name@example.org or Name <name@example.org>)")
    return addresses[0]


def _check_address(value: str) -> str:
    mailbox(value)
    return value


Address = Annotated[str, AfterValidator(_check_address)]


class Options(BaseModel):
    # Inputs stay out of validation errors: a model-level error would print the password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # None: 587, 465 or 25 by security
    # starttls: plain connection upgraded (port 587); tls: TLS from the start (SMTPS, port 465).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: Address  # the From header and the envelope sender
    to: tuple[Address, ...] = Field(min_length=1)
    cc: tuple[Address, ...] = ()
    timeout: float = Field(default=10.0, gt=0)
    validate_certs: bool = True
    ca_file: FilePath | None = None  # PEM bundle of a private CA that signed the server's cert

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and self.security == "none":
            raise ValueError("a password is never sent unencrypted: use starttls or tls")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else PORTS[self.security]


def thread_root(message: Message) -> str:
    """The Message-ID of the incident's first mail to this target, the thread every later mail
    refers to. The target is part of it: two targets may reach one mailbox, and clients drop
    a second mail with a Message-ID they have seen."""
    target = _NOT_IN_ID.sub("-", message.target.lower())
    return f"<bridge-incident-{message.incident['id']}.{target}@{DOMAIN}>"


def message_id(message: Message) -> str:
    if message.transition is Transition.OPENED:
        return thread_root(message)
    digest = hashlib.sha256(message.key.encode()).hexdigest()[:32]
    return f"<{digest}@{DOMAIN}>"


def compose(message: Message, options: Options) -> EmailMessage:
    """The mail for `message`, headers and both bodies."""
    mail = EmailMessage()
    mail["From"] = options.sender
    mail["To"] = ", ".join(options.to)
    if options.cc:
        mail["Cc"] = ", ".join(options.cc)
    mail["Subject"] = " ".join(message.title.split())  # a header holds no line breaks
    mail["Date"] = format_datetime(message.created_at)
    mail["Message-ID"] = message_id(message)
    if message.transition is not Transition.OPENED:
        mail["In-Reply-To"] = thread_root(message)
        mail["References"] = thread_root(message)
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Bridge-Key"] = message.key
    mail["X-Bridge-Transition"] = message.transition.value
    mail.set_content(plain_text(message))
    mail.add_alternative(html_text(message), subtype="html")
    return mail


def facts(incident: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The incident's fields a reader needs, as (name, value); empty ones left out."""
    priority = incident.get("priority")
    pairs = [
        ("Incident", f"#{incident.get('id')} {incident.get('title') or ''}".strip()),
        ("Priority", f"P{priority}" if isinstance(priority, int) else priority),
        ("Status", incident.get("status")),
        ("Severity", incident.get("severity")),
        ("Service", incident.get("service")),
        ("CI", incident.get("ci")),
    ]
    return [(name, str(value)) for name, value in pairs if value not in (None, "")]


def alert_lines(alerts: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per alert: its name, status and summary annotation."""
    lines = []
    for alert in alerts:
        labels = alert.get("labels") or {}
        summary = (alert.get("annotations") or {}).get("summary", "")
        name = labels.get("alertname") or alert.get("fingerprint", "alert")
        line = f"{name} ({alert.get('status', 'unknown')})"
        lines.append(f"{line}: {summary}" if summary else line)
    return lines


def _alert_count(message: Message) -> int:
    count = message.incident.get("alert_count")
    return count if isinstance(count, int) else len(message.alerts)


def plain_text(message: Message) -> str:
    lines = [message.body.rstrip(), ""]
    if message.reason:
        lines += [f"Reason: {message.reason}", ""]
    lines += [f"{name}: {value}" for name, value in facts(message.incident)]
    alerts = alert_lines(message.alerts)
    if alerts:
        lines += ["", f"Alerts ({_alert_count(message)}):", *(f"- {a}" for a in alerts)]
    lines += ["", f"Incident in the bridge: {message.url}"]
    return "\n".join(lines) + "\n"


def html_text(message: Message) -> str:
    esc = html.escape
    parts = [f'<pre style="white-space: pre-wrap">{esc(message.body.rstrip())}</pre>']
    if message.reason:
        parts.append(f"<p><strong>Reason:</strong> {esc(message.reason)}</p>")
    rows = "\n".join(
        f"<tr><th align='left'>{esc(name)}</th><td>{esc(value)}</td></tr>"
        for name, value in facts(message.incident)
    )
    parts.append(f"<table>{rows}</table>")
    alerts = alert_lines(message.alerts)
    if alerts:
        items = "\n".join(f"<li>{esc(a)}</li>" for a in alerts)
        parts.append(f"<p>Alerts ({_alert_count(message)}):</p><ul>{items}</ul>")
    parts.append(f'<p><a href="{esc(message.url)}">Incident in the bridge</a></p>')
    return f"<!DOCTYPE html>\n<html><body>\n{chr(10).join(parts)}\n</body></html>\n"


def envelope_recipients(options: Options) -> list[str]:
    """The bare addresses of To and Cc, each once."""
    addresses = (mailbox(value).addr_spec for value in (*options.to, *options.cc))
    return list(dict.fromkeys(addresses))


def by_code(code: int, text: str) -> Outcome:
    """A refusal by its reply code: 5xx is permanent (RFC 5321 section 4.2.1), 4xx transient;
    anything else (aiosmtplib's -1 for an unreadable reply) is treated as transient."""
    reason = f"SMTP {code}: {text.strip()}"[:_EXCERPT]
    if 500 <= code < 600:
        return Rejected(reason)
    return Retry(reason)


def refused(exc: aiosmtplib.SMTPRecipientsRefused) -> Outcome:
    """Every recipient refused: retried if any refusal was transient (a retry may reach that
    one), rejected if all were permanent."""
    reason = "; ".join(f"{r.recipient}: {r.code} {r.message.strip()}" for r in exc.recipients)
    reason = f"all recipients refused: {reason}"[:_EXCERPT]
    if any(not 500 <= r.code < 600 for r in exc.recipients):
        return Retry(reason)
    return Rejected(reason)


def failure(exc: aiosmtplib.SMTPException) -> Outcome:
    """What an aiosmtplib error means for the notification."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return refused(exc)
    # Before the connection errors: a 421 or 554 greeting is both, and its code decides.
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return by_code(exc.code, exc.message)
    if isinstance(
        exc,
        aiosmtplib.SMTPConnectError
        | aiosmtplib.SMTPServerDisconnected
        | aiosmtplib.SMTPTimeoutError,
    ):
        return Retry(f"{type(exc).__name__}: {exc}"[:_EXCERPT])
    # SMTPNotSupported and the like: the server lacks what the options ask for (AUTH, STARTTLS).
    return Rejected(f"{type(exc).__name__}: {exc}"[:_EXCERPT])


def delivered(
    refusals: Mapping[str, aiosmtplib.SMTPResponse], reply: str, message: Message
) -> Delivered:
    """Accepted for at least one recipient; the refused ones are named in the detail (a retry
    would send the others a second copy)."""
    detail = reply.strip()
    if refusals:
        named = ", ".join(f"{to}: {r.code} {r.message.strip()}" for to, r in refusals.items())
        detail = f"{detail}; refused {named}"
    return Delivered(thread_root(message), detail[:_EXCERPT])


class Email:
    def __init__(self, options: Options) -> None:
        self._options = options

    async def send(self, message: Message) -> Outcome:
        mail = compose(message, self._options)
        try:
            refusals, reply = await self._submit(mail)
        except aiosmtplib.SMTPException as exc:
            return failure(exc)
        except OSError as exc:  # also TimeoutError and ssl.SSLError (a certificate problem)
            return Retry(f"{type(exc).__name__}: {exc}"[:_EXCERPT])
        return delivered(refusals, reply, message)

    async def _submit(self, mail: EmailMessage) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        options = self._options
        password = options.password.get_secret_value() if options.password else None
        return await aiosmtplib.send(
            mail,
            sender=mailbox(options.sender).addr_spec,
            recipients=envelope_recipients(options),
            hostname=options.host,
            port=options.effective_port,
            username=options.username,
            password=password,
            timeout=options.timeout,
            use_tls=options.security == "tls",
            start_tls=options.security == "starttls",
            validate_certs=options.validate_certs,
            cert_bundle=str(options.ca_file) if options.ca_file else None,
        )


def make(options: Options, session: aiohttp.ClientSession) -> Channel:
    """`session` is unused: mail goes over SMTP, one connection per notification."""
    return Email(options)
