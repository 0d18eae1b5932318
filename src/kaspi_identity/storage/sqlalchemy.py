"""SQLAlchemy storage: PostgreSQL for several app servers, or SQLite through SQLAlchemy.

Every storage protocol over six tables of a :class:`~sqlalchemy.MetaData` the host can
create (``metadata.create_all(engine)``) or add to its Alembic migrations. PostgreSQL
(psycopg 3) is the backend for deployments with several app servers; SQLite works too, for a
host whose engine already points at a SQLite file. Needs the ``[sqlalchemy]`` extra.

How each promise is kept, on PostgreSQL (default ``READ COMMITTED``):

* the compare-and-sets are each one ``UPDATE ... WHERE``: a password hash (``password_hash
  IS NOT DISTINCT FROM :expected``, with a fresh security stamp in the same statement), a
  log-in reservation (``failed_logins = :expected``) and an e-mail confirmation
  (``email_key = :key``); the ledger's ``consume`` is one ``INSERT ... ON CONFLICT DO
  NOTHING``; each is judged by its row count -- never a read followed by a write;
* one-time codes and rate-limit windows are read ``FOR UPDATE``, changed by the same pure
  functions the in-memory reference uses, and written back in the same transaction; a
  key's first row is inserted with ``ON CONFLICT DO NOTHING`` and, if another caller got
  there first, locked and read again;
* a history append takes a transaction-scoped advisory lock on the account before it
  inserts and trims, so racing appends never leave more than ``keep`` entries: one call of
  a PL/pgSQL function created with the tables (one round trip; each statement in it takes
  its snapshot after the lock is granted), or the same steps as statements in a
  transaction where the function is missing;
* uniqueness of user names (casefolded), e-mails (casefolded), phones and IINs rests on
  unique indexes; the identifiers are checked in one ``SELECT`` (one snapshot, so the first
  taken in the protocol's order is named) and a violation is answered by checking again;
* :class:`SQLAlchemyAccountWithHistory` runs the account's ``INSERT`` or compare-and-set
  ``UPDATE`` and the history's locked insert-and-trim -- the same statements (and function
  call) as above -- in one transaction on one connection, so both take effect or neither
  does.

On SQLite every read-modify-write runs inside ``BEGIN IMMEDIATE`` (SQLite's write lock for
the whole step), and a lock in the process queues writers, as in
:mod:`kaspi_identity.storage.sqlite`.

Times are integer microseconds since 1970-01-01T00:00:00Z; fingerprints and code hashes are
binary; an account's names are a JSON list in a text column. A row that holds something
else raises :class:`~kaspi_identity.CorruptRecordError` and nothing is written. Database
errors -- a lost connection included -- raise :class:`~kaspi_identity.StorageError` with
SQLAlchemy's exception as ``__cause__``, after the transaction was rolled back.

:func:`async_sqlalchemy_storage` is the same stores on an
:class:`~sqlalchemy.ext.asyncio.AsyncEngine` (asyncpg or psycopg's async mode; aiosqlite):
they run on the engine's ``sync_engine`` and each store call -- a whole transaction -- runs
in one ``sqlalchemy.util.greenlet_spawn``, which is how ``AsyncConnection.run_sync`` works,
so the event loop awaits every round trip and nothing is written a second time. The async
drivers are imported only when that factory makes or opens an engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql as _postgresql
    from sqlalchemy.dialects import sqlite as _sqlite
    from sqlalchemy.sql.elements import quoted_name as _quoted_name
    from sqlalchemy.types import NullType
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "kaspi_identity.storage.sqlalchemy needs SQLAlchemy 2 (and psycopg for PostgreSQL): "
        "pip install 'kaspi-identity[sqlalchemy]'"
    ) from _missing

from .._errors import AccountNotFoundError, CorruptRecordError, DuplicateAccountError, StorageError
from ._async import AsyncStorage, coroutining
from ._checks import (
    LEDGER_GRACE,
    STAMP_MAX_LENGTH,
    TOKEN_ID_MAX_LENGTH,
    check_account_id,
    check_expected_hash,
    check_login,
    new_security_stamp,
    require_utc,
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
    MESSAGE_ID_LENGTH,
    OUTBOX_COLUMNS,
    Lease,
    OutboxEntry,
    OutboxMessage,
    OutboxState,
    OutboxStatus,
    Settlement,
    check_claim,
    check_enqueue,
    check_list,
    check_message_id,
    check_messages,
    check_messages_callable,
    check_purge,
    check_settle,
    complete_settlement,
    decode_outbox,
    entry_of,
    fail_settlement,
    initial_state,
    lease_of,
    outbox_row,
    retry_at_microseconds,
    retry_settlement,
)
from ._protocols import LoginKind, Storage
from ._records import (
    MAX_NAMES,
    NAME_MAX_LENGTH,
    TIME_ZONE_MAX_LENGTH,
    Account,
    CodeAttempt,
    Contact,
    HistoryEntry,
    NewAccount,
    RateLimitResult,
)
from ._rows import (
    corrupt,
    decode_code_state,
    decode_history_entry,
    decode_names,
    decode_window_state,
    encode_names,
    read_int,
    read_time,
)

__all__ = [
    "ACCOUNT_FIELDS",
    "SQLAlchemyAccountStore",
    "SQLAlchemyAccountWithHistory",
    "SQLAlchemyDatabase",
    "SQLAlchemyOneTimeCodeStore",
    "SQLAlchemyOutboxStore",
    "SQLAlchemyPasswordHistoryStore",
    "SQLAlchemyRateLimiter",
    "SQLAlchemyTokenLedger",
    "async_sqlalchemy_storage",
    "history_function_sql",
    "make_metadata",
    "metadata",
    "sqlalchemy_storage",
]

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

_T = TypeVar("_T")
# What an async driver's connect raises as it is (asyncpg: a refused or timed-out
# connection), where a sync driver raises its OperationalError, which SQLAlchemy wraps.
_CONNECT_ERRORS = (OSError, TimeoutError, asyncio.TimeoutError)
_Mode = Literal["read", "single", "transaction"]

#: How long a write on SQLite waits for this process's write lock, and (for an engine this
#: module makes from a URL) for SQLite's own lock, before it raises StorageError.
_SQLITE_LOCK_WAIT = 30.0
_INSTALL = "pip install 'kaspi-identity[sqlalchemy]'"
_INFO_KEY = "kaspi_identity.prefix"
_PREFIX = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]{0,29})?")
_US = timedelta(microseconds=1)
# Expired rows are swept every this many writes of a store, at most this many at a time.
_SWEEP_EVERY = 256
_SWEEP_BATCH = 4 * _SWEEP_EVERY
# How often a store re-reads a key whose first row another caller inserted meanwhile, and
# how often create() re-checks identifiers after a unique index refused a row.
_RETRIES = 8
_CREATE_TRIES = 3

#: The fields an account table provides, in the order :class:`SQLAlchemyAccountStore`
#: reads them; also the column names of the library's own accounts table.
ACCOUNT_FIELDS = (
    "id",
    "username",
    "username_key",
    "email",
    "email_key",
    "phone",
    "password_hash",
    "email_confirmed",
    "failed_logins",
    "last_failed_login_at",
    "last_login_at",
    "created_at",
    "language",
    "security_stamp",
    "iin",
    "names",
    "password_changed_at",
    "must_change_password",
    "grace_logins_used",
    "phone_verified",
    "pending_email",
    "pending_phone",
    "previous_email",
    "email_changed_at",
    "time_zone",
)
_TIME_FIELDS = (
    "last_failed_login_at",
    "last_login_at",
    "created_at",
    "password_changed_at",
    "email_changed_at",
)
#: The password-age fields: a host's table may go without them (mapped to ``None``), and
#: then keeps no age -- no maximum age applies and no change can be required.
_AGE_FIELDS = ("password_changed_at", "must_change_password", "grace_logins_used")
#: The contact fields after ``email`` and ``phone`` (see :class:`Contact`). A host's table
#: may go without any of them: without ``phone_verified`` every stored phone counts as
#: verified; without one of the others it reads as ``None`` and cannot be written.
_CONTACT_FIELDS = (
    "phone_verified",
    "pending_email",
    "pending_phone",
    "previous_email",
    "email_changed_at",
    "time_zone",
)
#: Fields a host's table may go without, mapped to ``None`` in ``columns``.
_OPTIONAL_FIELDS = ("iin", *_AGE_FIELDS, *_CONTACT_FIELDS)
#: The longest ``names`` the store writes: compact JSON of 8 names of 128 characters, each
#: character escaped as ``\u00XX`` at worst (control characters; the rest stay as they are).
_NAMES_TEXT_MAX_LENGTH = 2 + MAX_NAMES * (2 + 6 * NAME_MAX_LENGTH) + MAX_NAMES - 1
# Longer stored text is not parsed at all (a JSON column may add spaces and \u escapes).
_NAMES_READ_LIMIT = 4 * _NAMES_TEXT_MAX_LENGTH
_MISSING_HINTS = {
    "security_stamp": (
        f" (add a NOT NULL String({STAMP_MAX_LENGTH}) column filled with random values;"
        " docs/storage.md shows the migration)"
    ),
    "iin": (
        " (add a nullable String(12) column with a unique constraint, or map 'iin' to None"
        " in columns for a table without IIN logins; docs/storage.md shows the migration)"
    ),
    "names": (
        " (add a NOT NULL Text column with the default '[]'; docs/storage.md shows the migration)"
    ),
    **dict.fromkeys(
        _AGE_FIELDS,
        " (add the three password-age columns, or map all three to None in columns for a"
        " table that keeps no password age; docs/storage.md shows the migration)",
    ),
    **dict.fromkeys(
        _CONTACT_FIELDS,
        " (add the six contact columns, or map the missing ones to None in columns;"
        " docs/storage.md shows the migration)",
    ),
}
_KEY_FIELDS = {"username": "username_key", "email": "email_key", "phone": "phone", "iin": "iin"}


def make_metadata(prefix: str = "kaspi_", *, schema: str | None = None) -> sa.MetaData:
    """Return a new :class:`~sqlalchemy.MetaData` holding the six tables, named with ``prefix``.

    The tables are ``<prefix>accounts``, ``<prefix>password_history``,
    ``<prefix>consumed_tokens``, ``<prefix>one_time_codes``, ``<prefix>rate_limits`` and
    ``<prefix>outbox`` (used only by a bundle made with ``outbox=True``), in
    ``schema`` if given (PostgreSQL). Create them with ``create_all(engine)`` or through
    Alembic; pass the same metadata to :class:`SQLAlchemyDatabase`.

    Raises:
        ValueError: ``prefix`` is not empty or letters, digits and ``_`` (at most 30,
            not starting with a digit).

    """
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError("prefix must be letters, digits and '_' (at most 30, no leading digit)")
    if schema is not None and (not isinstance(schema, str) or not schema):
        raise ValueError("schema must be a non-empty str or None")
    md = sa.MetaData(schema=schema, info={_INFO_KEY: prefix})
    p = prefix
    sa.Table(
        f"{p}accounts",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(254)),
        # Casefolding can lengthen a string ("ß" -> "ss"), so the keys get more room.
        sa.Column("username_key", sa.String(1024)),
        sa.Column("email", sa.String(254)),
        sa.Column("email_key", sa.String(1024)),
        sa.Column("phone", sa.String(16)),
        sa.Column("password_hash", sa.String(1024)),
        sa.Column("email_confirmed", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("last_failed_login_at", sa.BigInteger()),
        sa.Column("last_login_at", sa.BigInteger()),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        # Random, replaced with every password or e-mail change; see docs/storage.md for
        # adding it to an existing table.
        sa.Column("security_stamp", sa.String(STAMP_MAX_LENGTH), nullable=False),
        # A Kazakh IIN/BIN log-in (12 digits), unique as an exact string.
        sa.Column("iin", sa.String(12)),
        # The user's names as a JSON array of strings, for the personal-data rule of later
        # password changes; docs/storage.md shows how an existing table adds both.
        sa.Column("names", sa.Text(), nullable=False, server_default="[]"),
        # The password's age (docs/policy.md "Password age"); docs/storage.md shows how an
        # existing table adds the three columns.
        sa.Column("password_changed_at", sa.BigInteger()),
        sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("grace_logins_used", sa.Integer(), nullable=False, server_default="0"),
        # The contact details (AccountStore.update_contact); docs/storage.md shows how an
        # existing table adds the six columns, its phones counted as verified.
        sa.Column("phone_verified", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("pending_email", sa.String(254)),
        sa.Column("pending_phone", sa.String(16)),
        sa.Column("previous_email", sa.String(254)),
        sa.Column("email_changed_at", sa.BigInteger()),
        sa.Column("time_zone", sa.String(TIME_ZONE_MAX_LENGTH)),
        sa.UniqueConstraint("username_key", name=f"uq_{p}accounts_username_key"),
        sa.UniqueConstraint("email_key", name=f"uq_{p}accounts_email_key"),
        sa.UniqueConstraint("phone", name=f"uq_{p}accounts_phone"),
        sa.UniqueConstraint("iin", name=f"uq_{p}accounts_iin"),
    )
    history = sa.Table(
        f"{p}password_history",
        md,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("account_id", sa.String(256), nullable=False),
        sa.Column("password_hash", sa.String(1024), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Index(f"ix_{p}password_history_account", "account_id", "seq"),
        sqlite_autoincrement=True,
    )
    _attach_history_function(history)
    sa.Table(
        f"{p}consumed_tokens",
        md,
        sa.Column("token_id", sa.String(TOKEN_ID_MAX_LENGTH), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Index(f"ix_{p}consumed_tokens_expires_at", "expires_at"),
        sqlite_with_rowid=False,
    )
    sa.Table(
        f"{p}one_time_codes",
        md,
        sa.Column("code_key", sa.String(256), primary_key=True),
        sa.Column("code_hash", sa.LargeBinary()),
        sa.Column("expires_at", sa.BigInteger()),
        sa.Column("failure_window", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_ends_at", sa.BigInteger()),
    )
    # No expression index for the sweep (window_start + window_length): Alembic's
    # autogenerate cannot compare those and would report a change on every run.
    sa.Table(
        f"{p}rate_limits",
        md,
        sa.Column("limit_key", sa.String(256), primary_key=True),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("window_length", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
    )
    # The durable outbox (used by a bundle made with outbox=True); no secret in clear.
    sa.Table(
        f"{p}outbox",
        md,
        sa.Column("id", sa.String(MESSAGE_ID_LENGTH), primary_key=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("account_id", sa.String(256)),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(200)),
        sa.Index(f"ix_{p}outbox_due", "status", "next_attempt_at"),
        sa.Index(f"ix_{p}outbox_created_at", "created_at"),
    )
    return md


# -- the PostgreSQL history function --------------------------------------------------------
#
# A history append locks the account, inserts and trims. In one plain statement that is
# not safe: READ COMMITTED takes a statement's snapshot when it starts, before a lock taken
# inside it is granted, so the trim would not see entries that racing appends committed
# while it waited, and more than ``keep`` would stay (a CTE of lock, INSERT and DELETE kept
# all 16 of 16 racing appends). A VOLATILE PL/pgSQL function takes a fresh snapshot for
# each statement in it, so one ``SELECT fn(...)`` -- one round trip -- locks, then inserts,
# then trims what every earlier holder of the lock committed. It takes the advisory lock
# of the same key as the statements it replaces, so old and new processes exclude each
# other, and it refuses to run outside READ COMMITTED, where its statements would share
# the transaction's one snapshot.

#: The argument types of the history function, as its signature names them.
_HISTORY_ARGS = "text, text, bytea, bigint, integer, bigint"
#: The SQLSTATE the function raises outside READ COMMITTED (nothing written).
_NOT_READ_COMMITTED = "KI001"


def _pg_preparer() -> Any:
    """PostgreSQL's identifier quoting (the dialect's constructor is untyped)."""
    dialect: Any = _postgresql.dialect
    return dialect().identifier_preparer


def _history_function_name(table: sa.Table) -> str:
    """The quoted, schema-qualified name of the append function of the history ``table``."""
    preparer = _pg_preparer()
    name = preparer.quote(f"{table.name}_append")
    return f"{preparer.quote_schema(table.schema)}.{name}" if table.schema else name


def _history_function_ddl(table: sa.Table) -> str:
    # Only quoted identifiers go into the text; the values are the function's arguments.
    target = _pg_preparer().format_table(table)
    return f"""CREATE OR REPLACE FUNCTION {_history_function_name(table)}(
    p_account_id text, p_password_hash text, p_fingerprint bytea,
    p_created_at bigint, p_keep integer, p_lock bigint
) RETURNS void LANGUAGE plpgsql VOLATILE AS $kaspi_identity$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'kaspi_identity: a history append needs READ COMMITTED'
            USING ERRCODE = '{_NOT_READ_COMMITTED}';
    END IF;
    PERFORM pg_advisory_xact_lock(p_lock);
    INSERT INTO {target} (account_id, password_hash, fingerprint, created_at)
        VALUES (p_account_id, p_password_hash, p_fingerprint, p_created_at);
    DELETE FROM {target} AS h
        WHERE h.account_id = p_account_id AND h.seq NOT IN (
            SELECT n.seq FROM {target} AS n
                WHERE n.account_id = p_account_id ORDER BY n.seq DESC LIMIT p_keep);
