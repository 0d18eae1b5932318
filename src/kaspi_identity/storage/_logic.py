"""Argument checks and state transitions of the store operations, shared by the adapters.

Every adapter method starts with the same ``check_*`` function, so all of them refuse the
same arguments with the same errors and messages, and get the same normalised values back.

Each adapter then loads a key's state, applies one of the pure transitions below and writes
the result back inside one atomic step (a lock, ``BEGIN IMMEDIATE``, ``SELECT ... FOR
UPDATE``), so every adapter answers exactly as the in-memory reference does. Times are
integer microseconds since the Unix epoch, as the SQL adapters store them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ._checks import (
    CODE_HASH_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    STAMP_MAX_LENGTH,
    TOKEN_ID_MAX_LENGTH,
    check_account_id,
    check_expected_hash,
    is_storable_text,
    new_security_stamp,
    require_bytes,
    require_count,
    require_duration,
    require_key,
    require_text,
    require_utc,
    utc_microseconds,
)
from ._records import Account, CodeAttempt, Contact, HistoryEntry, NewAccount, RateLimitResult

__all__ = [
    "MAX_CANDIDATES",
    "CodeState",
    "WindowState",
    "attempt_code",
    "check_append",
    "check_attempt",
    "check_consume",
    "check_create",
    "check_create_with_history",
    "check_entry",
    "check_hit",
    "check_keep",
    "check_mark_email",
    "check_put",
    "check_recent",
    "check_replace_password",
    "check_reserve",
    "check_rotate_stamp",
    "check_set_email",
    "check_update_contact",
    "code_is_dead",
    "contact_keys",
    "fresh_account",
    "hit_window",
    "login_keys",
    "matches_any",
    "put_code",
    "window_is_dead",
]

_US = timedelta(microseconds=1)

#: Converts ``now`` to microseconds: :func:`utc_microseconds`, or an adapter's stricter one.
ToMicroseconds = Callable[[object, str], int]


# -- argument checks -------------------------------------------------------------------


def check_create(new: object, now: object) -> datetime:
    """Check the arguments of ``AccountStore.create``; return ``now`` in UTC.

    Raises:
        TypeError: ``new`` is not a :class:`NewAccount`, or ``now`` not a datetime.
        ValueError: ``now`` is naive.

    """
    if not isinstance(new, NewAccount):
        raise TypeError(f"new must be a NewAccount, not {type(new).__name__}")
    return require_utc(now)


def fresh_account(new: NewAccount, account_id: str, now: datetime) -> Account:
    """Return the account ``create`` stores for ``new``: no failures, no logins yet."""
    return Account(
        id=account_id,
        username=new.username,
        email=new.email,
        phone=new.phone,
        password_hash=new.password_hash,
        email_confirmed=new.email_confirmed,
        failed_logins=0,
        last_failed_login_at=None,
        last_login_at=None,
        created_at=now,
        language=new.language,
        security_stamp=new_security_stamp(),
        iin=new.iin,
        names=new.names,
        password_changed_at=None if new.password_hash is None else now,
        must_change_password=new.must_change_password,
        phone_verified=new.phone_verified,
        time_zone=new.time_zone,
    )


def check_update_contact(
    account_id: object, expected_stamp: object, contact: object, *flags: tuple[str, object]
) -> str | None:
    """Check the arguments of ``AccountStore.update_contact``.

    Returns the account id when it could name a stored account, ``None`` when it cannot
    (the update then simply finds nothing). ``flags`` are ``(name, value)`` pairs that must
    be ``bool``.

    Raises:
        TypeError: ``account_id`` or ``expected_stamp`` is not a ``str``, ``contact`` not a
            :class:`Contact`, or a flag not a ``bool``.

    """
    if not isinstance(expected_stamp, str):
        raise TypeError(f"expected_stamp must be str, not {type(expected_stamp).__name__}")
    if not isinstance(contact, Contact):
        raise TypeError(f"contact must be a Contact, not {type(contact).__name__}")
    for name, value in flags:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be bool, not {type(value).__name__}")
    key = check_account_id(account_id)
    if (
        key is None
        or not expected_stamp
        or len(expected_stamp) > STAMP_MAX_LENGTH
        or not is_storable_text(expected_stamp)  # NUL, a lone surrogate: no SQL driver binds it
    ):
        return None
    return key


def contact_keys(contact: Contact) -> dict[str, str | None]:
    """The unique keys ``contact`` gives its account: the e-mail casefolded, the phone as is."""
    return {
        "email": None if contact.email is None else contact.email.casefold(),
        "phone": contact.phone,
    }


def login_keys(new: NewAccount | Account) -> dict[str, str | None]:
    """Return the unique keys of ``new`` by kind, in the order duplicates are checked.

    User name and e-mail casefolded, then the phone and the IIN as given.
    """
    return {
        "username": None if new.username is None else new.username.casefold(),
        "email": None if new.email is None else new.email.casefold(),
        "phone": new.phone,
        "iin": new.iin,
    }


def check_set_email(email: object, confirmed: object) -> None:
    """Check the arguments of ``AccountStore.set_email`` (the account id is checked apart).

    Raises:
        TypeError: ``email`` is not a ``str`` or ``confirmed`` not a ``bool``.
        ValueError: ``email`` is empty, too long, or holds NUL or a lone surrogate.

    """
    require_text(email, "email", max_length=EMAIL_MAX_LENGTH)
    if not isinstance(confirmed, bool):
        raise TypeError(f"confirmed must be bool, not {type(confirmed).__name__}")


def check_mark_email(email: object, now: object) -> tuple[str | None, datetime]:
    """Check the arguments of ``AccountStore.mark_email_confirmed`` (the id is checked apart).

    Returns the casefolded lookup key of ``email`` -- ``None`` when no account can have it
    (empty, too long, NUL or a lone surrogate: the mark simply finds nothing) -- and
    ``now`` in UTC.

    Raises:
        TypeError: ``email`` is not a ``str`` or ``now`` not a datetime.
        ValueError: ``now`` is naive.

    """
    if not isinstance(email, str):
        raise TypeError(f"email must be str, not {type(email).__name__}")
    at = require_utc(now)
    if not email or len(email) > EMAIL_MAX_LENGTH or not is_storable_text(email):
        return None, at
    return email.casefold(), at


def check_rotate_stamp(rotate_stamp: object) -> bool:
    """Check ``rotate_stamp`` of ``AccountStore.set_password_hash``: a ``bool``.

    Raises:
        TypeError: ``rotate_stamp`` is not a ``bool``.

    """
    if not isinstance(rotate_stamp, bool):
        raise TypeError(f"rotate_stamp must be bool, not {type(rotate_stamp).__name__}")
    return rotate_stamp


def check_changed_at(now: object) -> datetime | None:
    """Check ``now`` of ``set_password_hash``/``replace_password``: ``None`` or aware; in UTC.

    Raises:
        TypeError: ``now`` is neither ``None`` nor a datetime.
        ValueError: ``now`` is naive.

    """
    return None if now is None else require_utc(now)


def check_must_change(account_id: object, required: object) -> None:
    """Check the arguments of ``AccountStore.set_must_change_password``.

    Raises:
        TypeError: ``account_id`` is not a ``str`` or ``required`` not a ``bool``.

    """
    if not isinstance(account_id, str):
        raise TypeError(f"account_id must be str, not {type(account_id).__name__}")
    if not isinstance(required, bool):
        raise TypeError(f"required must be bool, not {type(required).__name__}")


def check_grace(account_id: object, expected: object) -> None:
    """Check the arguments of ``AccountStore.use_grace_login``.

    Raises:
        TypeError: ``account_id`` is not a ``str`` or ``expected`` not an ``int``.
        ValueError: ``expected`` is negative.

    """
    if not isinstance(account_id, str):
        raise TypeError(f"account_id must be str, not {type(account_id).__name__}")
    require_count(expected, "expected", minimum=0)


def check_entry(entry: object) -> HistoryEntry:
    """Return ``entry`` if it is a :class:`HistoryEntry`.

    Raises:
        TypeError: ``entry`` is anything else.

    """
    if not isinstance(entry, HistoryEntry):
        raise TypeError(f"entry must be a HistoryEntry, not {type(entry).__name__}")
    return entry


def check_keep(keep: object) -> int:
    """Return ``keep``, how many history entries an append keeps, if it is an int of at least 1.

    Raises:
        TypeError: ``keep`` is not an ``int`` (or is a ``bool``).
        ValueError: ``keep`` is below 1.

    """
    return require_count(keep, "keep", minimum=1)


def check_append(account_id: object, entry: object, keep: object) -> None:
    """Check the arguments of ``PasswordHistoryStore.append``.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``account_id`` is not a usable key, or ``keep`` is below 1.

    """
    require_key(account_id, "account_id")
    check_entry(entry)
    check_keep(keep)


def check_create_with_history(new: object, now: object, entry: object, keep: object) -> datetime:
    """Check the arguments of ``AccountWithHistory.create_with_history``; return ``now`` in UTC.

    The entry ``entry(account)`` returns is checked with :func:`check_entry` once it is
    built, inside the transaction.

    Raises:
        TypeError: ``new`` is not a :class:`NewAccount`, ``now`` not a datetime, ``entry``
            neither callable nor ``None``, ``keep`` not an ``int``.
        ValueError: ``now`` is naive, or ``keep`` is below 1.

    """
    at = check_create(new, now)
    if entry is not None and not callable(entry):
        kind = type(entry).__name__
        raise TypeError(f"entry must be a callable returning a HistoryEntry, or None, not {kind}")
    check_keep(keep)
    return at


def check_replace_password(
    account_id: object, expected: object, new: object, entry: object, keep: object
) -> str | None:
    """Check the arguments of ``AccountWithHistory.replace_password``.

    Returns the account id, or ``None`` when the compare-and-set cannot win (an id no
    account can have, an ``expected`` no hash can equal): the call then writes nothing and
    answers ``False``.

    Raises:
        TypeError: ``account_id`` or ``new`` is not a ``str``, ``expected`` neither ``str``
            nor ``None``, ``entry`` neither a :class:`HistoryEntry` nor ``None``, ``keep``
            not an ``int``.
        ValueError: ``new`` is empty, too long or holds NUL, or ``keep`` is below 1.

    """
    can_match = check_expected_hash(expected, new)
    if entry is not None:
        check_entry(entry)
    check_keep(keep)
    key = check_account_id(account_id)
    return key if can_match else None


def check_recent(account_id: object, limit: object) -> None:
    """Check the arguments of ``PasswordHistoryStore.recent``.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``account_id`` is not a usable key, or ``limit`` is below 1.

    """
    require_key(account_id, "account_id")
    require_count(limit, "limit", minimum=1)


def check_consume(token_id: object, expires_at: object, now: object) -> tuple[int, int]:
    """Check the arguments of ``TokenLedger.consume``; return both times in microseconds.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``token_id`` is not a usable id, or a time is naive.

    """
    require_key(token_id, "token_id", max_length=TOKEN_ID_MAX_LENGTH)
    return utc_microseconds(expires_at, "expires_at"), utc_microseconds(now)


def check_put(
    key: object,
    code_hash: object,
    *,
    expires_at: object,
    now: object,
    failure_window: object,
    now_microseconds: ToMicroseconds = utc_microseconds,
) -> tuple[int, int, int]:
    """Check the arguments of ``OneTimeCodeStore.put``.

    Returns ``(expires_at, now, failure_window)`` in integer microseconds.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``key`` or ``code_hash`` is empty or too long, a time is naive (or
            refused by ``now_microseconds``), ``failure_window`` is not positive, or
            ``expires_at`` is not after ``now``.

    """
    require_key(key)
    require_bytes(code_hash, "code_hash", max_length=CODE_HASH_MAX_LENGTH, allow_empty=False)
    expires = utc_microseconds(expires_at, "expires_at")
    at = now_microseconds(now, "now")
    window = require_duration(failure_window, "failure_window") // _US
    if expires <= at:
        raise ValueError("expires_at must be after now")
    return expires, at, window


#: Most candidate hashes one code attempt may bring (one per configured key).
MAX_CANDIDATES = 8


def check_attempt(
    key: object,
    candidates: object,
    *,
    now: object,
    max_attempts: object,
    now_microseconds: ToMicroseconds = utc_microseconds,
) -> tuple[int, tuple[bytes, ...]]:
    """Check the arguments of ``OneTimeCodeStore.attempt``.

    Returns ``now`` in microseconds and the candidates as a tuple.

    Raises:
        TypeError: an argument has the wrong type (``candidates`` a bare ``bytes`` too).
        ValueError: ``key`` or a candidate is empty or too long, there are no candidates
            or more than :data:`MAX_CANDIDATES`, ``now`` is naive (or refused by
            ``now_microseconds``), or ``max_attempts`` is below 1.

    """
    require_key(key)
    if isinstance(candidates, bytes | bytearray | memoryview | str) or not isinstance(
        candidates, Sequence
    ):
        raise TypeError("candidates must be a sequence of bytes, one hash per key")
    found = tuple(candidates)
    if not 1 <= len(found) <= MAX_CANDIDATES:
        raise ValueError(f"candidates must hold 1 to {MAX_CANDIDATES} hashes")
    for candidate in found:
        require_bytes(candidate, "candidate", max_length=CODE_HASH_MAX_LENGTH, allow_empty=False)
    at = now_microseconds(now, "now")
    require_count(max_attempts, "max_attempts", minimum=1)
    return at, found


def check_reserve(account_id: object, expected_failures: object, now: object) -> datetime:
    """Check the arguments of ``AccountStore.reserve_login_attempt``; return ``now`` in UTC.

    Raises:
        TypeError: ``account_id`` is not a ``str``, ``expected_failures`` not an ``int``,
            ``now`` not a datetime.
        ValueError: ``expected_failures`` is negative or ``now`` is naive.

    """
    if not isinstance(account_id, str):
        raise TypeError(f"account_id must be str, not {type(account_id).__name__}")
    require_count(expected_failures, "expected_failures", minimum=0)
    return require_utc(now)


def matches_any(stored: bytes, candidates: Sequence[bytes]) -> bool:
    """Whether ``stored`` equals any candidate; every candidate is compared in constant time."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(stored, candidate)
    return found


