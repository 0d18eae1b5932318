"""The storage contract suite against the in-memory adapters."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kaspi_identity.storage import (
    AccountStore,
    NewAccount,
    OneTimeCodeStore,
    PasswordHistoryStore,
    RateLimiter,
    Storage,
    TokenLedger,
)
from kaspi_identity.storage.memory import (
    MemoryAccountStore,
    MemoryOneTimeCodeStore,
    MemoryPasswordHistoryStore,
    MemoryRateLimiter,
    MemoryTokenLedger,
    memory_storage,
)
from kaspi_identity.testing import (
    AccountStoreContract,
    OneTimeCodeStoreContract,
    PasswordHistoryStoreContract,
    RateLimiterContract,
    StorageContract,
    TokenLedgerContract,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


class TestMemoryAccountStore(AccountStoreContract):
    def make_accounts(self) -> AccountStore:
        return MemoryAccountStore()


class TestMemoryPasswordHistoryStore(PasswordHistoryStoreContract):
    def make_history(self) -> PasswordHistoryStore:
        return MemoryPasswordHistoryStore()


class TestMemoryTokenLedger(TokenLedgerContract):
    def make_ledger(self) -> TokenLedger:
        return MemoryTokenLedger()


class TestMemoryOneTimeCodeStore(OneTimeCodeStoreContract):
    def make_codes(self) -> OneTimeCodeStore:
        return MemoryOneTimeCodeStore()


class TestMemoryRateLimiter(RateLimiterContract):
    def make_rate_limiter(self) -> RateLimiter:
        return MemoryRateLimiter()


class TestMemoryStorageBundle(StorageContract):
    """The whole bundle through one fixture, as a host that uses memory_storage() would."""

    def make_storage(self) -> Storage:
        return memory_storage()


class TestMemoryStorage:
    def test_bundle_holds_memory_stores(self) -> None:
        """memory_storage() bundles one fresh store of each kind."""
        storage = memory_storage()
        assert isinstance(storage.accounts, MemoryAccountStore)
        assert isinstance(storage.history, MemoryPasswordHistoryStore)
        assert isinstance(storage.tokens, MemoryTokenLedger)
        assert isinstance(storage.codes, MemoryOneTimeCodeStore)
        assert isinstance(storage.rate_limits, MemoryRateLimiter)
        assert memory_storage().accounts is not storage.accounts

    def test_close_is_harmless(self) -> None:
        """Closing a memory bundle (which has nothing to close) is fine, twice."""
        with memory_storage() as storage:
            storage.close()

    def test_rotate_stamp_must_be_a_bool(self) -> None:
        """set_password_hash(rotate_stamp=1) is a TypeError and writes nothing."""
        accounts = MemoryAccountStore()
        created = accounts.create(NewAccount(username="aliya", password_hash="h1"), now=T0)
        with pytest.raises(TypeError, match="rotate_stamp"):
            accounts.set_password_hash(created.id, expected="h1", new="h2", rotate_stamp=1)  # type: ignore[arg-type]
        assert accounts.get(created.id) == created