END
$kaspi_identity$"""  # noqa: S608


def _ddl(statement: str) -> sa.DDL:
    ddl: Any = sa.DDL  # its constructor is untyped
    made: sa.DDL = ddl(statement)
    return made


def _attach_history_function(table: sa.Table) -> None:
    """Make ``create_all`` create (and ``drop_all`` drop) the history function on PostgreSQL."""
    create = _ddl(_history_function_ddl(table)).execute_if(dialect="postgresql")
    drop = _ddl(
        f"DROP FUNCTION IF EXISTS {_history_function_name(table)}({_HISTORY_ARGS})"
    ).execute_if(dialect="postgresql")
    sa.event.listen(table, "after_create", create)
    sa.event.listen(table, "before_drop", drop)


#: The six tables with the default prefix ``kaspi_``: for ``metadata.create_all(engine)``
#: or Alembic's ``target_metadata``.
metadata: sa.MetaData = make_metadata()


def history_function_sql(metadata: sa.MetaData = metadata) -> str:
    """Return the ``CREATE OR REPLACE FUNCTION`` statement of the history table of ``metadata``.

    On PostgreSQL a :class:`SQLAlchemyPasswordHistoryStore` appends in one round trip by
    calling this PL/pgSQL function (``<history table>_append``, in the table's schema).
    ``metadata.create_all`` and :meth:`SQLAlchemyDatabase.create_tables` create it; a
    schema managed by Alembic adds it with ``op.execute(history_function_sql(metadata))``
    in a migration (see docs/storage.md). Without it the store appends in a transaction of
    several round trips, as releases before it did.

    Raises:
        ValueError: ``metadata`` does not come from :func:`make_metadata`.
        TypeError: ``metadata`` is not a :class:`~sqlalchemy.MetaData`.

    """
    return _history_function_ddl(_find_tables(metadata).history)


@dataclass(frozen=True, slots=True)
class _Tables:
    accounts: sa.Table
    history: sa.Table
    tokens: sa.Table
    codes: sa.Table
    rate_limits: sa.Table
    outbox: sa.Table | None = None


def _find_tables(md: object) -> _Tables:
    if not isinstance(md, sa.MetaData):
        raise TypeError(f"metadata must be a sqlalchemy MetaData, not {type(md).__name__}")
    prefix = md.info.get(_INFO_KEY)
    if not isinstance(prefix, str):
        raise ValueError("metadata must come from make_metadata() (or be the module's metadata)")
    qualifier = f"{md.schema}." if md.schema else ""
    names = ("accounts", "password_history", "consumed_tokens", "one_time_codes", "rate_limits")
    try:
        a, h, t, c, r = (md.tables[f"{qualifier}{prefix}{name}"] for name in names)
        # Optional: metadata built before the outbox existed serves a bundle without one.
        return _Tables(a, h, t, c, r, outbox=md.tables.get(f"{qualifier}{prefix}outbox"))
    except KeyError as exc:
        raise ValueError(f"metadata lacks the table {exc.args[0]!r}") from None


def _raw(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """Select ``column`` as the driver returns it, so garbage is seen and not converted."""
    return sa.type_coerce(column, NullType())


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 200 else f"{line[:200]}..."


class SQLAlchemyDatabase:
    """An engine and the six tables, shared by the SQLAlchemy stores.

    Pass your application's :class:`~sqlalchemy.engine.Engine` (the stores borrow its pool;
    :meth:`close` leaves it open) or a URL (an engine is created with ``hide_parameters``,
    and disposed by :meth:`close`). PostgreSQL and SQLite files are supported. Safe to share
    between threads; after ``fork`` the child opens its own connections.

    Args:
        engine_or_url: an Engine, or a URL such as
            ``"postgresql+psycopg://user@host/db"`` or ``"sqlite:///identity.db"``.
        metadata: the tables to use: this module's :data:`metadata` or one from
            :func:`make_metadata`.
        create_tables: create missing tables now (``CREATE TABLE IF NOT EXISTS``, under a
            lock so several processes may start at once). Leave it off when Alembic owns
            the schema.

    Raises:
        ValueError: the URL is not a database URL, the database is neither PostgreSQL nor
            SQLite, or it is an in-memory SQLite database (use the memory adapter).
        TypeError: ``engine_or_url`` or ``metadata`` has the wrong type (an AsyncEngine:
            the message names :func:`async_sqlalchemy_storage`).
        ImportError: the database driver is missing.
        StorageError: ``create_tables`` failed.

    """

    def __init__(
        self,
        engine_or_url: sa.Engine | sa.URL | str,
        *,
        metadata: sa.MetaData = metadata,
        create_tables: bool = False,
    ) -> None:
        self._tables = _find_tables(metadata)
        self._metadata = metadata
        if isinstance(engine_or_url, sa.Engine):
            engine, self._owns_engine = engine_or_url, False
        elif isinstance(engine_or_url, (str, sa.URL)):
            engine, self._owns_engine = _create_engine(engine_or_url), True
        else:
            raise TypeError(_not_an_engine(engine_or_url))
        backend = engine.dialect.name
        if backend not in ("postgresql", "sqlite"):
            raise ValueError(
                f"the SQLAlchemy storage supports PostgreSQL and SQLite, not {backend}"
            )
        if backend == "sqlite" and _in_memory(engine.url):
            raise ValueError("SQLite storage needs a file; use memory_storage() for memory")
        self._engine = engine
        self._postgresql = backend == "postgresql"
        self._label = "PostgreSQL" if self._postgresql else "SQLite"
        # Single statements need no transaction on PostgreSQL: one round trip, not three.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Off once the server's default isolation (which an autocommit statement runs at)
        # turned out not to be READ COMMITTED: the history function refused (KI001) or a
        # write was a serialization failure (40001). From then on, the writes written as
        # one statement for READ COMMITTED run as READ COMMITTED transactions instead.
        self._autocommit_writes = True
        # The locking below is written for READ COMMITTED, whatever the engine's default:
        # under REPEATABLE READ a locked row changed since the snapshot would be an error.
        self._transactional = (
            engine.execution_options(isolation_level="READ COMMITTED")
            if self._postgresql
            else engine
        )
        self._pid = os.getpid()
        self._state_lock = threading.Lock()
        # An AsyncEngine's sync_engine runs every caller on the event loop's one thread,
        # where a threading lock held across an await would stop the loop.
        self._new_write_lock: Callable[[], _WriteLock] = (
            _LoopLock if engine.dialect.is_async else threading.Lock
        )
        self._write_lock: _WriteLock = self._new_write_lock()
        self._closed = False
        if create_tables:
            try:
                self.create_tables()
            except BaseException:
                self.close()
                raise

    @property
    def engine(self) -> sa.Engine:
        """The engine the stores run on."""
        return self._engine

    @property
    def metadata(self) -> sa.MetaData:
        """The metadata holding the stores' tables."""
        return self._metadata

    @property
    def backend(self) -> Literal["postgresql", "sqlite"]:
        """Which database the engine talks to."""
        return "postgresql" if self._postgresql else "sqlite"

    def create_tables(self) -> None:
        """Create the tables that do not exist yet; existing ones are left as they are.

        Runs in one transaction under a lock (an advisory lock on PostgreSQL, SQLite's
        write lock), so processes starting together create each table once. On PostgreSQL
        it also creates the history table's append function if it is missing (see
        :func:`history_function_sql`).

        Raises:
            StorageError: the database refused (for example, no permission to create).

        """

        def create(connection: sa.Connection) -> None:
            if self._postgresql:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key("ddl"))))
            self._metadata.create_all(connection, checkfirst=True)
            if self._postgresql and not _has_history_function(connection, self._tables.history):
                # A history table made before the function existed (create_all skips it).
                connection.execute(_ddl(_history_function_ddl(self._tables.history)))

        self._run(create, mode="transaction")

    def close(self) -> None:
        """Make later calls raise StorageError; dispose the engine if this object made it.

        Idempotent. An engine passed in by the application is left open.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> SQLAlchemyDatabase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLAlchemyDatabase({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- running statements ------------------------------------------------------------

    def _read(self, operation: Callable[[sa.Connection], _T]) -> _T:
        """Run ``operation`` (reads only) outside an explicit transaction."""
        return self._run(operation, mode="read")

    def _single(self, operation: Callable[[sa.Connection], _T]) -> _T:
        """Run ``operation``, one atomic write statement (autocommit on PostgreSQL)."""
        return self._run(operation, mode="single")

    def _write(self, operation: Callable[[sa.Connection], _T]) -> _T:
        """Run ``operation`` in one transaction; roll back if it raises.

        SQLite: ``BEGIN IMMEDIATE`` holds the write lock from the first statement.
        PostgreSQL: ``READ COMMITTED``; ``operation`` locks what it reads.
        """
        return self._run(operation, mode="transaction")

    def _run(self, operation: Callable[[sa.Connection], _T], *, mode: _Mode) -> _T:
        self._check_open()
        try:
            if not self._postgresql:
                if mode == "read":
                    with self._engine.connect() as connection:
                        return operation(connection)
                # The in-process lock is waited for a bounded time too, as SQLite's own busy
                # wait is: a caller queued behind a stuck writer gives up with StorageError.
                if not self._write_lock.acquire(timeout=_SQLITE_LOCK_WAIT):
                    raise StorageError(
                        f"the {self._label} storage is locked: no write lock within"
                        f" {_SQLITE_LOCK_WAIT:g} s"
                    )
                try:
                    with self._engine.connect() as connection:
                        return _sqlite_transaction(connection, operation)
                finally:
                    self._write_lock.release()
            if mode == "transaction":
                with self._transactional.begin() as connection:
                    return operation(connection)
            with self._autocommit.connect() as connection:
                return operation(connection)
        except (sa.exc.SQLAlchemyError, *_CONNECT_ERRORS) as exc:
            raise self._storage_error(exc) from exc

    def _check_open(self) -> None:
        with self._state_lock:
            if self._closed:
                raise StorageError(f"the {self._label} storage is closed")
            if os.getpid() != self._pid:
                # A forked child must not use its parent's connections or locks.
                self._pid = os.getpid()
                self._write_lock = self._new_write_lock()
                self._engine.dispose(close=False)

    def _refused_isolation(self, error: StorageError) -> None:
        """Re-raise a one-statement write's ``error``, unless isolation refused it.

        The server's default isolation refuses such a statement with the history
        function's KI001 or a serialization failure (40001); either way nothing was
        written. Then every later such write on this database runs as a READ COMMITTED
        transaction instead.
        """
        if not _needs_read_committed(error.__cause__):
            raise error
        self._autocommit_writes = False

    def _storage_error(self, exc: BaseException) -> StorageError:
        # Only the driver's first message line: SQLAlchemy's full text lists the bound
        # parameters (token ids, hashes) and PostgreSQL's DETAIL may quote row values.
        original = getattr(exc, "orig", None)
        if isinstance(original, BaseException):
            diagnostics = getattr(original, "diag", None)
            primary = getattr(diagnostics, "message_primary", None)
            reason = _first_line(primary if isinstance(primary, str) else str(original))
            name = type(original).__name__
        elif isinstance(exc, sa.exc.SQLAlchemyError):
            reason, name = _first_line(str(exc).split("(Background on this error")[0]), ""
        else:  # a connect error an async driver raises as it is
            reason, name = _first_line(str(exc)), type(exc).__name__
        kind = f" ({name})" if name else ""
        return StorageError(f"{self._label} storage failed{kind}: {reason}")


def _sqlite_transaction(connection: sa.Connection, operation: Callable[[sa.Connection], _T]) -> _T:
    transaction = connection.begin()
    try:
        driver = connection.connection.driver_connection
        # pysqlite begins lazily and DEFERRED; take the write lock at once instead -- unless
        # the application's engine already issued its own BEGIN.
        if not getattr(driver, "in_transaction", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        result = operation(connection)
    except BaseException:
        transaction.rollback()
        raise
    transaction.commit()
    return result


def _not_an_engine(value: object) -> str:
    """The TypeError message for what the synchronous face cannot use as an engine."""
    from sqlalchemy.ext.asyncio import AsyncEngine

    if isinstance(value, AsyncEngine):
        return (
            "engine_or_url is an AsyncEngine: pass it to async_sqlalchemy_storage(), the"
            " async face (the synchronous stores take an Engine, a URL or a str)"
        )
    return f"engine_or_url must be an Engine, URL or str, not {type(value).__name__}"


def _create_engine(url: sa.URL | str, *, asynchronous: bool = False) -> sa.Engine:
    """Make the engine a URL names; ``asynchronous``: an AsyncEngine's ``sync_engine``."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        # The message would repeat the URL, password included.
        raise ValueError("engine_or_url is not a database URL") from None
    options: dict[str, Any] = {"hide_parameters": True}
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise ValueError(f"the SQLAlchemy storage supports PostgreSQL and SQLite, not {backend}")
    if backend == "sqlite" and _in_memory(parsed):
        # Each pooled connection would get its own empty database.
        raise ValueError("SQLite storage needs a file; use memory_storage() for memory")
    options.update(pool_size=10, max_overflow=20, pool_timeout=30)
    if backend == "sqlite":
        options["connect_args"] = {"timeout": _SQLITE_LOCK_WAIT}
    try:
        if asynchronous:
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(parsed, **options).sync_engine
        else:
            engine = sa.create_engine(parsed, **options)
    except ImportError as exc:
        raise ImportError(f"the database driver is missing: {_INSTALL}") from exc
    except sa.exc.ArgumentError:
        raise ValueError("engine_or_url is not a usable database URL") from None
    except sa.exc.InvalidRequestError:  # "The asyncio extension requires an async driver"
        raise ValueError(
            f"the driver {parsed.get_driver_name()!r} is not asynchronous; the async face needs"
            " postgresql+asyncpg, postgresql+psycopg or sqlite+aiosqlite"
        ) from None
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_wal)
    return engine


