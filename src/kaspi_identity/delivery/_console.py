"""A sender that prints letters and SMS to a terminal: development only."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from kaspi_identity.i18n import get_catalog, normalize_language

from ._messages import EmailMessage, SmsMessage

__all__ = ["ConsoleSender"]

_RULE = "=" * 72


class ConsoleSender:
    """DEVELOPMENT ONLY: prints every letter and SMS, link and code included, to a stream.

    **Never use it in production.** It delivers nothing to anyone, and it writes the secret
    reset links and SMS codes in clear to the terminal (or wherever ``stream`` goes, such as
    a server log) -- printing them is its whole purpose, so that a developer can follow the
    link or type the code. It writes to ``stream`` directly and never through
    :mod:`logging`, so the secrets do not travel through your logging handlers.

    ``stream`` defaults to :data:`sys.stdout`, looked up at each send (so a test's captured
    output or a redirected stdout works). Implements both
    :class:`~kaspi_identity.delivery.EmailSender` and
    :class:`~kaspi_identity.delivery.SmsSender`; thread-safe (one message is printed whole
    before the next starts). Write errors of the stream propagate as they are.
    """

    __slots__ = ("_language", "_lock", "_stream")

    def __init__(self, stream: TextIO | None = None, *, language: str | None = None) -> None:
        """Print to ``stream`` (default ``sys.stdout``).

        ``language`` (``"kk"``, ``"ru"``, ``"en"``) writes the frame around each message
        (the "printed, not sent" line, "To", "Subject") in that language; by default it is
        English.

        Raises:
            UnknownLanguageError: ``language`` has no catalog.
        """
        self._stream = stream
        self._lock = threading.Lock()
        self._language = normalize_language(language) if language is not None else "en"

    def _frame(self, key: str, **params: object) -> str:
        return get_catalog(self._language).message(f"console.{key}", count=None, **params)

    def send_email(self, message: EmailMessage) -> None:
        """Print the letter: a header block (to, subject, kind, language), then the text.

        An HTML alternative, if any, is not printed; a line says how long it is.

        Raises:
            TypeError: ``message`` is not an :class:`EmailMessage`.

        """
        if not isinstance(message, EmailMessage):
            raise TypeError(f"message must be an EmailMessage, not {type(message).__name__}")
        to_label, subject_label = self._frame("to"), self._frame("subject")
        width = max(len(to_label), len(subject_label))
        lines = [
            _RULE,
            self._frame("email", kind=message.kind, language=message.language),
            f"{to_label:<{width}} {message.to}",
            f"{subject_label:<{width}} {message.subject}",
            "",
            message.text,
        ]
        if message.html is not None:
            lines += ["", self._frame("html", length=len(message.html))]
        lines.append(_RULE)
        self._write(lines)

    def send_sms(self, message: SmsMessage) -> None:
        """Print the SMS: a header line (to, kind, language), then the text.

        Raises:
            TypeError: ``message`` is not an :class:`SmsMessage`.

        """
        if not isinstance(message, SmsMessage):
            raise TypeError(f"message must be an SmsMessage, not {type(message).__name__}")
        lines = [
            _RULE,
            self._frame("sms", kind=message.kind, language=message.language),
            f"{self._frame('to')} {message.to}",
            "",
            message.text,
            _RULE,
        ]
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        stream = sys.stdout if self._stream is None else self._stream
        with self._lock:
            stream.write("\n".join(lines) + "\n")
            stream.flush()

    def __repr__(self) -> str:
        target = "sys.stdout" if self._stream is None else type(self._stream).__name__
        return f"ConsoleSender(stream={target})"
