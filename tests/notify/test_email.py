"""The e-mail channel against a real SMTP server: aiosmtpd, on loopback, in the test's own
event loop (no thread, port 0), plain, STARTTLS and implicit TLS, with and without AUTH."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from bridge.notify import channels
from bridge.notify import email as email_channel
from bridge.notify.base import Delivered, Outcome, Rejected, Retry, Transition
from tests.notify import samples

SENDER = "Alert Bridge <bridge@example.org>"
TO = ("oncall@example.org", "DBA team <dba@example.org>")
CC = ("manager@example.org",)
ROOT_ID = "<bridge-incident-42.oncall@alert-bridge>"
USER, PASSWORD = "bridge", "s3cret-pw"


@dataclass
class Received:
    mail_from: str | None
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool

    def mail(self) -> EmailMessage:
        """The mail as parsed, its line ends (CRLF on the wire) made Python's."""
        content = self.content.replace(b"\r\n", b"\n")
        return BytesParser(_class=EmailMessage, policy=default_policy).parsebytes(content)


@dataclass
class Mailbox:
    """aiosmtpd handler that keeps every mail it accepts; `refuse` answers RCPT TO for the
    addresses it names, `data_reply` answers DATA instead of accepting the mail."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert server.transport is not None
        assert envelope.original_content is not None
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content,
                tls=server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 Message accepted for delivery"


@dataclass
class Accounts:
    """aiosmtpd authenticator with one account; records the mechanisms clients used."""

    mechanisms: list[str] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        valid = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=valid, handled=False)


@contextlib.asynccontextmanager
async def smtp_server(
    mailbox: Mailbox, *, ssl_context: ssl.SSLContext | None = None, **settings: Any
) -> AsyncIterator[int]:
    """An aiosmtpd server on a free loopback port (yielded) for the duration of the block.
    `ssl_context` makes it SMTPS (TLS from the first byte); `settings` go to aiosmtpd's SMTP."""
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(mailbox, hostname="localhost", loop=loop, **settings)

    server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        # Purpose.CLIENT_AUTH: a server's context, which asks no client certificate.
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1; its own CA file, too."""
    folder = tmp_path_factory.mktemp("tls")
    made = Certificate(cert=folder / "cert.pem", key=folder / "key.pem")
    command = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]
    subprocess.run(
        [*command, "-keyout", str(made.key), "-out", str(made.cert)],
        check=True,
        capture_output=True,
    )
    return made


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def options(port: int, **changes: Any) -> email_channel.Options:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": SENDER,
        "to": TO,
        "cc": CC,
        **changes,
    }
    return email_channel.Options.model_validate(values)


async def send(
    opts: email_channel.Options, transition: Transition = Transition.OPENED, **changes: Any
) -> Outcome:
    return await email_channel.Email(opts).send(samples.message(transition, **changes))


HEADERS = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "X-Bridge-Key",
    "X-Bridge-Transition",
)


async def test_plain_delivery_envelope_and_headers() -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        outcome = await send(options(port))

    assert outcome == Delivered(ROOT_ID, "Message accepted for delivery")
    [received] = mailbox.received
    assert received.mail_from == "bridge@example.org"
    assert received.rcpt_tos == ["oncall@example.org", "dba@example.org", "manager@example.org"]
    assert (received.tls, received.authenticated) == (False, False)
    mail = received.mail()
    assert {name: str(mail[name]) for name in HEADERS} == {
        "From": SENDER,
        "To": "oncall@example.org, DBA team <dba@example.org>",
        "Cc": "manager@example.org",
        "Subject": "[P1] db-1 is down",
        "Date": "Tue, 24 Nov 2026 09:30:00 +0000",
        "Message-ID": ROOT_ID,
        "Auto-Submitted": "auto-generated",
        "X-Bridge-Key": "bridge-incident-42:oncall:opened:0",
        "X-Bridge-Transition": "opened",
    }
    assert "In-Reply-To" not in mail
    assert "References" not in mail


async def test_later_mails_reply_to_the_incidents_first_one() -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        for transition in (Transition.OPENED, Transition.RESOLVED, Transition.RESOLVED):
            assert isinstance(await send(options(port), transition), Delivered)

    opened, resolved, resent = (r.mail() for r in mailbox.received)
    key = "bridge-incident-42:oncall:resolved:0"
    assert (
        resolved["Message-ID"] == f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@alert-bridge>"
    )
    assert resolved["In-Reply-To"] == resolved["References"] == opened["Message-ID"] == ROOT_ID
    # A resend of one notification is the same mail: clients can tell it is a duplicate.
    assert resent["Message-ID"] == resolved["Message-ID"]
    assert resolved["X-Bridge-Transition"] == "resolved"


async def test_bodies_carry_the_incident_and_the_html_is_escaped() -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        await send(options(port), reason="<b>late</b> & unacknowledged", title="db <1>")

    mail = mailbox.received[0].mail()
    text = mail.get_body(("plain",))
    markup = mail.get_body(("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(markup, EmailMessage)
    assert text.get_content() == (
        "HostDown on db-1 (payments)\n2 alerts firing\n\n"
        "Reason: <b>late</b> & unacknowledged\n\n"
        "Incident: #42 db <1>\nPriority: P1\nStatus: new\nSeverity: critical\n"
        "Service: payments\nCI: db-1\n\n"
        "Alerts (2):\n"
        "- HostDown (firing): db-1 does not answer\n"
        "- PING (firing): CRITICAL - 100% packet loss\n\n"
        "Incident in the bridge: http://bridge.example:9470/api/v1/incidents/42\n"
    )
    html = markup.get_content()
    assert "&lt;b&gt;late&lt;/b&gt; &amp; unacknowledged" in html
    assert "#42 db &lt;1&gt;" in html
    assert "<b>" not in html
    assert '<a href="http://bridge.example:9470/api/v1/incidents/42">' in html


@pytest.mark.parametrize(("offered", "excluded"), [("PLAIN", "LOGIN"), ("LOGIN", "PLAIN")])
async def test_starttls_with_auth(certificate: Certificate, offered: str, excluded: str) -> None:
    mailbox, accounts = Mailbox(), Accounts()
    server = smtp_server(
        mailbox,
        tls_context=certificate.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=accounts,
        auth_exclude_mechanism=[excluded],
    )
    async with server as port:
        outcome = await send(
            options(
                port,
                security="starttls",
                username=USER,
                password=PASSWORD,
                ca_file=certificate.cert,
            )
        )

    assert isinstance(outcome, Delivered)
    assert accounts.mechanisms == [offered]
    [received] = mailbox.received
    assert (received.tls, received.authenticated) == (True, True)


async def test_wrong_password_is_rejected(certificate: Certificate) -> None:
    mailbox = Mailbox()
    server = smtp_server(
        mailbox,
        tls_context=certificate.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=Accounts(),
    )
    async with server as port:
        outcome = await send(
            options(
                port,
                security="starttls",
                username=USER,
                password="wrong",
                ca_file=certificate.cert,
            )
        )

    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith("SMTP 535: ")
    assert "wrong" not in outcome.reason
    assert mailbox.received == []


async def test_implicit_tls_with_auth(certificate: Certificate) -> None:
    mailbox, accounts = Mailbox(), Accounts()
    # aiosmtpd counts only the TLS it started itself (STARTTLS) and would answer AUTH on an
    # SMTPS connection with "538 Encryption required"; hence auth_require_tls=False. AUTH
    # stays optional (auth_required with auth_require_tls=False makes aiosmtpd warn), and the
    # test checks that the client logged in.
    server = smtp_server(
        mailbox,
        ssl_context=certificate.server_context(),
        auth_require_tls=False,
        authenticator=accounts,
    )
    async with server as port:
        outcome = await send(
            options(
                port, security="tls", username=USER, password=PASSWORD, ca_file=certificate.cert
            )
        )

    assert isinstance(outcome, Delivered)
    [received] = mailbox.received
    assert (received.tls, received.authenticated) == (True, True)
    assert len(accounts.mechanisms) == 1


async def test_untrusted_certificate_is_retried_unless_checks_are_off(
    certificate: Certificate,
) -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox, ssl_context=certificate.server_context()) as port:
        untrusted = await send(options(port, security="tls"))
        unchecked = await send(options(port, security="tls", validate_certs=False))

    assert isinstance(untrusted, Retry)
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.reason
    assert isinstance(unchecked, Delivered)
    assert len(mailbox.received) == 1


async def test_starttls_demanded_but_not_offered_is_rejected() -> None:
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        outcome = await send(options(port, security="starttls"))

    assert isinstance(outcome, Rejected)
    assert "STARTTLS" in outcome.reason
    assert mailbox.received == []


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (
            {"refuse": {"oncall@example.org": "550 No such user"}},
            Rejected("all recipients refused: oncall@example.org: 550 No such user"),
        ),
        (
            {"refuse": {"oncall@example.org": "450 Mailbox busy"}},
            Retry("all recipients refused: oncall@example.org: 450 Mailbox busy"),
        ),
        ({"data_reply": "451 try later"}, Retry("SMTP 451: try later")),
        ({"data_reply": "554 Message refused"}, Rejected("SMTP 554: Message refused")),
        ({"data_reply": "421 shutting down"}, Retry("SMTP 421: shutting down")),
    ],
    ids=["550-rcpt", "450-rcpt", "451-data", "554-data", "421-data"],
)
async def test_refusals_by_reply_code(refusal: dict[str, Any], expected: Outcome) -> None:
    mailbox = Mailbox(**refusal)
    async with smtp_server(mailbox) as port:
        outcome = await send(options(port, to=["oncall@example.org"], cc=[]))

    assert outcome == expected
    assert mailbox.received == []


async def test_some_recipients_refused_is_delivered_naming_them() -> None:
    mailbox = Mailbox(refuse={"dba@example.org": "550 No such user"})
    async with smtp_server(mailbox) as port:
        outcome = await send(options(port))

    assert outcome == Delivered(
        ROOT_ID, "Message accepted for delivery; refused dba@example.org: 550 No such user"
    )
    assert mailbox.received[0].rcpt_tos == ["oncall@example.org", "manager@example.org"]


async def test_nothing_listening_is_retried(closed_port: int) -> None:
    outcome = await send(options(closed_port))

    assert isinstance(outcome, Retry)


async def test_a_server_that_never_greets_is_retried_after_the_timeout() -> None:
    released = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await released.wait()
        writer.close()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        outcome = await send(options(port, timeout=0.2))
    finally:
        released.set()
        server.close()
        await server.wait_closed()

    assert isinstance(outcome, Retry)
    assert "Timeout" in outcome.reason


async def test_options_through_the_registry_default_ports_and_hide_the_password() -> None:
    raw = {"host": "smtp.example.org", "sender": SENDER, "to": ["oncall@example.org"]}
    secure = {**raw, "username": USER, "password": PASSWORD}

    validated = channels.options("oncall", "email", secure)
    async with aiohttp.ClientSession() as session:
        made = channels.make("email", validated, session)

    assert isinstance(made, email_channel.Email)
    assert isinstance(validated, email_channel.Options)
    assert (validated.security, validated.effective_port) == ("starttls", 587)
    assert PASSWORD not in repr(validated)
    assert email_channel.Options.model_validate({**raw, "security": "tls"}).effective_port == 465
    assert email_channel.Options.model_validate({**raw, "security": "none"}).effective_port == 25


@pytest.mark.parametrize(
    "changes",
    [
        {"to": []},
        {"to": ["not an address"]},
        {"to": ["oncall@example.org, dba@example.org"]},
        {"cc": ["a@"]},
        {"sender": "bridge@example.org\r\nBcc: victim@example.org"},
        {"username": USER},
        {"password": PASSWORD},
        {"security": "none", "username": USER, "password": PASSWORD},
        {"security": "ssl"},
        {"ca_file": "/nonexistent/ca.pem"},
        {"port": 0},
        {"smarthost": "x"},
    ],
)
def test_bad_options_are_refused(changes: dict[str, Any]) -> None:
    raw = {"host": "smtp.example.org", "sender": SENDER, "to": ["oncall@example.org"], **changes}

    with pytest.raises(ValidationError) as caught:
        email_channel.Options.model_validate(raw)

    assert PASSWORD not in str(caught.value)
