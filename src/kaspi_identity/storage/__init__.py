"""Storage protocols, the records they carry, and helpers for host implementations.

A host application implements these protocols over its own tables, or uses a bundled
adapter: :mod:`kaspi_identity.storage.memory` (tests, one process) or
:mod:`kaspi_identity.storage.sqlite` (the embedded default: one file, one machine).
:mod:`kaspi_identity.testing` holds the contract suite that proves an implementation.
"""

from __future__ import annotations

from ._async import (
    AsyncAccountStore,
    AsyncAccountWithHistory,
    AsyncOneTimeCodeStore,
    AsyncOutboxStore,
    AsyncPasswordHistoryStore,
    AsyncRateLimiter,
    AsyncStorage,
    AsyncTokenLedger,
)
from ._checks import require_key, require_utc
from ._outbox import OutboxChannel, OutboxEntry, OutboxMessage, OutboxStatus
from ._protocols import (
    AccountStore,
    AccountWithHistory,
    LoginKind,
    OneTimeCodeStore,
    OutboxStore,
    PasswordHistoryStore,
    RateLimiter,
    Storage,
    TokenLedger,
)
from ._records import Account, CodeAttempt, Contact, HistoryEntry, NewAccount, RateLimitResult

__all__ = [
    "Account",
    "AccountStore",
    "AccountWithHistory",
    "AsyncAccountStore",
    "AsyncAccountWithHistory",
    "AsyncOneTimeCodeStore",
    "AsyncOutboxStore",
    "AsyncPasswordHistoryStore",
    "AsyncRateLimiter",
    "AsyncStorage",
    "AsyncTokenLedger",
    "CodeAttempt",
    "Contact",
    "HistoryEntry",
    "LoginKind",
    "NewAccount",
    "OneTimeCodeStore",
    "OutboxChannel",
    "OutboxEntry",
    "OutboxMessage",
    "OutboxStatus",
    "OutboxStore",
    "PasswordHistoryStore",
    "RateLimitResult",
    "RateLimiter",
    "Storage",
    "TokenLedger",
    "require_key",
    "require_utc",
]
