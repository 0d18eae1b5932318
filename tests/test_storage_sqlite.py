"""The storage contract suite against the SQLite adapters, plus what only SQLite has."""

from __future__ import annotations

import multiprocessing
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
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
_US = timedelta(microseconds=1)
SECRET_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0$c2VjcmV0c2VjcmV0"
LONG_STAMP = "s" * 80  # what the too-long stamp of a corrupt row holds


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
            assert db.schema_version == SCHEMA_VERSION == 2
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
                storage.codes.attempt("+77011234567", [b"code"], now=T0, max_attempts=3)
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


# The schema of version 1 exactly as that release created it (frozen: never edit).
_SCHEMA_V1 = (
    """
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY NOT NULL,
        username TEXT,
        username_key TEXT UNIQUE,
        email TEXT,
        email_key TEXT UNIQUE,
        phone TEXT UNIQUE,
        password_hash TEXT,
        email_confirmed INTEGER NOT NULL DEFAULT 0,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        last_failed_login_at INTEGER,
        last_login_at INTEGER,
        created_at INTEGER NOT NULL,
        language TEXT NOT NULL DEFAULT 'en'
    )
    """,
    """
    CREATE TABLE password_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        created_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX password_history_by_account ON password_history (account_id, seq)",
    """
    CREATE TABLE consumed_tokens (
        token_id TEXT PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX consumed_tokens_by_expiry ON consumed_tokens (expires_at)",
    """
    CREATE TABLE one_time_codes (
        code_key TEXT PRIMARY KEY NOT NULL,
        code_hash BLOB,
        expires_at INTEGER,
        failure_window INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        window_ends_at INTEGER
    )
    """,
    """
    CREATE TABLE rate_limits (
        limit_key TEXT PRIMARY KEY NOT NULL,
        window_start INTEGER NOT NULL,
        window_length INTEGER NOT NULL,
        hits INTEGER NOT NULL
    )
    """,
)
_T0_US = int((T0 - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))
_V1_ACCOUNTS = 50


def _version_1_file(path: Path) -> None:
    """Write a database at schema version 1 holding accounts, a token and a code."""
    raw = _raw(path)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("BEGIN")
    for statement in _SCHEMA_V1:
        raw.execute(statement)
    raw.executemany(
        "INSERT INTO accounts (id, username, username_key, email, email_key, password_hash,"
        " email_confirmed, failed_logins, last_failed_login_at, created_at, language)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f"id-{i}",
                f"User{i}",
                f"user{i}",
                f"User{i}@Example.kz",
                f"user{i}@example.kz",
                SECRET_HASH,
                i % 2,
                i % 3,
                _T0_US + i if i % 3 else None,
                _T0_US,
                "kk",
            )
            for i in range(_V1_ACCOUNTS)
        ],
    )
    raw.execute("INSERT INTO consumed_tokens VALUES ('tok-1', ?)", (_T0_US + 3_600_000_000,))
    raw.execute("PRAGMA user_version = 1")
    raw.execute("COMMIT")
    raw.close()


