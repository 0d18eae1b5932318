"""Argument checks shared by the storage records, the adapters and host implementations."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

__all__ = [
    "CODE_HASH_MAX_LENGTH",
    "EMAIL_MAX_LENGTH",
    "EPOCH",
    "FINGERPRINT_MAX_LENGTH",
    "HASH_MAX_LENGTH",
    "KEY_MAX_LENGTH",
    "LEDGER_GRACE",
    "STAMP_MAX_LENGTH",
    "TOKEN_ID_MAX_LENGTH",
    "USERNAME_MAX_LENGTH",
    "check_account_id",
    "check_expected_hash",
    "check_login",
    "from_microseconds",
    "is_storable_text",
    "new_security_stamp",
    "require_bytes",
    "require_count",
    "require_duration",
    "require_key",
    "require_text",
    "require_utc",
    "to_microseconds",
    "utc_microseconds",
]

#: The instant every stored time is counted from (integer microseconds since).
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Longest key accepted by the code store, the rate limiter and the history store.
KEY_MAX_LENGTH = 256
#: Longest token id accepted by the token ledger.
TOKEN_ID_MAX_LENGTH = 128
USERNAME_MAX_LENGTH = 254
EMAIL_MAX_LENGTH = 254
HASH_MAX_LENGTH = 1024
FINGERPRINT_MAX_LENGTH = 65536
CODE_HASH_MAX_LENGTH = 1024
#: Longest security stamp an account record accepts.
STAMP_MAX_LENGTH = 64
#: How long past its expiry the bundled ledgers keep a consumed token id (clock skew).
LEDGER_GRACE = timedelta(minutes=5)
_LOGIN_KINDS = ("username", "email", "phone", "iin")

_MICROSECOND = timedelta(microseconds=1)


def new_security_stamp() -> str:
    """Return a fresh security stamp: 128 random bits from :mod:`secrets`, 22 characters.

    Random rather than a counter, so a stamp is never reused even when a host deletes an
    account and a new one gets the same id.
    """
    return secrets.token_urlsafe(16)


def is_storable_text(value: str) -> bool:
    """Return whether ``value`` can be stored as UTF-8 text: no NUL, no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_utc(value: object, name: str = "now") -> datetime:
    """Return ``value`` converted to UTC, or raise if it is not a timezone-aware datetime.

    Every time a store receives passes through here, so a naive datetime (whose meaning
    depends on the server's local zone) never reaches a stored row.

    Raises:
        TypeError: ``value`` is not a :class:`~datetime.datetime`.
        ValueError: ``value`` is naive, or cannot be expressed in UTC.

    """
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), not naive")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{name} is out of the representable range in UTC") from None


def require_key(value: object, name: str = "key", *, max_length: int = KEY_MAX_LENGTH) -> str:
    """Return ``value`` if it is a usable opaque key: a non-empty ``str`` of at most ``max_length``.

    Raises:
        TypeError: ``value`` is not a ``str``.
        ValueError: ``value`` is empty, too long, or holds NUL or a lone surrogate.

    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{name} must be at most {max_length} characters")
    if not is_storable_text(value):
        raise ValueError(f"{name} must not contain NUL or lone surrogates")
    return value


def require_text(value: object, name: str, *, max_length: int) -> str:
    """Return ``value`` if it is storable text of 1 to ``max_length`` characters.

    Raises:
        TypeError: ``value`` is not a ``str``.
        ValueError: ``value`` is empty, too long, or holds NUL or a lone surrogate.

    """
    return require_key(value, name, max_length=max_length)


def require_bytes(value: object, name: str, *, max_length: int, allow_empty: bool) -> bytes:
    """Return ``value`` if it is ``bytes`` of an acceptable length.

    Raises:
        TypeError: ``value`` is not ``bytes`` (a ``bytearray`` or ``str`` is refused too).
        ValueError: ``value`` is empty when it must not be, or longer than ``max_length``.

    """
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{name} must be at most {max_length} bytes")
    return value


def require_count(value: object, name: str, *, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an ``int``.
        ValueError: ``value`` is below ``minimum``.

    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def require_duration(value: object, name: str) -> timedelta:
    """Return ``value`` if it is a positive :class:`~datetime.timedelta`.

    Raises:
        TypeError: ``value`` is not a ``timedelta``.
        ValueError: ``value`` is zero or negative.

    """
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a timedelta, not {type(value).__name__}")
    if value <= timedelta(0):
        raise ValueError(f"{name} must be positive")
    return value


def to_microseconds(value: datetime) -> int:
    """Return an aware ``value`` as integer microseconds since 1970-01-01T00:00:00Z."""
    return (value - EPOCH) // _MICROSECOND


def utc_microseconds(value: object, name: str = "now") -> int:
    """Return ``value``, checked by :func:`require_utc`, as integer microseconds since the epoch.

    Raises:
        TypeError: ``value`` is not a :class:`~datetime.datetime`.
        ValueError: ``value`` is naive, or cannot be expressed in UTC.

    """
    return to_microseconds(require_utc(value, name))


def from_microseconds(value: int) -> datetime:
    """Return the UTC datetime ``value`` microseconds after 1970-01-01T00:00:00Z.

    Raises:
        OverflowError: ``value`` lies outside the years 1 to 9999.

    """
    return EPOCH + timedelta(microseconds=value)


def check_account_id(account_id: object) -> str | None:
    """Return ``account_id`` if it could name a stored account, ``None`` if it cannot.

    Raises:
        TypeError: ``account_id`` is not a ``str``.

    """
    if not isinstance(account_id, str):
        raise TypeError(f"account_id must be str, not {type(account_id).__name__}")
    if not account_id or len(account_id) > KEY_MAX_LENGTH or not is_storable_text(account_id):
        return None
    return account_id


def check_login(kind: object, value: object) -> str | None:
    """Return the lookup key for ``value`` (user names and e-mails casefolded).

    Phones and IINs are compared exactly.

    ``None`` means no account can have this value.

    Raises:
        ValueError: ``kind`` is not a login kind.
        TypeError: ``value`` is not a ``str``.

    """
    if kind not in _LOGIN_KINDS:
        raise ValueError("kind must be 'username', 'email', 'phone' or 'iin'")
    if not isinstance(value, str):
        raise TypeError(f"value must be str, not {type(value).__name__}")
    if (
        not value
        or len(value) > max(USERNAME_MAX_LENGTH, EMAIL_MAX_LENGTH)
        or not is_storable_text(value)
    ):
        return None
    return value if kind in ("phone", "iin") else value.casefold()


def check_expected_hash(expected: object, new: object) -> bool:
    """Check the arguments of a compare-and-set; return whether ``expected`` can match.

    Raises:
        TypeError: ``expected`` is not ``str`` or ``None``, or ``new`` is not ``str``.
        ValueError: ``new`` is empty, too long or holds NUL.

    """
    require_text(new, "new", max_length=HASH_MAX_LENGTH)
    if expected is None:
        return True
    if not isinstance(expected, str):
        raise TypeError(f"expected must be str or None, not {type(expected).__name__}")
    return is_storable_text(expected)
