"""Records passed to and returned by the storage protocols: frozen, slotted, self-checking."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ._checks import (
    EMAIL_MAX_LENGTH,
    FINGERPRINT_MAX_LENGTH,
    HASH_MAX_LENGTH,
    KEY_MAX_LENGTH,
    STAMP_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
    require_bytes,
    require_count,
    require_text,
    require_utc,
)

__all__ = [
    "Account",
    "CodeAttempt",
    "HistoryEntry",
    "NewAccount",
    "RateLimitResult",
]

# ASCII digits only: ``\d`` would also accept Arabic-Indic and other Unicode digits.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
_IIN = re.compile(r"[0-9]{12}")
#: Most names an account keeps for the personal-data rule, and the longest one.
MAX_NAMES = 8
NAME_MAX_LENGTH = 128


def _optional_text(value: object, name: str, max_length: int) -> str | None:
    if value is None:
        return None
    return require_text(value, name, max_length=max_length)


def _optional_phone(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"phone must be str or None, not {type(value).__name__}")
    if not _E164.fullmatch(value):
        raise ValueError("phone must be in E.164 form, such as +77011234567")
    return value


def _optional_iin(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"iin must be str or None, not {type(value).__name__}")
    if not _IIN.fullmatch(value):
        raise ValueError("iin must be 12 ASCII digits (an IIN or BIN)")
    return value


def _names(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise TypeError("names must be a tuple of str")
    names = tuple(value)
    if len(names) > MAX_NAMES:
        raise ValueError(f"names holds at most {MAX_NAMES} names")
    for name in names:
        require_text(name, "name", max_length=NAME_MAX_LENGTH)
    return names


def _language(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"language must be str, not {type(value).__name__}")
    if len(value) > 35 or not _LANGUAGE.fullmatch(value):
        raise ValueError("language must be a language tag such as 'kk', 'ru' or 'en'")
    return value


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be bool, not {type(value).__name__}")
    return value


def _optional_time(value: object, name: str) -> datetime | None:
    return None if value is None else require_utc(value, name)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAccount:
    """An account to create: what the caller knows before the store assigns an id.

    At least one login identifier (``username``, ``email``, ``phone`` or ``iin``) is
    required. ``phone`` must already be normalised to E.164 (``+77011234567``); ``iin`` is
    a Kazakh IIN/BIN of 12 digits (its check digit is the caller's to verify).
    ``password_hash`` is the encoded argon2 hash (never the password), or ``None`` for an
    account that has not set one yet. ``names`` are the user's names (at most 8, each at
    most 128 characters), kept for the personal-data rule of later password changes.
    ``must_change_password`` makes the first log-in ask for a new password (an account an
    operator created with a temporary one). ``password_hash``, ``iin`` and ``names`` are
    left out of the repr.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a field is empty, too long, malformed, or no identifier is given.

    """

    username: str | None = None
    email: str | None = None
    phone: str | None = None
    password_hash: str | None = field(default=None, repr=False)
    email_confirmed: bool = False
    language: str = "en"
    iin: str | None = field(default=None, repr=False)
    names: tuple[str, ...] = field(default=(), repr=False)
    must_change_password: bool = False

    def __post_init__(self) -> None:
        _optional_text(self.username, "username", USERNAME_MAX_LENGTH)
        _optional_text(self.email, "email", EMAIL_MAX_LENGTH)
        _optional_phone(self.phone)
        _optional_iin(self.iin)
        _optional_text(self.password_hash, "password_hash", HASH_MAX_LENGTH)
        _flag(self.email_confirmed, "email_confirmed")
        _flag(self.must_change_password, "must_change_password")
        _language(self.language)
        object.__setattr__(self, "names", _names(self.names))
        if self.username is None and self.email is None and self.phone is None and self.iin is None:
            raise ValueError("a new account needs a username, an email, a phone or an iin")


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A stored account, as an :class:`AccountStore` returns it.

    ``id`` is the opaque string the store assigned. ``failed_logins`` counts consecutive
    log-in attempts since the last success (an attempt is counted before it is verified,
    so ``last_failed_login_at`` is the time of the latest counted attempt). Every time is
    timezone-aware UTC (an aware value in another zone is converted). ``security_stamp``
    changes with every password or e-mail change and is never reused; links and sessions
    are bound to it. ``iin`` (12 digits) and ``names`` are as in :class:`NewAccount`.

    The password's age: ``password_changed_at`` is when the current password was set
    (``None``: no password, or a store that keeps no such time -- the age is then unknown
    and no maximum age applies); ``must_change_password`` asks for a new password at the
    next log-in; ``grace_logins_used`` counts the log-ins made since the password expired.
    A new password resets all three.
    ``password_hash``, ``security_stamp``, ``iin`` and ``names`` are left out of the repr
    (the last two are personal data: an IIN encodes the birth date).

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a field is empty, too long, malformed, naive or negative.

    """

    id: str
    username: str | None
    email: str | None
    phone: str | None
    password_hash: str | None = field(repr=False)
    email_confirmed: bool
    failed_logins: int
    last_failed_login_at: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    language: str = "en"
    security_stamp: str = field(repr=False)
    iin: str | None = field(default=None, repr=False)
    names: tuple[str, ...] = field(default=(), repr=False)
    password_changed_at: datetime | None = None
    must_change_password: bool = False
    grace_logins_used: int = 0

    def __post_init__(self) -> None:
        require_text(self.id, "id", max_length=KEY_MAX_LENGTH)
        require_text(self.security_stamp, "security_stamp", max_length=STAMP_MAX_LENGTH)
        _optional_text(self.username, "username", USERNAME_MAX_LENGTH)
        _optional_text(self.email, "email", EMAIL_MAX_LENGTH)
        _optional_phone(self.phone)
        _optional_iin(self.iin)
        object.__setattr__(self, "names", _names(self.names))
        _optional_text(self.password_hash, "password_hash", HASH_MAX_LENGTH)
        _flag(self.email_confirmed, "email_confirmed")
        _flag(self.must_change_password, "must_change_password")
        require_count(self.failed_logins, "failed_logins", minimum=0)
        require_count(self.grace_logins_used, "grace_logins_used", minimum=0)
        _language(self.language)
        for name in ("last_failed_login_at", "last_login_at", "password_changed_at"):
            object.__setattr__(self, name, _optional_time(getattr(self, name), name))
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One past password of an account, as a :class:`PasswordHistoryStore` keeps it.

    ``password_hash`` is the argon2 hash the account had; ``fingerprint`` is opaque bytes
    the similarity check computes (keyed with a server-side secret; may be ``b""``). Both
    are left out of the repr. ``created_at`` is when the password was set, in UTC.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a field is empty, too long or naive.

    """

    password_hash: str = field(repr=False)
    fingerprint: bytes = field(default=b"", repr=False)
    created_at: datetime

    def __post_init__(self) -> None:
        require_text(self.password_hash, "password_hash", max_length=HASH_MAX_LENGTH)
        require_bytes(
            self.fingerprint, "fingerprint", max_length=FINGERPRINT_MAX_LENGTH, allow_empty=True
        )
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))


class CodeAttempt(enum.Enum):
    """The outcome of :meth:`OneTimeCodeStore.attempt`."""

    #: No live code for the key (never sent, expired, used, or burned); nothing was counted.
    MISSING = "missing"
    #: The code was wrong; the attempt was counted.
    MISMATCH = "mismatch"
    #: The code was right; it is now deleted (single use) and the counter is reset.
    OK = "ok"
    #: Too many attempts: the code is now deleted, whether this one was right or not.
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The outcome of :meth:`RateLimiter.hit`.

    ``allowed`` says whether the hit is within the limit. ``retry_after`` is how long until
    a hit on the same key can be allowed again: zero when ``allowed``, otherwise the time
    left in the current window.
    """

    allowed: bool
    retry_after: timedelta
