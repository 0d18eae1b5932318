"""The production e-mail sender: stdlib :mod:`smtplib`, one connection per letter.

Settings, the letter, the conversation and its errors are shared with the async sender
(``_smtp_core``); this module holds only the calls smtplib makes.
"""

from __future__ import annotations

import email.message
import smtplib

from ._messages import EmailMessage
from ._smtp_core import SmtpSecurity, _deliver, _Diagnosis, _SmtpSender, _SmtpSettings

__all__ = ["SmtpEmailSender", "SmtpSecurity"]


class SmtpEmailSender(_SmtpSender):
    """Sends letters through an SMTP server with the standard library's :mod:`smtplib`.

    Each :meth:`send_email` opens a connection, protects it, logs in if credentials are
    set, sends one letter and says QUIT. One connection per letter is simple and robust:
    no pooled connection to go stale, time out or be shared between threads, at the cost
    of a TCP and TLS handshake per letter -- nothing for password-reset traffic. The sender
    holds no mutable state, so one instance serves every thread.
    :class:`AsyncSmtpEmailSender` is the same sender for ``async`` code.

    Args:
        host: the SMTP server's host name (checked against its TLS certificate).
        port: usually 587 with ``"starttls"`` (message submission) or 465 with ``"ssl"``
            (submission over implicit TLS, RFC 8314).
        sender: the From address, bare or with a display name
            (``"Госзакуп <noreply@goszakup.example.kz>"``); its address is also the
            envelope sender, and its domain names the Message-ID.
        username: the login, or ``None`` to send without authentication.
        password: the password for ``username`` (never shown in ``repr`` or in an error).
            SMTP AUTH sends credentials as ASCII, so both must be ASCII.
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

    __slots__ = ()

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
        _deliver(self._settings, message, _SmtplibTransport(self._settings))


class _SmtplibTransport:
    """The calls of one smtplib connection (see ``_smtp_core._Transport``)."""

    __slots__ = ("_client", "_settings")

    errors: tuple[type[BaseException], ...] = (smtplib.SMTPException, OSError)

    def __init__(self, settings: _SmtpSettings) -> None:
        self._settings = settings
        self._client: smtplib.SMTP | None = None

    def connect(self) -> None:
        s = self._settings
        if s.security == "ssl":
            self._client = smtplib.SMTP_SSL(
                s.host,
                s.port,
                local_hostname=s.local_hostname,
                timeout=s.timeout,
                context=s.ssl_context,
            )
        else:
            self._client = smtplib.SMTP(
                s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout
            )

    def starttls(self) -> None:
        self._connected().starttls(context=self._settings.ssl_context)

    def login(self, username: str, password: str) -> None:
        self._connected().login(username, password)

    def send(self, mime: email.message.EmailMessage, sender: str, recipient: str) -> None:
        refused = self._connected().send_message(mime, from_addr=sender, to_addrs=[recipient])
        if refused:  # pragma: no cover - one recipient: smtplib raises instead
            raise smtplib.SMTPRecipientsRefused(refused)

    def quit(self) -> None:
        self._connected().quit()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def diagnose(self, exc: BaseException) -> _Diagnosis:
        if isinstance(exc, smtplib.SMTPResponseException):
            return _Diagnosis(code=exc.smtp_code, reply=exc.smtp_error)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _reply in exc.recipients.values()]
            return _Diagnosis(code=codes[0] if codes else None, recipient_refused=True)
        return _Diagnosis(cause=exc)

    def _connected(self) -> smtplib.SMTP:
        if self._client is None:  # pragma: no cover - _deliver connects first
            raise smtplib.SMTPServerDisconnected("not connected")
        return self._client