class TestMigration:
    def test_version_1_file_gets_random_stamps(self, tmp_path: Path) -> None:
        """Opening a version 1 file adds a random stamp to every account and keeps the rest."""
        path = tmp_path / "v1.sqlite3"
        _version_1_file(path)
        with sqlite_storage(path) as storage:
            assert isinstance(storage.accounts, SQLiteAccountStore)
            assert storage.accounts.database.schema_version == SCHEMA_VERSION == 2
            accounts = [storage.accounts.get(f"id-{i}") for i in range(_V1_ACCOUNTS)]
            stamps = set()
            for i, account in enumerate(accounts):
                assert account is not None
                assert re.fullmatch("[0-9a-f]{32}", account.security_stamp)
                stamps.add(account.security_stamp)
                assert (account.username, account.email, account.password_hash) == (
                    f"User{i}",
                    f"User{i}@Example.kz",
                    SECRET_HASH,
                )
                assert (account.email_confirmed, account.failed_logins) == (bool(i % 2), i % 3)
                assert account.last_failed_login_at == (T0 + i * _US if i % 3 else None)
                assert (account.created_at, account.language) == (T0, "kk")
            assert len(stamps) == _V1_ACCOUNTS
            assert storage.tokens.consume("tok-1", T0 + HOUR, now=T0) is False
            migrated = accounts[1]
            assert migrated is not None
            assert storage.accounts.find_by_login("email", "USER1@example.kz") == migrated
            # Migrated accounts work like new ones.
            assert storage.accounts.reserve_login_attempt("id-1", expected_failures=1, now=T0)
            assert storage.accounts.set_password_hash("id-1", expected=SECRET_HASH, new="h2")
            changed = storage.accounts.get("id-1")
            assert changed is not None
            assert changed.failed_logins == 2
            assert changed.security_stamp not in stamps
            created = storage.accounts.create(NewAccount(username="fresh"), now=T0)
            assert created.security_stamp not in stamps
        with sqlite_storage(path) as storage:  # reopening does not migrate (or re-stamp) again
            assert storage.accounts.get("id-0") == accounts[0]

    def test_migration_is_one_transaction(self, tmp_path: Path) -> None:
        """A migration that fails half-way leaves the file at version 1, untouched."""
        path = tmp_path / "v1.sqlite3"
        _version_1_file(path)
        raw = _raw(path)
        # A column of that name already exists: the ALTER TABLE fails.
        raw.execute("ALTER TABLE accounts ADD COLUMN security_stamp TEXT")
        raw.execute("UPDATE accounts SET security_stamp = 'kept'")
        raw.close()
        with pytest.raises(StorageError):
            SQLiteDatabase(path)
        assert _row(path, "PRAGMA user_version") == (1,)
        assert _row(path, "SELECT count(*) FROM accounts WHERE security_stamp = 'kept'") == (
            _V1_ACCOUNTS,
        )

    def test_racing_openers_migrate_once(self, tmp_path: Path) -> None:
        """8 threads opening one version 1 file at once: one migration, one stamp per row."""
        path = tmp_path / "v1.sqlite3"
        _version_1_file(path)
        barrier = threading.Barrier(8)
        seen: list[str] = []
        errors: list[BaseException] = []

        def open_and_read() -> None:
            try:
                barrier.wait(timeout=30)
                with sqlite_storage(path) as storage:
                    account = storage.accounts.get("id-7")
                    assert account is not None
                    seen.append(account.security_stamp)
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=open_and_read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        assert len(seen) == 8
        assert len(set(seen)) == 1


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run the test with the common umask 022 (SQLite alone would then create 0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
class TestFilePermissions:
    @pytest.mark.usefixtures("umask_022")
    def test_new_file_and_side_files_are_private(self, tmp_path: Path) -> None:
        """A new database and its -wal and -shm files are mode 0600, not 0644."""
        path = tmp_path / "private.sqlite3"
        with sqlite_storage(path) as storage:
            storage.accounts.create(NewAccount(username="aliya", password_hash=SECRET_HASH), now=T0)
            storage.tokens.consume("tok-1", T0 + HOUR, now=T0)
            for name in (path, f"{path}-wal", f"{path}-shm"):
                assert os.path.exists(name)
                assert _mode(name) == 0o600, name
        assert _mode(path) == 0o600

    def test_private_whatever_the_umask(self, tmp_path: Path) -> None:
        """With umask 000 (and 077) a new file is still exactly 0600."""
        for umask in (0o000, 0o077):
            old = os.umask(umask)
            try:
                path = tmp_path / f"umask-{umask:03o}.sqlite3"
                with sqlite_storage(path) as storage:
                    storage.tokens.consume("tok-1", T0 + HOUR, now=T0)
                    assert _mode(path) == 0o600
                    assert _mode(f"{path}-wal") == 0o600
            finally:
                os.umask(old)

    @pytest.mark.usefixtures("umask_022")
    def test_existing_file_keeps_its_mode(self, tmp_path: Path) -> None:
        """The mode of an existing file -- empty or a database -- is never changed."""
        empty = tmp_path / "empty.sqlite3"
        empty.touch(mode=0o644)
        os.chmod(empty, 0o644)
        with sqlite_storage(empty) as storage:
            storage.tokens.consume("tok-1", T0 + HOUR, now=T0)
            assert _mode(empty) == 0o644
        shared = tmp_path / "shared.sqlite3"
        _seed(shared)
        os.chmod(shared, 0o640)
        with sqlite_storage(shared) as storage:
            storage.tokens.consume("tok-2", T0 + HOUR, now=T0)
            assert _mode(shared) == 0o640

    def test_missing_directory_is_a_storage_error(self, tmp_path: Path) -> None:
        """A path in a directory that does not exist raises StorageError, creates nothing."""
        path = tmp_path / "no-such-dir" / "identity.sqlite3"
        with pytest.raises(StorageError, match="cannot open"):
            SQLiteDatabase(path)
        assert not path.parent.exists()

    def test_symlink_is_followed_not_replaced(self, tmp_path: Path) -> None:
        """A symlink to an existing database is opened as before; its target keeps its mode."""
        target = tmp_path / "target.sqlite3"
        account_id = _seed(target)
        os.chmod(target, 0o640)
        link = tmp_path / "link.sqlite3"
        link.symlink_to(target)
        with sqlite_storage(link) as storage:
            assert storage.accounts.get(account_id) is not None
        assert link.is_symlink()
        assert _mode(target) == 0o640


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
            "UPDATE accounts SET security_stamp = ''",
            # 80 characters: longer than a stamp may be
            "UPDATE accounts SET security_stamp = replace(hex(zeroblob(40)), '0', 's')",
            "UPDATE accounts SET security_stamp = X'00ff'",
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
            assert LONG_STAMP not in str(caught.value)
            with pytest.raises(CorruptRecordError):
                storage.accounts.find_by_login("username", "aliya")

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE accounts SET failed_logins = 'many'",
            "UPDATE accounts SET failed_logins = -1",
            "UPDATE accounts SET failed_logins = 1.5",
        ],
    )
    def test_bad_failure_count_is_not_overwritten(self, tmp_path: Path, statement: str) -> None:
        """reserve_login_attempt() never matches a garbage count: False, the row as it was."""
        path = tmp_path / "corrupt.sqlite3"
        account_id = _seed(path)
        _corrupt(path, statement)
        query = "SELECT failed_logins, last_failed_login_at FROM accounts"
        before = _row(path, query)
        with sqlite_storage(path) as storage:
            for expected in (0, 1, 2):
                assert (
                    storage.accounts.reserve_login_attempt(
                        account_id, expected_failures=expected, now=T0
                    )
                    is False
                )
            with pytest.raises(CorruptRecordError):
                storage.accounts.get(account_id)
        assert _row(path, query) == before
        assert before[1] is None

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
                storage.codes.attempt("+77011234567", (b"code",), now=T0, max_attempts=3)
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


