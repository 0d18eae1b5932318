"""Tools for proving a deployment in its own CI: strategies, contract suite, compliance report.

- :func:`passwords`, :func:`violating_passwords` and :func:`policies` are Hypothesis
  strategies: passwords a policy accepts, passwords it rejects with a chosen violation
  code, and valid policies.
- :func:`run_compliance` runs those properties against a deployment's policy and prints a
  short report (``kaspi-identity compliance --policy FILE``).
- Subclass a ``*Contract`` class in a ``Test*`` class to run the contract tests of one
  storage protocol against an implementation; :func:`make_comparison_machine` builds a
  Hypothesis state machine that checks a whole :class:`~kaspi_identity.storage.Storage`
  agrees with the in-memory reference.
- :func:`mark_phone_verified` sets up an account whose phone may receive reset codes.
- The pytest plugin (``kaspi_identity.testing._plugin``, loaded through the ``pytest11``
  entry point) provides the ``kaspi_*`` fixtures.

These tools need pytest and Hypothesis (``pip install 'kaspi-identity[test]'``). The names
are imported on first use, so importing this package -- as pytest does when it loads the
plugin -- imports neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._accounts import mark_phone_verified
    from ._blocking import Blocking, blocking_service, blocking_storage, run_on_test_loop
    from ._compliance import run_compliance
    from ._contracts import (
        AccountStoreContract,
        AccountWithHistoryContract,
        OneTimeCodeStoreContract,
        OutboxStoreContract,
        PasswordHistoryStoreContract,
        RateLimiterContract,
        StorageContract,
        TokenLedgerContract,
    )
    from ._machine import make_comparison_machine
    from ._strategies import passwords, policies, violating_passwords

__all__ = [
    "AccountStoreContract",
    "AccountWithHistoryContract",
    "Blocking",
    "OneTimeCodeStoreContract",
    "OutboxStoreContract",
    "PasswordHistoryStoreContract",
    "RateLimiterContract",
    "StorageContract",
    "TokenLedgerContract",
    "blocking_service",
    "blocking_storage",
    "make_comparison_machine",
    "mark_phone_verified",
    "passwords",
    "policies",
    "run_compliance",
    "run_on_test_loop",
    "violating_passwords",
]

# Which private module defines each public name.
_WHERE = {
    "AccountStoreContract": "_contracts",
    "AccountWithHistoryContract": "_contracts",
    "Blocking": "_blocking",
    "OneTimeCodeStoreContract": "_contracts",
    "OutboxStoreContract": "_contracts",
    "PasswordHistoryStoreContract": "_contracts",
    "RateLimiterContract": "_contracts",
    "StorageContract": "_contracts",
    "TokenLedgerContract": "_contracts",
    "blocking_service": "_blocking",
    "blocking_storage": "_blocking",
    "make_comparison_machine": "_machine",
    "mark_phone_verified": "_accounts",
    "passwords": "_strategies",
    "policies": "_strategies",
    "run_compliance": "_compliance",
    "run_on_test_loop": "_blocking",
    "violating_passwords": "_strategies",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
