"""The production e-mail sender for ``async`` code: aiosmtplib, one connection per letter.

Not a second implementation: :meth:`AsyncSmtpEmailSender.send_email` runs the one SMTP
conversation of ``_smtp_core`` (shared with :class:`SmtpEmailSender`) through
:func:`kaspi_identity._bridge.run_flow`, with a transport whose calls await aiosmtplib.
Needs the ``async`` extra: ``pip install 'kaspi-identity[async]'``.
"""

from __future__ import annotations

import asyncio
import email.message

try:
    import aiosmtplib
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "AsyncSmtpEmailSender needs aiosmtplib: pip install 'kaspi-identity[async]'"
    ) from exc

from kaspi_identity._bridge import await_, run_flow

from ._messages import EmailMessage
from ._smtp_core import _deliver, _Diagnosis, _SmtpSender, _SmtpSettings

__all__ = ["AsyncSmtpEmailSender"]


class AsyncSmtpEmailSender(_SmtpSender):
    """:class:`SmtpEmailSender` for ``async`` code, on aiosmtplib: ``send_email`` is a coroutine.

    It takes the same arguments, checks them the same way (``TypeError`` / one
    ``ValueError`` naming every problem), writes the same letter, holds the same
    conversation (``"starttls"`` refuses to go on without STARTTLS; ``"ssl"`` is TLS from
    the first byte) and raises the same :class:`DeliveryError`; only the network calls are
    awaited. ``timeout`` bounds each network operation, as there.

    One connection per letter, as the sync sender: a pool would serialise the tasks that
    share a connection, go stale between the rare letters of an identity service, tie its
    connections to one event loop, and a send cancelled half-way leaves a connection in an
    unknown state that could only be thrown away. The sender holds no mutable state, so
    one instance serves every task (and every event loop) at once; ``N`` tasks sending at
    once open ``N`` connections.

    Args:
        host, port, sender, username, password, security, timeout, ssl_context,
            local_hostname, allow_insecure_auth: as for :class:`SmtpEmailSender`.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: the settings are inconsistent; every problem is listed, by argument
            name, and never the password.

    """

    __slots__ = ()

    async def send_email(self, message: EmailMessage) -> None:
        """Send one letter: connect, STARTTLS or TLS, log in, send, QUIT (awaiting each).

        The letter and its headers are those of :meth:`SmtpEmailSender.send_email`.

        Raises:
            TypeError: ``message`` is not an :class:`EmailMessage`.
            DeliveryError: any failure of the transport, worded as by
                :meth:`SmtpEmailSender.send_email`: stage, server and SMTP code, never the
                letter, the server's reply text or the password.
            asyncio.CancelledError: the task was cancelled; the connection is dropped
                first (a letter cancelled before the server accepted it is not sent).

        """
        await run_flow(_deliver, self._settings, message, _AiosmtplibTransport(self._settings))


class _AiosmtplibTransport:
    """The calls of one aiosmtplib connection, awaited from inside the flow of ``run_flow``."""

    __slots__ = ("_client", "_settings")

    errors: tuple[type[BaseException], ...] = (aiosmtplib.SMTPException, OSError)

    def __init__(self, settings: _SmtpSettings) -> None:
        self._settings = settings
        self._client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=settings.local_hostname,
            timeout=settings.timeout,
            use_tls=settings.security == "ssl",
            start_tls=False,  # _deliver asks for it, and fails when it is not offered
            tls_context=settings.ssl_context,
        )

    def connect(self) -> None:
        await_(self._client.connect())

    def starttls(self) -> None:
        await_(self._client.starttls(server_hostname=self._settings.host))

    def login(self, username: str, password: str) -> None:
        await_(self._client.login(username, password))

    def send(self, mime: email.message.EmailMessage, sender: str, recipient: str) -> None:
        await_(self._client.send_message(mime, sender=sender, recipients=[recipient]))

    def quit(self) -> None:
        transport = self._client.transport
        await_(self._client.quit())
        _abort(transport)

    def close(self) -> None:
        _abort(self._client.transport)
        self._client.close()  # resets aiosmtplib's state (and its connect lock)

    def diagnose(self, exc: BaseException) -> _Diagnosis:
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return _Diagnosis(code=exc.code, reply=exc.message)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [refused.code for refused in exc.recipients]
            return _Diagnosis(code=codes[0] if codes else None, recipient_refused=True)
        cause = exc.__cause__
        if not isinstance(exc, aiosmtplib.SMTPTimeoutError) and isinstance(cause, OSError):
            # aiosmtplib wraps what the OS or ssl said; show that, as smtplib's sender does.
            return _Diagnosis(cause=cause)
        return _Diagnosis(cause=exc)


def _abort(transport: asyncio.BaseTransport | None) -> None:
    # Close the socket now, as smtplib's close() does. aiosmtplib's close() starts TLS's
    # close_notify exchange instead, which needs more turns of the loop than asyncio.run()
    # gives it after the last await: the socket would be left open when the loop closes.
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
