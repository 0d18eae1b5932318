"""Decoding of stored rows, shared by the SQLite and SQLAlchemy adapters.

Both keep times as integer microseconds since 1970-01-01T00:00:00Z and fingerprints and code
hashes as binary. A value of another type or out of range raises
:class:`~kaspi_identity.CorruptRecordError`; the message names the record and the column,
never the stored value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._errors import CorruptRecordError
from ._checks import from_microseconds
from ._logic import CodeState, WindowState
from ._records import HistoryEntry

__all__ = [
    "corrupt",
    "decode_code_state",
    "decode_history_entry",
    "decode_names",
    "decode_window_state",
    "encode_names",
    "read_int",
    "read_optional_int",
    "read_optional_time",
    "read_time",
]


def corrupt(what: str, reason: str) -> CorruptRecordError:
    """Return the error for a stored ``what`` row that is invalid for ``reason``."""
    return CorruptRecordError(f"a stored {what} row is invalid: {reason}")


def read_int(value: object, what: str, column: str) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``); else raise CorruptRecordError."""
    if type(value) is not int:
        raise corrupt(what, f"{column} is not an integer")
    return value


def read_optional_int(value: object, what: str, column: str) -> int | None:
    """Return ``None`` for NULL, else as :func:`read_int`."""
    return None if value is None else read_int(value, what, column)


def read_time(value: object, what: str, column: str) -> datetime:
    """Return the UTC datetime stored as integer microseconds in ``value``."""
    try:
        return from_microseconds(read_int(value, what, column))
    except OverflowError:
        raise corrupt(what, f"{column} is out of range") from None


def read_optional_time(value: object, what: str, column: str) -> datetime | None:
    """Return ``None`` for NULL, else as :func:`read_time`."""
    return None if value is None else read_time(value, what, column)


def encode_names(names: Sequence[str]) -> str:
    """Return an account's names as the stored JSON list (``'[]'`` for none), in order."""
    return json.dumps(list(names), ensure_ascii=False, separators=(",", ":"))


# 8 names of 128 characters, each escaped as \uXXXX\uXXXX (12 characters per code point),
# with quotes, commas and brackets: a generous bound on what encode_names can write.
_NAMES_TEXT_MAX = 8 * (128 * 12 + 3) + 2


def decode_names(value: object, what: str = "account", column: str = "names") -> tuple[str, ...]:
    """Return the names stored by :func:`encode_names` in ``value``.

    Anything but text holding a JSON list of strings raises CorruptRecordError; the
    number and length of the names are checked by the :class:`Account` built from them.
    """
    if type(value) is not str:
        raise corrupt(what, f"{column} is not text")
    if len(value) > _NAMES_TEXT_MAX:  # more than any 8 names of 128 characters can take
        raise corrupt(what, f"{column} is too long")
    try:
        names = json.loads(value)
    except (ValueError, RecursionError):  # bad JSON, a lone surrogate escape, deep nesting
        raise corrupt(what, f"{column} is not a JSON list") from None
    if type(names) is not list or any(type(name) is not str for name in names):
        raise corrupt(what, f"{column} is not a JSON list of strings")
    return tuple(names)


def decode_history_entry(row: tuple[Any, ...]) -> HistoryEntry:
    """Return the entry in a ``(password_hash, fingerprint, created_at)`` row."""
    password_hash, fingerprint, created = row
    if type(fingerprint) is not bytes:
        raise corrupt("password history", "fingerprint is not binary")
    try:
        return HistoryEntry(
            password_hash=password_hash,
            fingerprint=fingerprint,
            created_at=read_time(created, "password history", "created_at"),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CorruptRecordError):
            raise
        raise corrupt("password history", str(exc)) from exc


def decode_code_state(row: tuple[Any, ...] | None) -> CodeState | None:
    """Return the state in a row of the ``one_time_codes`` columns, or ``None`` for no row."""
    if row is None:
        return None
    code_hash, expires_at, failure_window, failures, window_ends_at = row
    if code_hash is not None and type(code_hash) is not bytes:
        raise corrupt("one-time code", "code_hash is not binary")
    state = CodeState(
        code_hash=code_hash,
        expires_at=read_optional_int(expires_at, "one-time code", "expires_at"),
        failure_window=read_int(failure_window, "one-time code", "failure_window"),
        failures=read_int(failures, "one-time code", "failures"),
        window_ends_at=read_optional_int(window_ends_at, "one-time code", "window_ends_at"),
    )
    if state.failure_window <= 0 or state.failures < 0:
        raise corrupt("one-time code", "failure_window or failures is out of range")
    if (state.failures == 0) != (state.window_ends_at is None):
        raise corrupt("one-time code", "failures and window_ends_at disagree")
    return state


def decode_window_state(row: tuple[Any, ...] | None) -> WindowState | None:
    """Return the window in a ``(window_start, window_length, hits)`` row, or ``None``."""
    if row is None:
        return None
    state = WindowState(
        start=read_int(row[0], "rate limit", "window_start"),
        length=read_int(row[1], "rate limit", "window_length"),
        hits=read_int(row[2], "rate limit", "hits"),
    )
    if state.length <= 0 or state.hits < 1:
        raise corrupt("rate limit", "window_length or hits is out of range")
    return state
