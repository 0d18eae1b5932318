"""The in-memory outbox for tests, and helpers that read a link or a code back out."""

from __future__ import annotations

import re
import threading
from collections import deque

from kaspi_identity._errors import DeliveryError

from ._messages import EmailMessage, SmsMessage

__all__ = ["Outbox", "extract_code", "extract_link"]

_LINK = re.compile(r"https://[^\s<>\"'«»]+")
_HTTP_LINK = re.compile(r"http://[^\s<>\"'«»]+")
_LINK_TRAILER = ".,;:!?)]}"
_CODE = re.compile(r"(?<![0-9])[0-9]{6,10}(?![0-9])")


class Outbox:
    """An in-memory :class:`EmailSender` and :class:`SmsSender` for tests (never production).

    Every message "sent" is kept, in order, so a test can look at what a flow sent, then
    follow the link with :func:`extract_link` or type the code read by :func:`extract_code`::

        outbox = Outbox()
        flow_under_test(email_sender=outbox, sms_sender=outbox)
        link = extract_link(outbox.last_email(to="aliya@example.kz"))
        code = extract_code(outbox.last_sms(to="+77011234567"))

    To test what a flow does when the mail server or the SMS gateway is down, make the next
    sends fail with :meth:`fail_next`, or every send with :attr:`failing`. A failed send is
    not recorded; :attr:`failures` counts them. A message whose ``idempotency_key`` was
    recorded before (a worker re-sending after a crash) is not recorded again; it is
    counted in :attr:`duplicates`, as a deduplicating gateway would.

    Not the durable outbox: this class only captures what is sent. The queue letters wait
    in is an :class:`~kaspi_identity.storage.OutboxStore`, emptied by an
    :class:`~kaspi_identity.services.OutboxWorker`.

    Thread-safe: many threads may send, read and clear at once.
    """

    __slots__ = (
        "_duplicates",
        "_emails",
        "_failing",
        "_failures",
        "_keys",
        "_lock",
        "_pending_failures",
        "_sms",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emails: list[EmailMessage] = []
        self._sms: list[SmsMessage] = []
        self._pending_failures: deque[Exception | None] = deque()
        self._failing = False
        self._failures = 0
        self._keys: set[str] = set()
        self._duplicates = 0

    def send_email(self, message: EmailMessage) -> None:
        """Record ``message``, or raise the failure set up by :meth:`fail_next`/:attr:`failing`.

        Raises:
            TypeError: ``message`` is not an :class:`EmailMessage`.
            DeliveryError: a failure was asked for (or the exception given to
                :meth:`fail_next`).

        """
        if not isinstance(message, EmailMessage):
            raise TypeError(f"message must be an EmailMessage, not {type(message).__name__}")
        with self._lock:
            self._maybe_fail()
            if self._first(message.idempotency_key):
                self._emails.append(message)

    def send_sms(self, message: SmsMessage) -> None:
        """Record ``message``, or raise the failure set up by :meth:`fail_next`/:attr:`failing`.

        Raises:
            TypeError: ``message`` is not an :class:`SmsMessage`.
            DeliveryError: a failure was asked for (or the exception given to
                :meth:`fail_next`).

        """
        if not isinstance(message, SmsMessage):
            raise TypeError(f"message must be an SmsMessage, not {type(message).__name__}")
        with self._lock:
            self._maybe_fail()
            if self._first(message.idempotency_key):
                self._sms.append(message)

    def _first(self, key: str | None) -> bool:
        """Whether a message with ``key`` is new (called with the lock held)."""
        if key is None:
            return True
        if key in self._keys:
            self._duplicates += 1
            return False
        self._keys.add(key)
        return True

    def _maybe_fail(self) -> None:
        """Raise the next simulated failure, if any (called with the lock held)."""
        if self._pending_failures:
            exc = self._pending_failures.popleft()
        elif self._failing:
            exc = None
        else:
            return
        self._failures += 1
        if exc is None:
            exc = DeliveryError("simulated delivery failure (Outbox)")
        raise exc

    def fail_next(self, n: int = 1, *, exc: Exception | None = None) -> None:
        """Make the next ``n`` sends (e-mail or SMS, in any order) fail.

        Each of them raises ``exc``, or a fresh :class:`DeliveryError` when ``exc`` is
        ``None``. Calls add up: ``fail_next(2)`` twice makes four sends fail.

        Raises:
            TypeError: ``n`` is not an ``int`` or ``exc`` is not an exception.
            ValueError: ``n`` is negative.

        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if exc is not None and not isinstance(exc, Exception):
            raise TypeError(f"exc must be an exception instance, not {type(exc).__name__}")
        with self._lock:
            self._pending_failures.extend([exc] * n)

    @property
    def failing(self) -> bool:
        """While ``True``, every send raises :class:`DeliveryError` (the gateway is down)."""
        with self._lock:
            return self._failing

    @failing.setter
    def failing(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"failing must be a bool, not {type(value).__name__}")
        with self._lock:
            self._failing = value

    @property
    def failures(self) -> int:
        """How many sends failed on purpose so far."""
        with self._lock:
            return self._failures

    @property
    def duplicates(self) -> int:
        """How many sends repeated an idempotency key already recorded (and were dropped)."""
        with self._lock:
            return self._duplicates

    @property
    def emails(self) -> list[EmailMessage]:
        """Every letter sent, oldest first (a copy: changing it changes nothing here)."""
        with self._lock:
            return list(self._emails)

    @property
    def sms(self) -> list[SmsMessage]:
        """Every SMS sent, oldest first (a copy: changing it changes nothing here)."""
        with self._lock:
            return list(self._sms)

    def last_email(self, to: str | None = None) -> EmailMessage:
        """Return the newest letter, or the newest letter to the address ``to``.

        Addresses are compared exactly, as stored on the message.

        Raises:
            LookupError: no such letter was sent.

        """
        with self._lock:
            for message in reversed(self._emails):
                if to is None or message.to == to:
                    return message
        raise LookupError("no e-mail in the outbox" + ("" if to is None else f" to {to!r}"))

    def last_sms(self, to: str | None = None) -> SmsMessage:
        """Return the newest SMS, or the newest SMS to the E.164 number ``to``.

        Raises:
            LookupError: no such SMS was sent.

        """
        with self._lock:
            for message in reversed(self._sms):
                if to is None or message.to == to:
                    return message
        raise LookupError("no SMS in the outbox" + ("" if to is None else f" to {to!r}"))

    def clear(self) -> None:
        """Forget every recorded letter and SMS (failures and keys seen are kept)."""
        with self._lock:
            self._emails.clear()
            self._sms.clear()

    def __repr__(self) -> str:
        with self._lock:
            return f"<Outbox: {len(self._emails)} e-mails, {len(self._sms)} SMS>"


def extract_link(message: EmailMessage) -> str:
    """Return the first ``https://`` link in the plain-text body of a letter.

    Trailing punctuation that ends the sentence (``.``, ``,``, ``)``, ...) is not part of the
    link. For tests and the demo: it is how a test "clicks" the link in a letter.

    Raises:
        TypeError: ``message`` is not an :class:`EmailMessage`.
        ValueError: the letter holds no link (the message does not quote it). With no
            ``https://`` link, the first ``http://`` one is returned: only a development
            service (``allow_insecure_http=True``) writes those.

    """
    if not isinstance(message, EmailMessage):
        raise TypeError(f"message must be an EmailMessage, not {type(message).__name__}")
    match = _LINK.search(message.text) or _HTTP_LINK.search(message.text)
    if match is None:
        raise ValueError(f"the {message.kind!r} letter holds no link")
    return match.group().rstrip(_LINK_TRAILER)


def extract_code(message: SmsMessage) -> str:
    """Return the code in an SMS: the first run of 6 to 10 digits.

    For tests and the demo: it is how a test "reads" the SMS and types the code.

    Raises:
        TypeError: ``message`` is not an :class:`SmsMessage`.
        ValueError: the SMS holds no such code (the message does not quote the text).

    """
    if not isinstance(message, SmsMessage):
        raise TypeError(f"message must be an SmsMessage, not {type(message).__name__}")
    match = _CODE.search(message.text)
    if match is None:
        raise ValueError(f"the {message.kind!r} SMS holds no code of 6 to 10 digits")
    return match.group()
