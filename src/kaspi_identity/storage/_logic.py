"""State transitions of one-time codes and rate-limit windows, shared by the adapters.

Each adapter loads a key's state, applies one of these pure functions and writes the result
back inside one atomic step (a lock, ``BEGIN IMMEDIATE``, ``SELECT ... FOR UPDATE``), so every
adapter answers exactly as the in-memory reference does. Times are integer microseconds
since the Unix epoch, as the SQL adapters store them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import timedelta

from ._records import CodeAttempt, RateLimitResult

__all__ = [
    "CodeState",
    "WindowState",
    "attempt_code",
    "code_is_dead",
    "hit_window",
    "put_code",
    "window_is_dead",
]


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
    state: CodeState | None, code_hash: bytes, *, now: int, max_attempts: int
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
    if hmac.compare_digest(state.code_hash, code_hash):
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
