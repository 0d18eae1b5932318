"""The two records a sender delivers: :class:`EmailMessage` and :class:`SmsMessage`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["EmailMessage", "SmsMessage"]

# One bare address: no display name, no list, no whitespace. A comma or a line break in a
# recipient would add recipients or headers; the sender passes the address on its own.
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+")
_MAX_ADDRESS = 254  # RFC 5321 path limit, less the angle brackets
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


def is_deliverable_address(text: str) -> bool:
    """Whether ``text`` is one bare e-mail address a letter can be sent to.

    The services check addresses with this at registration, so an address that is accepted
    there can always be written on a letter.
    """
    return (
        len(text) <= _MAX_ADDRESS
        and _ADDRESS.fullmatch(text) is not None
        and _HEADER_BREAKERS.search(text) is None
    )


def _require_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    return value


def _check_header(name: str, value: object) -> None:
    text = _require_str(name, value)
    if not text.strip():
        raise ValueError(f"{name} must not be empty")
    if _HEADER_BREAKERS.search(text):
        raise ValueError(f"{name} must not contain line breaks or control characters")
    _check_encodable(name, text)


def _check_body(name: str, value: object) -> None:
    text = _require_str(name, value)
    if not text.strip():
        raise ValueError(f"{name} must not be empty")
    if "\x00" in text:
        raise ValueError(f"{name} must not contain NUL")
    _check_encodable(name, text)


def _check_encodable(name: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} holds a lone surrogate and cannot be sent") from None


def _check_kind(value: object) -> None:
    if not _KIND.fullmatch(_require_str("kind", value)):
        raise ValueError("kind must be a short lower-case label like 'password_reset'")


def _check_language(value: object) -> None:
    if not _LANGUAGE.fullmatch(_require_str("language", value)):
        raise ValueError("language must be a language tag like 'kk' or 'ru-KZ'")


def _check_idempotency_key(value: object) -> None:
    if value is not None and not _IDEMPOTENCY_KEY.fullmatch(_require_str("idempotency_key", value)):
        raise ValueError("idempotency_key must be 16 to 64 letters, digits, '_' or '-'")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailMessage:
    """One letter to one address: a plain-text body and, optionally, an HTML alternative.

    The body may hold a secret link, so ``repr`` shows only ``to``, ``kind`` and
    ``language``. Build one with :func:`~kaspi_identity.delivery.render_email`, or directly.

    Attributes:
        to: one bare e-mail address (``"aliya@example.kz"``), at most 254 characters.
        subject: the subject line, one line of text (non-ASCII is fine).
        text: the plain-text body.
        html: an HTML alternative of the same letter, or ``None`` for plain text only.
        kind: what the letter is for (``"password_reset"``): for tests, logs and metrics.
        language: the language tag of the text (``"kk"``).
        idempotency_key: the same for every delivery attempt of one queued message (the
            outbox worker sets it to the message id), ``None`` for a letter sent once. The
            SMTP sender writes it into the Message-ID, so a duplicate after a crash is the
            same letter to the receiving side; the test :class:`Outbox` records it once.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: ``to`` is not one bare address, ``to`` or ``subject`` holds a line break
            or another control character (header injection), a text is empty, holds NUL or
            a lone surrogate, ``kind`` is not a short label or ``language`` not a language
            tag. The message never repeats the body.

    """

    to: str
    subject: str = field(repr=False)
    text: str = field(repr=False)
    html: str | None = field(default=None, repr=False)
    kind: str
    language: str
    idempotency_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_header("to", self.to)
        if len(self.to) > _MAX_ADDRESS or not _ADDRESS.fullmatch(self.to):
            raise ValueError("to must be one bare e-mail address like 'name@example.kz'")
        _check_header("subject", self.subject)
        _check_body("text", self.text)
        if self.html is not None:
            _check_body("html", self.html)
        _check_kind(self.kind)
        _check_language(self.language)
        _check_idempotency_key(self.idempotency_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsMessage:
    """One SMS to one mobile number.

    The text may hold a secret code, so ``repr`` shows only ``to``, ``kind`` and
    ``language``. Build one with :func:`~kaspi_identity.delivery.render_sms`, or directly.

    Attributes:
        to: the number in E.164 form (``"+77011234567"``); normalise user input with
            :mod:`kaspi_identity.phone` first.
        text: the message text.
        kind: what the SMS is for (``"reset_code"``).
        language: the language tag of the text (``"ru"``).
        idempotency_key: as on :class:`EmailMessage`; a gateway wrapper passes it to an API
            that deduplicates (most SMS gateways take a client message id).

    Raises:
        TypeError: a field has the wrong type.
        ValueError: ``to`` is not E.164, the text is empty or holds NUL or a lone surrogate,
            ``kind`` is not a short label or ``language`` not a language tag. The message
            never repeats the text.

    """

    to: str
    text: str = field(repr=False)
    kind: str
    language: str
    idempotency_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _E164.fullmatch(_require_str("to", self.to)):
            raise ValueError("to must be a phone number in E.164 form like '+77011234567'")
        _check_body("text", self.text)
        _check_kind(self.kind)
        _check_language(self.language)
        _check_idempotency_key(self.idempotency_key)
