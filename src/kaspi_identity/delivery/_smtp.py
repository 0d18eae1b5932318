"""The production e-mail sender: stdlib :mod:`smtplib`, one connection per letter."""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import math
import re
import smtplib
import socket
import ssl
from datetime import datetime, timezone
from typing import Literal, NoReturn

from ._errors import DeliveryError
from ._messages import _ADDRESS, _HEADER_BREAKERS, EmailMessage

__all__ = ["SmtpEmailSender", "SmtpSecurity"]

SmtpSecurity = Literal["starttls", "ssl", "none"]
"""How the connection to the SMTP server is protected (see :class:`SmtpEmailSender`)."""

_SECURITY_MODES = ("starttls", "ssl", "none")
_HOST = re.compile(r"[^\s/@]+")
_ENHANCED_STATUS = re.compile(rb"\s*([245]\.[0-9]{1,3}\.[0-9]{1,3})\b")
_STAGES = {
    "connect": "could not connect to the SMTP server",
    "starttls": "could not start TLS with the SMTP server",
    "login": "the SMTP server rejected the login at",
    "send": "the SMTP server did not accept the letter at",
}


class SmtpEmailSender:
    """Sends letters through an SMTP server with the standard library's :mod:`smtplib`.

    Each :meth:`send_email` opens a connection, protects it, logs in if credentials are
    set, sends one letter and says QUIT. One connection per letter is simple and robust:
    no pooled connection to go stale, time out or be shared between threads, at the cost
    of a TCP and TLS handshake per letter -- nothing for password-reset traffic. The sender
    holds no mutable state, so one instance serves every thread.

    Args:
        host: the SMTP server's host name (checked against its TLS certificate).
        port: usually 587 with ``"starttls"`` (message submission) or 465 with ``"ssl"``
            (submission over implicit TLS, RFC 8314).
        sender: the From address, bare or with a display name
            (``"Госзакуп <noreply@goszakup.example.kz>"``); its address is also the
            envelope sender, and its domain names the Message-ID.
        username: the login, or ``None`` to send without authentication.
        password: the password for ``username`` (never shown in ``repr`` or in an error).
            smtplib sends credentials as ASCII, so both must be ASCII.
        security: ``"starttls"`` (default): connect in clear, then upgrade with STARTTLS and
            refuse to continue if the server does not offer it -- never a silent downgrade.
            ``"ssl"``: TLS from the first byte. ``"none"``: no encryption at all, **for a
            mail relay on the same machine (127.0.0.1) or a local test server only**; with
            ``"none"`` credentials are refused unless ``allow_insecure_auth=True``.
        timeout: seconds each network operation (connect, each command) may wait.
        ssl_context: the TLS settings; default :func:`ssl.create_default_context`, which
            verifies the server's certificate and host name against the system's CAs.
            Pass your own to trust a private CA.
        local_hostname: the name sent with EHLO; default :func:`socket.getfqdn`, looked up
            once here.
        allow_insecure_auth: the escape hatch that lets ``security="none"`` send a
            password in clear text. Leave it ``False`` except against a local test server.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: the settings are inconsistent; the message lists every problem, by
            argument name, and never the password.

    """

    __slots__ = (
        "_envelope_sender",
        "_host",
        "_local_hostname",
        "_msgid_domain",
        "_password",
        "_port",
        "_security",
        "_sender",
        "_ssl_context",
        "_timeout",
        "_username",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        security: SmtpSecurity = "starttls",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        allow_insecure_auth: bool = False,
    ) -> None:
        _require(host, str, "host")
        _require(port, int, "port")
        _require(sender, str, "sender")
        _require(username, (str, type(None)), "username")
        _require(password, (str, type(None)), "password")
        _require(security, str, "security")
        _require(timeout, (int, float), "timeout")
        _require(ssl_context, (ssl.SSLContext, type(None)), "ssl_context")
        _require(local_hostname, (str, type(None)), "local_hostname")
        _require(allow_insecure_auth, bool, "allow_insecure_auth")

        problems: dict[str, str] = {}
        if not _HOST.fullmatch(host) or _HEADER_BREAKERS.search(host):
            problems["host"] = "must be a host name or IP address"
        if not 1 <= port <= 65535:
            problems["port"] = "must be from 1 to 65535"
        _display_name, address = email.utils.parseaddr(sender)
        if _HEADER_BREAKERS.search(sender) or not _ADDRESS.fullmatch(address) or len(address) > 254:
            problems["sender"] = "must be an address, optionally with a display name"
        if (username is None) != (password is None):
            problems["username"] = "username and password go together: give both or neither"
        for name, credential in (("username", username), ("password", password)):
            if credential is not None and (not credential or not credential.isascii()):
                problems[name] = "must be a non-empty ASCII string (smtplib sends it as ASCII)"
        if security not in _SECURITY_MODES:
            problems["security"] = f"must be one of {', '.join(map(repr, _SECURITY_MODES))}"
        elif security == "none":
            if username is not None and not allow_insecure_auth:
                problems["security"] = (
                    "'none' would send the password in clear text; use 'starttls' or 'ssl' "
                    "(or allow_insecure_auth=True for a local test server only)"
                )
            if ssl_context is not None:
                problems["ssl_context"] = "is not used with security='none'"
        if not (math.isfinite(timeout) and timeout > 0):
            problems["timeout"] = "must be a finite number of seconds > 0"
        if local_hostname is not None and (
            not _HOST.fullmatch(local_hostname) or _HEADER_BREAKERS.search(local_hostname)
        ):
            problems["local_hostname"] = "must be a host name"
        if problems:
            details = "; ".join(f"{key}: {reason}" for key, reason in problems.items())
            raise ValueError(f"invalid SMTP settings: {details}")

        self._host = host
        self._port = port
        self._sender = sender
        self._envelope_sender = address
        self._msgid_domain = address.rpartition("@")[2]
        self._username = username
        self._password = password
        self._security = security
        self._timeout = float(timeout)
        if ssl_context is None and security != "none":
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname or socket.getfqdn()

    def send_email(self, message: EmailMessage) -> None:
        """Send one letter: connect, STARTTLS or TLS, log in, send, QUIT.

        The letter is ``text/plain`` in UTF-8, or ``multipart/alternative`` with a
        ``text/html`` part when ``message.html`` is set; both parts are quoted-printable, so
        any server accepts them. Headers: From, To, Subject (RFC 2047-encoded when not
        ASCII), Date, Message-ID, Content-Language and ``Auto-Submitted: auto-generated``
        (RFC 3834: out-of-office robots do not answer it).

        Raises:
            TypeError: ``message`` is not an :class:`EmailMessage`.
            DeliveryError: any failure -- connection refused or timed out, TLS handshake or
                certificate rejected, no STARTTLS offered, login rejected, sender or
                recipient refused, letter refused. The message names the stage, server and
                SMTP code, never the letter, the server's reply text or the password;
                ``smtp_code`` holds the code when there is one.

        """
        if not isinstance(message, EmailMessage):
            raise TypeError(f"message must be an EmailMessage, not {type(message).__name__}")
        try:
            mime = self._build(message)
        except (ValueError, TypeError, UnicodeError) as exc:
            raise DeliveryError(
                f"the letter cannot be encoded as MIME ({type(exc).__name__})"
            ) from None
        stage = "connect"
        try:
            client = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            self._fail(stage, exc)
        try:
            if self._security == "starttls":
                stage = "starttls"
                client.starttls(context=self._ssl_context)
            if self._username is not None and self._password is not None:
                stage = "login"
                client.login(self._username, self._password)
            stage = "send"
            refused = client.send_message(
                mime, from_addr=self._envelope_sender, to_addrs=[message.to]
            )
            if refused:  # pragma: no cover - one recipient: smtplib raises instead
                raise smtplib.SMTPRecipientsRefused(refused)
        except (smtplib.SMTPException, OSError) as exc:
            client.close()  # no QUIT: the server may be the part that hangs
            self._fail(stage, exc)
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()  # the letter was accepted; a failed goodbye changes nothing

    def _connect(self) -> smtplib.SMTP:
        if self._security == "ssl":
            return smtplib.SMTP_SSL(
                self._host,
                self._port,
                local_hostname=self._local_hostname,
                timeout=self._timeout,
                context=self._ssl_context,
            )
        return smtplib.SMTP(
            self._host, self._port, local_hostname=self._local_hostname, timeout=self._timeout
        )

    def _build(self, message: EmailMessage) -> email.message.EmailMessage:
        mime = email.message.EmailMessage(policy=email.policy.SMTP)
        mime["From"] = self._sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = email.utils.format_datetime(datetime.now(timezone.utc), usegmt=True)
        mime["Message-ID"] = email.utils.make_msgid(domain=self._msgid_domain)
        mime["Auto-Submitted"] = "auto-generated"
        mime.set_content(message.text, charset="utf-8", cte="quoted-printable")
        if message.html is not None:
            mime.add_alternative(
                message.html, subtype="html", charset="utf-8", cte="quoted-printable"
            )
        mime["Content-Language"] = message.language  # after set_content, which drops Content-*
        return mime

    def _fail(self, stage: str, exc: BaseException) -> NoReturn:
        where = f"{_STAGES[stage]} {self._host}:{self._port}"
        if isinstance(exc, smtplib.SMTPResponseException):
            # The server's reply text is not repeated: a filter may quote the letter in it.
            raise DeliveryError(
                f"{where}: SMTP {exc.smtp_code}{_enhanced(exc.smtp_error)}",
                smtp_code=exc.smtp_code,
            ) from None
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _reply in exc.recipients.values()]
            code = codes[0] if codes else None
            raise DeliveryError(
                f"{where}: recipient refused (SMTP {code})", smtp_code=code
            ) from None
        # Everything else is worded by smtplib, ssl or the OS, never by the server.
        raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return (
            f"SmtpEmailSender(host={self._host!r}, port={self._port}, "
            f"security={self._security!r}, sender={self._sender!r}, "
            f"username={self._username!r}, timeout={self._timeout})"
        )


def _require(value: object, types: type | tuple[type, ...], name: str) -> None:
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise TypeError(f"{name} has the wrong type: {type(value).__name__}")


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _enhanced(reply: bytes | str) -> str:
    """Return `` (5.7.8)`` for a reply that starts with an RFC 3463 enhanced status code."""
    data = reply.encode("utf-8", "replace") if isinstance(reply, str) else reply
    match = _ENHANCED_STATUS.match(data)
    return f" ({match.group(1).decode('ascii')})" if match else ""
