"""SQLite storage: the embedded default, one file, safe across threads and processes.

Everything lives in one SQLite file (standard library :mod:`sqlite3`, no server). The
schema is created on first open and versioned with ``PRAGMA user_version``; the file runs
in WAL mode so readers never wait for the writer. Every read-modify-write runs inside
``BEGIN IMMEDIATE``, which takes SQLite's single write lock for the whole step, so it is
atomic for every thread and every process on the machine that opens the file. Within one
process a lock serialises writers as well, so threads queue instead of polling SQLite's
busy handler; one deadline per call bounds the wait for both.

Times are stored as integer microseconds since 1970-01-01T00:00:00Z. A row that holds
something else (a hand edit, a foreign tool) raises
:class:`~kaspi_identity.CorruptRecordError`; nothing is overwritten.

A new file is created with mode 0600 (owner only), so other local users cannot read the
password hashes; the mode of an existing file is never changed.

Use one machine's local disk: SQLite's locking is not reliable over network file systems.
For several app servers, use the PostgreSQL or Redis adapters.
"""

from __future__ import annotations

import itertools
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar

from .._errors import AccountNotFoundError, CorruptRecordError, DuplicateAccountError, StorageError
from ._async import AsyncStorage, coroutining
from ._checks import (
    LEDGER_GRACE,
    check_account_id,
    check_expected_hash,
    check_login,
    new_security_stamp,
    to_microseconds,
    utc_microseconds,
)
from ._logic import (
    CodeState,
    attempt_code,
    check_append,
    check_attempt,
    check_changed_at,
    check_consume,
    check_create,
    check_create_with_history,
    check_entry,
    check_grace,
    check_hit,
    check_mark_email,
    check_must_change,
    check_put,
    check_recent,
    check_replace_password,
    check_reserve,
    check_rotate_stamp,
    check_set_email,
    check_update_contact,
    contact_keys,
    fresh_account,
    hit_window,
    login_keys,
    put_code,
)
from ._outbox import (
    OUTBOX_COLUMNS,
    OutboxEntry,
    OutboxMessage,
    OutboxState,
    OutboxStatus,
    check_claim,
    check_enqueue,
    check_list,
    check_message_id,
    check_messages,
    check_messages_callable,
    check_purge,
    check_settle,
    claim_state,
    complete_state,
    decode_outbox,
    entry_of,
    fail_state,
    initial_state,
    outbox_row,
    retry_at_microseconds,
    retry_state,
)
from ._protocols import LoginKind, Storage
from ._records import Account, CodeAttempt, Contact, HistoryEntry, NewAccount, RateLimitResult
from ._rows import (
    corrupt,
    decode_code_state,
    decode_history_entry,
    decode_names,
    decode_window_state,
    encode_names,
    read_int,
    read_optional_time,
    read_time,
)

__all__ = [
    "SCHEMA_VERSION",
    "SQLiteAccountStore",
    "SQLiteAccountWithHistory",
    "SQLiteDatabase",
    "SQLiteOneTimeCodeStore",
    "SQLiteOutboxStore",
    "SQLitePasswordHistoryStore",
    "SQLiteRateLimiter",
    "SQLiteTokenLedger",
    "async_sqlite_storage",
    "sqlite_storage",
]

_T = TypeVar("_T")

# Each step moves the schema from version ``index`` to ``index + 1``. Append, never edit.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
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
    ),
    # 2: every account carries a security stamp. ADD COLUMN needs a constant default, so
    # existing rows hold '' for a moment and then get 128 random bits each, in the same
    # transaction; every later write supplies its own stamp.
    (
        "ALTER TABLE accounts ADD COLUMN security_stamp TEXT NOT NULL DEFAULT ''",
        "UPDATE accounts SET security_stamp = lower(hex(randomblob(16)))",
    ),
    # 3: the IIN/BIN, a fourth unique login (NULL for accounts without one: a UNIQUE index
    # lets any number of rows hold NULL), and the user's names as a JSON list of strings.
    (
        "ALTER TABLE accounts ADD COLUMN iin TEXT",
        "CREATE UNIQUE INDEX accounts_iin ON accounts (iin)",
        "ALTER TABLE accounts ADD COLUMN names TEXT NOT NULL DEFAULT '[]'",
    ),
    # 4: the password's age. An existing password counts as set at the upgrade (a policy
    # with a maximum age then gives every account its full term, not an expiry at once);
    # julianday('now') is the only clock SQL has here, precise to the millisecond.
    (
        "ALTER TABLE accounts ADD COLUMN password_changed_at INTEGER",
        "UPDATE accounts SET password_changed_at ="
        " CAST(ROUND((julianday('now') - 2440587.5) * 86400000000.0) AS INTEGER)"
        " WHERE password_hash IS NOT NULL",
        "ALTER TABLE accounts ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE accounts ADD COLUMN grace_logins_used INTEGER NOT NULL DEFAULT 0",
    ),
    # 5: the durable outbox: letters and SMS waiting for the worker (no secret in clear).
    (
        """
        CREATE TABLE outbox (
            id TEXT PRIMARY KEY NOT NULL,
            channel TEXT NOT NULL,
            kind TEXT NOT NULL,
            recipient TEXT NOT NULL,
            language TEXT NOT NULL,
            payload TEXT NOT NULL,
            account_id TEXT,
            created_at INTEGER NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            last_error TEXT
        ) WITHOUT ROWID
        """,
        "CREATE INDEX outbox_due ON outbox (status, next_attempt_at, created_at)",
        "CREATE INDEX outbox_by_age ON outbox (created_at, id)",
    ),
    # 6: the contact details (AccountStore.update_contact). A phone stored before this
    # release counts as verified at the upgrade: only a verified phone receives reset codes,
    # and otherwise SMS recovery would stop for every existing account at once; phones added
    # from now on are verified by a code first. The other five start empty.
    (
        "ALTER TABLE accounts ADD COLUMN phone_verified INTEGER NOT NULL DEFAULT 0",
        "UPDATE accounts SET phone_verified = 1 WHERE phone IS NOT NULL",
        "ALTER TABLE accounts ADD COLUMN pending_email TEXT",
        "ALTER TABLE accounts ADD COLUMN pending_phone TEXT",
        "ALTER TABLE accounts ADD COLUMN previous_email TEXT",
        "ALTER TABLE accounts ADD COLUMN email_changed_at INTEGER",
        "ALTER TABLE accounts ADD COLUMN time_zone TEXT",
    ),
)