def _in_memory(url: sa.URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")


def _sqlite_wal(dbapi_connection: Any, connection_record: object) -> None:
    # WAL lets readers go on while a writer holds the lock; the mode is kept in the file.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


class _WriteLock(Protocol):
    """What the SQLite write lock offers: ``threading.Lock``'s acquire and release."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


class _LoopLock:
    """The SQLite write lock of stores on an AsyncEngine: waited for on the event loop.

    Every call runs in a greenlet of the loop's thread (``greenlet_spawn``), so the wait
    is an ``asyncio.Lock`` awaited through ``await_only``: other tasks -- the holder among
    them -- run meanwhile. Bounded like ``threading.Lock.acquire(timeout=...)``.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        from sqlalchemy.util import await_only

        result: bool = await_only(self._acquire(None if timeout < 0 else timeout))
        return result

    async def _acquire(self, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


def _lock_key(*parts: str) -> int:
    """Return a signed 64-bit advisory lock key for ``parts``."""
    digest = hashlib.blake2b(
        "\x00".join(("kaspi_identity", *parts)).encode("utf-8"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Store:
    """Common plumbing: the shared database and an opportunistic sweep counter."""

    def __init__(self, database: SQLAlchemyDatabase) -> None:
        if not isinstance(database, SQLAlchemyDatabase):
            raise TypeError(f"database must be a SQLAlchemyDatabase, not {type(database).__name__}")
        self._db = database
        self._tables = database._tables
        self._writes = itertools.count(1)

    @property
    def database(self) -> SQLAlchemyDatabase:
        """The database this store reads and writes."""
        return self._db

    def close(self) -> None:
        """Close the shared database (every store on it)."""
        self._db.close()

    def _sweep_due(self) -> bool:
        return next(self._writes) % _SWEEP_EVERY == 0

    def _sweep(self, table: sa.Table, key: sa.Column[Any], dead: sa.ColumnElement[bool]) -> None:
        # In its own statement, skipping rows other callers hold: a sweep never waits and
        # never deadlocks, and deleting dead rows changes no answer.
        doomed = sa.select(key).where(dead).limit(_SWEEP_BATCH).with_for_update(skip_locked=True)
        self._db._single(lambda c: c.execute(sa.delete(table).where(key.in_(doomed))))

    def _insert(self, table: sa.Table) -> Any:
        """Return a dialect-specific INSERT (it has ``on_conflict_do_nothing``)."""
        if self._db._postgresql:
            return _postgresql.insert(table)
        return _sqlite.insert(table)


# -- accounts ------------------------------------------------------------------------------


class _TimeColumn:
    """Reads and writes one time column: integer microseconds, or a DateTime column."""

    def __init__(self, column: sa.Column[Any], *, postgresql: bool) -> None:
        self.column = column
        self.micro = isinstance(column.type, sa.Integer)
        aware = isinstance(column.type, sa.DateTime) and bool(column.type.timezone)
        # SQLite's DateTime drops the zone; PostgreSQL's "timestamp without time zone" would
        # shift an aware value to the session's zone. Both get naive UTC.
        self.aware = aware and postgresql

    def select(self) -> sa.ColumnElement[Any]:
        return _raw(self.column) if self.micro else self.column

    def to_db(self, moment: datetime) -> object:
        if self.micro:
            return to_microseconds(moment)
        return moment if self.aware else moment.replace(tzinfo=None)

    def from_db(self, value: object, name: str) -> datetime | None:
        if value is None:
            return None
        if self.micro:
            return read_time(value, "account", name)
        if not isinstance(value, datetime):
            raise corrupt("account", f"{name} is not a time")
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _integer_limit(kind: object) -> int:
    """The largest value an integer column of type ``kind`` holds (64-bit if unknown)."""
    if isinstance(kind, sa.SmallInteger):
        return 2**15 - 1
    if isinstance(kind, sa.Integer) and not isinstance(kind, sa.BigInteger):
        return 2**31 - 1
    return 2**63 - 1


def _decode_names(value: object) -> tuple[str, ...]:
    """Read a stored ``names``: a JSON array of strings, or CorruptRecordError.

    Nothing is guessed: NULL, bytes, a number, a JSON string or object, or an array that
    holds anything but strings is garbage (the :class:`Account` then checks each name).
    Text far longer than any the store writes is not parsed at all.
    """
    if isinstance(value, str) and len(value) > _NAMES_READ_LIMIT:
        raise corrupt("account", "names is too long")
    try:
        return decode_names(value)
    except RecursionError:  # '[[[[...': json nests by recursion
        raise corrupt("account", "names is not a JSON list") from None


def _names_column_problems(column: sa.Column[Any]) -> list[str]:
    kind = column.type
    problems = []
    roomy = isinstance(kind, sa.String) and (kind.length or _NAMES_TEXT_MAX_LENGTH) >= (
        _NAMES_TEXT_MAX_LENGTH
    )
    if not (roomy or isinstance(kind, sa.JSON)):
        problems.append(
            f"names: the column must be Text, JSON or a string with room for "
            f"{_NAMES_TEXT_MAX_LENGTH} characters"
        )
    if column.nullable:
        problems.append("names: the column must be NOT NULL (with the default '[]')")
    return problems


#: What a unit of work adds to the account store's one-statement insert: the counts it
#: selects and the CTEs it adds (see ``_create_in_one``).
_Extension = tuple[list[sa.ColumnElement[Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class _NewRow:
    """What :meth:`SQLAlchemyAccountStore.create` inserts, built before the transaction."""

    keys: dict[str, str | None]
    values: dict[str, object]
    account: Account


@dataclass(frozen=True, slots=True)
class _ContactSwap:
    """What :meth:`SQLAlchemyAccountStore.update_contact` writes, planned before it runs."""

    pk: object
    keys: dict[str, str | None]
    expected_stamp: str
    #: The columns the change writes and the values it writes into them.
    values: dict[str, object]
    #: Whether an ``UPDATE`` can return the row it wrote (not SQLite before 3.35).
    returning: bool
    #: The letters written with the change (the unit of work), on PostgreSQL in its one
    #: statement.
    letters: tuple[OutboxMessage, ...] = ()


class SQLAlchemyAccountStore(_Store):
    """An :class:`~kaspi_identity.storage.AccountStore` over a table with the needed columns.

    By default the library's ``<prefix>accounts`` table: ids are 32 random hex digits and
    user names and e-mails are unique through ``*_key`` columns holding their casefolded
    form.

    To use the application's **existing users table**, pass it as ``table`` (declared in
    the application's metadata, or reflected) and map the fields whose column names differ
    in ``columns`` (field -> column name; the fields are :data:`ACCOUNT_FIELDS`). The table
    must have a column for every field, with unique indexes on the ``username_key``,
    ``email_key``, ``phone`` and ``iin`` columns (filled with ``str.casefold()`` of the user
    name and e-mail). An integer ``id`` is generated by the database (ids become
    ``str(pk)``), a string one by the store. Time columns may be integers (microseconds
    since the epoch) or DateTime (stored in UTC). ``email_confirmed`` may be Boolean or
    Integer (0/1). ``security_stamp`` must be a ``NOT NULL`` string column with room for 64
    characters (docs/storage.md shows how to add it to a table that has rows). ``iin`` is a
    string column with room for 12 characters; a table for a site without IIN log-ins may
    map it to ``None`` (``columns={"iin": None}``): no account then has an IIN, and
    :meth:`create` refuses a :class:`NewAccount` with one. ``names`` is required: a
    ``NOT NULL`` Text (or JSON) column, default ``'[]'``, holding a JSON array of strings.
    ``insert_defaults`` gives values for the table's other NOT NULL columns on
    :meth:`create` (``{"is_active": True}``).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``table`` lacks a column, a column has an unusable type, ``columns``
            names an unknown field or maps a required one to ``None``, or
            ``columns``/``insert_defaults`` come without ``table``. Every problem is listed
            in one message.

    """

    def __init__(
        self,
        database: SQLAlchemyDatabase,
        *,
        table: sa.Table | None = None,
        columns: Mapping[str, str | None] | None = None,
        insert_defaults: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(database)
        if table is None:
            if columns or insert_defaults:
                raise ValueError("columns and insert_defaults need the table they describe")
            table = self._tables.accounts
        elif not isinstance(table, sa.Table):
            raise TypeError(f"table must be a sqlalchemy Table, not {type(table).__name__}")
        self._table = table
        self._columns = self._map_columns(table, dict(columns or {}))
        self._defaults = dict(insert_defaults or {})
        self._times = {
            name: _TimeColumn(self._columns[name], postgresql=database._postgresql)
            for name in _TIME_FIELDS
            if name in self._columns
        }
        self._integer_id = isinstance(self._columns["id"].type, sa.Integer)
        self._count_limit = _integer_limit(self._columns["failed_logins"].type)
        self._has_iin = "iin" in self._columns
        self._grace_limit = (
            _integer_limit(self._columns["grace_logins_used"].type)
            if "grace_logins_used" in self._columns
            else 0
        )
        self._names_json = isinstance(self._columns["names"].type, sa.JSON)
        # The one-statement inserts and contact updates, built once per shape of call.
        self._insert_queries: dict[Hashable, tuple[Any, int]] = {}
        self._contact_queries: dict[Hashable, Any] = {}
        self._email_query: Any = None
        self._read_fields = tuple(
            name
            for name in ACCOUNT_FIELDS
            if name in self._columns and name not in ("username_key", "email_key")
        )
        self._select = sa.select(*(self._read(name) for name in self._read_fields)).select_from(
            table
        )

    def _read(self, field: str) -> sa.ColumnElement[Any]:
        """The expression that selects ``field`` as stored, for :meth:`_decode` to check."""
        if field in self._times:
            return self._times[field].select()
        column = self._columns[field]
        if field == "names" and self._names_json:
            # The JSON text itself, not what a driver makes of it: '"[]"' (a JSON string) is
            # garbage, and a driver that decodes JSON would hand back "[]".
            return _raw(sa.cast(column, sa.Text()))
        return _raw(column)

    @property
    def table(self) -> sa.Table:
        """The table the accounts live in."""
        return self._table

    @staticmethod
    def _map_columns(table: sa.Table, names: dict[str, str | None]) -> dict[str, sa.Column[Any]]:
        problems = [f"unknown field {field!r}" for field in names if field not in ACCOUNT_FIELDS]
        mapped: dict[str, sa.Column[Any]] = {}
        hinted: set[str] = set()
        for field in ACCOUNT_FIELDS:
            name = names.get(field, field)
            if name is None:
                if field not in _OPTIONAL_FIELDS:
                    problems.append(f"{field}: the field is required (it cannot map to None)")
                continue
            if not isinstance(name, str) or name not in table.c:
                hint = _MISSING_HINTS.get(field, "")
                hint = "" if hint in hinted else hint  # the age fields share one hint
                hinted.add(hint)
                problems.append(f"{field}: table {table.name!r} has no column {name!r}{hint}")
                continue
            column = table.c[name]
            mapped[field] = column
            kind = column.type
            if field == "id" and not isinstance(kind, (sa.Integer, sa.String)):
                problems.append("id: the column must be an integer or a string")
            if field == "id" and isinstance(kind, sa.String) and (kind.length or 32) < 32:
                problems.append("id: a string id column needs room for 32 characters")
            if field in _TIME_FIELDS and not isinstance(kind, (sa.Integer, sa.DateTime)):
                problems.append(f"{field}: the column must be an integer or a DateTime")
            if field in (
                "email_confirmed",
                "must_change_password",
                "phone_verified",
            ) and not isinstance(kind, (sa.Boolean, sa.Integer)):
                problems.append(f"{field}: the column must be Boolean or Integer")
            if field == "grace_logins_used" and not isinstance(kind, sa.Integer):
                problems.append("grace_logins_used: the column must be an integer")
            if field == "security_stamp" and not (
                isinstance(kind, sa.String)
                and (kind.length or STAMP_MAX_LENGTH) >= STAMP_MAX_LENGTH
            ):
                problems.append(
                    f"security_stamp: the column must be a string with room for "
                    f"{STAMP_MAX_LENGTH} characters"
                )
            if field == "iin" and not (isinstance(kind, sa.String) and (kind.length or 12) >= 12):
                problems.append("iin: the column must be a string with room for 12 characters")
            if field == "names":
                problems.extend(_names_column_problems(column))
            if field == "time_zone" and not (
                isinstance(kind, sa.String)
                and (kind.length or TIME_ZONE_MAX_LENGTH) >= TIME_ZONE_MAX_LENGTH
            ):
                problems.append(
                    f"time_zone: the column must be a string with room for "
                    f"{TIME_ZONE_MAX_LENGTH} characters"
                )
        if ("previous_email" in mapped) != ("email_changed_at" in mapped) and (
            names.get("previous_email", "") is None or names.get("email_changed_at", "") is None
        ):
            problems.append(
                "previous_email and email_changed_at: map both to columns or both to None"
                " (they are kept together)"
            )
        if problems:
            raise ValueError("cannot map the account table: " + "; ".join(problems))
        return mapped

    # -- helpers --

    def _pk(self, account_id: str) -> object | None:
        """Return the primary key value ``account_id`` names, or ``None`` if none can."""
        key = check_account_id(account_id)
        if key is None or not self._integer_id:
            return key
        if not (key.isascii() and key.isdigit()) or len(key) > 19 or str(int(key)) != key:
            return None
        return int(key) if int(key) < 2**63 else None

    def _decode(self, row: tuple[Any, ...] | None) -> Account | None:
        if row is None:
            return None
        stored = dict(zip(self._read_fields, row, strict=True))
        pk, confirmed, created = stored["id"], stored["email_confirmed"], stored["created_at"]
        last_failed, last_login = stored["last_failed_login_at"], stored["last_login_at"]
        if type(confirmed) is not bool and not (type(confirmed) is int and confirmed in (0, 1)):
            raise corrupt("account", "email_confirmed is not a boolean")
        must_change = stored.get("must_change_password", False)
        if type(must_change) is not bool and not (
            type(must_change) is int and must_change in (0, 1)
        ):
            raise corrupt("account", "must_change_password is not a boolean")
        changed_at = (
            self._times["password_changed_at"].from_db(
                stored["password_changed_at"], "password_changed_at"
            )
            if "password_changed_at" in self._times
            else None
        )
        phone_verified = stored.get("phone_verified", stored["phone"] is not None)
        if type(phone_verified) is not bool and not (
            type(phone_verified) is int and phone_verified in (0, 1)
        ):
            raise corrupt("account", "phone_verified is not a boolean")
        email_changed_at = (
            self._times["email_changed_at"].from_db(stored["email_changed_at"], "email_changed_at")
            if "email_changed_at" in self._times
            else None
        )
        if self._integer_id and type(pk) is not int:
            raise corrupt("account", "id is not an integer")
        created_at = self._times["created_at"].from_db(created, "created_at")
        if created_at is None:
            raise corrupt("account", "created_at is missing")
        try:
            return Account(
                id=str(pk) if self._integer_id else pk,  # Account checks every field
                username=stored["username"],
                email=stored["email"],
                phone=stored["phone"],
                password_hash=stored["password_hash"],
                email_confirmed=bool(confirmed),
                failed_logins=read_int(stored["failed_logins"], "account", "failed_logins"),
                last_failed_login_at=self._times["last_failed_login_at"].from_db(
                    last_failed, "last_failed_login_at"
                ),
                last_login_at=self._times["last_login_at"].from_db(last_login, "last_login_at"),
                created_at=created_at,
                language=stored["language"],
                security_stamp=stored["security_stamp"],
                iin=stored.get("iin"),
                names=_decode_names(stored["names"]),
                password_changed_at=changed_at,
                must_change_password=bool(must_change),
                grace_logins_used=read_int(
                    stored.get("grace_logins_used", 0), "account", "grace_logins_used"
                ),
                phone_verified=bool(phone_verified),
                pending_email=stored.get("pending_email"),
                pending_phone=stored.get("pending_phone"),
                previous_email=stored.get("previous_email"),
                email_changed_at=email_changed_at,
                time_zone=stored.get("time_zone"),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CorruptRecordError):
                raise
            raise corrupt("account", str(exc)) from exc

    def _fetch(self, connection: sa.Connection, where: sa.ColumnElement[bool]) -> Account | None:
        try:
            row = connection.execute(self._select.where(where)).first()
        except (TypeError, ValueError) as exc:  # a DateTime column SQLAlchemy cannot parse
            raise corrupt("account", "a time column cannot be read") from exc
        return self._decode(None if row is None else tuple(row))

    def _email_taken(self, connection: sa.Connection, key: str, pk: object) -> bool:
        """Whether an account other than ``pk`` has the casefolded e-mail ``key``."""
        query = (
            sa.select(sa.literal(1))
            .select_from(self._table)
            .where(self._columns["email_key"] == key, self._columns["id"] != pk)
        )
        return connection.execute(query.limit(1)).first() is not None

    def _first_taken(
        self,
        connection: sa.Connection,
        keys: Mapping[str, str | None],
        other_than: object | None = None,
    ) -> str | None:
        """Return the first of ``keys`` (in their order) another account already has.

        One statement, so one snapshot: checked one by one under READ COMMITTED, a racing
        create committing between two checks would be reported by a later identifier
        ("iin") although the first one ("username") clashes too. ``other_than``: the
        primary key of an account whose own identifiers do not count.
        """
        present = [(field, value) for field, value in keys.items() if value is not None]
        if not present:
            return None
        matches = [self._columns[_KEY_FIELDS[field]] == value for field, value in present]
        query = (
            sa.select(*(sa.case((match, 1), else_=0) for match in matches))
            .select_from(self._table)
            .where(sa.or_(*matches))
        )
        if other_than is not None:
            query = query.where(self._columns["id"] != other_than)
        rows = connection.execute(query).all()
        for index, (field, _) in enumerate(present):
            if any(row[index] == 1 for row in rows):
                return field
        return None

    def _write_checked(self, operation: Callable[[sa.Connection], _T]) -> _T:
        """Run ``operation`` (which checks identifiers, then writes) in a transaction.

        When a unique index refuses the write (a racing call took an identifier after the
        check), run it again: the check now names the identifier. A refusal that persists
        raises StorageError.
        """
        for _ in range(_CREATE_TRIES - 1):
            try:
                return self._db._write(operation)
            except _Clash:
                continue
        try:
            return self._db._write(operation)
        except _Clash as clash:
            raise self._db._storage_error(clash.error) from clash.error

    # -- the protocol --

    def _plan_create(self, new: NewAccount, at: datetime) -> _NewRow:
        """Build the row and statement ``create`` inserts (``at``: the checked ``now``)."""
        if new.iin is not None and not self._has_iin:
            raise ValueError(
                f"table {self._table.name!r} keeps no IIN (columns maps 'iin' to None);"
                " an account with an iin cannot be stored in it"
            )
        if new.must_change_password:
            self._require_field("must_change_password")
        if new.time_zone is not None:
            self._require_contact_field("time_zone")
        keys = login_keys(new)  # in the protocol's order: user name, e-mail, phone, IIN
        stamp = new_security_stamp()
        c = self._columns
        values: dict[str, object] = {
            **self._defaults,
            c["username"].key: new.username,
            c["username_key"].key: keys["username"],
            c["email"].key: new.email,
            c["email_key"].key: keys["email"],
            c["phone"].key: new.phone,
            c["password_hash"].key: new.password_hash,
            c["email_confirmed"].key: new.email_confirmed,
            c["failed_logins"].key: 0,
            c["last_failed_login_at"].key: None,
            c["last_login_at"].key: None,
            c["created_at"].key: self._times["created_at"].to_db(at),
            c["language"].key: new.language,
            c["security_stamp"].key: stamp,
            c["names"].key: list(new.names) if self._names_json else encode_names(new.names),
        }
        if self._has_iin:
            values[c["iin"].key] = new.iin
        if "password_changed_at" in c:
            changed = None if new.password_hash is None else self._times["password_changed_at"]
            values[c["password_changed_at"].key] = None if changed is None else changed.to_db(at)
        if "must_change_password" in c:
            values[c["must_change_password"].key] = new.must_change_password
        if "grace_logins_used" in c:
            values[c["grace_logins_used"].key] = 0
        if "phone_verified" in c:
            values[c["phone_verified"].key] = new.phone_verified
        if "time_zone" in c:
            values[c["time_zone"].key] = new.time_zone
        if not self._integer_id:
            values[c["id"].key] = secrets.token_hex(16)
        # The id is known once the row is in (an integer key comes from the database).
        account = replace(fresh_account(new, "pending", at), security_stamp=stamp)
        if "password_changed_at" not in c:
            account = replace(account, password_changed_at=None)
        if "phone_verified" not in c:  # as a read of the row will say
            account = replace(account, phone_verified=new.phone is not None)
        return _NewRow(keys, values, account)

    def _insert_row(self, connection: sa.Connection, row: _NewRow) -> Account:
        """Check the identifiers in order, insert ``row``; return the stored account.

        Raises DuplicateAccountError for a taken identifier, and _Clash when a unique index
        refused the row (for :meth:`_write_checked` to run the transaction again).
        """
        taken = self._first_taken(connection, row.keys)
        if taken is not None:
            raise DuplicateAccountError(taken)
        try:
            result = connection.execute(sa.insert(self._table).values(row.values))
        except sa.exc.IntegrityError as exc:
            raise _Clash(exc) from exc
        id_key = self._columns["id"].key
        key = result.inserted_primary_key
        pk = row.values[id_key] if key is None or not self._integer_id else key[0]
        return replace(row.account, id=str(pk))

    def _create_in_one(
        self,
        row: _NewRow,
        *,
        shape: Hashable = (),
        extend: Callable[[Any], _Extension] | None = None,
        arguments: Mapping[str, object] | None = None,
        ready: Callable[[sa.Connection], bool] | None = None,
    ) -> Account | None:
        """Insert ``row`` in one autocommit statement (PostgreSQL); ``None``: not done so.

        ``WITH ins AS (INSERT INTO accounts (...) SELECT ... WHERE NOT EXISTS (SELECT 1
        FROM accounts WHERE <any identifier matches>) RETURNING id) SELECT (SELECT id FROM
        ins), EXISTS (<the user name matches>), ...``: the check and the write in one
        snapshot, which names the first identifier taken in the protocol's order, as the
        transaction's ``SELECT`` does. A racing create that commits the identifier after
        the snapshot makes the unique index refuse the row: the statement writes nothing,
        and runs again (its check then names it).

        ``extend(ins)`` gives what else the statement does once the row is in (the unit of
        work's history and letters): the counts to select and the CTEs to add, over bind
        parameters whose values are ``arguments``; ``shape`` tells apart the statements
        ``extend`` builds. ``ready(connection)`` ``False`` means the statement cannot run
        here (no history function): ``None``, nothing written. ``None`` too when the
        server's default isolation refused the statement (from then on creates are
        transactions), and in the impossible case of nothing inserted and nothing taken:
        the caller runs the transaction, which decides.
        """
        present = tuple(field for field, value in row.keys.items() if value is not None)
        expressions = tuple(k for k, v in row.values.items() if isinstance(v, sa.ColumnElement))
        key = (tuple(row.values), expressions, present, shape)
        built = self._insert_queries.get(key)
        if built is None:
            built = self._insert_query(row, present, extend)
            if len(self._insert_queries) >= _SWEEP_EVERY:  # many shapes: start over
                self._insert_queries.clear()
            self._insert_queries[key] = built
        query, counts = built
        bound: dict[str, object] = {
            f"a_{index}": value
            for index, value in enumerate(row.values.values())
            if not isinstance(value, sa.ColumnElement)
        }
        bound.update((f"k_{field}", row.keys[field]) for field in present)
        bound.update(arguments or {})

        def run(connection: sa.Connection) -> tuple[Any, ...] | None:
            if ready is not None and not ready(connection):
                return None
            return tuple(connection.execute(query, bound).one())

        result = self._in_one(run)
        if result is None:
            return None
        if result[0] is not None:
            return replace(row.account, id=str(result[0]))
        for field, flag in zip(present, result[1 + counts :], strict=True):
            if flag:
                raise DuplicateAccountError(field)
        return None

    def _insert_query(
        self,
        row: _NewRow,
        present: tuple[str, ...],
        extend: Callable[[Any], _Extension] | None,
    ) -> tuple[Any, int]:
        """The statement of :meth:`_create_in_one` for one shape of row; its count columns.

        Over bind parameters (``a_<i>`` the values, ``k_<field>`` the identifiers), each
        cast to its column's type so that no driver guesses one; an insert default that is
        a SQL expression goes in as it is. Built once per shape, so SQLAlchemy compiles it
        once and psycopg prepares it.
        """
        table = self._table
        columns = [table.c[key] for key in row.values]
        values: list[sa.ColumnElement[Any]] = [
            value
            if isinstance(value, sa.ColumnElement)
            else sa.cast(sa.bindparam(f"a_{index}", type_=column.type), column.type)
            for index, (column, value) in enumerate(zip(columns, row.values.values(), strict=True))
        ]
        matches = []
        for field in present:
            column = self._columns[_KEY_FIELDS[field]]
            matches.append(column == sa.bindparam(f"k_{field}", type_=column.type))
        taken = [sa.exists(sa.select(sa.literal(1)).select_from(table).where(m)) for m in matches]
        source = sa.select(*values)
        if matches:
            source = source.where(
                ~sa.exists(sa.select(sa.literal(1)).select_from(table).where(sa.or_(*matches)))
            )
        id_column = self._columns["id"]
        ins = sa.insert(table).from_select(columns, source).returning(id_column).cte("ins")
        counts, ctes = ([], []) if extend is None else extend(ins)
        inserted = sa.select(ins.c[id_column.key]).scalar_subquery()
        query = sa.select(inserted, *counts, *taken)
        if ctes:
            query = query.add_cte(*ctes)
        return query, len(counts)

    def _in_one(self, run: Callable[[sa.Connection], _T | None]) -> _T | None:
        """Run ``run``, one autocommit statement that checks and writes; ``None``: not run.

        A unique index refusing the row (a racer committed an identifier after the
        statement's snapshot) wrote nothing: the statement runs again, and its check then
        names the identifier; a refusal that persists raises StorageError. ``None`` when
        ``run`` gives it, and when the server's default isolation refused the statement
        (nothing written; from then on such writes are transactions).
        """

        def guarded(connection: sa.Connection) -> _T | None:
            try:
                return run(connection)
            except sa.exc.IntegrityError as exc:
                raise _Clash(exc) from exc

        clash: _Clash | None = None
        for _ in range(_CREATE_TRIES):
            try:
                return self._db._single(guarded)
            except _Clash as refused:
                clash = refused
            except StorageError as exc:
                self._db._refused_isolation(exc)
                return None
        assert clash is not None
        raise self._db._storage_error(clash.error) from clash.error

    def _require_field(self, field: str) -> None:
        if field not in self._columns:
            raise ValueError(
                f"table {self._table.name!r} keeps no password age (columns maps {field!r} to None)"
            )

    def _require_contact_field(self, field: str) -> None:
        if field not in self._columns:
            raise StorageError(
                f"table {self._table.name!r} has no {field} column (columns maps {field!r} to"
                " None), so this contact cannot be stored in it"
            )

    def _plan_contact(
        self,
        account_id: str,
        expected_stamp: str,
        contact: Contact,
        *,
        rotate_stamp: bool,
        clear_password: bool,
    ) -> _ContactSwap | None:
        """Check ``update_contact``'s arguments; build its one ``UPDATE``.

        ``None`` means no row can match (an id or a stamp no account can have).
        """
        key = check_update_contact(
            account_id,
            expected_stamp,
            contact,
            ("rotate_stamp", rotate_stamp),
            ("clear_password", clear_password),
        )
        c = self._columns
        for field in _CONTACT_FIELDS[1:]:
            if getattr(contact, field) is not None:
                self._require_contact_field(field)
        if contact.phone is not None and not contact.phone_verified:
            # Without the column every stored phone reads as verified: an unverified one
            # would come back verified, and receive reset codes.
            self._require_contact_field("phone_verified")
        pk = None if key is None else self._pk(key)
        if pk is None:
            return None
        keys = contact_keys(contact)
        values: dict[str, object] = {
            c["email"].key: contact.email,
            c["email_key"].key: keys["email"],
            c["email_confirmed"].key: contact.email_confirmed,
            c["phone"].key: contact.phone,
        }
        for field in _CONTACT_FIELDS:
            if field not in c:
                continue
            value = getattr(contact, field)
            if field == "email_changed_at" and value is not None:
                value = self._times[field].to_db(value)
            values[c[field].key] = value
        if rotate_stamp:
            values[c["security_stamp"].key] = new_security_stamp()
        if clear_password:
            values[c["password_hash"].key] = None
            cleared = {"password_changed_at": None, "must_change_password": False}
            for field, value in {**cleared, "grace_logins_used": 0}.items():
                if field in c:
                    values[c[field].key] = value
        returning = bool(self._db.engine.dialect.update_returning)
        return _ContactSwap(pk, keys, expected_stamp, values, returning)

    def _contact_statement(self, swap: _ContactSwap) -> sa.Update:
        """The transaction's ``UPDATE ... WHERE id = :id AND security_stamp = :expected``."""
        c = self._columns
        statement = (
            sa.update(self._table)
            .where(c["id"] == swap.pk, c["security_stamp"] == swap.expected_stamp)
            .values(swap.values)
        )
        if swap.returning:
            statement = statement.returning(*(self._read(name) for name in self._read_fields))
        return statement

    # One autocommit statement on PostgreSQL:
    #
    #   UPDATE accounts SET ... FROM (SELECT id, <the columns written> FROM accounts
    #     WHERE id = :id AND security_stamp = :expected FOR UPDATE) AS old
    #   WHERE accounts.id = old.id RETURNING <the account>, old.<the columns written>
    #
    # - The subquery takes the row lock. A racer's commit is waited for and the stamp
    #   re-checked against the row it wrote (READ COMMITTED re-reads a locked row), so of
    #   racers from one stamp one writes; the others match no row.
    # - What the change overwrote comes back for the undo of a garbage row.
    # - With letters (the unit of work): WITH upd AS (<that UPDATE>), ins AS (INSERT INTO
    #   outbox ... SELECT ... WHERE EXISTS (SELECT 1 FROM upd)) SELECT * FROM upd. A unique
    #   index refusing the e-mail or phone fails the whole statement: no letter.
    def _contact_query(self, swap: _ContactSwap, outbox: SQLAlchemyOutboxStore | None) -> Any:
        """The statement above over bind parameters, built once per shape of call."""
        count = len(swap.letters) if outbox is not None else 0
        shape = (tuple(swap.values), count)
        query = self._contact_queries.get(shape)
        if query is not None:
            return query
        t, c = self._table, self._columns
        old = (
            sa.select(
                c["id"].label("o_id"),
                *(t.c[key].label(f"o_{i}") for i, key in enumerate(swap.values)),
            )
            .where(
                c["id"] == sa.bindparam("c_pk", type_=c["id"].type),
                c["security_stamp"] == sa.bindparam("c_stamp", type_=c["security_stamp"].type),
            )
            .with_for_update()
            .subquery("old")
        )
        query = (
            sa.update(t)
            .where(c["id"] == old.c.o_id)
            .values(
                {
                    key: sa.bindparam(f"c_{i}", type_=t.c[key].type)
                    for i, key in enumerate(swap.values)
                }
            )
            .returning(
                *(self._read(name) for name in self._read_fields),
                *(old.c[f"o_{i}"] for i in range(len(swap.values))),
            )
        )
        if count and outbox is not None:
            upd = query.cte("upd")
            changed = sa.exists(sa.select(sa.literal(1)).select_from(upd))
            query = sa.select(*upd.c).add_cte(outbox._insert_when(count, changed).cte("ins"))
        if len(self._contact_queries) >= _SWEEP_EVERY:
            self._contact_queries.clear()
        self._contact_queries[shape] = query
        return query

    def _swap_contact(self, connection: sa.Connection, swap: _ContactSwap) -> Account | None:
        """Run the contact ``UPDATE`` (inside the caller's transaction); read what it wrote.

        Raises _Clash when a unique index refused the e-mail or phone.
        """
        try:
            result = connection.execute(self._contact_statement(swap))
            if swap.returning:
                row = result.first()
                return self._decode(None if row is None else tuple(row))
        except sa.exc.IntegrityError as exc:
            raise _Clash(exc) from exc
        except (TypeError, ValueError) as exc:  # a DateTime column SQLAlchemy cannot parse
            if isinstance(exc, CorruptRecordError):
                raise
            raise corrupt("account", "a time column cannot be read") from exc
        if result.rowcount != 1:
            return None
        return self._fetch(connection, self._columns["id"] == swap.pk)

    def _contact_write(
        self,
        swap: _ContactSwap,
        transaction: Callable[[sa.Connection], Account | None],
        outbox: SQLAlchemyOutboxStore | None = None,
    ) -> Account | None:
        """Run ``swap``: one autocommit statement where it can, else ``transaction``.

        On PostgreSQL :meth:`_contact_query` (with ``swap.letters`` into ``outbox``) is the
        whole write: one round trip. The row it returns is decoded after that statement
        committed; if it is garbage (a column the change did not touch was hand-edited
        into something no account can hold), the change is undone -- the columns it wrote
        set back to what the statement says they held, where they still hold what it
        wrote, and its letters deleted while no worker has claimed them -- and
        CorruptRecordError raised. That is how the transaction leaves it, but for the
        moment between: then the row held the new address (every read of a garbage row
        raises anyway) and a worker could have claimed a letter.
        """
        if self._db._postgresql and swap.returning and self._db._autocommit_writes:
            query = self._contact_query(swap, outbox)
            bound: dict[str, object] = {"c_pk": swap.pk, "c_stamp": swap.expected_stamp}
            bound.update((f"c_{i}", value) for i, value in enumerate(swap.values.values()))
            if swap.letters and outbox is not None:
                bound.update(outbox._insert_arguments(swap.letters))

            def run(connection: sa.Connection) -> tuple[Any, ...] | None:
                try:
                    row = connection.execute(query, bound).first()
                except sa.exc.IntegrityError as exc:
                    raise _Clash(exc) from exc
                return None if row is None else tuple(row)

            try:
                result = self._run_contact(swap, run, single=True)
            except StorageError as exc:
                self._db._refused_isolation(exc)  # nothing written; transactions now
            else:
                if result is None:
                    return None
                width = len(self._read_fields)
                try:
                    return self._decode(result[:width])
                except (TypeError, ValueError) as exc:  # CorruptRecordError is a ValueError
                    self._undo_swap(swap, result[width:], outbox)
                    if isinstance(exc, CorruptRecordError):
                        raise
                    raise corrupt("account", "a time column cannot be read") from exc
        return self._run_contact(swap, transaction)

    def _undo_swap(
        self,
        swap: _ContactSwap,
        overwritten: tuple[Any, ...],
        outbox: SQLAlchemyOutboxStore | None,
    ) -> None:
        """Set the columns a committed swap wrote back to ``overwritten`` (see above).

        If that fails too, a warning is logged and the caller still raises the garbage row's
        CorruptRecordError (as the outbox's put-back does): the row keeps the change, and
        every read of it raises until it is mended.
        """
        t, c = self._table, self._columns
        still = [t.c[key].is_not_distinct_from(value) for key, value in swap.values.items()]
        restore = (
            sa.update(t)
            .where(c["id"] == swap.pk, *still)
            .values(dict(zip(swap.values, overwritten, strict=True)))
        )
        letters = outbox._table if outbox is not None and swap.letters else None

        def undo(connection: sa.Connection) -> None:
            connection.execute(restore)
            if letters is not None:
                connection.execute(
                    sa.delete(letters).where(
                        letters.c.id.in_([message.id for message in swap.letters]),
                        letters.c.status == "pending",
                        letters.c.attempts == 0,
                    )
                )

        try:
            self._db._write(undo)
        except StorageError as exc:
            _log.warning(
                "a contact change written over a corrupt account row was not set back (%s)", exc
            )

    def _run_contact(
        self,
        swap: _ContactSwap,
        operation: Callable[[sa.Connection], _T],
        *,
        single: bool = False,
    ) -> _T:
        """Run ``operation`` (the swap, and what goes with it) in one transaction.

        ``single``: ``operation`` is one statement, run in autocommit. When a unique index
        refuses the row, the identifiers are checked in one ``SELECT`` (e-mail first, then
        phone, as at create) to name the one another account has; if none is taken any
        more (the other account let it go), the swap runs again.
        """
        clash: _Clash | None = None
        for _ in range(_CREATE_TRIES):
            try:
                return (self._db._single if single else self._db._write)(operation)
            except _Clash as refused:
                clash = refused
            taken = self._db._read(lambda c: self._first_taken(c, swap.keys, other_than=swap.pk))
            if taken is not None:
                raise DuplicateAccountError(taken) from None
        assert clash is not None
        raise self._db._storage_error(clash.error) from clash.error

    def _password_update(
        self,
        account_id: str,
        expected: str | None,
        new: str,
        *,
        rotate_stamp: bool,
        now: object,
    ) -> sa.Update | None:
        """Check ``set_password_hash``'s arguments; build its one ``UPDATE``.

        ``None`` means no row can match (an id or expected hash no account can have).
        """
        planned = self._password_values(
            account_id, expected, new, rotate_stamp=rotate_stamp, now=now
        )
        if planned is None:
            return None
        pk, values = planned
        column = self._columns["password_hash"]
        return (
            sa.update(self._table)
            .where(self._columns["id"] == pk, column.is_not_distinct_from(expected))
            .values(values)
        )

    def _password_values(
        self,
        account_id: str,
        expected: str | None,
        new: str,
        *,
        rotate_stamp: bool,
        now: object,
    ) -> tuple[object, dict[str, object]] | None:
        """Check ``set_password_hash``'s arguments; the key and the values it writes.

        ``None`` means no row can match (an id or expected hash no account can have).
        """
        can_match = check_expected_hash(expected, new)
        check_rotate_stamp(rotate_stamp)
        changed_at = check_changed_at(now)
        pk = self._pk(account_id)
        if pk is None or not can_match:
            return None
        c = self._columns
        column = c["password_hash"]
        values: dict[str, object] = {column.key: new}
        if rotate_stamp:
            values[c["security_stamp"].key] = new_security_stamp()
        if changed_at is not None:
            if "password_changed_at" in c:
                values[c["password_changed_at"].key] = self._times["password_changed_at"].to_db(
                    changed_at
                )
            if "must_change_password" in c:
                values[c["must_change_password"].key] = False
            if "grace_logins_used" in c:
                values[c["grace_logins_used"].key] = 0
        return pk, values

    def create(self, new: NewAccount, *, now: datetime) -> Account:
        """Store ``new`` under a fresh id; see the protocol.

        On PostgreSQL one autocommit statement (:meth:`_create_in_one`); elsewhere, or once
        the server's default isolation refused it, a transaction that checks the
        identifiers and inserts.
        """
        row = self._plan_create(new, check_create(new, now))
        if self._db._postgresql and self._db._autocommit_writes:
            created = self._create_in_one(row)
            if created is not None:
                return created
        return self._write_checked(lambda connection: self._insert_row(connection, row))

    def get(self, account_id: str) -> Account | None:
        """Return the account with this id, or ``None``."""
        pk = self._pk(account_id)
        if pk is None:
            return None
        return self._db._read(lambda c: self._fetch(c, self._columns["id"] == pk))

    def find_by_login(self, kind: LoginKind, value: str) -> Account | None:
        """Return the account with this user name, e-mail, phone or IIN, or ``None``."""
        key = check_login(kind, value)
        if key is None or _KEY_FIELDS[kind] not in self._columns:
            return None  # no such value, or a table that keeps no IIN
        column = self._columns[_KEY_FIELDS[kind]]
        return self._db._read(lambda c: self._fetch(c, column == key))

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
        statement = self._password_update(
            account_id, expected, new, rotate_stamp=rotate_stamp, now=now
        )
        if statement is None:
            return False
        return self._db._single(lambda c: c.execute(statement).rowcount == 1)

    def set_email(self, account_id: str, email: str, *, confirmed: bool = False) -> None:
        """Set the e-mail, its confirmation flag and a fresh stamp; see the protocol.

        On PostgreSQL one autocommit statement (:meth:`_set_email_query`); elsewhere, or
        once the server's default isolation refused it, a transaction that locks the row,
        checks the address and updates.
        """
        check_set_email(email, confirmed)
        pk = self._pk(account_id)
        if pk is None:
            raise AccountNotFoundError("no account has this id")
        stamp = new_security_stamp()
        if self._db._postgresql and self._db._autocommit_writes:
            bound = {
                "e_pk": pk,
                "e_email": email,
                "e_key": email.casefold(),
                "e_confirmed": confirmed,
                "e_stamp": stamp,
            }
            query = self._set_email_query()
            result = self._in_one(lambda c: tuple(c.execute(query, bound).one()))
            if result is not None:
                if result[0] == 1:
                    return
                if not result[1]:
                    raise AccountNotFoundError("no account has this id")
                if result[2]:
                    raise DuplicateAccountError("email")
                # Deleted after the snapshot, or the like: the transaction decides.
        c = self._columns
        statement = (
            sa.update(self._table)
            .where(c["id"] == pk)
            .values(
                {
                    c["email"].key: email,
                    c["email_key"].key: email.casefold(),
                    c["email_confirmed"].key: confirmed,
                    c["security_stamp"].key: stamp,
                }
            )
        )

        def update(connection: sa.Connection) -> None:
            exists = sa.select(sa.literal(1)).select_from(self._table).where(c["id"] == pk)
            if connection.execute(exists.with_for_update()).first() is None:
                raise AccountNotFoundError("no account has this id")
            if self._email_taken(connection, email.casefold(), pk):
                raise DuplicateAccountError("email")
            try:
                connection.execute(statement)
            except sa.exc.IntegrityError as exc:
                raise _Clash(exc) from exc

        self._write_checked(update)

    def _set_email_query(self) -> Any:
        """``set_email`` as one statement over bind parameters (built once).

        ``WITH upd AS (UPDATE accounts SET ... WHERE id = :id AND NOT EXISTS (<another
        account has the address>) RETURNING id) SELECT (SELECT count(*) FROM upd), EXISTS
        (<the id>), EXISTS (<another account has the address>)``: the check and the write
        in one snapshot, as create's statement.
        """
        if self._email_query is not None:
            return self._email_query
        t, c = self._table, self._columns
        other = t.alias("other")
        pk = sa.bindparam("e_pk", type_=c["id"].type)
        key = sa.bindparam("e_key", type_=c["email_key"].type)
        taken = sa.exists(
            sa.select(sa.literal(1))
            .select_from(other)
            .where(other.c[c["email_key"].key] == key, other.c[c["id"].key] != pk)
        )
        upd = (
            sa.update(t)
            .where(c["id"] == pk, ~taken)
            .values(
                {
                    c[field].key: sa.bindparam(f"e_{name}", type_=c[field].type)
                    for field, name in (
                        ("email", "email"),
                        ("email_key", "key"),
                        ("email_confirmed", "confirmed"),
                        ("security_stamp", "stamp"),
                    )
                }
            )
            .returning(c["id"])
            .cte("upd")
        )
        found = sa.exists(
            sa.select(sa.literal(1)).select_from(other).where(other.c[c["id"].key] == pk)
        )
        self._email_query = sa.select(
            sa.select(sa.func.count()).select_from(upd).scalar_subquery(), found, taken
        )
        return self._email_query

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

        ``UPDATE ... WHERE id = :id AND security_stamp = :expected RETURNING ...`` in one
        transaction (without ``RETURNING`` on an old SQLite: the row read back in it); the
        unique indexes refuse a taken e-mail or phone, and nothing is written.

        Raises:
            StorageError: the table has no column for a value ``contact`` holds (a field
                mapped to ``None``), or the database failed.

        """
        swap = self._plan_contact(
            account_id,
            expected_stamp,
            contact,
            rotate_stamp=rotate_stamp,
            clear_password=clear_password,
        )
        if swap is None:
            return None
        return self._contact_write(swap, lambda connection: self._swap_contact(connection, swap))

    def mark_email_confirmed(self, account_id: str, *, email: str, now: datetime) -> bool:
        """Confirm the e-mail in one ``UPDATE ... WHERE email_key = :key``; see the protocol."""
        key, _ = check_mark_email(email, now)
        pk = self._pk(account_id)
        if pk is None or key is None:
            return False
        c = self._columns
        statement = (
            sa.update(self._table)
            .where(c["id"] == pk, c["email_key"] == key)
            .values({c["email_confirmed"].key: True})
        )
        return self._db._single(lambda connection: connection.execute(statement).rowcount == 1)

    def reserve_login_attempt(
        self, account_id: str, *, expected_failures: int, now: datetime
    ) -> bool:
        """Count an attempt if the count is still ``expected_failures``: one ``UPDATE``.

        ``UPDATE ... SET failed_logins = :expected + 1 WHERE id = :id AND failed_logins =
        :expected``, won if it updated a row. A count that is garbage matches nothing.
        """
        moment = check_reserve(account_id, expected_failures, now)
        pk = self._pk(account_id)
        if pk is None or expected_failures >= self._count_limit:
            return False  # no stored count can equal it and still be counted up
        c = self._columns
        statement = (
            sa.update(self._table)
            .where(c["id"] == pk, c["failed_logins"] == expected_failures)
            .values(
                {
                    c["failed_logins"].key: expected_failures + 1,
                    c["last_failed_login_at"].key: self._times["last_failed_login_at"].to_db(
                        moment
                    ),
                }
            )
        )
        return self._db._single(lambda connection: connection.execute(statement).rowcount == 1)

    def record_login_success(self, account_id: str, *, now: datetime) -> None:
        """Reset the failure count and set the last login time."""
        at = self._times["last_login_at"].to_db(require_utc(now))
        self._update_one(account_id, {"failed_logins": 0, "last_login_at": at})

    def clear_login_failures(self, account_id: str) -> None:
        """Reset the failure count without recording a login."""
        self._update_one(account_id, {"failed_logins": 0})

    def set_must_change_password(self, account_id: str, required: bool) -> None:
        """Set or clear the must-change flag in one ``UPDATE``; see the protocol.

        Raises:
            ValueError: the table keeps no password age (``must_change_password`` maps to
                ``None``).

        """
        check_must_change(account_id, required)
        self._require_field("must_change_password")
        self._update_one(account_id, {"must_change_password": required})

    def use_grace_login(self, account_id: str, *, expected: int) -> bool:
        """Count a grace log-in if the count is still ``expected``: one ``UPDATE``.

        Raises:
            ValueError: the table keeps no password age (``grace_logins_used`` maps to
                ``None``).

        """
        check_grace(account_id, expected)
        self._require_field("grace_logins_used")
        pk = self._pk(account_id)
        if pk is None or expected >= self._grace_limit:
            return False
        column = self._columns["grace_logins_used"]
        statement = (
            sa.update(self._table)
            .where(self._columns["id"] == pk, column == expected)
            .values({column.key: expected + 1})
        )
        return self._db._single(lambda connection: connection.execute(statement).rowcount == 1)

    def _update_one(self, account_id: str, changes: dict[str, object]) -> None:
        pk = self._pk(account_id)
        if pk is None:
            raise AccountNotFoundError("no account has this id")
        statement = (
            sa.update(self._table)
            .where(self._columns["id"] == pk)
            .values({self._columns[field].key: value for field, value in changes.items()})
        )
        if self._db._single(lambda c: c.execute(statement).rowcount) != 1:
            raise AccountNotFoundError("no account has this id")


class _Clash(Exception):
    """A unique index refused a row (raised inside a transaction so that it rolls back)."""

    def __init__(self, error: sa.exc.IntegrityError) -> None:
        super().__init__("a unique index refused the row")
        self.error = error


# -- password history ----------------------------------------------------------------------

_log = logging.getLogger("kaspi_identity.storage")


def _has_history_function(connection: sa.Connection, table: sa.Table) -> bool:
    signature = f"{_history_function_name(table)}({_HISTORY_ARGS})"
    found = connection.execute(sa.select(sa.func.to_regprocedure(signature).is_not(None)))
    return bool(found.scalar())


def _needs_read_committed(error: BaseException | None) -> bool:
    """Whether a statement at the server's default isolation needed READ COMMITTED.

    The history function's refusal (KI001), or a serialization failure (40001): either
    way the statement wrote nothing.
    """
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) in (_NOT_READ_COMMITTED, "40001")


#: The history function's arguments and their types, in its signature's order.
_FUNCTION_ARGUMENTS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("account_id", sa.Text()),
    ("password_hash", sa.Text()),
    ("fingerprint", sa.LargeBinary()),
    ("created_at", sa.BigInteger()),
    ("keep", sa.Integer()),
    ("lock", sa.BigInteger()),
)


class SQLAlchemyPasswordHistoryStore(_Store):
    """A :class:`~kaspi_identity.storage.PasswordHistoryStore` in ``<prefix>password_history``.

    An append inserts and trims holding a lock on the account: on PostgreSQL one call of
    the table's PL/pgSQL function (:func:`history_function_sql`; one round trip, its
    advisory lock taken before each of its statements takes its snapshot), or -- where the
    function is missing -- the same steps as a transaction of statements; on SQLite one
    ``BEGIN IMMEDIATE`` transaction.
    """

    def __init__(self, database: SQLAlchemyDatabase) -> None:
        super().__init__(database)
        t = self._tables.history
        function = _history_function_name(t).replace(":", "\\:")
        self._call = sa.text(
            f"SELECT {function}(CAST(:account_id AS text), CAST(:password_hash AS text),"
            " CAST(:fingerprint AS bytea), CAST(:created_at AS bigint),"
            " CAST(:keep AS integer), CAST(:lock AS bigint))"
        ).bindparams(sa.bindparam("fingerprint", type_=sa.LargeBinary()))
        # Whether the function exists (None: not looked up yet). A missing one is looked
        # up again every _SWEEP_EVERY appends, so a migration takes effect without a restart.
        self._function: bool | None = None
        self._fallbacks = itertools.count(1)

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Append ``entry`` and trim to the newest ``keep`` in one transaction."""
        check_append(account_id, entry, keep)
        if self._db._postgresql and self._db._autocommit_writes and self._function is not False:

            def call(connection: sa.Connection) -> bool:
                if not self._function_ready(connection):
                    return False
                self._call_function(connection, account_id, entry, keep)
                return True

            try:
                if self._db._single(call):
                    return
            except StorageError as exc:
                self._db._refused_isolation(exc)  # nothing written; transactions now
        self._db._write(lambda connection: self._append(connection, account_id, entry, keep))

    def _append(
        self, connection: sa.Connection, account_id: str, entry: HistoryEntry, keep: int
    ) -> None:
        """Lock the account's history, insert ``entry``, delete all but the newest ``keep``.

        Runs inside the caller's transaction (arguments already checked).
        """
        t = self._tables.history
        if self._db._postgresql:
            if self._function_ready(connection):
                self._call_function(connection, account_id, entry, keep)
                return
            if next(self._fallbacks) % _SWEEP_EVERY == 0:
                self._function = None  # look again at the next append
            # Rows of the account may not exist yet, so lock the account's key instead.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock(account_id))))
        connection.execute(
            sa.insert(t).values(
                account_id=account_id,
                password_hash=entry.password_hash,
                fingerprint=entry.fingerprint,
                created_at=to_microseconds(entry.created_at),
            )
        )
        newest = (
            sa.select(t.c.seq)
            .where(t.c.account_id == account_id)
            .order_by(t.c.seq.desc())
            .limit(keep)
        )
        connection.execute(sa.delete(t).where(t.c.account_id == account_id, t.c.seq.not_in(newest)))

    def _lock(self, account_id: str) -> int:
        return _lock_key("history", self._tables.history.fullname, account_id)

    def _function_ready(self, connection: sa.Connection) -> bool:
        """Whether the PostgreSQL function exists (looked up on ``connection`` once)."""
        if self._function is None:
            self._function = _has_history_function(connection, self._tables.history)
            if not self._function:
                _log.warning(
                    "PostgreSQL function %s is missing: password history appends run as a"
                    " transaction of several statements; SQLAlchemyDatabase.create_tables()"
                    " or a migration with history_function_sql() adds it",
                    _history_function_name(self._tables.history),
                )
        return self._function

    def _function_call(self) -> sa.ColumnElement[Any]:
        """The function's call over :meth:`_function_arguments`, for a statement's CTE."""
        t = self._tables.history
        name = _quoted_name(f"{t.name}_append", quote=True)
        schema = () if t.schema is None else (_quoted_name(t.schema, quote=True),)
        casts = (
            sa.cast(sa.bindparam(f"h_{argument}", type_=kind), kind)
            for argument, kind in _FUNCTION_ARGUMENTS
        )
        return sa.sql.functions.Function(name, *casts, packagenames=schema)

    def _function_arguments(
        self, account_id: str, entry: HistoryEntry, keep: int
    ) -> dict[str, object]:
        """The parameters of :meth:`_function_call`."""
        values = (
            account_id,
            entry.password_hash,
            entry.fingerprint,
            to_microseconds(entry.created_at),
            keep,
            self._lock(account_id),
        )
        return {
            f"h_{argument}": value
            for (argument, _), value in zip(_FUNCTION_ARGUMENTS, values, strict=True)
        }

    def _call_function(
        self, connection: sa.Connection, account_id: str, entry: HistoryEntry, keep: int
    ) -> None:
        """Lock, insert and trim in one statement: a call of the PostgreSQL function."""
        arguments = {
            "account_id": account_id,
            "password_hash": entry.password_hash,
            "fingerprint": entry.fingerprint,
            "created_at": to_microseconds(entry.created_at),
            "keep": keep,
            "lock": self._lock(account_id),
        }
        connection.execute(self._call, arguments)

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Return at most ``limit`` entries, newest first."""
        check_recent(account_id, limit)
        t = self._tables.history
        query = (
            sa.select(_raw(t.c.password_hash), _raw(t.c.fingerprint), _raw(t.c.created_at))
            .where(t.c.account_id == account_id)
            .order_by(t.c.seq.desc())
            .limit(limit)
        )
        rows = self._db._read(lambda c: [tuple(row) for row in c.execute(query).all()])
        return [decode_history_entry(row) for row in rows]


# -- token ledger --------------------------------------------------------------------------


class SQLAlchemyTokenLedger(_Store):
    """A :class:`~kaspi_identity.storage.TokenLedger`: one ``INSERT ... ON CONFLICT DO NOTHING``.

    Ids are kept 5 minutes past their expiry, then swept.
    """

    def __init__(self, database: SQLAlchemyDatabase) -> None:
        super().__init__(database)
        t = self._tables.tokens
        self._consume = (
            self._insert(t)
            .values(token_id=sa.bindparam("token_id"), expires_at=sa.bindparam("expires_at"))
            .on_conflict_do_nothing(index_elements=[t.c.token_id])
            .returning(t.c.token_id)
        )

    def consume(self, token_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """Record ``token_id`` as used; ``True`` only the first time, before expiry."""
        expires, at = check_consume(token_id, expires_at, now)
        if expires <= at:
            return False
        if self._sweep_due():
            t = self._tables.tokens
            self._sweep(t, t.c.token_id, t.c.expires_at <= at - LEDGER_GRACE // _US)
        parameters = {"token_id": token_id, "expires_at": expires}
        # RETURNING, not the row count: drivers need not report it for an INSERT.
        return self._db._single(lambda c: c.execute(self._consume, parameters).first() is not None)


# -- one-time codes ------------------------------------------------------------------------


class _RowPerKey(_Store):
    """A store that keeps one row per key and changes it by a locked read-modify-write.

    :meth:`_lock` reads the key's row ``FOR UPDATE`` (on SQLite the transaction already
    holds the write lock). A key without a row gets one through ``INSERT ... ON CONFLICT DO
    NOTHING``; if another caller inserted it first, the caller reads and locks it again.
    The statements are built once, with bound parameters.
    """

    def _prepare(self, table: sa.Table, key: sa.Column[Any], fields: tuple[str, ...]) -> None:
        where = key == sa.bindparam("row_key")
        self._key_name = key.key
        self._select_row = (
            sa.select(*(_raw(table.c[field]) for field in fields)).where(where).with_for_update()
        )
        self._update_row = sa.update(table).where(where)
        self._delete_row = sa.delete(table).where(where)
        self._insert_row = (
            self._insert(table).on_conflict_do_nothing(index_elements=[key]).returning(key)
        )

    def _lock(self, connection: sa.Connection, key: str) -> tuple[Any, ...] | None:
        row = connection.execute(self._select_row, {"row_key": key}).first()
        return None if row is None else tuple(row)

    def _store(
        self, connection: sa.Connection, key: str, values: dict[str, object], *, exists: bool
    ) -> bool:
        """Write ``values``; ``False`` if the row was new and another caller inserted it first."""
        if exists:
            connection.execute(self._update_row, {"row_key": key, **values})
            return True
        inserted = connection.execute(self._insert_row, {self._key_name: key, **values})
        return inserted.first() is not None

    def _delete(self, connection: sa.Connection, key: str) -> None:
        connection.execute(self._delete_row, {"row_key": key})


_CODE_FIELDS = ("code_hash", "expires_at", "failure_window", "failures", "window_ends_at")


class SQLAlchemyOneTimeCodeStore(_RowPerKey):
    """A :class:`~kaspi_identity.storage.OneTimeCodeStore` in ``<prefix>one_time_codes``.

    Each call reads the key's row ``FOR UPDATE``, applies the shared state transition and
    writes the result in the same transaction.
    """

    def __init__(self, database: SQLAlchemyDatabase) -> None:
        super().__init__(database)
        t = self._tables.codes
        self._prepare(t, t.c.code_key, _CODE_FIELDS)
        if database._postgresql:
            self._pg_put = _pg_put_code(t)
            self._pg_attempt = _pg_attempt_code(t)
            self._select_plain = sa.select(*(_raw(t.c[f]) for f in _CODE_FIELDS)).where(
                t.c.code_key == sa.bindparam("row_key")
            )

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
        if self._sweep_due():
            t = self._tables.codes
            no_code = sa.or_(
                t.c.code_hash.is_(None), t.c.expires_at.is_(None), t.c.expires_at <= at
            )
            no_counter = sa.or_(t.c.window_ends_at.is_(None), t.c.window_ends_at <= at)
            self._sweep(t, t.c.code_key, sa.and_(no_code, no_counter))

        if self._db._postgresql:
            self._put_postgresql(key, code_hash, expires, at, window)
            return

        def put(connection: sa.Connection) -> None:
            for _ in range(_RETRIES):
                state = decode_code_state(self._lock(connection, key))
                updated = put_code(
                    state, code_hash, expires_at=expires, now=at, failure_window=window
                )
                if self._store(connection, key, _code_values(updated), exists=state is not None):
                    return
            raise StorageError("the one-time code row kept changing; try again")

        self._db._write(put)

    def _put_postgresql(
        self, key: str, code_hash: bytes, expires: int, at: int, window: int
    ) -> None:
        """``put`` as one statement: an upsert that keeps a live counter (see _pg_put_code)."""
        parameters = {"k": key, "h": code_hash, "e": expires, "w": window, "now": at}
        for _ in range(_RETRIES):
            if self._db._single(lambda c: c.execute(self._pg_put, parameters).first()):
                return
            # The row exists but is not one this store writes: say so, and change nothing.
            row = self._db._read(lambda c: c.execute(self._select_plain, {"row_key": key}).first())
            decode_code_state(None if row is None else tuple(row))
        raise StorageError("the one-time code row kept changing; try again")

    def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        """Count one attempt and compare every candidate, in one locked transaction."""
        at, hashes = check_attempt(key, candidates, now=now, max_attempts=max_attempts)
        if self._db._postgresql:
            parameters = {"k": key, "now": at, "max": max_attempts, "candidates": list(hashes)}
            row = self._db._single(lambda c: c.execute(self._pg_attempt, parameters).first())
            if row is None:
                return CodeAttempt.MISSING
            # A row the statement did not recognise raises here; it was left as it was.
            decode_code_state(tuple(row)[:5])
            return _PG_OUTCOMES[row[5]]

        def attempt(connection: sa.Connection) -> CodeAttempt:
            state = decode_code_state(self._lock(connection, key))
            updated, outcome = attempt_code(state, hashes, now=at, max_attempts=max_attempts)
            if updated is None:
                if state is not None:
                    self._delete(connection, key)
            elif updated is not state:
                self._store(connection, key, _code_values(updated), exists=True)
            return outcome

        return self._db._write(attempt)


_PG_OUTCOMES = {
    0: CodeAttempt.MISSING,
    1: CodeAttempt.MISMATCH,
    2: CodeAttempt.OK,
    3: CodeAttempt.EXHAUSTED,
}


def _bigint(name: str) -> sa.BindParameter[int]:
    return sa.bindparam(name, type_=sa.BigInteger())


def _pg_valid_code(t: sa.FromClause) -> sa.ColumnElement[bool]:
    """SQL for what ``decode_code_state`` accepts (a row failing it is never written)."""
    return sa.and_(
        t.c.failure_window > 0,
        t.c.failures >= 0,
        sa.or_(
            sa.and_(t.c.failures == 0, t.c.window_ends_at.is_(None)),
            sa.and_(t.c.failures > 0, t.c.window_ends_at.is_not(None)),
        ),
    )


def _pg_put_code(t: sa.Table) -> Any:
    """``put_code`` as one PostgreSQL upsert: the new code, the counter kept while it runs.

    Returns the key when written; no row when the existing row is not a valid one.
    """
    insert = _postgresql.insert(t).values(
        code_key=sa.bindparam("k"),
        code_hash=sa.bindparam("h", type_=sa.LargeBinary()),
        expires_at=_bigint("e"),
        failure_window=_bigint("w"),
        failures=0,
        window_ends_at=None,
    )
    ended = sa.and_(t.c.window_ends_at.is_not(None), _bigint("now") >= t.c.window_ends_at)
    return insert.on_conflict_do_update(
        index_elements=[t.c.code_key],
        set_={
            "code_hash": insert.excluded.code_hash,
            "expires_at": insert.excluded.expires_at,
            "failure_window": insert.excluded.failure_window,
            "failures": sa.case((ended, 0), else_=t.c.failures),
            "window_ends_at": sa.case((ended, sa.null()), else_=t.c.window_ends_at),
        },
        where=_pg_valid_code(t),
    ).returning(t.c.code_key)


def _pg_attempt_code(t: sa.Table) -> Any:
    """``attempt_code`` as one PostgreSQL statement of data-modifying CTEs.

    ``old`` locks the key's row; ``verdict`` applies the transition (0 missing, 1 mismatch,
    2 right, 3 exhausted: the same numbers as the Redis script); ``gone`` deletes the row
    of a right code, ``counted`` writes the counter (and burns an exhausted code). The
    statement answers the row as it was and the verdict, so an unrecognised row raises
    CorruptRecordError in Python -- its verdict is 0, so nothing was written. A concurrent
    attempt waits for the lock and then sees this one's result (READ COMMITTED re-reads a
    locked row), exactly as the locked read-modify-write does.
    """
    now = _bigint("now")
    old = (
        sa.select(*(t.c[f] for f in ("code_key", *_CODE_FIELDS)))
        .where(t.c.code_key == sa.bindparam("k"))
        .with_for_update()
        .cte("old")
    )
    ended = sa.and_(old.c.window_ends_at.is_not(None), now >= old.c.window_ends_at)
    failures = sa.case((ended, 1), else_=old.c.failures + 1)
    window_end = sa.case(
        (sa.or_(old.c.window_ends_at.is_(None), ended), now + old.c.failure_window),
        else_=old.c.window_ends_at,
    )
    live = sa.and_(
        _pg_valid_code(old),
        old.c.code_hash.is_not(None),
        old.c.expires_at.is_not(None),
        now < old.c.expires_at,
    )
    candidates = sa.bindparam("candidates", expanding=True, type_=sa.LargeBinary())
    outcome = sa.case(
        (sa.not_(live), 0),
        (failures > sa.bindparam("max", type_=sa.BigInteger()), 3),
        (old.c.code_hash.in_(candidates), 2),
        else_=1,
    )
    verdict = sa.select(
        old.c.code_key,
        failures.label("failures"),
        window_end.label("window_end"),
        outcome.label("outcome"),
    ).cte("verdict")
    gone = (
        sa.delete(t)
        .where(t.c.code_key == verdict.c.code_key, verdict.c.outcome == 2)
        .returning(t.c.code_key)
        .cte("gone")
    )
    burned = verdict.c.outcome == 3
    counted = (
        sa.update(t)
        .where(t.c.code_key == verdict.c.code_key, verdict.c.outcome.in_([1, 3]))
        .values(
            failures=verdict.c.failures,
            window_ends_at=verdict.c.window_end,
            code_hash=sa.case((burned, sa.null()), else_=t.c.code_hash),
            expires_at=sa.case((burned, sa.null()), else_=t.c.expires_at),
        )
        .returning(t.c.code_key)
        .cte("counted")
    )
    writes = sa.select(sa.func.count()).select_from(
        sa.union_all(sa.select(gone.c.code_key), sa.select(counted.c.code_key)).subquery()
    )
    return sa.select(
        *(_raw(old.c[f]) for f in _CODE_FIELDS),
        verdict.c.outcome,
        writes.scalar_subquery().label("writes"),
    ).select_from(old.join(verdict, old.c.code_key == verdict.c.code_key))


def _code_values(state: CodeState) -> dict[str, object]:
    return {
        "code_hash": state.code_hash,
        "expires_at": state.expires_at,
        "failure_window": state.failure_window,
        "failures": state.failures,
        "window_ends_at": state.window_ends_at,
    }


# -- rate limits ---------------------------------------------------------------------------


class SQLAlchemyRateLimiter(_RowPerKey):
    """A fixed-window :class:`~kaspi_identity.storage.RateLimiter` in ``<prefix>rate_limits``.

    Each hit reads the key's window ``FOR UPDATE`` and writes it back in one transaction.
    """

    def __init__(self, database: SQLAlchemyDatabase) -> None:
        super().__init__(database)
        t = self._tables.rate_limits
        self._prepare(t, t.c.limit_key, ("window_start", "window_length", "hits"))
        if database._postgresql:
            self._pg_hit = _pg_hit(t)
            self._select_plain = sa.select(
                _raw(t.c.window_start), _raw(t.c.window_length), _raw(t.c.hits)
            ).where(t.c.limit_key == sa.bindparam("row_key"))

    def hit(self, key: str, *, limit: int, window: timedelta, now: datetime) -> RateLimitResult:
        """Count a hit on ``key`` in one locked transaction; see the protocol."""
        length, at = check_hit(key, limit=limit, window=window, now=now)
        if self._sweep_due():
            t = self._tables.rate_limits
            self._sweep(t, t.c.limit_key, t.c.window_start + t.c.window_length <= at)

        if self._db._postgresql:
            return self._hit_postgresql(key, limit, length, at)

        def hit(connection: sa.Connection) -> RateLimitResult:
            for _ in range(_RETRIES):
                state = decode_window_state(self._lock(connection, key))
                updated, result = hit_window(state, now=at, limit=limit, window=length)
                values: dict[str, object] = {
                    "window_start": updated.start,
                    "window_length": updated.length,
                    "hits": updated.hits,
                }
                if self._store(connection, key, values, exists=state is not None):
                    return result
            raise StorageError("the rate-limit row kept changing; try again")

        return self._db._write(hit)

    def _hit_postgresql(self, key: str, limit: int, length: int, at: int) -> RateLimitResult:
        """``hit`` as one upsert that answers the window after the hit (see _pg_hit)."""
        parameters = {"k": key, "now": at, "length": length}
        for _ in range(_RETRIES):
            row = self._db._single(lambda c: c.execute(self._pg_hit, parameters).first())
            if row is not None:
                state = decode_window_state(tuple(row))
                if state is None:  # pragma: no cover - a returned row is never None
                    break
                if state.hits <= limit:
                    return RateLimitResult(True, timedelta(0))
                return RateLimitResult(False, (state.start + state.length - at) * _US)
            # The row exists but is not one this store writes: say so, and change nothing.
            old = self._db._read(lambda c: c.execute(self._select_plain, {"row_key": key}).first())
            decode_window_state(None if old is None else tuple(old))
        raise StorageError("the rate-limit row kept changing; try again")


def _pg_hit(t: sa.Table) -> Any:
    """``hit_window`` as one PostgreSQL upsert: open a window or count in the open one.

    Returns the window after the hit; no row when the existing row is not a valid one.
    """
    now = _bigint("now")
    insert = _postgresql.insert(t).values(
        limit_key=sa.bindparam("k"), window_start=now, window_length=_bigint("length"), hits=1
    )
    running = now < t.c.window_start + t.c.window_length
    return insert.on_conflict_do_update(
        index_elements=[t.c.limit_key],
        set_={
            "window_start": sa.case(
                (running, t.c.window_start), else_=insert.excluded.window_start
            ),
            "window_length": sa.case(
                (running, t.c.window_length), else_=insert.excluded.window_length
            ),
            "hits": sa.case((running, t.c.hits + 1), else_=1),
        },
        where=sa.and_(t.c.window_length > 0, t.c.hits >= 1),
    ).returning(_raw(t.c.window_start), _raw(t.c.window_length), _raw(t.c.hits))


# -- accounts and history together --------------------------------------------------------


# -- the outbox ----------------------------------------------------------------------------


class SQLAlchemyOutboxStore(_Store):
    """An :class:`~kaspi_identity.storage.OutboxStore` in ``<prefix>outbox``.

    On PostgreSQL every operation is one autocommit statement (one round trip): a claim
    leases the due rows a ``FOR UPDATE SKIP LOCKED`` CTE picks (concurrent workers take
    different rows and never wait for each other), a settle is one ``UPDATE`` guarded by
    the transition's rule over its row read ``FOR UPDATE``. Where the server's default
    isolation is not READ COMMITTED (a serialization failure), they run as the transactions
    SQLite runs in ``BEGIN IMMEDIATE``: the due rows or the row read, then written back.

    Raises:
        ValueError: the database's metadata has no outbox table.
    """

    def __init__(self, database: SQLAlchemyDatabase) -> None:
        super().__init__(database)
        table = self._tables.outbox
        if table is None:
            raise ValueError("the metadata has no outbox table (build it with make_metadata())")
        self._table = table
        columns = [_raw(table.c[name]) for name in OUTBOX_COLUMNS]
        self._select = sa.select(*columns)
        self._enqueue_one = (
            self._insert(table)
            .on_conflict_do_nothing(index_elements=[table.c.id])
            .returning(table.c.id)
        )
        self._by_id = self._select.where(table.c.id == sa.bindparam("row_id"))
        self._update = sa.update(table).where(table.c.id == sa.bindparam("row_id"))
        # PostgreSQL's one-statement claim and settles (built when first used); they run
        # while the database's _autocommit_writes holds.
        self._claim_statement: Any = None
        self._settle_queries: dict[tuple[bool, bool, bool], Any] = {}
        self._restore: Any = None

    @staticmethod
    def _values(message: OutboxMessage, state: OutboxState) -> dict[str, object]:
        return dict(zip(OUTBOX_COLUMNS, outbox_row(message, state), strict=True))

    def _insert_all(self, connection: sa.Connection, messages: Sequence[OutboxMessage]) -> None:
        """Enqueue each message, due at its ``created_at``, on the caller's connection."""
        for message in messages:
            at = to_microseconds(message.created_at)
            connection.execute(self._enqueue_one, self._values(message, initial_state(message, at)))

    def _insert_when(self, count: int, condition: sa.ColumnElement[bool]) -> Any:
        """One ``INSERT ... SELECT`` of ``count`` messages (at least one), each if ``condition``.

        For a CTE of a statement that writes the letters with the change they announce,
        over the parameters :meth:`_insert_arguments` gives; each is cast to its column's
        type, so no driver has to guess one.
        """
        table = self._table
        rows = [
            sa.select(
                *(
                    sa.cast(
                        sa.bindparam(f"o{index}_{name}", type_=table.c[name].type),
                        table.c[name].type,
                    )
                    for name in OUTBOX_COLUMNS
                )
            ).where(condition)
            for index in range(count)
        ]
        source = rows[0] if count == 1 else sa.union_all(*rows)
        return (
            _postgresql.insert(table)
            .from_select(list(OUTBOX_COLUMNS), source)
            .on_conflict_do_nothing(index_elements=[table.c.id])
        )

    def _insert_arguments(self, messages: Sequence[OutboxMessage]) -> dict[str, object]:
        """The parameters of :meth:`_insert_when` for ``messages`` (due at ``created_at``)."""
        arguments: dict[str, object] = {}
        for index, message in enumerate(messages):
            state = initial_state(message, to_microseconds(message.created_at))
            for name, value in self._values(message, state).items():
                arguments[f"o{index}_{name}"] = value
        return arguments

    @staticmethod
    def _state_values(state: OutboxState) -> dict[str, object]:
        return {
            "status": state.status,
            "attempts": state.attempts,
            "next_attempt_at": state.next_at,
            "updated_at": state.updated_at,
            "last_error": state.error,
        }

    def enqueue(self, message: OutboxMessage, *, now: datetime) -> bool:
        """Store ``message``, due at ``now``; see the protocol."""
        values = self._values(message, initial_state(message, check_enqueue(message, now)))
        return self._db._single(lambda c: c.execute(self._enqueue_one, values).first() is not None)

    def claim(self, *, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        """Lease up to ``limit`` due pending entries; see the protocol.

        One autocommit statement on PostgreSQL (see :meth:`_claim_query`), else one
        transaction.
        """
        at, length, count = check_claim(now, lease, limit)
        rule = lease_of(at, length)
        if self._db._postgresql and self._db._autocommit_writes:
            try:
                return self._claim_in_one(rule, count)
            except StorageError as exc:
                self._db._refused_isolation(exc)  # nothing written; transactions now
        t = self._table
        due = (
            self._select.where(t.c.status == "pending", t.c.next_attempt_at <= rule.due_by)
            .order_by(t.c.next_attempt_at, t.c.created_at, t.c.id)
            .limit(count)
            .with_for_update(skip_locked=True)
        )

        def claim(connection: sa.Connection) -> list[OutboxEntry]:
            claimed = []
            for row in connection.execute(due).all():
                decoded = decode_outbox(tuple(row))
                assert decoded is not None  # a row was read
                message, state = decoded
                new = rule.apply(state)
                if new is None:
                    continue
                connection.execute(self._update, {"row_id": message.id, **self._state_values(new)})
                claimed.append(entry_of(message, new))
            return claimed

        return self._db._write(claim)

    # One statement on PostgreSQL, autocommit, so one round trip:
    #
    #   WITH due AS (SELECT <every column> FROM outbox WHERE status = 'pending'
    #                  AND next_attempt_at <= :now ORDER BY next_attempt_at, created_at, id
    #                  LIMIT :n FOR UPDATE SKIP LOCKED)
    #   UPDATE outbox SET attempts = attempts + 1, next_attempt_at = :now + :lease,
    #     updated_at = :now FROM due WHERE outbox.id = due.id RETURNING due.<every column>
    #
    # (each value a parameter from the Lease rule, _outbox.py, as claim_state uses it).
    #
    # - SKIP LOCKED: racing claimers lock different rows and never wait for each other; a
    #   row is leased by the one statement that locked it, so each entry goes to exactly one.
    # - It returns the rows as they were before the lease; the entries are those rows with
    #   the Lease rule applied in Python (the same values the SQL wrote), in the protocol's
    #   order (earliest due first: RETURNING keeps no order).
    # - A garbage row (one decode_outbox refuses) made the transaction raise and roll back,
    #   so the queue stayed as it was. Here the statement has committed the leases by the
    #   time the rows are decoded: a second statement puts every row it leased back as it
    #   was (where nobody has changed it since), and the claim raises CorruptRecordError.
    #   If that statement fails too, the leases run out and the entries are claimed again.
    # - An attempts count that would overflow its column fails the whole statement
    #   (nothing written, StorageError), as it failed the transaction.
    # - Outside READ COMMITTED (the server's default isolation, which an autocommit
    #   statement runs at) a row a racer changed after the snapshot is a serialization
    #   failure (40001): nothing written; this claim and every later one run as a READ
    #   COMMITTED transaction instead.
    def _claim_query(self) -> Any:
        """The statement above, over bind parameters, built once (psycopg prepares it)."""
        if self._claim_statement is None:
            t = self._table
            due = (
                sa.select(*(t.c[name] for name in OUTBOX_COLUMNS))
                .where(
                    t.c.status == sa.bindparam("c_status", type_=t.c.status.type),
                    t.c.next_attempt_at <= _bigint("c_due"),
                )
                .order_by(t.c.next_attempt_at, t.c.created_at, t.c.id)
                .limit(sa.bindparam("c_limit", type_=sa.Integer()))
                .with_for_update(skip_locked=True)
                .cte("due")
            )
            self._claim_statement = (
                sa.update(t)
                .where(t.c.id == due.c.id)
                .values(
                    attempts=t.c.attempts + sa.bindparam("c_step", type_=sa.Integer()),
                    next_attempt_at=_bigint("c_until"),
                    updated_at=_bigint("c_at"),
                )
                .returning(*(_raw(due.c[name]) for name in OUTBOX_COLUMNS))
            )
        return self._claim_statement

    def _claim_in_one(self, rule: Lease, count: int) -> list[OutboxEntry]:
        """``claim`` as the one autocommit statement of :meth:`_claim_query`."""
        parameters = {
            "c_status": rule.STATUS,
            "c_due": rule.due_by,
            "c_step": rule.STEP,
            "c_until": rule.until,
            "c_at": rule.at,
            "c_limit": count,
        }
        query = self._claim_query()
        rows = self._db._single(lambda c: [tuple(row) for row in c.execute(query, parameters)])
        changes = [(row, _leased(rule, row)) for row in rows]
        leased: list[tuple[tuple[int, datetime, str], OutboxEntry]] = []
        try:
            for row, new in changes:
                decoded = decode_outbox(row)
                assert decoded is not None  # a row was returned
                message, was = decoded
                due = (was.next_at, message.created_at, message.id)
                leased.append((due, entry_of(message, new)))
        except (CorruptRecordError, OverflowError):
            self._put_back(changes)
            raise
        return [entry for _, entry in sorted(leased, key=lambda item: item[0])]

    def _put_back(self, changes: Sequence[tuple[tuple[Any, ...], OutboxState]]) -> None:
        """Write each row's old state back where it still holds the state written over it."""
        if not changes:
            return
        arguments = []
        for row, new in changes:
            values = {f"o_{name}": value for name, value in zip(OUTBOX_COLUMNS, row, strict=True)}
            values.update(
                n_status=new.status,
                n_attempts=new.attempts,
                n_next=new.next_at,
                n_updated=new.updated_at,
            )
            arguments.append({key: values[key] for key in _PUT_BACK_KEYS})
        try:
            self._db._single(lambda c: c.execute(self._put_back_statement(), arguments))
        except StorageError as exc:
            # The corrupt row stays the caller's answer; the leases written run out instead.
            _log.warning(
                "%d outbox rows leased or settled over a corrupt row were not put back (%s);"
                " a lease ends at its time, a settle stays written",
                len(changes),
                exc,
            )

    def _put_back_statement(self) -> Any:
        if self._restore is None:
            t = self._table
            self._restore = (
                sa.update(t)
                .where(
                    t.c.id == sa.bindparam("o_id", type_=t.c.id.type),
                    t.c.status == sa.bindparam("n_status", type_=t.c.status.type),
                    t.c.attempts == sa.bindparam("n_attempts", type_=t.c.attempts.type),
                    t.c.next_attempt_at == _bigint("n_next"),
                    t.c.updated_at == _bigint("n_updated"),
                )
                .values(
                    {
                        name: sa.bindparam(f"o_{name}", type_=t.c[name].type)
                        for name in _STATE_COLUMNS
                    }
                )
            )
        return self._restore

    def _settle(self, key: str, rule: Settlement) -> bool:
        """Apply ``rule`` to the entry ``key``: one autocommit statement on PostgreSQL."""
        if self._db._postgresql and self._db._autocommit_writes:
            try:
                return self._settle_in_one(key, rule)
            except StorageError as exc:
                self._db._refused_isolation(exc)  # nothing written; transactions now
        locked = self._by_id.with_for_update()

        def settle(connection: sa.Connection) -> bool:
            row = connection.execute(locked, {"row_id": key}).first()
            loaded = None if row is None else decode_outbox(tuple(row))
            new = None if loaded is None else rule.apply(loaded[1])
            if new is None:
                return False
            connection.execute(self._update, {"row_id": key, **self._state_values(new)})
            return True

        return self._db._write(settle)

    # One statement on PostgreSQL, autocommit, so one round trip:
    #
    #   WITH old AS (SELECT <every column> FROM outbox WHERE id = :id FOR UPDATE),
    #        upd AS (UPDATE outbox SET status = :to, next_attempt_at = :next,
    #                  updated_at = :now [, attempts = :attempts] [, last_error = :error]
    #                  FROM old WHERE outbox.id = old.id AND outbox.status = :status
    #                  [AND outbox.attempts = :attempt] RETURNING outbox.id)
    #   SELECT old.<every column>, (SELECT count(*) FROM upd) FROM old
    #
    # - The guard and the values are the Settlement rule's (_outbox.py), as the pure
    #   transitions the other adapters run use them.
    # - Racing settles of one entry queue on its row lock; the UPDATE re-checks the guard on
    #   the row's newest version (READ COMMITTED), so exactly one of them writes.
    # - The row comes back as it was, so a garbage row is seen as the transaction saw it:
    #   CorruptRecordError, and if the guard held and the statement wrote, a second
    #   statement first writes the old state back (as for claim).
    # - Outside READ COMMITTED a racer's commit may be a serialization failure (40001):
    #   nothing written, and the store runs transactions from then on.
    def _settle_query(self, rule: Settlement) -> Any:
        """The statement above for ``rule``'s shape, built once per shape (at most four)."""
        shape = (rule.attempt is not None, rule.attempts is not None, rule.sets_error)
        query = self._settle_queries.get(shape)
        if query is not None:
            return query
        t = self._table
        old = (
            sa.select(*(t.c[name] for name in OUTBOX_COLUMNS))
            .where(t.c.id == sa.bindparam("s_id", type_=t.c.id.type))
            .with_for_update()
            .cte("old")
        )
        guard = [t.c.id == old.c.id, t.c.status == sa.bindparam("s_status", type_=t.c.status.type)]
        if rule.attempt is not None:
            guard.append(t.c.attempts == sa.bindparam("s_attempt", type_=t.c.attempts.type))
        values: dict[str, Any] = {
            "status": sa.bindparam("s_to", type_=t.c.status.type),
            "next_attempt_at": _bigint("s_next"),
            "updated_at": _bigint("s_now"),
        }
        if rule.attempts is not None:
            values["attempts"] = sa.bindparam("s_attempts", type_=t.c.attempts.type)
        if rule.sets_error:
            values["last_error"] = sa.bindparam("s_error", type_=t.c.last_error.type)
        upd = sa.update(t).where(*guard).values(values).returning(t.c.id).cte("upd")
        query = sa.select(
            *(_raw(old.c[name]) for name in OUTBOX_COLUMNS),
            sa.select(sa.func.count()).select_from(upd).scalar_subquery(),
        ).select_from(old)
        self._settle_queries[shape] = query
        return query

    def _settle_in_one(self, key: str, rule: Settlement) -> bool:
        """A settle as the one autocommit statement of :meth:`_settle_query`."""
        parameters: dict[str, object] = {
            "s_id": key,
            "s_status": rule.status,
            "s_to": rule.to,
            "s_next": rule.next_at,
            "s_now": rule.updated_at,
        }
        if rule.attempt is not None:
            parameters["s_attempt"] = rule.attempt
        if rule.attempts is not None:
            parameters["s_attempts"] = rule.attempts
        if rule.sets_error:
            parameters["s_error"] = rule.error
        query = self._settle_query(rule)
        found = self._db._single(lambda c: c.execute(query, parameters).first())
        if found is None:
            return False
        row, written = tuple(found[:-1]), bool(found[-1] == 1)
        try:
            decode_outbox(row)  # the row as the transaction would have read it
        except CorruptRecordError:
            if written:
                new = rule.apply(_raw_state(row))
                assert new is not None  # the guard held in SQL
                self._put_back([(row, new)])
            raise
        # The SQL guard is the rule's: it wrote exactly when the rule applies.
        return written

    def complete(self, message_id: str, *, attempt: int, now: datetime) -> bool:
        """Mark the entry sent if ``attempt`` is its latest claim; see the protocol."""
        key, count, at, _ = check_settle(message_id, attempt, now)
        return self._settle(key, complete_settlement(count, at))

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
        return self._settle(key, fail_settlement(count, at, again, label))

    def get(self, message_id: str) -> OutboxEntry | None:
        """Return the entry with this id, or ``None``."""
        key = check_message_id(message_id)
        row = self._db._read(lambda c: c.execute(self._by_id, {"row_id": key}).first())
        loaded = None if row is None else decode_outbox(tuple(row))
        return None if loaded is None else entry_of(*loaded)

    def list(self, *, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` entries of ``status`` (or all), oldest first."""
        wanted, count = check_list(status, limit)
        t = self._table
        query = self._select.order_by(t.c.created_at, t.c.id).limit(count)
        if wanted is not None:
            query = query.where(t.c.status == wanted)
        rows = self._db._read(lambda c: c.execute(query).all())
        entries = []
        for row in rows:
            decoded = decode_outbox(tuple(row))
            assert decoded is not None
            entries.append(entry_of(*decoded))
        return entries

    def retry(self, message_id: str, *, now: datetime) -> bool:
        """Make a dead entry pending again; see the protocol."""
        key = check_message_id(message_id)
        at = utc_microseconds(now)
        return self._settle(key, retry_settlement(at))

    def purge(
        self, *, before: datetime, statuses: tuple[OutboxStatus, ...] = ("sent", "void")
    ) -> int:
        """Delete settled entries last changed before ``before``; see the protocol."""
        at, chosen = check_purge(before, statuses)
        t = self._table
        statement = sa.delete(t).where(t.c.status.in_(chosen), t.c.updated_at < at)
        return int(self._db._single(lambda c: c.execute(statement).rowcount))


#: The state columns a put-back writes, and the parameters of its statement.
_STATE_COLUMNS = ("status", "attempts", "next_attempt_at", "updated_at", "last_error")
_PUT_BACK_KEYS = (
    "o_id",
    *(f"o_{name}" for name in _STATE_COLUMNS),
    *("n_status", "n_attempts", "n_next", "n_updated"),
)


def _raw_state(row: tuple[Any, ...]) -> OutboxState:
    """A row's state columns as they are, unchecked (to compute what a statement wrote)."""
    status, attempts, next_at, updated, error = row[8:13]
    return OutboxState(status, attempts, next_at, updated, error)


def _leased(rule: Lease, row: tuple[Any, ...]) -> OutboxState:
    """The state the claim statement wrote over ``row``: the rule's, on its raw state."""
    new = rule.apply(_raw_state(row))
    assert new is not None  # the statement chose only due rows
    return new


class SQLAlchemyAccountWithHistory:
    """:class:`~kaspi_identity.storage.AccountWithHistory`: each call all or nothing.

    On PostgreSQL ``replace_password`` and ``create_with_history`` are one autocommit
    statement each (one round trip) where the history function exists and the server's
    default isolation is READ COMMITTED; otherwise, and on SQLite, each call is one
    transaction of the statements below.

    Runs the account store's own ``INSERT`` (:meth:`SQLAlchemyAccountStore.create`) or
    compare-and-set ``UPDATE`` (``set_password_hash``, with a fresh stamp) and the history
    store's locked insert-and-trim (:meth:`SQLAlchemyPasswordHistoryStore.append`) on one
    connection of the one engine, so both take effect or neither does. The accounts table
    may be the library's or the host's own (any table the store maps): what matters is that
    both stores run on the same :class:`SQLAlchemyDatabase`, hence in one database.

    On PostgreSQL the compare-and-set's row lock is taken before the history's advisory
    lock, in every call, so racing calls queue and never deadlock; on SQLite the whole call
    runs inside ``BEGIN IMMEDIATE``.

    Raises:
        TypeError: ``accounts`` or ``history`` is not the SQLAlchemy store.
        ValueError: the two stores run on different :class:`SQLAlchemyDatabase` objects.

    """

    def __init__(
        self,
        accounts: SQLAlchemyAccountStore,
        history: SQLAlchemyPasswordHistoryStore,
        *,
        outbox: SQLAlchemyOutboxStore | None = None,
    ) -> None:
        if outbox is not None and (
            not isinstance(outbox, SQLAlchemyOutboxStore)
            or outbox.database is not accounts.database
        ):
            raise TypeError("outbox must be a SQLAlchemyOutboxStore on the same database")
        if not isinstance(accounts, SQLAlchemyAccountStore):
            raise TypeError(
                f"accounts must be a SQLAlchemyAccountStore, not {type(accounts).__name__}"
            )
        if not isinstance(history, SQLAlchemyPasswordHistoryStore):
            raise TypeError(
                f"history must be a SQLAlchemyPasswordHistoryStore, not {type(history).__name__}"
            )
        if accounts.database is not history.database:
            raise ValueError(
                "accounts and history must run on the same SQLAlchemyDatabase (one engine,"
                " one transaction); build both stores on one database"
            )
        self._accounts = accounts
        self._history = history
        self._outbox = outbox
        self._db = accounts.database
        # replace_password's one statement, per shape (see _replace_query).
        self._replace_queries: dict[tuple[tuple[str, ...], bool, int], Any] = {}

    @property
    def outbox_store(self) -> SQLAlchemyOutboxStore | None:
        """The outbox the messages given to each call are enqueued in, or ``None``."""
        return self._outbox

    def _enqueue(self, connection: sa.Connection, messages: Sequence[OutboxMessage]) -> None:
        if self._outbox is not None:
            self._outbox._insert_all(connection, messages)

    @property
    def accounts(self) -> SQLAlchemyAccountStore:
        """The account store whose table this writes."""
        return self._accounts

    @property
    def history(self) -> SQLAlchemyPasswordHistoryStore:
        """The history store whose table this writes."""
        return self._history

    @property
    def database(self) -> SQLAlchemyDatabase:
        """The database both stores run on."""
        return self._db

    def close(self) -> None:
        """Close the shared database (every store on it)."""
        self._db.close()

    def covers(self, accounts: object, history: object) -> bool:
        """Whether this unit of work writes what ``accounts`` and ``history`` read.

        The very account store it was built with (another one on the same database may map
        another table, other columns or other insert defaults), and a history store on the
        same database (they all use its one history table). :class:`Storage` refuses a
        ``with_history`` that does not cover the bundle's stores.
        """
        return (
            accounts is self._accounts
            and isinstance(history, SQLAlchemyPasswordHistoryStore)
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
        """Insert the account and append ``entry(account)`` in one transaction."""
        row = self._accounts._plan_create(new, check_create_with_history(new, now, entry, keep))
        check_messages_callable(messages, self._outbox)

        def create(connection: sa.Connection) -> Account:
            account = self._accounts._insert_row(connection, row)
            if messages is not None:
                self._enqueue(connection, check_messages(messages(account), self._outbox))
            if entry is not None:
                made = check_entry(entry(account))
                self._history._append(connection, account.id, made, keep)
            return account

        if (
            self._db._postgresql
            and self._db._autocommit_writes
            and not self._accounts._integer_id
            and (entry is None or self._history._function is not False)
        ):
            # The id is made here, so the entry and the letters can be made before the
            # statement (an entry or messages that raise leave nothing to roll back).
            account = replace(row.account, id=str(row.values[self._accounts._columns["id"].key]))
            queued = () if messages is None else check_messages(messages(account), self._outbox)
            made = None if entry is None else check_entry(entry(account))
            created = self._create_in_one(row, account, made, keep, queued)
            if created is not None:
                return created
        return self._accounts._write_checked(create)

    def _create_in_one(
        self,
        row: _NewRow,
        account: Account,
        entry: HistoryEntry | None,
        keep: int,
        messages: Sequence[OutboxMessage],
    ) -> Account | None:
        """``create_with_history`` as one autocommit statement; ``None``: not done so.

        The account store's single ``INSERT`` (:meth:`SQLAlchemyAccountStore._create_in_one`)
        with two more CTEs reading it: ``hist AS (SELECT <history>_append(...) FROM ins)``
        and ``out AS (INSERT INTO outbox ... WHERE EXISTS (SELECT 1 FROM ins))``. The
        notes on :meth:`_replace_query` hold here too.
        """

        def extend(ins: Any) -> _Extension:
            counts: list[sa.ColumnElement[Any]] = []
            ctes: list[Any] = []
            if entry is not None:
                call = self._history._function_call()
                hist = sa.select(call.label("appended")).select_from(ins).cte("hist")
                counts.append(sa.select(sa.func.count()).select_from(hist).scalar_subquery())
            if messages and self._outbox is not None:
                stored = sa.exists(sa.select(sa.literal(1)).select_from(ins))
                ctes.append(self._outbox._insert_when(len(messages), stored).cte("out"))
            return counts, ctes

        arguments: dict[str, object] = {}
        if entry is not None:
            arguments.update(self._history._function_arguments(account.id, entry, keep))
        if messages and self._outbox is not None:
            arguments.update(self._outbox._insert_arguments(messages))

        def ready(connection: sa.Connection) -> bool:
            return entry is None or self._history._function_ready(connection)

        return self._accounts._create_in_one(
            row,
            shape=(entry is not None, len(messages) if self._outbox is not None else 0),
            extend=extend,
            arguments=arguments,
            ready=ready,
        )

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
        """Compare-and-set the hash with a fresh stamp and append ``entry``, in one transaction.

        ``False``, with nothing written, when the ``UPDATE`` matched no row.
        """
        queued = check_messages(messages, self._outbox)
        key = check_replace_password(account_id, expected, new, entry, keep)
        check_changed_at(now)
        if key is None:
            return False
        planned = self._accounts._password_values(
            account_id, expected, new, rotate_stamp=True, now=now
        )
        if planned is None:  # an id the table's key cannot hold ("x" for an integer key)
            return False
        pk, values = planned

        def replace_hash(connection: sa.Connection) -> bool:
            column = self._accounts._columns["password_hash"]
            statement = (
                sa.update(self._accounts._table)
                .where(self._accounts._columns["id"] == pk, column.is_not_distinct_from(expected))
                .values(values)
            )
            if connection.execute(statement).rowcount != 1:
                return False
            self._enqueue(connection, queued)
            if entry is not None:
                self._history._append(connection, account_id, entry, keep)
            return True

        if self._db._postgresql and self._db._autocommit_writes:

            def in_one(connection: sa.Connection) -> bool | None:
                if entry is not None and not self._history._function_ready(connection):
                    return None  # no function: the transaction below
                query = self._replace_query(tuple(values), entry is not None, len(queued))
                arguments: dict[str, object] = {"a_pk": pk, "a_expected": expected}
                arguments.update((f"a_{i}", value) for i, value in enumerate(values.values()))
                if entry is not None:
                    arguments.update(self._history._function_arguments(account_id, entry, keep))
                if queued and self._outbox is not None:
                    arguments.update(self._outbox._insert_arguments(queued))
                return bool(connection.execute(query, arguments).scalar_one() == 1)

            try:
                done = self._db._single(in_one)
            except StorageError as exc:
                self._db._refused_isolation(exc)  # nothing written; transactions now
            else:
                if done is not None:
                    return done
        return self._db._write(replace_hash)

    # One statement on PostgreSQL, autocommit, so one round trip:
    #
    #   WITH upd AS (UPDATE accounts SET ... WHERE id = :id
    #                  AND password_hash IS NOT DISTINCT FROM :expected RETURNING id),
    #        hist AS (SELECT <history>_append(...) FROM upd),
    #        ins AS (INSERT INTO outbox (...) SELECT ... WHERE EXISTS (SELECT 1 FROM upd)
    #                  ON CONFLICT (id) DO NOTHING)
    #   SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM hist)
    #
    # - A CTE that modifies no data runs only as far as something reads it, so the final
    #   SELECT counts ``hist``: without that the function would never be called.
    # - ``hist`` reads ``upd``, so the function runs only after the UPDATE won its row (and
    #   its row lock), as in the transaction path: the row lock first, then the advisory
    #   lock, in every call, so racing calls queue and never deadlock. A lost compare-and-
    #   set (no row) calls nothing and inserts nothing.
    # - The statement's snapshot is taken when it starts, before a racer's commit it may
    #   wait for; the UPDATE re-checks its WHERE on the row's newest version (READ
    #   COMMITTED), and the VOLATILE function takes a fresh snapshot for each of its own
    #   statements, so its trim sees every entry appended before it got the lock.
    # - The row lock is held until the statement commits, with the history rows and the
    #   letters: a racer waiting on the row sees the new hash and loses.
    # - The function refuses (KI001, nothing written) when the server's default isolation,
    #   which an autocommit statement runs at, is not READ COMMITTED; an UPDATE outside it
    #   may fail on a racer's commit (40001). Either way the statement wrote nothing, and
    #   the call -- and every later one -- runs as a READ COMMITTED transaction instead.
    # - All or nothing: if the function or an outbox insert fails, the whole statement
    #   (the UPDATE with it) is rolled back.
    def _replace_query(self, keys: tuple[str, ...], entry: bool, letters: int) -> Any:
        """The statement above, over bind parameters, for one shape of call.

        The columns ``keys`` names, the history call if ``entry``, ``letters`` outbox rows.
        Built once per shape (a handful: the columns differ only by whether ``now`` is
        given), so SQLAlchemy compiles it once and psycopg prepares it.
        """
        shape = (keys, entry, letters)
        query = self._replace_queries.get(shape)
        if query is not None:
            return query
        table, c = self._accounts._table, self._accounts._columns
        hash_column = c["password_hash"]
        upd = (
            sa.update(table)
            .where(
                c["id"] == sa.bindparam("a_pk", type_=c["id"].type),
                hash_column.is_not_distinct_from(
                    sa.bindparam("a_expected", type_=hash_column.type)
                ),
            )
            .values(
                {
                    key: sa.bindparam(f"a_{index}", type_=table.c[key].type)
                    for index, key in enumerate(keys)
                }
            )
            .returning(c["id"])
            .cte("upd")
        )
        counts: list[sa.ColumnElement[Any]] = [
            sa.select(sa.func.count()).select_from(upd).scalar_subquery()
        ]
        if entry:
            call = self._history._function_call()
            hist = sa.select(call.label("appended")).select_from(upd).cte("hist")
            counts.append(sa.select(sa.func.count()).select_from(hist).scalar_subquery())
        query = sa.select(*counts)
        if letters and self._outbox is not None:
            changed = sa.exists(sa.select(sa.literal(1)).select_from(upd))
            query = query.add_cte(self._outbox._insert_when(letters, changed).cte("ins"))
        if len(self._replace_queries) >= _SWEEP_EVERY:  # many letter counts: start over
            self._replace_queries.clear()
        self._replace_queries[shape] = query
        return query

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
        """The account store's contact compare-and-set and the ``messages``, one transaction.

        Nothing is enqueued when the ``UPDATE`` matched no row or a unique index refused it.
        """
        swap = self._accounts._plan_contact(
            account_id,
            expected_stamp,
            contact,
            rotate_stamp=rotate_stamp,
            clear_password=clear_password,
        )
        queued = check_messages(messages, self._outbox)
        if swap is None:
            return None
        planned = swap

        def update(connection: sa.Connection) -> Account | None:
            account = self._accounts._swap_contact(connection, planned)
            if account is not None:
                self._enqueue(connection, queued)
            return account

        if queued and self._outbox is not None:
            swap = replace(swap, letters=queued)
        return self._accounts._contact_write(swap, update, self._outbox)


def sqlalchemy_storage(
    engine_or_url: sa.Engine | sa.URL | str,
    *,
    create_tables: bool = False,
    metadata: sa.MetaData = metadata,
    accounts_table: sa.Table | None = None,
    columns: Mapping[str, str | None] | None = None,
    insert_defaults: Mapping[str, object] | None = None,
    outbox: bool = False,
) -> Storage:
    """Return all the stores on one database, given an engine or a URL.

    ``storage.with_history`` is a :class:`SQLAlchemyAccountWithHistory` over the same
    account and history stores, so the services change a password and its history in one
    transaction. ``accounts_table``, ``columns`` and ``insert_defaults`` put the accounts in
    the host's own users table, as :class:`SQLAlchemyAccountStore`'s ``table``, ``columns``
    and ``insert_defaults`` do -- build the bundle this way rather than replacing
    ``accounts`` on a finished one, which would leave ``with_history`` writing the other
    table. ``storage.close()`` (or a ``with`` block) disposes an engine made from a URL and
    leaves an engine passed in open. The other arguments are those of
    :class:`SQLAlchemyDatabase`. For an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` use
    :func:`async_sqlalchemy_storage`. With ``outbox=True`` the bundle has a
    :class:`SQLAlchemyOutboxStore` too (letters and SMS are queued for a worker), which
    ``with_history`` enqueues into in the password or account transaction.

    Raises:
        ValueError: not PostgreSQL or a SQLite file, not a database URL, or a users table
            the account store cannot map.
        TypeError: an AsyncEngine (the message names :func:`async_sqlalchemy_storage`), or
            another argument of the wrong type.
        ImportError: the database driver is missing.
        StorageError: ``create_tables`` failed.

    """
    return _bundle(
        SQLAlchemyDatabase(engine_or_url, metadata=metadata),
        create_tables=create_tables,
        accounts_table=accounts_table,
        columns=columns,
        insert_defaults=insert_defaults,
        outbox=outbox,
    )


def _bundle(
    database: SQLAlchemyDatabase,
    *,
    create_tables: bool,
    accounts_table: sa.Table | None,
    columns: Mapping[str, str | None] | None,
    insert_defaults: Mapping[str, object] | None,
    outbox: bool = False,
) -> Storage:
    """The stores and ``with_history`` on ``database``; closes it if that fails."""
    try:
        if not isinstance(outbox, bool):
            raise TypeError(f"outbox must be bool, not {type(outbox).__name__}")
        if create_tables:
            database.create_tables()
        accounts = SQLAlchemyAccountStore(
            database, table=accounts_table, columns=columns, insert_defaults=insert_defaults
        )
        queue = SQLAlchemyOutboxStore(database) if outbox else None
    except BaseException:
        database.close()
        raise
    history = SQLAlchemyPasswordHistoryStore(database)
    return Storage(
        accounts=accounts,
        history=history,
        ledger=SQLAlchemyTokenLedger(database),
        codes=SQLAlchemyOneTimeCodeStore(database),
        rate_limits=SQLAlchemyRateLimiter(database),
        # Both tables are reached through the one engine, so always one database.
        with_history=SQLAlchemyAccountWithHistory(accounts, history, outbox=queue),
        outbox=queue,
    )


async def async_sqlalchemy_storage(
    engine_or_url: AsyncEngine | sa.URL | str,
    *,
    create_tables: bool = False,
    metadata: sa.MetaData = metadata,
    accounts_table: sa.Table | None = None,
    columns: Mapping[str, str | None] | None = None,
    insert_defaults: Mapping[str, object] | None = None,
    outbox: bool = False,
) -> AsyncStorage:
    """:func:`sqlalchemy_storage` for the async face, given an AsyncEngine or a URL.

    A coroutine, because ``create_tables`` talks to the database:
    ``storage = await async_sqlalchemy_storage(engine)``. The stores are those of
    :func:`sqlalchemy_storage`, built on ``engine.sync_engine``: the same statements,
    locks, retries, SQLite ``BEGIN IMMEDIATE`` and error mapping. Each store call (one
    transaction) runs in one ``sqlalchemy.util.greenlet_spawn`` -- as
    ``AsyncConnection.run_sync`` does -- so the loop awaits each round trip; on SQLite the
    in-process write lock is an ``asyncio.Lock`` the waiting task awaits.
    ``storage.with_history`` (and ``outbox``) are set as :func:`sqlalchemy_storage` sets
    them. ``await
    storage.aclose()`` (or ``async with``) disposes an engine made from a URL (``postgresql+
    asyncpg://...``, ``postgresql+psycopg://...``, ``sqlite+aiosqlite:///file``: the options
    :class:`SQLAlchemyDatabase` gives a URL, WAL for SQLite) and leaves one passed in open.
    Use the storage on the event loop its engine's connections belong to.

    Raises:
        TypeError: a synchronous :class:`~sqlalchemy.engine.Engine` (the message names
            :func:`sqlalchemy_storage`), or another argument of the wrong type.
        ValueError, ImportError, StorageError: as :func:`sqlalchemy_storage`;
            ``ValueError`` also for a URL whose driver is not asynchronous.

    """
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.util import greenlet_spawn

    if isinstance(engine_or_url, AsyncEngine):
        engine, owned = engine_or_url.sync_engine, False
    elif isinstance(engine_or_url, sa.Engine):
        raise TypeError(
            "async_sqlalchemy_storage needs an AsyncEngine (create_async_engine) or a URL,"
            " not a synchronous Engine; pass an Engine to sqlalchemy_storage()"
        )
    elif isinstance(engine_or_url, (str, sa.URL)):
        engine, owned = _create_engine(engine_or_url, asynchronous=True), True
    else:
        raise TypeError(
            f"engine_or_url must be an AsyncEngine, URL or str, not {type(engine_or_url).__name__}"
        )

    def build() -> Storage:
        try:
            database = SQLAlchemyDatabase(engine, metadata=metadata)
        except BaseException:
            if owned:
                engine.dispose()
            raise
        database._owns_engine = owned
        return _bundle(
            database,
            create_tables=create_tables,
            accounts_table=accounts_table,
            columns=columns,
            insert_defaults=insert_defaults,
            outbox=outbox,
        )

    async def in_greenlet(call: Callable[[], object]) -> object:
        return await greenlet_spawn(call)

    return coroutining(await greenlet_spawn(build), runner=in_greenlet)