_RESERVATIONS = 5


def _reserve_in_threads(path: str, once: str, looped: str, start: Any, results: Any) -> None:
    """Child process: 8 threads reserve once with count 0, then loop read-then-reserve.

    Puts (one-shot outcomes, the counts this process's reservations set, calls made).
    """
    with sqlite_storage(path) as storage:
        accounts = storage.accounts
        local = threading.Barrier(_THREADS_PER_PROCESS)
        lock = threading.Lock()
        wins: list[bool] = []
        counts: list[int] = []
        tries = [0]

        def reserve() -> None:
            local.wait(timeout=60)
            won = accounts.reserve_login_attempt(once, expected_failures=0, now=T0)
            mine: list[int] = []
            calls = 0
            while len(mine) < _RESERVATIONS:
                account = accounts.get(looped)
                assert account is not None
                seen = account.failed_logins
                calls += 1
                if accounts.reserve_login_attempt(looped, expected_failures=seen, now=T0):
                    mine.append(seen + 1)
            with lock:
                wins.append(won)
                counts.extend(mine)
                tries[0] += calls

        threads = [threading.Thread(target=reserve) for _ in range(_THREADS_PER_PROCESS)]
        start.wait(timeout=60)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        results.put((wins, counts, tries[0]))


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

    def test_racing_processes_reserve(self, tmp_path: Path) -> None:
        """4 processes x 8 threads reserving log-in attempts on one account.

        One-shot reservations with the same count: exactly one wins across processes.
        Read-then-reserve loops: every count 1..160 is won exactly once, and the stored
        count equals the number of successful reservations.
        """
        path = str(tmp_path / "reserve.sqlite3")
        with sqlite_storage(path) as storage:
            once = storage.accounts.create(NewAccount(username="once"), now=T0).id
            looped = storage.accounts.create(NewAccount(username="looped"), now=T0).id
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(_PROCESSES)
        results = context.Queue()
        processes = [
            context.Process(target=_reserve_in_threads, args=(path, once, looped, start, results))
            for _ in range(_PROCESSES)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=300) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        results.close()
        results.join_thread()
        one_shot = [won for process_wins, _, _ in outcomes for won in process_wins]
        counts = [count for _, process_counts, _ in outcomes for count in process_counts]
        tries = sum(process_tries for _, _, process_tries in outcomes)
        total = _PROCESSES * _THREADS_PER_PROCESS * _RESERVATIONS
        assert len(one_shot) == _PROCESSES * _THREADS_PER_PROCESS
        assert one_shot.count(True) == 1
        assert sorted(counts) == list(range(1, total + 1))
        assert tries >= total
        with sqlite_storage(path) as storage:
            for account_id, expected in ((once, 1), (looped, total)):
                account = storage.accounts.get(account_id)
                assert account is not None
                assert account.failed_logins == expected


