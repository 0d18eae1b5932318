"""Development delivery: a real local SMTP server (aiosmtpd) and an SMS sender that keeps texts.

The portal's service sends its letters with the library's ``AsyncSmtpEmailSender`` to this
server on 127.0.0.1, exactly as it would to a production relay; what arrives is kept in
memory and shown on ``/dev/mailbox``. SMS go through the library's ``SmsSender`` protocol
to :class:`CapturingSms`. Never enabled outside development mode.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kaspi_identity.delivery import SmsMessage

__all__ = ["CapturingSms", "DevMailServer", "Letter", "Text"]


@dataclass(frozen=True, slots=True)
class Letter:
    """A letter as the local SMTP server received it."""

    to: str
    subject: str
    body: str
    received: datetime


@dataclass(frozen=True, slots=True)
class Text:
    """An SMS as the capturing sender received it."""

    to: str
    body: str
    received: datetime


class _Keeper:
    """The aiosmtpd handler: every accepted letter is parsed and kept, newest last."""

    def __init__(self) -> None:
        self.letters: list[Letter] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        parsed: Any = email.message_from_bytes(data, policy=email.policy.default)
        part = parsed.get_body(preferencelist=("plain",))
        body = part.get_content().replace("\r\n", "\n") if part is not None else ""
        now = datetime.now(timezone.utc)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.letters.append(Letter(rcpt, str(parsed["subject"] or ""), body, now))
        return "250 Message accepted for delivery"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class DevMailServer:
    """An aiosmtpd server on ``host`` (a free port unless one is given), run in its own thread."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port if port is not None else _free_port(host)
        self._keeper = _Keeper()
        self._controller = Controller(self._keeper, hostname=host, port=self.port)

    def start(self) -> None:
        """Start listening."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    @property
    def letters(self) -> list[Letter]:
        """Every letter received so far, oldest first."""
        with self._keeper.lock:
            return list(self._keeper.letters)


class CapturingSms:
    """An :class:`~kaspi_identity.delivery.SmsSender` for development: keeps every text."""

    def __init__(self) -> None:
        self._texts: list[Text] = []
        self._lock = threading.Lock()

    def send_sms(self, message: SmsMessage) -> None:
        """Keep the text (a real gateway would send it)."""
        with self._lock:
            self._texts.append(Text(message.to, message.text, datetime.now(timezone.utc)))

    @property
    def texts(self) -> list[Text]:
        """Every SMS sent so far, oldest first."""
        with self._lock:
            return list(self._texts)

    def __repr__(self) -> str:
        return f"<CapturingSms texts={len(self._texts)}>"