def check_hit(
    key: object,
    *,
    limit: object,
    window: object,
    now: object,
    now_microseconds: ToMicroseconds = utc_microseconds,
) -> tuple[int, int]:
    """Check the arguments of ``RateLimiter.hit``; return ``(window, now)`` in microseconds.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``key`` is empty or too long, ``limit`` is below 1, ``window`` is not
            positive, or ``now`` is naive (or refused by ``now_microseconds``).

    """
    require_key(key)
    require_count(limit, "limit", minimum=1)
    length = require_duration(window, "window") // _US
    return length, now_microseconds(now, "now")


# -- state transitions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodeState:
    """What a one-time code store keeps per key.

    ``failures`` is non-zero exactly when ``window_ends_at`` is set: the window opens with
    the first counted attempt.
    """

    code_hash: bytes | None
    expires_at: int | None
    failure_window: int
    failures: int
    window_ends_at: int | None


@dataclass(frozen=True, slots=True)
class WindowState:
    """What a rate limiter keeps per key: the open window and the hits counted in it."""

    start: int
    length: int
    hits: int


def _counter(state: CodeState, now: int) -> tuple[int, int | None]:
    if state.window_ends_at is not None and now >= state.window_ends_at:
        return 0, None
    return state.failures, state.window_ends_at