class _TracedDatabase(SQLiteDatabase):
    """A database whose connections record every statement they run."""

    def __init__(self, path: Path) -> None:
        self.statements: list[str] = []
        super().__init__(path)

    def _connect(self) -> sqlite3.Connection:
        connection = super()._connect()
        connection.set_trace_callback(lambda sql: self.statements.append(_shape(sql)))
        return connection


def _shape(statement: str) -> str:
    """The statement with its literals (the trace shows bound values) as ``?``."""
    return re.sub(r"'(?:[^']|'')*'|\b\d+\b", "?", statement)


class TestSingleStatements:
    """Each compare-and-set is one UPDATE ... WHERE inside its write transaction."""

    @pytest.fixture
    def traced(self, tmp_path: Path) -> Iterator[_TracedDatabase]:
        database = _TracedDatabase(tmp_path / "traced.sqlite3")
        try:
            yield database
        finally:
            database.close()

    def test_compare_and_sets_are_single_updates(self, traced: _TracedDatabase) -> None:
        """reserve, mark and the password change: BEGIN IMMEDIATE, one UPDATE, COMMIT."""
        accounts = SQLiteAccountStore(traced)
        account = accounts.create(
            NewAccount(username="aliya", email="a@example.kz", password_hash=SECRET_HASH), now=T0
        )
        reserve = (
            "UPDATE accounts SET failed_logins = ?, last_failed_login_at = ?"
            " WHERE id = ? AND failed_logins = ?"
        )
        mark = "UPDATE accounts SET email_confirmed = 1 WHERE id = ? AND email_key = ?"
        calls: list[tuple[Callable[[], bool], str, tuple[bool, bool]]] = [
            (
                lambda: accounts.reserve_login_attempt(account.id, expected_failures=0, now=T0),
                reserve,
                (True, False),
            ),
            (
                lambda: accounts.mark_email_confirmed(account.id, email="b@example.kz", now=T0),
                mark,
                (False, False),
            ),
            (
                lambda: accounts.mark_email_confirmed(account.id, email="A@example.kz", now=T0),
                mark,
                (True, True),
            ),
            (
                lambda: accounts.set_password_hash(account.id, expected=SECRET_HASH, new="h2"),
                "UPDATE accounts SET password_hash = ?, security_stamp = ?"
                " WHERE id = ? AND password_hash IS ?",
                (True, False),
            ),
            (
                lambda: accounts.set_password_hash(
                    account.id, expected="h2", new="h3", rotate_stamp=False
                ),
                "UPDATE accounts SET password_hash = ? WHERE id = ? AND password_hash IS ?",
                (True, False),
            ),
        ]
        for call, update, answers in calls:
            for answer in answers:  # won or lost, the same single statement
                traced.statements.clear()
                assert call() is answer
                assert traced.statements == ["BEGIN IMMEDIATE", _shape(update), "COMMIT"]

    def test_nothing_runs_for_what_cannot_match(self, traced: _TracedDatabase) -> None:
        """Garbage ids, addresses and huge counts are answered without a statement."""
        accounts = SQLiteAccountStore(traced)
        account = accounts.create(NewAccount(username="aliya", password_hash="h1"), now=T0)
        traced.statements.clear()
        assert not accounts.reserve_login_attempt("", expected_failures=0, now=T0)
        assert not accounts.reserve_login_attempt(account.id, expected_failures=2**63, now=T0)
        assert not accounts.mark_email_confirmed(account.id, email="\ud800", now=T0)
        assert not accounts.mark_email_confirmed("x" * 300, email="a@example.kz", now=T0)
        with pytest.raises(TypeError, match="rotate_stamp"):
            accounts.set_password_hash(account.id, expected="h1", new="h2", rotate_stamp=1)  # type: ignore[arg-type]
        assert traced.statements == []
        assert accounts.get(account.id) == account
