"""The storage contract suite against the SQLite adapters, plus what only SQLite has."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kaspi_identity._errors import CorruptRecordError, StorageError
from kaspi_identity.storage import (
    AccountStore,
    CodeAttempt,
    HistoryEntry,
    NewAccount,
    OneTimeCodeStore,
    PasswordHistoryStore,
    RateLimiter,
    Storage,
    TokenLedger,
)
from kaspi_identity.storage.sqlite import (
    SCHEMA_VERSION,
    SQLiteAccountStore,
    SQLiteDatabase,
    SQLiteOneTimeCodeStore,
    SQLitePasswordHistoryStore,
    SQLiteRateLimiter,
    SQLiteTokenLedger,
    sqlite_storage,
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
HOUR = timedelta(hours=1)
SECRET_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0$c2VjcmV0c2VjcmV0"


class SQLiteFile:
    """Opens a fresh database file in tmp_path before each test and closes it after."""

    db: SQLiteDatabase

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> Iterator[None]:
        self.db = SQLiteDatabase(tmp_path / "identity.sqlite3")
        yield
        self.db.close()


class TestSQLiteAccountStore(SQLiteFile, AccountStoreContract):
    def make_accounts(self) -> AccountStore:
        return SQLiteAccountStore(self.db)


class TestSQLitePasswordHistoryStore(SQLiteFile, PasswordHistoryStoreContract):
    def make_history(self) -> PasswordHistoryStore:
        return SQLitePasswordHistoryStore(self.db)


class TestSQLiteTokenLedger(SQLiteFile, TokenLedgerContract):
    def make_ledger(self) -> TokenLedger:
        return SQLiteTokenLedger(self.db)


class TestSQLiteOneTimeCodeStore(SQLiteFile, OneTimeCodeStoreContract):
    def make_codes(self) -> OneTimeCodeStore:
        return SQLiteOneTimeCodeStore(self.db)


class TestSQLiteRateLimiter(SQLiteFile, RateLimiterContract):
    def make_rate_limiter(self) -> RateLimiter:
        return SQLiteRateLimiter(self.db)


class TestSQLiteStorageBundle(StorageContract):
    """The whole bundle from sqlite_storage(), overriding the fixture to use tmp_path."""

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        with sqlite_storage(tmp_path / "bundle.sqlite3", synchronous="NORMAL") as storage:
            yield storage


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _seed(path: Path) -> str:
    """Create one row in every table; return the account id."""
    with sqlite_storage(path) as storage:
        account = storage.accounts.create(
            NewAccount(username="aliya", phone="+77011234567", password_hash=SECRET_HASH), now=T0
        )
        storage.history.append(
            account.id,
            HistoryEntry(password_hash=SECRET_HASH, fingerprint=b"fp", created_at=T0),
            keep=6,
        )
        storage.tokens.consume("tok-1", T0 + HOUR, now=T0)
        storage.codes.put(
            "+77011234567", b"code", expires_at=T0 + HOUR, now=T0, failure_window=HOUR
        )
        storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0)
    return account.id


class TestSchema:
    def test_new_file_gets_the_current_schema_in_wal_mode(self, tmp_path: Path) -> None:
        """A new file is created at SCHEMA_VERSION, in WAL mode."""
        path = tmp_path / "new.sqlite3"
        with SQLiteDatabase(path) as db:
            assert db.schema_version == SCHEMA_VERSION == 1
            assert db.path == str(path)
        raw = _raw(path)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
        raw.close()
        assert {
            "accounts",
            "password_history",
            "consumed_tokens",
            "one_time_codes",
            "rate_limits",
        } <= tables

    def test_reopening_keeps_the_data(self, tmp_path: Path) -> None:
        """Everything written survives closing and reopening the file."""
        path = tmp_path / "keep.sqlite3"
        account_id = _seed(path)
        with sqlite_storage(path) as storage:
            account = storage.accounts.get(account_id)
            assert account is not None
            assert account.password_hash == SECRET_HASH
            assert [e.fingerprint for e in storage.history.recent(account_id, 6)] == [b"fp"]
            assert storage.tokens.consume("tok-1", T0 + HOUR, now=T0) is False
            assert (
                storage.codes.attempt("+77011234567", b"code", now=T0, max_attempts=3)
                is CodeAttempt.OK
            )
            assert not storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0).allowed

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A file from a newer release raises StorageError and is left untouched."""
        path = tmp_path / "future.sqlite3"
        _seed(path)
        raw = _raw(path)
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        raw.close()
        with pytest.raises(StorageError, match="newer"):
            SQLiteDatabase(path)
        raw = _raw(path)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        raw.close()

    def test_not_a_database(self, tmp_path: Path) -> None:
        """A file that is not SQLite raises StorageError wrapping the sqlite3 error."""
        path = tmp_path / "garbage.sqlite3"
        path.write_bytes(b"this is not a database file, just some text" * 100)
        with pytest.raises(StorageError) as caught:
            SQLiteDatabase(path)
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)

    @pytest.mark.parametrize("path", ["", ":memory:", "file::memory:?cache=shared"])
    def test_memory_paths_are_refused(self, path: str) -> None:
        """In-memory SQLite would give each pooled connection its own database: ValueError."""
        with pytest.raises(ValueError, match="memory"):
            SQLiteDatabase(path)

    def test_bad_options(self, tmp_path: Path) -> None:
        """An unknown synchronous mode is a ValueError; a non-database store argument TypeError."""
        with pytest.raises(ValueError, match="synchronous"):
            SQLiteDatabase(tmp_path / "x.sqlite3", synchronous="OFF")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            SQLiteTokenLedger(str(tmp_path / "x.sqlite3"))  # type: ignore[arg-type]


