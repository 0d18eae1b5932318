"""What the two SMTP senders share: settings, the letter, the conversation and its errors.

:class:`~kaspi_identity.delivery.SmtpEmailSender` (stdlib :mod:`smtplib`) and
:class:`~kaspi_identity.delivery.AsyncSmtpEmailSender` (aiosmtplib) differ only in the
*transport*: the object that makes the calls of one SMTP connection. Everything else is
written once, here:

- :class:`_SmtpSender` takes and checks the constructor arguments into a frozen
  :class:`_SmtpSettings`, and gives both senders their ``repr``;
- :func:`_build_mime` writes the MIME letter;
- :func:`_deliver` holds the conversation (connect, STARTTLS, login, send, QUIT), which
  stage failed and how the connection is given up; a transport only moves it;
- :func:`_delivery_error` words the :class:`DeliveryError` from what the transport says an
  exception meant (:class:`_Diagnosis`), never from the server's reply text.

The synchronous sender calls :func:`_deliver` directly with an smtplib transport; the
asynchronous one runs the very same function through :func:`kaspi_identity._bridge.run_flow`
with a transport whose calls await aiosmtplib (the greenlet model of the whole async face).
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import math
import re
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, Protocol

from kaspi_identity._errors import DeliveryError

from ._messages import _ADDRESS, _HEADER_BREAKERS, EmailMessage

__all__ = ["SmtpSecurity"]

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


@dataclass(frozen=True, slots=True)
class _SmtpSettings:
    """The checked settings of one SMTP sender (both faces); the password is not in repr."""

    host: str
    port: int
    sender: str
    envelope_sender: str
    msgid_domain: str
    username: str | None
    password: str | None = field(repr=False)
    security: SmtpSecurity
    timeout: float
    ssl_context: ssl.SSLContext | None
    local_hostname: str

    @property
    def credentials(self) -> tuple[str, str] | None:
        """``(username, password)`` when the sender logs in, else ``None``."""
        if self.username is None or self.password is None:
            return None
        return self.username, self.password


class _SmtpSender:
    """The constructor and ``repr`` of both SMTP senders; see :class:`SmtpEmailSender`."""

    __slots__ = ("_settings",)

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
                problems[name] = "must be a non-empty ASCII string (SMTP AUTH sends it as ASCII)"
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

        if ssl_context is None and security != "none":
            ssl_context = ssl.create_default_context()
        self._settings = _SmtpSettings(
            host=host,
            port=port,
            sender=sender,
            envelope_sender=address,
            msgid_domain=address.rpartition("@")[2],
            username=username,
            password=password,
            security=security,
            timeout=float(timeout),
            ssl_context=ssl_context,
            local_hostname=local_hostname or socket.getfqdn(),
        )

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"{type(self).__name__}(host={s.host!r}, port={s.port}, "
            f"security={s.security!r}, sender={s.sender!r}, "
            f"username={s.username!r}, timeout={s.timeout})"
        )


def _build_mime(settings: _SmtpSettings, message: EmailMessage) -> email.message.EmailMessage:
    """The letter as MIME: plain text, or plain text and HTML as alternatives; see send_email."""
    mime = email.message.EmailMessage(policy=email.policy.SMTP)
    mime["From"] = settings.sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = email.utils.format_datetime(datetime.now(timezone.utc), usegmt=True)
    if message.idempotency_key is None:
        mime["Message-ID"] = email.utils.make_msgid(domain=settings.msgid_domain)
    else:  # every attempt of one queued letter: the same letter to the receiving side
        mime["Message-ID"] = f"<{message.idempotency_key}@{settings.msgid_domain}>"
    mime["Auto-Submitted"] = "auto-generated"
    mime.set_content(message.text, charset="utf-8", cte="quoted-printable")
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    mime["Content-Language"] = message.language  # after set_content, which drops Content-*
    return mime


@dataclass(frozen=True, slots=True)
class _Diagnosis:
    """What a transport's exception meant, for :func:`_delivery_error`.

    ``code`` is the server's reply code when it answered; ``reply`` its reply text, read
    for the RFC 3463 enhanced status only (a filter may quote the letter in it); ``cause``
    an error worded by the SMTP library, ``ssl`` or the OS, never by the server, kept as
    ``__cause__``.
    """

    code: int | None = None
    reply: bytes | str = b""
    recipient_refused: bool = False
    cause: BaseException | None = None


class _Transport(Protocol):
    """One SMTP connection's calls, made with one library; built afresh for each letter.

    Each call raises one of ``errors`` when it fails; :meth:`diagnose` says what such an
    exception meant. :meth:`close` drops the connection without a word to the server and
    does nothing when there is none.
    """

    errors: tuple[type[BaseException], ...]

    def connect(self) -> None:
        """Open the connection (TLS from the first byte with ``"ssl"``), read the greeting."""

    def starttls(self) -> None:
        """Upgrade with STARTTLS; fail if the server does not offer it."""

    def login(self, username: str, password: str) -> None:
        """Authenticate."""

    def send(self, mime: email.message.EmailMessage, sender: str, recipient: str) -> None:
        """Send the letter to one recipient, with ``sender`` as the envelope sender."""

    def quit(self) -> None:
        """Say QUIT and close."""

    def close(self) -> None:
        """Drop the connection."""

    def diagnose(self, exc: BaseException) -> _Diagnosis:
        """What ``exc``, one of ``errors``, meant."""
        ...


def _deliver(settings: _SmtpSettings, message: EmailMessage, transport: _Transport) -> None:
    """Send one letter over ``transport``: connect, STARTTLS or TLS, log in, send, QUIT.

    The one implementation of ``send_email`` for both senders (see their docstrings).
    """
    if not isinstance(message, EmailMessage):
        raise TypeError(f"message must be an EmailMessage, not {type(message).__name__}")
    failed_type: str | None = None
    try:
        mime = _build_mime(settings, message)
    except (ValueError, TypeError, UnicodeError) as exc:
        failed_type = type(exc).__name__
    if failed_type is not None:  # raised here, not in the except: no context to show
        raise DeliveryError(f"the letter cannot be encoded as MIME ({failed_type})") from None
    stage = "connect"
    failure: BaseException | None = None
    try:
        transport.connect()
        if settings.security == "starttls":
            stage = "starttls"
            transport.starttls()
        credentials = settings.credentials
        if credentials is not None:
            stage = "login"
            transport.login(*credentials)
        stage = "send"
        transport.send(mime, settings.envelope_sender, message.to)
    except transport.errors as exc:
        transport.close()  # no QUIT: the server may be the part that hangs
        failure = exc
    except BaseException:
        transport.close()  # cancelled or interrupted: leave no connection behind
        raise
    if failure is not None:
        diagnosis = transport.diagnose(failure)
        del failure
        # Raised outside the except clause: the library's exception, which may carry the
        # server's reply text, is neither the cause nor the context of the DeliveryError.
        raise _delivery_error(settings, stage, diagnosis) from diagnosis.cause
    try:
        transport.quit()
    except transport.errors:
        pass  # the letter was accepted; a failed goodbye changes nothing
    finally:
        transport.close()  # after QUIT a no-op; after a failed or cancelled one, needed


def _delivery_error(settings: _SmtpSettings, stage: str, diagnosis: _Diagnosis) -> DeliveryError:
    where = f"{_STAGES[stage]} {settings.host}:{settings.port}"
    code = diagnosis.code
    if diagnosis.recipient_refused:
        return DeliveryError(f"{where}: recipient refused (SMTP {code})", smtp_code=code)
    if code is not None:
        # The server's reply text is not repeated: a filter may quote the letter in it.
        return DeliveryError(f"{where}: SMTP {code}{_enhanced(diagnosis.reply)}", smtp_code=code)
    cause = diagnosis.cause
    # Worded by the SMTP library, ssl or the OS, never by the server.
    return DeliveryError(f"{where}: {type(cause).__name__}: {cause}")


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