#: The schema version this release creates and understands (``PRAGMA user_version``).
SCHEMA_VERSION = len(_MIGRATIONS)

# Expired rows are swept every this many writes of a store, spreading the cost thin.
_SWEEP_EVERY = 256
_POOL_SIZE = 8
# A write that waited longer than this for the in-process lock lowers its connection's
# busy timeout to what is left of its deadline (and restores it after); below it, the
# connection's own timeout overshoots the deadline by at most this much.
_BUSY_SLACK = 0.01
# SQLite integers are 64-bit: a count this high can never be stored, nor one more than it.
_MAX_COUNT = 2**63 - 1


class SQLiteDatabase:
    """One SQLite file shared by the SQLite stores; creates and migrates the schema.

    Connections are pooled (a connection is used by one thread at a time, so the pool
    never grows past the number of threads working at once). Safe to share between
    threads; after ``fork`` a child opens its own connections. Open it on a local disk.

    Args:
        path: the database file; created with its schema if missing, readable and
            writable by its owner only (mode 0600, and so its ``-wal`` and ``-shm``
            files). The mode of an existing file is left as it is.
        timeout: seconds a write waits in all -- for the other writers of this process and
            for another process's write lock -- before giving up with
            :class:`~kaspi_identity.StorageError`. One deadline per call covers both waits.
        synchronous: ``"FULL"`` (default) makes every commit durable across power loss;
            ``"NORMAL"`` is faster but a power cut may undo the last commits -- including
            the consumption of a token.

    Raises:
        StorageError: the file cannot be opened, is not a SQLite database, or has a schema
            newer than :data:`SCHEMA_VERSION`.
        ValueError: ``path`` is empty or ``":memory:"`` (use the memory adapter),
            ``timeout`` is negative or not finite, or ``synchronous`` is not ``"FULL"`` or
            ``"NORMAL"``.

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        self._path = os.fspath(path)
        if self._path in ("", ":memory:") or self._path.startswith("file::memory:"):
            raise ValueError("SQLite storage needs a file; use memory_storage() for memory")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self._timeout = float(timeout)
        if not 0.0 <= self._timeout < float("inf"):  # also refuses NaN
            raise ValueError("timeout must be a finite number of seconds, at least 0")
        # What sqlite3.connect(timeout=...) gives each connection, in milliseconds.
        self._busy_ms = int(self._timeout * 1000)
        self._synchronous = synchronous
        self._pool_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        try:
            _create_private(self._path)
            self._run(self._migrate, write=False)
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> str:
        """The database file's path."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version stored in the file (``PRAGMA user_version``)."""
        return self._run(_user_version, write=False)

    def close(self) -> None:
        """Close every pooled connection; later calls raise StorageError. Idempotent."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def __enter__(self) -> SQLiteDatabase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self._path!r})"

    def _read(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` on a pooled connection outside a transaction (for single SELECTs).

        :class:`sqlite3.Error` becomes :class:`~kaspi_identity.StorageError`.
        """
        return self._run(operation, write=False)

    def _write(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT``; roll back if it raises.

        The write lock is held from the first statement, so a read-modify-write inside
        ``operation`` is atomic for every thread and process using the file.
        :class:`sqlite3.Error` becomes :class:`~kaspi_identity.StorageError`.
        """
        return self._run(operation, write=True)

    def _run(self, operation: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        deadline = time.monotonic() + self._timeout
        connection = self._acquire()
        reusable = False
        try:
            if write:
                with self._write_locked(deadline):
                    result = self._transaction(connection, operation, deadline)
            else:
                result = operation(connection)
            reusable = True
            return result
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite storage failed: {exc}") from exc
        except BaseException:
            reusable = not connection.in_transaction
            raise
        finally:
            self._release(connection, reusable)

    @contextmanager
    def _write_locked(self, deadline: float) -> Iterator[None]:
        """Hold the in-process write lock, waiting for it no later than ``deadline``.

        Raises:
            StorageError: the lock stayed taken until the deadline (another writer of this
                process waits for, or holds, SQLite's write lock).

        """
        if not self._write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise StorageError(
                "SQLite storage failed: database is locked (no write lock within the"
                f" {self._timeout:g} s timeout)"
            )
        try:
            yield
        finally:
            self._write_lock.release()

    def _transaction(
        self,
        connection: sqlite3.Connection,
        operation: Callable[[sqlite3.Connection], _T],
        deadline: float,
    ) -> _T:
        # SQLite's busy wait gets only what the wait for the in-process lock left of the
        # deadline. Uncontended, nothing is left out and no statement is added.
        left = max(0.0, deadline - time.monotonic())
        lowered = left < self._timeout - _BUSY_SLACK
        if lowered:
            connection.execute(f"PRAGMA busy_timeout = {int(left * 1000)}")
        try:
            connection.execute("BEGIN IMMEDIATE")
            result = operation(connection)
            connection.execute("COMMIT")
            return result
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if lowered:
                connection.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self._path,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database: {exc}") from exc
        try:
            connection.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.Error as exc:
            connection.close()
            raise StorageError(f"cannot open SQLite database: {exc}") from exc
        return connection

    def _acquire(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise StorageError("the SQLite database is closed")
            if os.getpid() != self._pid:
                # A forked child must not touch its parent's connections or locks.
                self._pid = os.getpid()
                self._idle = []
                self._write_lock = threading.Lock()
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _release(self, connection: sqlite3.Connection, reusable: bool) -> None:
        with self._pool_lock:
            if reusable and not self._closed and len(self._idle) < _POOL_SIZE:
                self._idle.append(connection)
                return
        connection.close()

    def _migrate(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA journal_mode = WAL")
        version = _user_version(connection)
        if version == SCHEMA_VERSION:
            return
        self._check_known(version)
        deadline = time.monotonic() + self._timeout
        with self._write_locked(deadline):
            self._transaction(connection, self._apply_migrations, deadline)

    def _apply_migrations(self, connection: sqlite3.Connection) -> None:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = _user_version(connection)
        self._check_known(version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target - 1]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {int(target)}")

    def _check_known(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"the SQLite database {self._path!r} has schema version {version}, newer "
                f"than version {SCHEMA_VERSION} this kaspi-identity knows; upgrade kaspi-identity"
            )


def _create_private(path: str) -> None:
    """Create the database file, empty and readable by its owner only, if it is missing.

    SQLite would create it with mode 0644 (less the umask): every local user could read
    the password hashes. SQLite gives the ``-wal`` and ``-shm`` files the mode of the
    database file, so they are 0600 as well. An existing file (or a symlink) is left as it
    is: its mode is the host's decision, and nothing is chmod-ed behind its back.
    """
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StorageError(f"cannot open SQLite database: {exc}") from exc
    try:
        if hasattr(os, "fchmod"):  # exactly 0600 whatever the umask; POSIX only
            os.fchmod(descriptor, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open SQLite database: {exc}") from exc
    finally:
        os.close(descriptor)


def _user_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


class _SQLiteStore:
    """Common plumbing: the shared database and an opportunistic sweep counter."""

    def __init__(self, database: SQLiteDatabase) -> None:
        if not isinstance(database, SQLiteDatabase):
            raise TypeError(f"database must be a SQLiteDatabase, not {type(database).__name__}")
        self._db = database
        self._writes = itertools.count(1)

    @property
    def database(self) -> SQLiteDatabase:
        """The database this store reads and writes."""
        return self._db

    def close(self) -> None:
        """Close the shared database (every store on it)."""
        self._db.close()

    def _sweep_due(self) -> bool:
        return next(self._writes) % _SWEEP_EVERY == 0


_ACCOUNT_COLUMNS = (
    "id, username, email, phone, password_hash, email_confirmed, failed_logins,"
    " last_failed_login_at, last_login_at, created_at, language, security_stamp, iin, names,"
    " password_changed_at, must_change_password, grace_logins_used, phone_verified,"
    " pending_email, pending_phone, previous_email, email_changed_at, time_zone"
)
_SELECT_ACCOUNT = {
    "id": f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?",  # noqa: S608
    "username": f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE username_key = ?",  # noqa: S608
    "email": f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE email_key = ?",  # noqa: S608
    "phone": f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE phone = ?",  # noqa: S608
    "iin": f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE iin = ?",  # noqa: S608
}
_TAKEN = {
    "username": "SELECT 1 FROM accounts WHERE username_key = ? AND id <> ?",
    "email": "SELECT 1 FROM accounts WHERE email_key = ? AND id <> ?",
    "phone": "SELECT 1 FROM accounts WHERE phone = ? AND id <> ?",
    "iin": "SELECT 1 FROM accounts WHERE iin = ? AND id <> ?",
}


def _decode_account(row: tuple[Any, ...]) -> Account:
    (
        account_id,
        username,
        email,
        phone,
        password_hash,
        confirmed,
        failed,
        last_failed,
        last_login,
        created,
        language,
        stamp,
        iin,
        names,
        changed,
        must_change,
        grace_used,
        phone_verified,
        pending_email,
        pending_phone,
        previous_email,
        email_changed_at,
        time_zone,
    ) = row
    if confirmed not in (0, 1) or type(confirmed) is not int:
        raise corrupt("account", "email_confirmed is not 0 or 1")
    if must_change not in (0, 1) or type(must_change) is not int:
        raise corrupt("account", "must_change_password is not 0 or 1")
    if phone_verified not in (0, 1) or type(phone_verified) is not int:
        raise corrupt("account", "phone_verified is not 0 or 1")
    stored_names = decode_names(names)
    try:
        return Account(
            id=account_id,  # Account checks every field
            username=username,
            email=email,
            phone=phone,
            password_hash=password_hash,
            email_confirmed=bool(confirmed),
            failed_logins=read_int(failed, "account", "failed_logins"),
            last_failed_login_at=read_optional_time(last_failed, "account", "last_failed_login_at"),
            last_login_at=read_optional_time(last_login, "account", "last_login_at"),
            created_at=read_time(created, "account", "created_at"),
            language=language,
            security_stamp=stamp,
            iin=iin,
            names=stored_names,
            password_changed_at=read_optional_time(changed, "account", "password_changed_at"),
            must_change_password=bool(must_change),
            grace_logins_used=read_int(grace_used, "account", "grace_logins_used"),
            phone_verified=bool(phone_verified),
            pending_email=pending_email,
            pending_phone=pending_phone,
            previous_email=previous_email,
            email_changed_at=read_optional_time(email_changed_at, "account", "email_changed_at"),
            time_zone=time_zone,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CorruptRecordError):
            raise
        raise corrupt("account", str(exc)) from exc


def _insert_account(
    connection: sqlite3.Connection, account: Account, keys: dict[str, str | None]
) -> None:
    """Check the unique keys in order, then insert ``account``; inside a write transaction."""
    for field, value in keys.items():
        if value is not None and connection.execute(_TAKEN[field], (value, account.id)).fetchone():
            raise DuplicateAccountError(field)
    try:
        connection.execute(
            "INSERT INTO accounts (id, username, username_key, email, email_key, phone,"
            " password_hash, email_confirmed, failed_logins, created_at, language,"
            " security_stamp, iin, names, password_changed_at, must_change_password,"
            " grace_logins_used, phone_verified, time_zone)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                account.id,
                account.username,
                keys["username"],
                account.email,
                keys["email"],
                account.phone,
                account.password_hash,
                int(account.email_confirmed),
                to_microseconds(account.created_at),
                account.language,
                account.security_stamp,
                account.iin,
                encode_names(account.names),
                None
                if account.password_changed_at is None
                else to_microseconds(account.password_changed_at),
                int(account.must_change_password),
                int(account.phone_verified),
                account.time_zone,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise _duplicate(exc) from exc


def _contact_swap(
    key: str, expected_stamp: str, contact: Contact, *, rotate_stamp: bool, clear_password: bool
) -> tuple[str, tuple[object, ...]]:
    """Return the one ``UPDATE`` of the contact compare-and-set, and its parameters."""
    keys = contact_keys(contact)
    sets = [
        "email = ?, email_key = ?, email_confirmed = ?, phone = ?, phone_verified = ?,"
        " pending_email = ?, pending_phone = ?, previous_email = ?, email_changed_at = ?,"
        " time_zone = ?"
    ]
    values: list[object] = [
        contact.email,
        keys["email"],
        int(contact.email_confirmed),
        contact.phone,
        int(contact.phone_verified),
        contact.pending_email,
        contact.pending_phone,
        contact.previous_email,
        None if contact.email_changed_at is None else to_microseconds(contact.email_changed_at),
        contact.time_zone,
    ]
    if rotate_stamp:
        sets.append("security_stamp = ?")
        values.append(new_security_stamp())
    if clear_password:
        sets.append(
            "password_hash = NULL, password_changed_at = NULL, must_change_password = 0,"
            " grace_logins_used = 0"
        )
    statement = f"UPDATE accounts SET {', '.join(sets)} WHERE id = ? AND security_stamp = ?"  # noqa: S608
    return statement, (*values, key, expected_stamp)


def _swap_contact(
    connection: sqlite3.Connection,
    key: str,
    contact: Contact,
    swap: tuple[str, tuple[object, ...]],
) -> Account | None:
    """Run the contact ``UPDATE`` inside a write transaction; the account as written, or None.

    The unique indexes refuse a taken e-mail or phone; the lock of the transaction is held,
    so the check that names it (e-mail first, then phone, as at create) sees what refused.
    """
    statement, parameters = swap
    try:
        if connection.execute(statement, parameters).rowcount != 1:
            return None
    except sqlite3.IntegrityError as exc:
        for field, value in contact_keys(contact).items():
            if value is not None and connection.execute(_TAKEN[field], (value, key)).fetchone():
                raise DuplicateAccountError(field) from None
        raise _duplicate(exc) from exc
    row = connection.execute(_SELECT_ACCOUNT["id"], (key,)).fetchone()
    return _decode_account(row)


def _hash_swap(
    key: str, expected: str | None, new: str, *, rotate_stamp: bool, changed_at: datetime | None
) -> tuple[str, tuple[object, ...]]:
    """Return the one ``UPDATE`` of the password compare-and-set, and its parameters."""
    sets: list[str] = ["password_hash = ?"]
    values: list[object] = [new]
    if rotate_stamp:
        sets.append("security_stamp = ?")
        values.append(new_security_stamp())
    if changed_at is not None:
        sets.append("password_changed_at = ?, must_change_password = 0, grace_logins_used = 0")
        values.append(to_microseconds(changed_at))
    statement = f"UPDATE accounts SET {', '.join(sets)} WHERE id = ? AND password_hash IS ?"  # noqa: S608
    return statement, (*values, key, expected)


def _append_history(
    connection: sqlite3.Connection, account_id: str, entry: HistoryEntry, keep: int
) -> None:
    """Insert ``entry`` and trim to the newest ``keep``; inside a write transaction."""
    connection.execute(
        "INSERT INTO password_history (account_id, password_hash, fingerprint, created_at)"
        " VALUES (?, ?, ?, ?)",
        (account_id, entry.password_hash, entry.fingerprint, to_microseconds(entry.created_at)),
    )
    connection.execute(
        "DELETE FROM password_history WHERE account_id = ? AND seq NOT IN"
        " (SELECT seq FROM password_history WHERE account_id = ?"
        " ORDER BY seq DESC LIMIT ?)",
        (account_id, account_id, keep),
    )


class SQLiteAccountStore(_SQLiteStore):
    """An :class:`~kaspi_identity.storage.AccountStore` in the ``accounts`` table.

    User names and e-mails are unique through indexed ``*_key`` columns holding their
    casefolded form; ids are 32 random hex digits.
    """

    def create(self, new: NewAccount, *, now: datetime) -> Account:
        """Store ``new`` under a fresh random id; see the protocol."""
        now = check_create(new, now)
        account = fresh_account(new, secrets.token_hex(16), now)
        keys = login_keys(new)
        self._db._write(lambda connection: _insert_account(connection, account, keys))
        return account

    def get(self, account_id: str) -> Account | None:
        """Return the account with this id, or ``None``."""
        key = check_account_id(account_id)
        return None if key is None else self._select("id", key)

    def find_by_login(self, kind: LoginKind, value: str) -> Account | None:
        """Return the account with this user name, e-mail, phone or IIN, or ``None``."""
        key = check_login(kind, value)
        return None if key is None else self._select(kind, key)

    def set_password_hash(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        rotate_stamp: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """Compare-and-set the hash (and a fresh stamp) in one ``UPDATE``; see the protocol."""
        can_match = check_expected_hash(expected, new)
        check_rotate_stamp(rotate_stamp)
        changed_at = check_changed_at(now)
        key = check_account_id(account_id)
        if key is None or not can_match:
            return False
        statement, parameters = _hash_swap(
            key, expected, new, rotate_stamp=rotate_stamp, changed_at=changed_at
        )

        def swap(connection: sqlite3.Connection) -> bool:
            return connection.execute(statement, parameters).rowcount == 1

        return self._db._write(swap)

    def set_email(self, account_id: str, email: str, *, confirmed: bool = False) -> None:
        """Set the e-mail and its confirmation flag; see the protocol."""
        check_set_email(email, confirmed)
        key = check_account_id(account_id)
        if key is None:
            raise AccountNotFoundError("no account has this id")

        def update(connection: sqlite3.Connection) -> None:
            if not connection.execute("SELECT 1 FROM accounts WHERE id = ?", (key,)).fetchone():
                raise AccountNotFoundError("no account has this id")
            if connection.execute(_TAKEN["email"], (email.casefold(), key)).fetchone():
                raise DuplicateAccountError("email")
            connection.execute(
                "UPDATE accounts SET email = ?, email_key = ?, email_confirmed = ?,"
                " security_stamp = ? WHERE id = ?",
                (email, email.casefold(), int(confirmed), new_security_stamp(), key),
            )

        self._db._write(update)

    def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
    ) -> Account | None:
        """Compare-and-set the contact on the stamp in one ``UPDATE``; see the protocol.

        ``UPDATE ... WHERE id = ? AND security_stamp = ?``, then the row read back in the
        same transaction; the unique indexes refuse a taken e-mail or phone.
        """
        key = check_update_contact(
            account_id,
            expected_stamp,
            contact,
            ("rotate_stamp", rotate_stamp),
            ("clear_password", clear_password),
        )
        if key is None:
            return None
        swap = _contact_swap(
            key, expected_stamp, contact, rotate_stamp=rotate_stamp, clear_password=clear_password
        )
        return self._db._write(lambda connection: _swap_contact(connection, key, contact, swap))

    def mark_email_confirmed(self, account_id: str, *, email: str, now: datetime) -> bool:
        """Mark the e-mail confirmed if it still equals ``email``, in one ``UPDATE``."""
        email_key, _ = check_mark_email(email, now)
        key = check_account_id(account_id)
        if key is None or email_key is None:
            return False

        def mark(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE accounts SET email_confirmed = 1 WHERE id = ? AND email_key = ?",
                (key, email_key),
            )
            return cursor.rowcount == 1

        return self._db._write(mark)

    def reserve_login_attempt(
        self, account_id: str, *, expected_failures: int, now: datetime
    ) -> bool:
        """Count an attempt if the count is still ``expected_failures``, in one ``UPDATE``."""
        at = to_microseconds(check_reserve(account_id, expected_failures, now))
        key = check_account_id(account_id)
        if key is None or expected_failures >= _MAX_COUNT:
            return False  # no account has this id; no stored count can be this high

        def reserve(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE accounts SET failed_logins = ?, last_failed_login_at = ?"
                " WHERE id = ? AND failed_logins = ?",
                (expected_failures + 1, at, key, expected_failures),
            )
            return cursor.rowcount == 1

        return self._db._write(reserve)

    def record_login_success(self, account_id: str, *, now: datetime) -> None:
        """Reset the failure count and set the last login time."""
        at = utc_microseconds(now)
        self._update_one(
            account_id,
            "UPDATE accounts SET failed_logins = 0, last_login_at = ? WHERE id = ?",
            (at,),
        )

    def clear_login_failures(self, account_id: str) -> None:
        """Reset the failure count without recording a login."""
        self._update_one(account_id, "UPDATE accounts SET failed_logins = 0 WHERE id = ?", ())

    def set_must_change_password(self, account_id: str, required: bool) -> None:
        """Set or clear the must-change flag in one ``UPDATE``; see the protocol."""
        check_must_change(account_id, required)
        self._update_one(
            account_id,
            "UPDATE accounts SET must_change_password = ? WHERE id = ?",
            (int(required),),
        )

    def use_grace_login(self, account_id: str, *, expected: int) -> bool:
        """Count a grace log-in if the count is still ``expected``, in one ``UPDATE``."""
        check_grace(account_id, expected)
        key = check_account_id(account_id)
        if key is None or expected >= _MAX_COUNT:
            return False

        def use(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "UPDATE accounts SET grace_logins_used = ? WHERE id = ? AND grace_logins_used = ?",
                (expected + 1, key, expected),
            )
            return cursor.rowcount == 1

        return self._db._write(use)

    def _update_one(self, account_id: str, statement: str, parameters: tuple[object, ...]) -> None:
        key = check_account_id(account_id)
        if key is None:
            raise AccountNotFoundError("no account has this id")

        def update(connection: sqlite3.Connection) -> None:
            if connection.execute(statement, (*parameters, key)).rowcount != 1:
                raise AccountNotFoundError("no account has this id")

        self._db._write(update)

    def _select(self, column: str, value: str) -> Account | None:
        def select(connection: sqlite3.Connection) -> tuple[object, ...] | None:
            row: tuple[object, ...] | None = connection.execute(
                _SELECT_ACCOUNT[column], (value,)
            ).fetchone()
            return row

        row = self._db._read(select)
        return None if row is None else _decode_account(row)


def _duplicate(exc: sqlite3.IntegrityError) -> StorageError | DuplicateAccountError:
    message = str(exc)
    columns = (("username", "username_key"), ("email", "email_key"), ("phone", "phone"))
    for field, column in (*columns, ("iin", "iin")):
        if f"accounts.{column}" in message:
            return DuplicateAccountError(field)
    return StorageError(f"SQLite storage failed: {exc}")


class SQLitePasswordHistoryStore(_SQLiteStore):
    """A :class:`~kaspi_identity.storage.PasswordHistoryStore` in ``password_history``."""

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Append ``entry`` and trim to the newest ``keep`` in one transaction."""
        check_append(account_id, entry, keep)
        self._db._write(lambda connection: _append_history(connection, account_id, entry, keep))

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Return at most ``limit`` entries, newest first."""
        check_recent(account_id, limit)

        def select(connection: sqlite3.Connection) -> list[tuple[object, ...]]:
            return connection.execute(
                "SELECT password_hash, fingerprint, created_at FROM password_history"
                " WHERE account_id = ? ORDER BY seq DESC LIMIT ?",
                (account_id, limit),
            ).fetchall()

        return [decode_history_entry(row) for row in self._db._read(select)]


class SQLiteAccountWithHistory(_SQLiteStore):
    """An :class:`~kaspi_identity.storage.AccountWithHistory` on one :class:`SQLiteDatabase`.

    Each call is one ``BEGIN IMMEDIATE`` transaction running the very statements of
    :class:`SQLiteAccountStore` (the checks and ``INSERT`` of ``create``, the single
    ``UPDATE`` of ``set_password_hash``) and of :class:`SQLitePasswordHistoryStore`
    (``INSERT`` and trim), and, made with an ``outbox``, the ``INSERT`` of each message; a
    failure of any of them rolls the whole call back.
    """

    def __init__(
        self, database: SQLiteDatabase, *, outbox: SQLiteOutboxStore | None = None
    ) -> None:
        """Work on ``database`` (and enqueue into ``outbox``, a store on the same file)."""
        super().__init__(database)
        if outbox is not None and (
            not isinstance(outbox, SQLiteOutboxStore) or outbox.database is not database
        ):
            raise TypeError("outbox must be a SQLiteOutboxStore on the same database")
        self._outbox = outbox

    @property
    def outbox_store(self) -> SQLiteOutboxStore | None:
        """The outbox the messages given to each call are enqueued in, or ``None``."""
        return self._outbox

    def covers(self, accounts: object, history: object) -> bool:
        """Whether ``accounts`` and ``history`` are SQLite stores on this same database."""
        return (
            isinstance(accounts, SQLiteAccountStore)
            and isinstance(history, SQLitePasswordHistoryStore)
            and accounts.database is self._db
            and history.database is self._db
        )

    def create_with_history(
        self,
        new: NewAccount,
        *,
        now: datetime,
        entry: Callable[[Account], HistoryEntry] | None,
        keep: int,
        messages: Callable[[Account], Sequence[OutboxMessage]] | None = None,
    ) -> Account:
        """Create the account and append ``entry(account)`` in one transaction."""
        now = check_create_with_history(new, now, entry, keep)
        check_messages_callable(messages, self._outbox)
        account = fresh_account(new, secrets.token_hex(16), now)
        keys = login_keys(new)
        queued = () if messages is None else check_messages(messages(account), self._outbox)

        def create(connection: sqlite3.Connection) -> None:
            _insert_account(connection, account, keys)
            _insert_messages(connection, queued)
            if entry is not None:
                _append_history(connection, account.id, check_entry(entry(account)), keep)

        self._db._write(create)
        return account

    def replace_password(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        entry: HistoryEntry | None,
        keep: int,
        now: datetime | None = None,
        messages: Sequence[OutboxMessage] = (),
    ) -> bool:
        """Compare-and-set the hash (a new stamp) and append ``entry`` in one transaction."""
        key = check_replace_password(account_id, expected, new, entry, keep)
        changed_at = check_changed_at(now)
        queued = check_messages(messages, self._outbox)
        if key is None:
            return False
        statement, parameters = _hash_swap(
            key, expected, new, rotate_stamp=True, changed_at=changed_at
        )

        def replace(connection: sqlite3.Connection) -> bool:
            if connection.execute(statement, parameters).rowcount != 1:
                return False
            _insert_messages(connection, queued)
            if entry is not None:
                _append_history(connection, key, entry, keep)
            return True

        return self._db._write(replace)

    def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
        messages: Sequence[OutboxMessage] = (),
    ) -> Account | None:
        """The store's contact compare-and-set and the ``messages`` in one transaction."""
        key = check_update_contact(
            account_id,
            expected_stamp,
            contact,
            ("rotate_stamp", rotate_stamp),
            ("clear_password", clear_password),
        )
        queued = check_messages(messages, self._outbox)
        if key is None:
            return None
        swap = _contact_swap(
            key, expected_stamp, contact, rotate_stamp=rotate_stamp, clear_password=clear_password
        )

        def update(connection: sqlite3.Connection) -> Account | None:
            account = _swap_contact(connection, key, contact, swap)
            if account is not None:
                _insert_messages(connection, queued)
            return account

        return self._db._write(update)


class SQLiteTokenLedger(_SQLiteStore):
    """A :class:`~kaspi_identity.storage.TokenLedger`: a primary-key insert per token id.

    Ids are kept 5 minutes past their expiry, then swept.
    """

    def consume(self, token_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """Record ``token_id`` as used; ``True`` only the first time, before expiry."""
        expires, at = check_consume(token_id, expires_at, now)
        if expires <= at:
            return False
        sweep = self._sweep_due()

        def insert(connection: sqlite3.Connection) -> bool:
            if sweep:
                connection.execute(
                    "DELETE FROM consumed_tokens WHERE expires_at <= ?",
                    (at - LEDGER_GRACE // timedelta(microseconds=1),),
                )
            cursor = connection.execute(
                "INSERT OR IGNORE INTO consumed_tokens (token_id, expires_at) VALUES (?, ?)",
                (token_id, expires),
            )
            return cursor.rowcount == 1

        return self._db._write(insert)


class SQLiteOneTimeCodeStore(_SQLiteStore):
    """A :class:`~kaspi_identity.storage.OneTimeCodeStore` in ``one_time_codes``."""

    def put(
        self,
        key: str,
        code_hash: bytes,
        *,
        expires_at: datetime,
        now: datetime,
        failure_window: timedelta,
    ) -> None:
        """Store a new code for ``key``, keeping the failure counter; see the protocol."""
        expires, at, window = check_put(
            key, code_hash, expires_at=expires_at, now=now, failure_window=failure_window
        )
        sweep = self._sweep_due()

        def put(connection: sqlite3.Connection) -> None:
            if sweep:
                connection.execute(
                    "DELETE FROM one_time_codes"
                    " WHERE (code_hash IS NULL OR expires_at IS NULL OR expires_at <= ?)"
                    " AND (window_ends_at IS NULL OR window_ends_at <= ?)",
                    (at, at),
                )
            state = put_code(
                _load_code(connection, key),
                code_hash,
                expires_at=expires,
                now=at,
                failure_window=window,
            )
            _store_code(connection, key, state)

        self._db._write(put)

    def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        """Count one attempt and compare with every candidate, in one transaction."""
        at, hashes = check_attempt(key, candidates, now=now, max_attempts=max_attempts)

        def attempt(connection: sqlite3.Connection) -> CodeAttempt:
            state = _load_code(connection, key)
            updated, outcome = attempt_code(state, hashes, now=at, max_attempts=max_attempts)
            if updated is None:
                if state is not None:
                    connection.execute("DELETE FROM one_time_codes WHERE code_key = ?", (key,))
            elif updated is not state:
                _store_code(connection, key, updated)
            return outcome

        return self._db._write(attempt)


def _load_code(connection: sqlite3.Connection, key: str) -> CodeState | None:
    row = connection.execute(
        "SELECT code_hash, expires_at, failure_window, failures, window_ends_at"
        " FROM one_time_codes WHERE code_key = ?",
        (key,),
    ).fetchone()
    return decode_code_state(row)


def _store_code(connection: sqlite3.Connection, key: str, state: CodeState) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO one_time_codes"
        " (code_key, code_hash, expires_at, failure_window, failures, window_ends_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            key,
            state.code_hash,
            state.expires_at,
            state.failure_window,
            state.failures,
            state.window_ends_at,
        ),
    )


class SQLiteRateLimiter(_SQLiteStore):
    """A fixed-window :class:`~kaspi_identity.storage.RateLimiter` in ``rate_limits``."""

    def hit(self, key: str, *, limit: int, window: timedelta, now: datetime) -> RateLimitResult:
        """Count a hit on ``key`` in one transaction; see the protocol."""
        length, at = check_hit(key, limit=limit, window=window, now=now)
        sweep = self._sweep_due()

        def hit(connection: sqlite3.Connection) -> RateLimitResult:
            if sweep:
                connection.execute(
                    "DELETE FROM rate_limits WHERE window_start + window_length <= ?", (at,)
                )
            row = connection.execute(
                "SELECT window_start, window_length, hits FROM rate_limits WHERE limit_key = ?",
                (key,),
            ).fetchone()
            state = decode_window_state(row)
            updated, result = hit_window(state, now=at, limit=limit, window=length)
            connection.execute(
                "INSERT OR REPLACE INTO rate_limits (limit_key, window_start, window_length, hits)"
                " VALUES (?, ?, ?, ?)",
                (key, updated.start, updated.length, updated.hits),
            )
            return result

        return self._db._write(hit)


_OUTBOX_SELECT = f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox"  # noqa: S608
_OUTBOX_INSERT = (
    f"INSERT OR IGNORE INTO outbox ({', '.join(OUTBOX_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('?' * len(OUTBOX_COLUMNS))})"
)


def _insert_messages(connection: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
    """Enqueue each message, due at its ``created_at`` (inside the caller's transaction)."""
    for message in messages:
        at = to_microseconds(message.created_at)
        connection.execute(_OUTBOX_INSERT, outbox_row(message, initial_state(message, at)))


def _load_entry(
    connection: sqlite3.Connection, key: str
) -> tuple[OutboxMessage, OutboxState] | None:
    row = connection.execute(f"{_OUTBOX_SELECT} WHERE id = ?", (key,)).fetchone()
    return decode_outbox(row)


def _store_state(connection: sqlite3.Connection, key: str, state: OutboxState) -> None:
    connection.execute(
        "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, updated_at = ?,"
        " last_error = ? WHERE id = ?",
        (state.status, state.attempts, state.next_at, state.updated_at, state.error, key),
    )


class SQLiteOutboxStore(_SQLiteStore):
    """An :class:`~kaspi_identity.storage.OutboxStore` in the ``outbox`` table.

    Every write is one ``BEGIN IMMEDIATE`` transaction, so a claim's select and update are
    atomic for every process on the file.
    """

    def enqueue(self, message: OutboxMessage, *, now: datetime) -> bool:
        """Store ``message``, due at ``now``; see the protocol."""
        at = check_enqueue(message, now)
        row = outbox_row(message, initial_state(message, at))

        def insert(connection: sqlite3.Connection) -> bool:
            return connection.execute(_OUTBOX_INSERT, row).rowcount == 1

        return self._db._write(insert)

    def claim(self, *, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        """Lease up to ``limit`` due pending entries in one transaction; see the protocol."""
        at, length, count = check_claim(now, lease, limit)

        def claim(connection: sqlite3.Connection) -> list[OutboxEntry]:
            rows = connection.execute(
                f"{_OUTBOX_SELECT} WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, created_at, id LIMIT ?",
                (at, count),
            ).fetchall()
            claimed = []
            for row in rows:
                decoded = decode_outbox(row)
                assert decoded is not None  # a row was read
                message, state = decoded
                new = claim_state(state, at, length)
                if new is None:
                    continue
                _store_state(connection, message.id, new)
                claimed.append(entry_of(message, new))
            return claimed

        return self._db._write(claim)

    def _settle(self, key: str, change: Callable[[OutboxState], OutboxState | None]) -> bool:
        def settle(connection: sqlite3.Connection) -> bool:
            loaded = _load_entry(connection, key)
            new = None if loaded is None else change(loaded[1])
            if new is None:
                return False
            _store_state(connection, key, new)
            return True

        return self._db._write(settle)

    def complete(self, message_id: str, *, attempt: int, now: datetime) -> bool:
        """Mark the entry sent if ``attempt`` is its latest claim; see the protocol."""
        key, count, at, _ = check_settle(message_id, attempt, now)
        return self._settle(key, lambda state: complete_state(state, count, at))

    def fail(
        self,
        message_id: str,
        *,
        attempt: int,
        now: datetime,
        retry_at: datetime | None,
        error: str,
    ) -> bool:
        """Record a failed attempt; see the protocol."""
        key, count, at, label = check_settle(message_id, attempt, now, error)
        again = retry_at_microseconds(retry_at)
        return self._settle(key, lambda state: fail_state(state, count, at, again, label))

    def get(self, message_id: str) -> OutboxEntry | None:
        """Return the entry with this id, or ``None``."""
        key = check_message_id(message_id)
        loaded = self._db._read(lambda connection: _load_entry(connection, key))
        return None if loaded is None else entry_of(*loaded)

    def list(self, *, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` entries of ``status`` (or all), oldest first."""
        wanted, count = check_list(status, limit)

        def select(connection: sqlite3.Connection) -> list[tuple[object, ...]]:
            if wanted is None:
                query, parameters = f"{_OUTBOX_SELECT} ORDER BY created_at, id LIMIT ?", (count,)
            else:
                query = f"{_OUTBOX_SELECT} WHERE status = ? ORDER BY created_at, id LIMIT ?"
                parameters = (wanted, count)  # type: ignore[assignment]
            return list(connection.execute(query, parameters).fetchall())

        entries = []
        for row in self._db._read(select):
            decoded = decode_outbox(row)
            assert decoded is not None
            entries.append(entry_of(*decoded))
        return entries

    def retry(self, message_id: str, *, now: datetime) -> bool:
        """Make a dead entry pending again; see the protocol."""
        key = check_message_id(message_id)
        at = utc_microseconds(now)
        return self._settle(key, lambda state: retry_state(state, at))

    def purge(
        self, *, before: datetime, statuses: tuple[OutboxStatus, ...] = ("sent", "void")
    ) -> int:
        """Delete settled entries last changed before ``before``; see the protocol."""
        at, chosen = check_purge(before, statuses)
        marks = ", ".join("?" * len(chosen))

        def delete(connection: sqlite3.Connection) -> int:
            return connection.execute(
                f"DELETE FROM outbox WHERE status IN ({marks}) AND updated_at < ?",  # noqa: S608
                (*chosen, at),
            ).rowcount

        return self._db._write(delete)


def sqlite_storage(
    path: str | os.PathLike[str],
    *,
    timeout: float = 30.0,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    outbox: bool = False,
) -> Storage:
    """Open (or create) the SQLite file at ``path`` and return all the stores on it.

    Its ``with_history`` is a :class:`SQLiteAccountWithHistory` on the same file. With
    ``outbox=True`` the bundle has a :class:`SQLiteOutboxStore` too (letters and SMS are
    queued for a worker), which ``with_history`` enqueues into in the same transaction.
    ``storage.close()`` (or a ``with`` block) closes the file. The keyword arguments are
    those of :class:`SQLiteDatabase`.

    Raises:
        StorageError: the file cannot be opened or has a newer schema.

    """
    if not isinstance(outbox, bool):
        raise TypeError(f"outbox must be bool, not {type(outbox).__name__}")
    database = SQLiteDatabase(path, timeout=timeout, synchronous=synchronous)
    queue = SQLiteOutboxStore(database) if outbox else None
    return Storage(
        accounts=SQLiteAccountStore(database),
        history=SQLitePasswordHistoryStore(database),
        ledger=SQLiteTokenLedger(database),
        codes=SQLiteOneTimeCodeStore(database),
        rate_limits=SQLiteRateLimiter(database),
        with_history=SQLiteAccountWithHistory(database, outbox=queue),
        outbox=queue,
    )


def async_sqlite_storage(
    path: str | os.PathLike[str],
    *,
    timeout: float = 30.0,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    threads: int = 4,
    outbox: bool = False,
) -> AsyncStorage:
    """:func:`sqlite_storage` for the async face: each store call runs on a worker thread.

    The stores are those of :func:`sqlite_storage`; every call (a whole transaction) runs
    on one of ``threads`` threads of the bundle's own, so the event loop never waits for
    the disk or for SQLite's write lock. ``await storage.aclose()`` (or ``async with``)
    closes the file and stops the threads; ``outbox`` is as there. docs/async.md compares
    this with a per-statement bridge such as aiosqlite.

    Raises:
        StorageError, ValueError: as :func:`sqlite_storage`; ``ValueError`` also for
            ``threads`` below 1.

    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError("threads must be an int of at least 1")
    return coroutining(
        sqlite_storage(path, timeout=timeout, synchronous=synchronous, outbox=outbox),
        threads=threads,
        name="kaspi-identity-sqlite",
    )