class TestFaults:
    def test_closed_database(self, tmp_path: Path) -> None:
        """After close() every call raises StorageError; closing twice is fine."""
        storage = sqlite_storage(tmp_path / "closed.sqlite3")
        storage.close()
        storage.close()
        with pytest.raises(StorageError, match="closed"):
            storage.tokens.consume("tok-1", T0 + HOUR, now=T0)
        with pytest.raises(StorageError, match="closed"):
            storage.accounts.get("x")

    def test_sqlite_errors_are_wrapped(self, tmp_path: Path) -> None:
        """A failing statement surfaces as StorageError with the sqlite3 error as cause."""
        path = tmp_path / "broken.sqlite3"
        with sqlite_storage(path) as storage:
            raw = _raw(path)
            raw.execute("DROP TABLE consumed_tokens")
            raw.close()
            with pytest.raises(StorageError) as caught:
                storage.tokens.consume("tok-1", T0 + HOUR, now=T0)
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            assert "tok-1" not in str(caught.value)
            # The failed transaction was rolled back; the connection pool still works.
            assert storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0).allowed

    def test_locked_database_times_out_with_storage_error(self, tmp_path: Path) -> None:
        """Another process holding the write lock past the timeout gives StorageError."""
        path = tmp_path / "locked.sqlite3"
        with sqlite_storage(path, timeout=0.05) as storage:
            raw = _raw(path)
            raw.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(StorageError, match="locked"):
                    storage.tokens.consume("tok-1", T0 + HOUR, now=T0)
            finally:
                raw.execute("ROLLBACK")
                raw.close()
            assert storage.tokens.consume("tok-1", T0 + HOUR, now=T0) is True


def _corrupt(path: Path, statement: str) -> None:
    raw = _raw(path)
    raw.execute(statement)
    raw.close()


def _row(path: Path, query: str) -> tuple[Any, ...]:
    raw = _raw(path)
    row: tuple[Any, ...] = raw.execute(query).fetchone()
    raw.close()
    return row


