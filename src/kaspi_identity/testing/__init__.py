"""Tools for proving an implementation in its own CI: the storage contract suite.

Subclass a ``*Contract`` class in a ``Test*`` class to run the contract tests of one
storage protocol against an implementation; :func:`make_comparison_machine` builds a
Hypothesis state machine that checks a whole :class:`~kaspi_identity.storage.Storage`
agrees with the in-memory reference. This package imports pytest and Hypothesis.
"""

from __future__ import annotations

from ._contracts import (
    AccountStoreContract,
    OneTimeCodeStoreContract,
    PasswordHistoryStoreContract,
    RateLimiterContract,
    StorageContract,
    TokenLedgerContract,
)
from ._machine import make_comparison_machine

__all__ = [
    "AccountStoreContract",
    "OneTimeCodeStoreContract",
    "PasswordHistoryStoreContract",
    "RateLimiterContract",
    "StorageContract",
    "TokenLedgerContract",
    "make_comparison_machine",
]
