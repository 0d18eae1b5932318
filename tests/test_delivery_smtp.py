"""SmtpEmailSender against a real SMTP server (aiosmtpd) on 127.0.0.1, started by the tests.

Every server here listens on the loopback interface only. TLS uses a throwaway self-signed
certificate for ``localhost`` / ``127.0.0.1`` made at test time with the ``cryptography``
package when it is installed, else with the ``openssl`` command.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import importlib
import importlib.util
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from kaspi_identity.delivery import (
    DeliveryError,
    EmailMessage,
    SmtpEmailSender,
    extract_link,
    render_email,
)

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
    """An aiosmtpd handler that keeps every letter, or answers DATA with a given reply."""

    def __init__(self, data_reply: str = "250 2.0.0 OK") -> None:
        self.data_reply = data_reply
        self.received: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Record the letter (aiosmtpd hook)."""
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


def sender(port: int, **kwargs: Any) -> SmtpEmailSender:
    """A sender for the loopback server on ``port``."""
    host = kwargs.pop("host", LOOPBACK)
    settings: dict[str, Any] = {
        "sender": "Госзакуп <noreply@goszakup.example.kz>",
        "security": "none",
        "timeout": 5.0,
        "local_hostname": "localhost",
    }
    settings.update(kwargs)
    return SmtpEmailSender(host, port, **settings)