class TestCorruptRows:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE accounts SET created_at = 'yesterday'",
            "UPDATE accounts SET created_at = 900000000000000000",
            "UPDATE accounts SET last_login_at = 1.5",
            "UPDATE accounts SET email_confirmed = 7",
            "UPDATE accounts SET failed_logins = -1",
            "UPDATE accounts SET phone = 'not a phone'",
            "UPDATE accounts SET username = X'00ff'",
            "UPDATE accounts SET language = ''",
        ],
    )
    def test_bad_account_rows(self, tmp_path: Path, statement: str) -> None:
        """A hand-edited account row raises CorruptRecordError, never a raw error."""
        path = tmp_path / "corrupt.sqlite3"
        account_id = _seed(path)
        _corrupt(path, statement)
        with sqlite_storage(path) as storage:
            with pytest.raises(CorruptRecordError) as caught:
                storage.accounts.get(account_id)
            assert SECRET_HASH not in str(caught.value)
            with pytest.raises(CorruptRecordError):
                storage.accounts.find_by_login("username", "aliya")

    def test_bad_failure_count_is_not_overwritten(self, tmp_path: Path) -> None:
        """record_login_failure() on a garbage count raises and leaves the row as it was."""
        path = tmp_path / "corrupt.sqlite3"
        account_id = _seed(path)
        _corrupt(path, "UPDATE accounts SET failed_logins = 'many'")
        with sqlite_storage(path) as storage, pytest.raises(CorruptRecordError):
            storage.accounts.record_login_failure(account_id, now=T0)
        assert _row(path, "SELECT failed_logins, last_failed_login_at FROM accounts") == (
            "many",
            None,
        )

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE password_history SET fingerprint = 'text, not bytes'",
            "UPDATE password_history SET created_at = 'noon'",
            "UPDATE password_history SET password_hash = ''",
        ],
    )
    def test_bad_history_rows(self, tmp_path: Path, statement: str) -> None:
        """A hand-edited history row raises CorruptRecordError."""
        path = tmp_path / "corrupt.sqlite3"
        account_id = _seed(path)
        _corrupt(path, statement)
        with sqlite_storage(path) as storage, pytest.raises(CorruptRecordError) as caught:
            storage.history.recent(account_id, 6)
        assert SECRET_HASH not in str(caught.value)

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE one_time_codes SET code_hash = 'code'",
            "UPDATE one_time_codes SET failures = 'x'",
            "UPDATE one_time_codes SET expires_at = 'later'",
            "UPDATE one_time_codes SET failures = 2",
        ],
    )
    def test_bad_code_rows_are_not_overwritten(self, tmp_path: Path, statement: str) -> None:
        """put() and attempt() on a garbage code row raise and leave it as it was."""
        path = tmp_path / "corrupt.sqlite3"
        _seed(path)
        _corrupt(path, statement)
        query = "SELECT * FROM one_time_codes"
        before = _row(path, query)
        with sqlite_storage(path) as storage:
            with pytest.raises(CorruptRecordError):
                storage.codes.attempt("+77011234567", b"code", now=T0, max_attempts=3)
            with pytest.raises(CorruptRecordError):
                storage.codes.put(
                    "+77011234567", b"new", expires_at=T0 + HOUR, now=T0, failure_window=HOUR
                )
        assert _row(path, query) == before

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE rate_limits SET hits = 'lots'",
            "UPDATE rate_limits SET window_length = 0",
            "UPDATE rate_limits SET window_start = 2.5",
        ],
    )
    def test_bad_rate_limit_rows_are_not_overwritten(self, tmp_path: Path, statement: str) -> None:
        """hit() on a garbage window row raises and leaves it as it was."""
        path = tmp_path / "corrupt.sqlite3"
        _seed(path)
        _corrupt(path, statement)
        query = "SELECT * FROM rate_limits"
        before = _row(path, query)
        with sqlite_storage(path) as storage, pytest.raises(CorruptRecordError):
            storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0)
        assert _row(path, query) == before


_PROCESSES = 4
_THREADS_PER_PROCESS = 8


def _consume_in_threads(path: str, start: Any, results: Any) -> None:
    """Child process: open the file, then race 8 threads to consume one token id."""
    with sqlite_storage(path) as storage:
        local = threading.Barrier(_THREADS_PER_PROCESS)
        wins: list[bool] = []

        def consume() -> None:
            local.wait(timeout=60)
            wins.append(storage.tokens.consume("shared-token", T0 + HOUR, now=T0))

        threads = [threading.Thread(target=consume) for _ in range(_THREADS_PER_PROCESS)]
        start.wait(timeout=60)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        results.put((len(wins), wins.count(True)))


class TestAcrossProcesses:
    def test_racing_processes_consume_once(self, tmp_path: Path) -> None:
        """4 processes x 8 threads racing on one fresh file: exactly one consume() wins."""
        path = str(tmp_path / "shared.sqlite3")
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(_PROCESSES)
        results = context.Queue()
        processes = [
            context.Process(target=_consume_in_threads, args=(path, start, results))
            for _ in range(_PROCESSES)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        assert sum(calls for calls, _ in outcomes) == _PROCESSES * _THREADS_PER_PROCESS
        assert sum(won for _, won in outcomes) == 1
        results.close()
        results.join_thread()
