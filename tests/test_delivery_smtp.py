"""The SMTP senders against a real SMTP server (aiosmtpd) on 127.0.0.1, started by the tests.

Each case runs on both faces, ``SmtpEmailSender`` (smtplib) and ``AsyncSmtpEmailSender``
(aiosmtplib, each send in an event loop of its own), through the ``face`` fixture: they
share their settings, letter, conversation and errors, so one set of cases proves both.
What only the async face has (tasks, cancellation, ``AsyncIdentityService``) is in
``TestAsyncOnly``.

Every server here listens on the loopback interface only. TLS uses a throwaway self-signed
certificate for ``localhost`` / ``127.0.0.1`` made at test time with the ``cryptography``
package when it is installed, else with the ``openssl`` command.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import importlib
import importlib.util
import inspect
import ipaddress
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from kaspi_identity.delivery import (
    AsyncEmailSender,
    AsyncSmtpEmailSender,
    DeliveryError,
    EmailMessage,
    EmailSender,
    SmtpEmailSender,
    extract_link,
    render_email,
)
from kaspi_identity.services import AsyncIdentityService, IdentitySettings
from kaspi_identity.storage.memory import async_memory_storage

LOOPBACK = "127.0.0.1"
PASSWORD = "Hunter2-smtp-PASSWORD"
USERNAME = "mailer"
LINK = "https://portal.example.kz/reset/SECRET-TOKEN-abcdefghijklmnop"
SITE = "goszakup.gov.kz"


def free_port() -> int:
    """A loopback port nobody listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    """One letter as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> email.message.EmailMessage:
        """The letter parsed with the modern policy (headers decoded, CRLF read as LF)."""
        parsed = email.message_from_bytes(
            self.raw.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class Recorder:
    """An aiosmtpd handler that keeps every letter, or answers RCPT or DATA as it is told.

    With ``hold=True`` it never answers DATA: ``data_started`` is set when the letter is
    in, and ``dropped`` when the client hangs up on the waiting server.
    """

    def __init__(
        self, data_reply: str = "250 2.0.0 OK", rcpt_reply: str | None = None, hold: bool = False
    ) -> None:
        self.data_reply = data_reply
        self.rcpt_reply = rcpt_reply
        self.hold = hold
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.data_started = threading.Event()
        self.dropped = threading.Event()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept the recipient, or answer with ``rcpt_reply`` (aiosmtpd hook)."""
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the letter (aiosmtpd hook)."""
        if self.hold:
            self.data_started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:  # aiosmtpd cancels it when the client hangs up
                self.dropped.set()
                raise
        content = envelope.original_content or b""
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        with self.lock:
            self.received.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    raw=content,
                    tls=tls,
                    authenticated=bool(session.authenticated),
                )
            )
        return self.data_reply


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accept exactly USERNAME / PASSWORD."""
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(handler: Recorder, **kwargs: Any) -> Iterator[int]:
    """Run an aiosmtpd server on 127.0.0.1 and yield its port."""
    port = free_port()
    controller = Controller(
        handler,
        hostname=LOOPBACK,
        port=port,
        server_hostname="localhost",
        ready_timeout=5.0,
        **kwargs,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _certificate_with_cryptography(cert: Path, key: Path) -> None:
    """Write a self-signed EC certificate for localhost and 127.0.0.1 with cryptography."""
    x509 = importlib.import_module("cryptography.x509")
    oid = importlib.import_module("cryptography.x509.oid")
    ec = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    hashes = importlib.import_module("cryptography.hazmat.primitives.hashes")
    serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
    public_key = private_key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(private_key, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost / 127.0.0.1: ``(cert, key)``."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    if importlib.util.find_spec("cryptography") is not None:
        _certificate_with_cryptography(cert, key)
    elif (openssl := shutil.which("openssl")) is not None:
        subprocess.run(
            [
                openssl,
                *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
                *("-nodes", "-days", "1", "-subj", "/CN=localhost"),
                *("-addext", f"subjectAltName=DNS:localhost,IP:{LOOPBACK}"),
                *("-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    else:
        pytest.skip(
            "no way to make a TLS test certificate: install 'cryptography' or the openssl CLI"
        )
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """The server side of TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts only the test certificate, host name checked."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def letter(html: str | None = None, **params: object) -> EmailMessage:
    """A Kazakh reset letter to aliya@example.kz, with an HTML part when given."""
    message = render_email(
        "password_reset",
        "kk",
        to="aliya@example.kz",
        link=LINK,
        minutes=60,
        site=SITE,
    )
    if html is not None:
        return EmailMessage(
            to=message.to,
            subject=message.subject,
            text=message.text,
            html=html,
            kind=message.kind,
            language=message.language,
        )
    return message


AnySender = SmtpEmailSender | AsyncSmtpEmailSender


@dataclass(frozen=True)
class Face:
    """One of the two senders, and how a synchronous test sends with it."""

    cls: type[SmtpEmailSender] | type[AsyncSmtpEmailSender]

    def sender(self, port: int, **kwargs: Any) -> AnySender:
        """A sender of this face for the loopback server on ``port``."""
        host = kwargs.pop("host", LOOPBACK)
        settings: dict[str, Any] = {
            "sender": "Госзакуп <noreply@goszakup.example.kz>",
            "security": "none",
            "timeout": 5.0,
            "local_hostname": "localhost",
        }
        settings.update(kwargs)
        return self.cls(host, port, **settings)

    def send(self, smtp: AnySender, message: object) -> None:
        """``smtp.send_email(message)``; the async face runs it in a loop of its own."""
        result = smtp.send_email(message)  # type: ignore[arg-type]
        if inspect.iscoroutine(result):
            asyncio.run(result)

    def send_at_once(self, smtp: AnySender, messages: list[EmailMessage]) -> None:
        """Send every message at the same time: a thread each, or a task each in one loop."""
        if isinstance(smtp, AsyncSmtpEmailSender):
            sender = smtp

            async def all_at_once() -> None:
                await asyncio.gather(*(sender.send_email(m) for m in messages))

            asyncio.run(all_at_once())
            return
        threads = [threading.Thread(target=smtp.send_email, args=(m,)) for m in messages]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


FACES = {"sync": Face(SmtpEmailSender), "async": Face(AsyncSmtpEmailSender)}


@pytest.fixture(params=sorted(FACES))
def face(request: pytest.FixtureRequest) -> Face:
    """Each test that takes it runs with SmtpEmailSender and with AsyncSmtpEmailSender."""
    return FACES[request.param]


def secrets_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The records of our side (not aiosmtpd's ``mail.log``) that show a secret."""
    return [
        record.name
        for record in caplog.records
        if not record.name.startswith("mail.log")
        and any(
            secret in text
            for secret in (LINK, "SECRET", PASSWORD)
            for text in (record.getMessage(), record.exc_text or "")
        )
    ]


class TestPlain:
    def test_cyrillic_letter_arrives_intact(self, face: Face) -> None:
        """Subject and body in Kazakh survive the trip; the headers are all there."""
        handler = Recorder()
        message = letter()
        with smtp_server(handler) as port:
            face.send(face.sender(port), message)
        [got] = handler.received
        parsed = got.message
        assert "noreply@goszakup.example.kz" == got.mail_from
        assert ["aliya@example.kz"] == got.rcpt_tos
        assert message.subject == parsed["Subject"]
        assert "goszakup.gov.kz: құпиясөзді қалпына келтіру" == parsed["Subject"]
        assert "Госзакуп <noreply@goszakup.example.kz>" == parsed["From"]
        assert "aliya@example.kz" == parsed["To"]
        assert "text/plain" == parsed.get_content_type()
        assert "utf-8" == parsed.get_content_charset()
        assert message.text == parsed.get_content().rstrip("\n")
        assert parsed["Message-ID"].endswith("@goszakup.example.kz>")
        assert parsed["Date"].datetime.tzinfo is not None
        assert "kk" == parsed["Content-Language"]
        assert "auto-generated" == parsed["Auto-Submitted"]
        assert not got.tls
        assert LINK == extract_link(
            EmailMessage(
                to="a@example.kz", subject="s", text=parsed.get_content(), kind="k", language="kk"
            )
        )

    def test_wire_format_is_seven_bit(self, face: Face) -> None:
        """The body travels quoted-printable and the subject RFC 2047-encoded: 7-bit safe."""
        handler = Recorder()
        with smtp_server(handler) as port:
            face.send(face.sender(port), letter())
        raw = handler.received[0].raw
        assert raw.isascii()
        assert b"=?utf-8?" in raw.lower()
        assert b"Content-Transfer-Encoding: quoted-printable" in raw

    def test_html_makes_multipart_alternative(self, face: Face) -> None:
        """With an HTML part the letter is multipart/alternative, plain text first."""
        handler = Recorder()
        html = f'<p>Сілтеме: <a href="{LINK}">ашу</a></p>'
        with smtp_server(handler) as port:
            face.send(face.sender(port), letter(html=html))
        parsed = handler.received[0].message
        assert "multipart/alternative" == parsed.get_content_type()
        parts = list(parsed.iter_parts())
        assert ["text/plain", "text/html"] == [part.get_content_type() for part in parts]
        html_part = parsed.get_body(("html",))
        assert html_part is not None
        assert html == html_part.get_content().rstrip("\n")

    def test_one_connection_per_letter_sent_at_once(self, face: Face) -> None:
        """One sender serves many threads (or tasks) at once; every letter arrives once."""
        handler = Recorder()
        with smtp_server(handler) as port:
            face.send_at_once(face.sender(port), [letter() for _ in range(8)])
        assert 8 == len(handler.received)
        assert 8 == len({r.message["Message-ID"] for r in handler.received})

    def test_rejected_letter_does_not_echo_the_server_text(self, face: Face) -> None:
        """A 5xx reply becomes DeliveryError with code and status, not the quoted letter."""
        handler = Recorder(data_reply=f"554 5.7.1 Rejected as spam: {LINK}")
        with smtp_server(handler) as port, pytest.raises(DeliveryError) as info:
            face.send(face.sender(port), letter())
        text = str(info.value)
        assert 554 == info.value.smtp_code
        assert "554 (5.7.1)" in text
        assert f"{LOOPBACK}:{port}" in text
        assert "SECRET" not in text
        assert info.value.__cause__ is None
        assert info.value.__context__ is None  # the library's exception, with the reply
        assert info.value.__suppress_context__

    def test_refused_recipient(self, face: Face) -> None:
        """A refused RCPT is DeliveryError with its code, without the server's text."""
        handler = Recorder(rcpt_reply=f"550 5.1.1 No such user; see {LINK}")
        with smtp_server(handler) as port, pytest.raises(DeliveryError) as info:
            face.send(face.sender(port), letter())
        assert 550 == info.value.smtp_code
        assert "recipient refused (SMTP 550)" in str(info.value)
        assert "SECRET" not in str(info.value)
        assert info.value.__cause__ is None
        assert info.value.__context__ is None
        assert [] == handler.received

    def test_temporary_failure_keeps_its_code(self, face: Face) -> None:
        """A 4xx reply is reported with its code, so a host can retry later."""
        handler = Recorder(data_reply="451 4.3.0 Try again later")
        with smtp_server(handler) as port, pytest.raises(DeliveryError) as info:
            face.send(face.sender(port), letter())
        assert 451 == info.value.smtp_code

    def test_starttls_required_but_not_offered(self, face: Face) -> None:
        """security='starttls' never falls back to clear text when STARTTLS is missing."""
        handler = Recorder()
        with smtp_server(handler) as port, pytest.raises(DeliveryError, match="TLS") as info:
            face.send(face.sender(port, security="starttls"), letter())
        assert "STARTTLS" in str(info.value)
        assert [] == handler.received

    def test_insecure_auth_needs_the_escape_hatch(self, face: Face) -> None:
        """Credentials over a clear connection work only with allow_insecure_auth=True."""
        handler = Recorder()
        with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
            with pytest.raises(ValueError, match="clear text"):
                face.sender(port, username=USERNAME, password=PASSWORD)
            smtp = face.sender(port, username=USERNAME, password=PASSWORD, allow_insecure_auth=True)
            face.send(smtp, letter())
        assert handler.received[0].authenticated

    def test_nothing_is_logged_with_a_secret(
        self, face: Face, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A sent letter, a refused one and a rejected login log no link, body or password."""
        caplog.set_level(logging.DEBUG)
        with smtp_server(Recorder(), authenticator=authenticator, auth_require_tls=False) as port:
            face.send(
                face.sender(port, username=USERNAME, password=PASSWORD, allow_insecure_auth=True),
                letter(html=f'<a href="{LINK}">x</a>'),
            )
            wrong = face.sender(
                port, username=USERNAME, password=PASSWORD + "x", allow_insecure_auth=True
            )
            with pytest.raises(DeliveryError):
                face.send(wrong, letter())
        with (
            smtp_server(Recorder(data_reply=f"554 5.7.1 {LINK}")) as port,
            pytest.raises(DeliveryError),
        ):
            face.send(face.sender(port), letter())
        assert [] == secrets_logged(caplog)


class TestTls:
    def test_starttls_with_auth(
        self, face: Face, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
    ) -> None:
        """STARTTLS (host name verified), then AUTH, then the letter, over TLS."""
        handler = Recorder()
        with smtp_server(
            handler,
            tls_context=server_tls,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
        ) as port:
            smtp = face.sender(
                port,
                host="localhost",
                security="starttls",
                ssl_context=client_tls,
                username=USERNAME,
                password=PASSWORD,
            )
            face.send(smtp, letter())
        [got] = handler.received
        assert got.tls
        assert got.authenticated
        assert letter().subject == got.message["Subject"]

    def test_implicit_ssl(
        self, face: Face, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
    ) -> None:
        """security='ssl' speaks TLS from the first byte (port 465 style)."""
        handler = Recorder()
        with smtp_server(handler, ssl_context=server_tls) as port:
            face.send(face.sender(port, security="ssl", ssl_context=client_tls), letter())
        [got] = handler.received
        assert got.tls
        assert letter().text == got.message.get_content().rstrip("\n")

    def test_untrusted_certificate_is_refused(self, face: Face, server_tls: ssl.SSLContext) -> None:
        """The default context checks the certificate: a self-signed one fails to verify."""
        handler = Recorder()
        with (
            smtp_server(handler, ssl_context=server_tls) as port,
            pytest.raises(DeliveryError, match="could not connect") as info,
        ):
            face.send(face.sender(port, security="ssl"), letter())
        assert isinstance(info.value.__cause__, ssl.SSLError)
        assert [] == handler.received

    def test_wrong_password(
        self, face: Face, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
    ) -> None:
        """A rejected login is DeliveryError with the SMTP code and no password anywhere."""
        handler = Recorder()
        with smtp_server(
            handler,
            tls_context=server_tls,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
        ) as port:
            smtp = face.sender(
                port,
                host="localhost",
                security="starttls",
                ssl_context=client_tls,
                username=USERNAME,
                password="Wrong-" + PASSWORD,
            )
            with pytest.raises(DeliveryError, match="rejected the login") as info:
                face.send(smtp, letter())
        assert 535 == info.value.smtp_code
        for text in (str(info.value), repr(info.value), repr(smtp)):
            assert PASSWORD not in text
        assert info.value.__context__ is None
        assert [] == handler.received


class TestFailures:
    def test_connection_refused(self, face: Face) -> None:
        """Nobody listening: DeliveryError naming the server, with the OS error as cause."""
        port = free_port()
        smtp = face.sender(port, username=USERNAME, password=PASSWORD, allow_insecure_auth=True)
        with pytest.raises(DeliveryError, match=f"could not connect.*{port}") as info:
            face.send(smtp, letter())
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        assert PASSWORD not in str(info.value)
        assert info.value.smtp_code is None

    @pytest.mark.parametrize("security", ["none", "ssl"])
    def test_silent_server_times_out(self, face: Face, security: str) -> None:
        """A server that accepts the connection and never speaks costs one timeout, no more."""
        with socket.socket() as silent:
            silent.bind((LOOPBACK, 0))
            silent.listen(4)  # the kernel completes the handshake; nobody ever answers
            port = silent.getsockname()[1]
            smtp = face.sender(
                port,
                security=security,
                timeout=0.3,
                username=USERNAME,
                password=PASSWORD,
                allow_insecure_auth=True,
            )
            started = time.monotonic()
            with pytest.raises(DeliveryError, match="could not connect") as info:
                face.send(smtp, letter())
            elapsed = time.monotonic() - started
        assert "timed out" in str(info.value).lower()
        assert PASSWORD not in str(info.value)
        assert elapsed < 5  # generous: the point is that it does not hang

    def test_server_that_hangs_up(self, face: Face) -> None:
        """A server that closes the connection at once is a DeliveryError."""
        with socket.socket() as rude:
            rude.bind((LOOPBACK, 0))
            rude.listen(1)
            port = rude.getsockname()[1]

            def hang_up() -> None:
                conn, _ = rude.accept()
                conn.close()

            thread = threading.Thread(target=hang_up)
            thread.start()
            with pytest.raises(DeliveryError, match="could not connect"):
                face.send(face.sender(port), letter())
            thread.join()


class TestSettings:
    def test_repr_has_no_password(self, face: Face) -> None:
        """The repr names class, server, security, sender and user, never the password."""
        smtp = face.cls(
            "smtp.example.kz",
            587,
            sender="noreply@example.kz",
            username=USERNAME,
            password=PASSWORD,
            local_hostname="app1.example.kz",
        )
        expected = (
            f"{face.cls.__name__}(host='smtp.example.kz', port=587, security='starttls', "
            "sender='noreply@example.kz', username='mailer', timeout=10.0)"
        )
        assert expected == repr(smtp)

    def test_every_problem_is_reported_at_once(self, face: Face) -> None:
        """Bad settings raise one ValueError naming each argument, never the password."""
        with pytest.raises(ValueError, match="invalid SMTP settings") as info:
            face.cls(
                "smtp example",
                0,
                sender="not an address",
                password=PASSWORD,
                security="tls",  # type: ignore[arg-type]
                timeout=-1,
                local_hostname="bad host",
            )
        text = str(info.value)
        for name in ("host", "port", "sender", "username", "security", "timeout", "local_hostname"):
            assert f"{name}:" in text
        assert PASSWORD not in text

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"username": "ержан", "password": "x"},
            {"username": "u", "password": "пароль"},
            {"username": "", "password": "x"},
            {"security": "none", "ssl_context": ssl.create_default_context()},
            {"timeout": float("inf")},
            {"sender": "noreply@example.kz\r\nBcc: eve@example.kz"},
        ],
    )
    def test_bad_values(self, face: Face, kwargs: dict[str, Any]) -> None:
        """Non-ASCII or empty credentials, useless TLS settings, endless timeouts are refused."""
        settings: dict[str, Any] = {"sender": "noreply@example.kz", "local_hostname": "h"}
        settings.update(kwargs)
        with pytest.raises(ValueError, match="invalid SMTP settings") as info:
            face.cls("smtp.example.kz", 587, **settings)
        assert "пароль" not in str(info.value)

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            ((None, 587), {}),
            (("smtp.example.kz", "587"), {}),
            (("smtp.example.kz", True), {}),
            (("smtp.example.kz", 587), {"timeout": True}),
            (("smtp.example.kz", 587), {"password": b"x", "username": "u"}),
            (("smtp.example.kz", 587), {"ssl_context": "default"}),
            (("smtp.example.kz", 587), {"allow_insecure_auth": 1}),
        ],
    )
    def test_bad_types(self, face: Face, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        """Arguments of the wrong type are TypeErrors."""
        settings: dict[str, Any] = {"sender": "noreply@example.kz", "local_hostname": "h"}
        settings.update(kwargs)
        with pytest.raises(TypeError):
            face.cls(*args, **settings)  # type: ignore[arg-type]

    def test_wrong_message_type(self, face: Face) -> None:
        """send_email takes an EmailMessage."""
        smtp = face.cls("localhost", 25, sender="a@example.kz", security="none", local_hostname="h")
        with pytest.raises(TypeError, match="EmailMessage"):
            face.send(smtp, "hello")

    def test_each_face_implements_its_protocol(self) -> None:
        """The sync sender is an EmailSender, the async one an AsyncEmailSender, not both."""
        settings: dict[str, Any] = {"sender": "a@example.kz", "local_hostname": "h"}
        sync, asynchronous = (cls("smtp.example.kz", 587, **settings) for cls in FACES_CLASSES)
        assert isinstance(sync, EmailSender)
        assert isinstance(asynchronous, AsyncEmailSender)
        assert inspect.iscoroutinefunction(asynchronous.send_email)
        assert not inspect.iscoroutinefunction(sync.send_email)
        assert not isinstance(asynchronous, SmtpEmailSender)


FACES_CLASSES = (SmtpEmailSender, AsyncSmtpEmailSender)


class TestAsyncOnly:
    """What only AsyncSmtpEmailSender has: tasks, cancellation, the async service."""

    def test_cancelled_mid_send_propagates_and_drops_the_connection(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A task cancelled while the server holds DATA gets CancelledError; nothing is sent."""
        caplog.set_level(logging.DEBUG)
        handler = Recorder(hold=True)

        async def cancel_mid_send(smtp: AsyncSmtpEmailSender) -> None:
            task = asyncio.create_task(smtp.send_email(letter()))
            assert await asyncio.to_thread(handler.data_started.wait, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        with smtp_server(handler) as port:
            smtp = FACES["async"].sender(port)
            assert isinstance(smtp, AsyncSmtpEmailSender)
            asyncio.run(cancel_mid_send(smtp))
            assert handler.dropped.wait(5)  # the client hung up: no connection left behind
        assert [] == handler.received
        assert [] == secrets_logged(caplog)

    def test_a_deadline_around_send_is_a_timeout_error(self) -> None:
        """asyncio.wait_for around send_email cancels it; the caller sees TimeoutError."""
        handler = Recorder(hold=True)

        async def with_deadline(smtp: AsyncSmtpEmailSender) -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(smtp.send_email(letter()), 0.5)

        with smtp_server(handler) as port:
            smtp = FACES["async"].sender(port)
            assert isinstance(smtp, AsyncSmtpEmailSender)
            asyncio.run(with_deadline(smtp))
            assert handler.dropped.wait(5)
        assert [] == handler.received

    def test_one_slow_server_does_not_hold_up_the_loop(self) -> None:
        """While one send waits on a held DATA, other tasks on the loop send theirs."""
        held, quick = Recorder(hold=True), Recorder()

        async def both(slow: AsyncSmtpEmailSender, fast: AsyncSmtpEmailSender) -> None:
            waiting = asyncio.create_task(slow.send_email(letter()))
            assert await asyncio.to_thread(held.data_started.wait, 5)
            await asyncio.gather(*(fast.send_email(letter()) for _ in range(5)))
            assert not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting

        with smtp_server(held) as slow_port, smtp_server(quick) as fast_port:
            slow, fast = (FACES["async"].sender(p) for p in (slow_port, fast_port))
            assert isinstance(slow, AsyncSmtpEmailSender)
            assert isinstance(fast, AsyncSmtpEmailSender)
            asyncio.run(both(slow, fast))
        assert 5 == len(quick.received)

    def test_registration_letter_arrives_through_the_async_service(self) -> None:
        """AsyncIdentityService with AsyncSmtpEmailSender: register, the letter arrives, confirm."""
        handler = Recorder()
        settings = IdentitySettings(
            secret_keys=(b"smtp-test-key-" + b"k" * 32,),
            confirm_url="https://portal.example.kz/confirm",
            reset_url="https://portal.example.kz/reset",
            site_name="portal.example.kz",
        )

        async def register_and_confirm(
            smtp: AsyncSmtpEmailSender, read_link: Callable[[], str]
        ) -> None:
            service = AsyncIdentityService(async_memory_storage(), settings, email_sender=smtp)
            result = await service.register(
                email="aliya@example.kz",
                password="Kökşetau-Bayterek-1997!",
                confirmation="Kökşetau-Bayterek-1997!",
                client_key="203.0.113.7",
                language="kk",
            )
            assert result.ok
            link = urlsplit(read_link())
            assert "portal.example.kz" == link.hostname
            account_id = await service.confirm_email(parse_qs(link.query)["token"][0])
            account = await service.storage.accounts.get(account_id)
            assert account is not None
            assert account.email_confirmed

        def read_link() -> str:
            [got] = handler.received
            parsed = got.message
            assert ["aliya@example.kz"] == got.rcpt_tos
            assert "kk" == parsed["Content-Language"]
            text = parsed.get_content()
            return extract_link(
                EmailMessage(to="a@example.kz", subject="s", text=text, kind="k", language="kk")
            )

        with smtp_server(handler) as port:
            smtp = FACES["async"].sender(port)
            assert isinstance(smtp, AsyncSmtpEmailSender)
            asyncio.run(register_and_confirm(smtp, read_link))
