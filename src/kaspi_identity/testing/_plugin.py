"""The kaspi-identity pytest plugin: fixtures for testing a host's identity flows.

Registered under the ``pytest11`` entry point ``kaspi_identity``, so pytest loads it in
every project where kaspi-identity is installed. It is therefore light: it defines
fixtures and nothing else (no hooks, no options, no collection), and each fixture imports
what it builds when it first runs, so loading the plugin imports neither Hypothesis, the
storage adapters nor zxcvbn. Every fixture name starts with ``kaspi_`` to stay clear of
the host's own fixtures; override any of them in a ``conftest.py`` to change what the
others are built from (``kaspi_policy`` and ``kaspi_settings`` are the usual ones).

Turn it off with ``-p no:kaspi_identity``; with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set,
turn it on with ``-p kaspi_identity``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kaspi_identity.delivery import Outbox
    from kaspi_identity.hashing import PasswordHasher
    from kaspi_identity.policy import PasswordPolicy
    from kaspi_identity.services import (
        IdentityService,
        IdentitySettings,
        ManualClock,
        MemoryAuditLog,
    )
    from kaspi_identity.storage import Storage

__all__ = [
    "kaspi_audit",
    "kaspi_clock",
    "kaspi_hasher",
    "kaspi_identity_service",
    "kaspi_outbox",
    "kaspi_policy",
    "kaspi_settings",
    "kaspi_storage",
]

#: The key every test service signs with: public, so good for tests only.
_TEST_SECRET_KEY = b"kaspi-identity TESTS ONLY signing key, never deploy"


@pytest.fixture
def kaspi_outbox() -> Outbox:
    """An empty in-memory :class:`~kaspi_identity.delivery.Outbox` (e-mail and SMS sender)."""
    from kaspi_identity.delivery import Outbox

    return Outbox()


@pytest.fixture
def kaspi_clock() -> ManualClock:
    """A :class:`~kaspi_identity.services.ManualClock` at 2026-01-01 09:00 UTC; ``advance()`` it."""
    from kaspi_identity.services import ManualClock

    return ManualClock()


@pytest.fixture
def kaspi_hasher() -> PasswordHasher:
    """A :class:`~kaspi_identity.PasswordHasher` with the ``TESTS_ONLY`` profile (8 KiB, 1 pass)."""
    from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher

    return PasswordHasher(TESTS_ONLY)


@pytest.fixture
def kaspi_storage() -> Iterator[Storage]:
    """Fresh in-memory stores (``memory_storage()``), closed after the test."""
    from kaspi_identity.storage.memory import memory_storage

    storage = memory_storage()
    yield storage
    storage.close()


@pytest.fixture
def kaspi_audit() -> MemoryAuditLog:
    """An empty :class:`~kaspi_identity.services.MemoryAuditLog`; read ``.kinds()`` after a flow."""
    from kaspi_identity.services import MemoryAuditLog

    return MemoryAuditLog()


@pytest.fixture
def kaspi_policy() -> PasswordPolicy:
    """The password policy ``kaspi_identity_service`` uses: ``PasswordPolicy()``.

    Override it with the deployment's own, e.g. ``PasswordPolicy.from_toml("identity.toml")``.
    """
    from kaspi_identity.policy import PasswordPolicy

    return PasswordPolicy()


@pytest.fixture
def kaspi_settings() -> IdentitySettings:
    """Test :class:`~kaspi_identity.services.IdentitySettings`: a public key, ``https://portal.test``.

    The log-in and registration rate limits are set so high that the hundreds of examples
    of a Hypothesis test (which share one service) never reach them; every other setting is
    the default. Override it to test the deployment's own limits and lifetimes.
    """
    from kaspi_identity.services import IdentitySettings, RateLimit

    unlimited = RateLimit(1_000_000, timedelta(hours=1))
    return IdentitySettings(
        secret_keys=(_TEST_SECRET_KEY,),
        confirm_url="https://portal.test/confirm",
        reset_url="https://portal.test/reset",
        site_name="portal.test",
        login_per_client=unlimited,
        login_per_identifier=unlimited,
        register_per_client=unlimited,
        register_per_identifier=unlimited,
    )


@pytest.fixture
def kaspi_identity_service(
    kaspi_storage: Storage,
    kaspi_settings: IdentitySettings,
    kaspi_outbox: Outbox,
    kaspi_policy: PasswordPolicy,
    kaspi_hasher: PasswordHasher,
    kaspi_clock: ManualClock,
    kaspi_audit: MemoryAuditLog,
) -> IdentityService:
    """An :class:`~kaspi_identity.services.IdentityService` wired to the other fixtures.

    Letters and SMS land in ``kaspi_outbox``, events in ``kaspi_audit``, time comes from
    ``kaspi_clock``; request the fixtures alongside to look at them.
    """
    from kaspi_identity.services import IdentityService

    return IdentityService(
        kaspi_storage,
        kaspi_settings,
        email_sender=kaspi_outbox,
        sms_sender=kaspi_outbox,
        policy=kaspi_policy,
        hasher=kaspi_hasher,
        clock=kaspi_clock,
        audit=kaspi_audit,
    )
