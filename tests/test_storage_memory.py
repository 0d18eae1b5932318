"""The storage contract suite against the in-memory adapters."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from _faces import innermost
from kaspi_identity._errors import StorageError
from kaspi_identity.storage import (
    HistoryEntry,
    NewAccount,
    Storage,
)
from kaspi_identity.storage.memory import (
    MemoryAccountStore,
    MemoryAccountWithHistory,
    MemoryOneTimeCodeStore,
    MemoryPasswordHistoryStore,
    MemoryRateLimiter,
    MemoryTokenLedger,
    async_memory_storage,
    memory_storage,
)
from kaspi_identity.testing import (
    StorageContract,
    blocking_storage,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


def _break_history_writes(storage: Storage) -> None:
    """The fault double: every later history write of the bundle raises StorageError."""
    history = storage.history
    assert isinstance(history, MemoryPasswordHistoryStore)

    def failing(account_id: str, entry: HistoryEntry, keep: int) -> None:
        raise StorageError("memory storage failed: injected history fault")

    history._append = failing  # type: ignore[method-assign]


class TestMemoryStorageBundle(StorageContract):
    """The whole bundle through one fixture, as a host that uses memory_storage() would."""

    def make_storage(self) -> Storage:
        return memory_storage(outbox=True)

    def break_history_writes(self, storage: Storage) -> None:
        _break_history_writes(storage)


class TestMemoryStorage:
    def test_bundle_holds_memory_stores(self) -> None:
        """memory_storage() bundles one fresh store of each kind."""
        storage = memory_storage()
        assert isinstance(storage.accounts, MemoryAccountStore)
        assert isinstance(storage.history, MemoryPasswordHistoryStore)
        assert isinstance(storage.ledger, MemoryTokenLedger)
        assert isinstance(storage.codes, MemoryOneTimeCodeStore)
        assert isinstance(storage.rate_limits, MemoryRateLimiter)
        assert isinstance(storage.with_history, MemoryAccountWithHistory)
        assert storage.with_history._accounts is storage.accounts
        assert storage.with_history._history is storage.history
        assert memory_storage().accounts is not storage.accounts

    def test_with_history_needs_memory_stores(self) -> None:
        """MemoryAccountWithHistory refuses stores it cannot lock: TypeError."""
        storage = memory_storage()
        with pytest.raises(TypeError, match="accounts"):
            MemoryAccountWithHistory(storage.history, storage.history)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="history"):
            MemoryAccountWithHistory(storage.accounts, storage.accounts)  # type: ignore[arg-type]

    def test_undo_frees_every_unique_key(self) -> None:
        """A create undone by a history fault leaves no index entry behind, in any case."""
        storage = memory_storage()
        assert storage.with_history is not None
        _break_history_writes(storage)
        new = NewAccount(
            username="Aliya", email="A@Example.KZ", phone="+77011234567", iin="880101300123"
        )
        with pytest.raises(StorageError):
            storage.with_history.create_with_history(
                new, now=T0, entry=lambda a: HistoryEntry(password_hash="h", created_at=T0), keep=1
            )
        accounts = storage.accounts
        assert isinstance(accounts, MemoryAccountStore)
        assert accounts._accounts == {}
        assert accounts._indexes() == {"username": {}, "email": {}, "phone": {}, "iin": {}}

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


class TestAsyncMemoryStorageBundle(StorageContract):
    """The async factory's bundle, through the blocking face: the same cases, awaited."""

    def make_storage(self) -> Storage:
        return blocking_storage(async_memory_storage(outbox=True))

    def break_history_writes(self, storage: Storage) -> None:
        _break_history_writes(innermost(storage))