def put_code(
    state: CodeState | None, code_hash: bytes, *, expires_at: int, now: int, failure_window: int
) -> CodeState:
    """Return the state after storing a new code: the code replaced, the counter kept."""
    failures, window_ends_at = (0, None) if state is None else _counter(state, now)
    return CodeState(code_hash, expires_at, failure_window, failures, window_ends_at)


def attempt_code(
    state: CodeState | None, candidates: Sequence[bytes], *, now: int, max_attempts: int
) -> tuple[CodeState | None, CodeAttempt]:
    """Return the state after an attempt (``None``: delete the key) and the outcome.

    For :attr:`CodeAttempt.MISSING` the returned state is ``state`` itself: nothing to write.
    """
    if state is None:
        return None, CodeAttempt.MISSING
    if state.code_hash is None or state.expires_at is None or now >= state.expires_at:
        return state, CodeAttempt.MISSING
    failures, window_ends_at = _counter(state, now)
    failures += 1
    if window_ends_at is None:
        window_ends_at = now + state.failure_window
    if failures > max_attempts:
        burned = replace(
            state, code_hash=None, expires_at=None, failures=failures, window_ends_at=window_ends_at
        )
        return burned, CodeAttempt.EXHAUSTED
    if matches_any(state.code_hash, candidates):
        return None, CodeAttempt.OK
    counted = replace(state, failures=failures, window_ends_at=window_ends_at)
    return counted, CodeAttempt.MISMATCH


def code_is_dead(state: CodeState, now: int) -> bool:
    """Return whether deleting ``state`` changes no future answer (no live code, no counter)."""
    no_code = state.code_hash is None or state.expires_at is None or now >= state.expires_at
    no_counter = state.window_ends_at is None or now >= state.window_ends_at
    return no_code and no_counter


def hit_window(
    state: WindowState | None, *, now: int, limit: int, window: int
) -> tuple[WindowState, RateLimitResult]:
    """Return the state after one hit and whether the hit is allowed."""
    if state is None or now >= state.start + state.length:
        state = WindowState(now, window, 1)
    else:
        state = replace(state, hits=state.hits + 1)
    if state.hits <= limit:
        return state, RateLimitResult(True, timedelta(0))
    return state, RateLimitResult(False, timedelta(microseconds=state.start + state.length - now))


def window_is_dead(state: WindowState, now: int) -> bool:
    """Return whether ``state``'s window has ended, so deleting it changes no answer."""
    return now >= state.start + state.length