class TestPlain:
    def test_cyrillic_letter_arrives_intact(self) -> None:
        """Subject and body in Kazakh survive the trip; the headers are all there."""
        handler = Recorder()
        message = letter()
        with smtp_server(handler) as port:
            sender(port).send_email(message)
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

    def test_wire_format_is_seven_bit(self) -> None:
        """The body travels quoted-printable and the subject RFC 2047-encoded: 7-bit safe."""
        handler = Recorder()
        with smtp_server(handler) as port:
            sender(port).send_email(letter())
        raw = handler.received[0].raw
        assert raw.isascii()
        assert b"=?utf-8?" in raw.lower()
        assert b"Content-Transfer-Encoding: quoted-printable" in raw

    def test_html_makes_multipart_alternative(self) -> None:
        """With an HTML part the letter is multipart/alternative, plain text first."""
        handler = Recorder()
        html = f'<p>Сілтеме: <a href="{LINK}">ашу</a></p>'
        with smtp_server(handler) as port:
            sender(port).send_email(letter(html=html))
        parsed = handler.received[0].message
        assert "multipart/alternative" == parsed.get_content_type()
        parts = list(parsed.iter_parts())
        assert ["text/plain", "text/html"] == [part.get_content_type() for part in parts]
        html_part = parsed.get_body(("html",))
        assert html_part is not None
        assert html == html_part.get_content().rstrip("\n")

    def test_one_connection_per_letter_from_many_threads(self) -> None:
        """One sender serves several threads at once; every letter arrives once."""
        handler = Recorder()
        with smtp_server(handler) as port:
            smtp = sender(port)
            threads = [threading.Thread(target=smtp.send_email, args=(letter(),)) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert 8 == len(handler.received)
        assert 8 == len({r.message["Message-ID"] for r in handler.received})

    def test_rejected_letter_does_not_echo_the_server_text(self) -> None:
        """A 5xx reply becomes DeliveryError with code and status, not the quoted letter."""
        handler = Recorder(data_reply=f"554 5.7.1 Rejected as spam: {LINK}")
        with smtp_server(handler) as port, pytest.raises(DeliveryError) as info:
            sender(port).send_email(letter())
        text = str(info.value)
        assert 554 == info.value.smtp_code
        assert "554 (5.7.1)" in text
        assert f"{LOOPBACK}:{port}" in text
        assert "SECRET" not in text
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__

    def test_temporary_failure_keeps_its_code(self) -> None:
        """A 4xx reply is reported with its code, so a host can retry later."""
        handler = Recorder(data_reply="451 4.3.0 Try again later")
        with smtp_server(handler) as port, pytest.raises(DeliveryError) as info:
            sender(port).send_email(letter())
        assert 451 == info.value.smtp_code

    def test_starttls_required_but_not_offered(self) -> None:
        """security='starttls' never falls back to clear text when STARTTLS is missing."""
        handler = Recorder()
        with smtp_server(handler) as port, pytest.raises(DeliveryError, match="TLS") as info:
            sender(port, security="starttls").send_email(letter())
        assert "STARTTLS" in str(info.value)
        assert [] == handler.received

    def test_insecure_auth_needs_the_escape_hatch(self) -> None:
        """Credentials over a clear connection work only with allow_insecure_auth=True."""
        handler = Recorder()
        with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
            with pytest.raises(ValueError, match="clear text"):
                sender(port, username=USERNAME, password=PASSWORD)
            sender(port, username=USERNAME, password=PASSWORD, allow_insecure_auth=True).send_email(
                letter()
            )
        assert handler.received[0].authenticated


class TestTls:
    def test_starttls_with_auth(
        self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
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
            sender(
                port,
                host="localhost",
                security="starttls",
                ssl_context=client_tls,
                username=USERNAME,
                password=PASSWORD,
            ).send_email(letter())
        [got] = handler.received
        assert got.tls
        assert got.authenticated
        assert letter().subject == got.message["Subject"]

    def test_implicit_ssl(self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
        """security='ssl' speaks TLS from the first byte (port 465 style)."""
        handler = Recorder()
        with smtp_server(handler, ssl_context=server_tls) as port:
            sender(port, security="ssl", ssl_context=client_tls).send_email(letter())
        [got] = handler.received
        assert got.tls
        assert letter().text == got.message.get_content().rstrip("\n")

    def test_untrusted_certificate_is_refused(self, server_tls: ssl.SSLContext) -> None:
        """The default context checks the certificate: a self-signed one fails to verify."""
        handler = Recorder()
        with (
            smtp_server(handler, ssl_context=server_tls) as port,
            pytest.raises(DeliveryError, match="could not connect") as info,
        ):
            sender(port, security="ssl").send_email(letter())
        assert isinstance(info.value.__cause__, ssl.SSLError)
        assert [] == handler.received

    def test_wrong_password(self, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
        """A rejected login is DeliveryError with the SMTP code and no password anywhere."""
        handler = Recorder()
        with smtp_server(
            handler,
            tls_context=server_tls,
            require_starttls=True,
            authenticator=authenticator,
            auth_required=True,
        ) as port:
            smtp = sender(
                port,
                host="localhost",
                security="starttls",
                ssl_context=client_tls,
                username=USERNAME,
                password="Wrong-" + PASSWORD,
            )
            with pytest.raises(DeliveryError, match="rejected the login") as info:
                smtp.send_email(letter())
        assert 535 == info.value.smtp_code
        for text in (str(info.value), repr(info.value), repr(smtp)):
            assert PASSWORD not in text
        assert [] == handler.received


class TestFailures:
    def test_connection_refused(self) -> None:
        """Nobody listening: DeliveryError naming the server, with the OS error as cause."""
        port = free_port()
        with pytest.raises(DeliveryError, match=f"could not connect.*{port}") as info:
            sender(port, username=USERNAME, password=PASSWORD, allow_insecure_auth=True).send_email(
                letter()
            )
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        assert PASSWORD not in str(info.value)
        assert info.value.smtp_code is None

    @pytest.mark.parametrize("security", ["none", "ssl"])
    def test_silent_server_times_out(self, security: str) -> None:
        """A server that accepts the connection and never speaks costs one timeout, no more."""
        with socket.socket() as silent:
            silent.bind((LOOPBACK, 0))
            silent.listen(4)  # the kernel completes the handshake; nobody ever answers
            port = silent.getsockname()[1]
            smtp = sender(
                port,
                security=security,
                timeout=0.3,
                username=USERNAME,
                password=PASSWORD,
                allow_insecure_auth=True,
            )
            started = time.monotonic()
            with pytest.raises(DeliveryError) as info:
                smtp.send_email(letter())
            elapsed = time.monotonic() - started
        assert "timed out" in str(info.value)
        assert PASSWORD not in str(info.value)
        assert elapsed < 5  # generous: the point is that it does not hang

    def test_server_that_hangs_up(self) -> None:
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
                sender(port).send_email(letter())
            thread.join()


class TestSettings:
    def test_repr_has_no_password(self) -> None:
        """The repr names server, security, sender and user, never the password."""
        smtp = SmtpEmailSender(
            "smtp.example.kz",
            587,
            sender="noreply@example.kz",
            username=USERNAME,
            password=PASSWORD,
            local_hostname="app1.example.kz",
        )
        expected = (
            "SmtpEmailSender(host='smtp.example.kz', port=587, security='starttls', "
            "sender='noreply@example.kz', username='mailer', timeout=10.0)"
        )
        assert expected == repr(smtp)

    def test_every_problem_is_reported_at_once(self) -> None:
        """Bad settings raise one ValueError naming each argument, never the password."""
        with pytest.raises(ValueError, match="invalid SMTP settings") as info:
            SmtpEmailSender(
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
    def test_bad_values(self, kwargs: dict[str, Any]) -> None:
        """Non-ASCII or empty credentials, useless TLS settings, endless timeouts are refused."""
        settings: dict[str, Any] = {"sender": "noreply@example.kz", "local_hostname": "h"}
        settings.update(kwargs)
        with pytest.raises(ValueError, match="invalid SMTP settings") as info:
            SmtpEmailSender("smtp.example.kz", 587, **settings)
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
    def test_bad_types(self, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        """Arguments of the wrong type are TypeErrors."""
        settings: dict[str, Any] = {"sender": "noreply@example.kz", "local_hostname": "h"}
        settings.update(kwargs)
        with pytest.raises(TypeError):
            SmtpEmailSender(*args, **settings)  # type: ignore[arg-type]

    def test_wrong_message_type(self) -> None:
        """send_email takes an EmailMessage."""
        smtp = SmtpEmailSender(
            "localhost", 25, sender="a@example.kz", security="none", local_hostname="h"
        )
        with pytest.raises(TypeError, match="EmailMessage"):
            smtp.send_email("hello")  # type: ignore[arg-type]
