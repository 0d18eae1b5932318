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
    "Contact",
    "HistoryEntry",
    "NewAccount",
    "RateLimitResult",
]

# ASCII digits only: ``\d`` would also accept Arabic-Indic and other Unicode digits.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
_IIN = re.compile(r"[0-9]{12}")
# An IANA zone name ("Asia/Almaty", "UTC", "Etc/GMT-5"); whether this machine knows it is the
# service's question (a stored zone must stay readable where tzdata is older).
_TIME_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}")
TIME_ZONE_MAX_LENGTH = 64
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


def _optional_time_zone(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"time_zone must be str or None, not {type(value).__name__}")
    if len(value) > TIME_ZONE_MAX_LENGTH or not _TIME_ZONE.fullmatch(value):
        raise ValueError("time_zone must be an IANA time zone name such as 'Asia/Almaty'")
    return value


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
    operator created with a temporary one). ``phone_verified`` says the phone was proven
    by a code sent to it (a host importing accounts whose phones it verified itself; the
    services' own sign-up leaves it ``False``); only a verified phone receives reset codes.
    ``time_zone`` is the IANA zone times in the account's letters are written in (``None``:
    the site's). ``password_hash``, ``iin`` and ``names`` are left out of the repr.

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
    phone_verified: bool = False
    time_zone: str | None = None

    def __post_init__(self) -> None:
        _optional_text(self.username, "username", USERNAME_MAX_LENGTH)
        _optional_text(self.email, "email", EMAIL_MAX_LENGTH)
        _optional_phone(self.phone)
        _optional_iin(self.iin)
        _optional_text(self.password_hash, "password_hash", HASH_MAX_LENGTH)
        _flag(self.email_confirmed, "email_confirmed")
        _flag(self.must_change_password, "must_change_password")
        _flag(self.phone_verified, "phone_verified")
        if self.phone_verified and self.phone is None:
            raise ValueError("phone_verified needs a phone")
        _optional_time_zone(self.time_zone)
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

    The contact details (see :class:`Contact`, :attr:`contact`): ``phone_verified`` says
    the phone was proven by a code sent to it; ``pending_email`` and ``pending_phone`` are
    changes asked for and not yet confirmed (they are nobody's login, and not unique);
    ``previous_email`` is the address a confirmed change replaced, kept with
    ``email_changed_at`` while the change may still be undone; ``time_zone`` is the IANA
    zone of the account's letters (``None``: the site's).
    ``password_hash``, ``security_stamp``, ``iin`` and ``names`` are left out of the repr
    (the last two are personal data: an IIN encodes the birth date), and so are the
    pending and previous addresses and phone.

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
    phone_verified: bool = False
    pending_email: str | None = field(default=None, repr=False)
    pending_phone: str | None = field(default=None, repr=False)
    previous_email: str | None = field(default=None, repr=False)
    email_changed_at: datetime | None = None
    time_zone: str | None = None

    def __post_init__(self) -> None:
        require_text(self.id, "id", max_length=KEY_MAX_LENGTH)
        require_text(self.security_stamp, "security_stamp", max_length=STAMP_MAX_LENGTH)
        _optional_text(self.username, "username", USERNAME_MAX_LENGTH)
        _optional_iin(self.iin)
        object.__setattr__(self, "names", _names(self.names))
        _optional_text(self.password_hash, "password_hash", HASH_MAX_LENGTH)
        _flag(self.must_change_password, "must_change_password")
        require_count(self.failed_logins, "failed_logins", minimum=0)
        require_count(self.grace_logins_used, "grace_logins_used", minimum=0)
        _language(self.language)
        for name in ("last_failed_login_at", "last_login_at", "password_changed_at"):
            object.__setattr__(self, name, _optional_time(getattr(self, name), name))
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))
        _check_contact(self)  # the e-mail, phone and their flags, once

    @property
    def contact(self) -> Contact:
        """The account's contact details, to change with :meth:`AccountStore.update_contact`."""
        return Contact(
            email=self.email,
            email_confirmed=self.email_confirmed,
            phone=self.phone,
            phone_verified=self.phone_verified,
            pending_email=self.pending_email,
            pending_phone=self.pending_phone,
            previous_email=self.previous_email,
            email_changed_at=self.email_changed_at,
            time_zone=self.time_zone,
        )


def _check_contact(record: Account | Contact) -> None:
    """Check the contact fields ``record`` shares with :class:`Contact` (times made UTC)."""
    _optional_text(record.email, "email", EMAIL_MAX_LENGTH)
    _optional_phone(record.phone)
    _flag(record.email_confirmed, "email_confirmed")
    _flag(record.phone_verified, "phone_verified")
    if record.phone_verified and record.phone is None:
        raise ValueError("phone_verified needs a phone")
    _optional_text(record.pending_email, "pending_email", EMAIL_MAX_LENGTH)
    if record.pending_phone is not None:
        try:
            _optional_phone(record.pending_phone)
        except (TypeError, ValueError) as exc:
            raise type(exc)(str(exc).replace("phone", "pending_phone", 1)) from None
    _optional_text(record.previous_email, "previous_email", EMAIL_MAX_LENGTH)
    changed = _optional_time(record.email_changed_at, "email_changed_at")
    object.__setattr__(record, "email_changed_at", changed)
    if (record.previous_email is None) != (changed is None):
        raise ValueError("previous_email and email_changed_at go together")
    _optional_time_zone(record.time_zone)


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """Where and when an account is reached: what :meth:`AccountStore.update_contact` writes.

    ``email`` and ``phone`` are the account's logins (unique; ``phone`` in E.164), with
    whether each is proven: ``email_confirmed`` by a link, ``phone_verified`` by a code
    (a verified phone needs a phone). ``pending_email`` / ``pending_phone`` are a change
    asked for and awaiting its proof; ``previous_email`` and ``email_changed_at`` (both or
    neither) keep the address a confirmed change replaced while it may be undone;
    ``time_zone`` is the IANA zone of the account's letters (``None``: the site's). A flow
    reads :attr:`Account.contact` and writes a :func:`dataclasses.replace` of it. The
    addresses and phones are personal data: only ``email_confirmed``, ``phone_verified``
    and ``time_zone`` are in the repr.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a field is empty, too long, malformed, naive, or the pairs disagree.

    """

    email: str | None = field(repr=False)
    email_confirmed: bool
    phone: str | None = field(repr=False)
    phone_verified: bool
    pending_email: str | None = field(default=None, repr=False)
    pending_phone: str | None = field(default=None, repr=False)
    previous_email: str | None = field(default=None, repr=False)
    email_changed_at: datetime | None = field(default=None, repr=False)
    time_zone: str | None = None

    def __post_init__(self) -> None:
        _check_contact(self)


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
