"""The storage contract suite against the SQLAlchemy adapters, on PostgreSQL and on SQLite.

PostgreSQL tests need a real server: ``eval "$(scripts/test-servers start)"`` exports
``KASPI_IDENTITY_POSTGRES_URL``. Without it they skip (with ``CI=true`` they fail); the
SQLite-through-SQLAlchemy half always runs. Each module run works in a fresh PostgreSQL
schema and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import secrets
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy.dialects.postgresql import JSONB, REGCLASS

from _servers import HOW_TO_ENABLE, require_server
from kaspi_identity._errors import (
    AccountNotFoundError,
    CorruptRecordError,
    DuplicateAccountError,
    StorageError,
)
from kaspi_identity.storage import (
    Account,
    AccountStore,
    CodeAttempt,
    Contact,
    HistoryEntry,
    NewAccount,
    OutboxMessage,
    Storage,
)
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlalchemy import (
    ACCOUNT_FIELDS,
    SQLAlchemyAccountStore,
    SQLAlchemyAccountWithHistory,
    SQLAlchemyDatabase,
    SQLAlchemyPasswordHistoryStore,
    SQLAlchemyTokenLedger,
    history_function_sql,
    make_metadata,
    metadata,
    sqlalchemy_storage,
)
from kaspi_identity.testing import (
    AccountStoreContract,
    AccountWithHistoryContract,
    StorageContract,
    make_comparison_machine,
)

POSTGRES_ENV = "KASPI_IDENTITY_POSTGRES_URL"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
HASH_A = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0$c2VjcmV0c2VjcmV0"
HASH_B = "$argon2id$v=19$m=65536,t=3,p=4$b3RoZXI$b3RoZXJvdGhlcm90aGVy"
PHONE = "+77011234567"
IIN = "880101300123"
# Columns added for issue 11, and the room docs/storage.md gives for a String names
# column: a JSON list of 8 names, each of 128 characters escaped as \u00XX.
_NEW = ("iin", "names")
# Columns added for issue 18: the password's age.
AGE_FIELDS = ("password_changed_at", "must_change_password", "grace_logins_used")
# Columns added for issue 15 (part 3): the contact details.
CONTACT_FIELDS = (
    "phone_verified",
    "pending_email",
    "pending_phone",
    "previous_email",
    "email_changed_at",
    "time_zone",
)
NAMES_ROOM = 2 + 8 * (2 + 128 * 6) + 7

# A host's existing users table: integer keys, its own column names, DateTime columns, a
# JSON column for the names and NOT NULL columns the library knows nothing about.
USER_COLUMNS = {
    "id": "pk",
    "username": "login",
    "username_key": "login_key",
    "phone": "mobile",
    "password_hash": "password",
    "email_confirmed": "email_verified",
    "last_failed_login_at": "last_failed_login",
    "last_login_at": "last_login",
    "created_at": "date_joined",
    "security_stamp": "session_stamp",
    "iin": "tax_id",
    "names": "full_names",
    "password_changed_at": "password_set",
    "must_change_password": "must_change",
    "grace_logins_used": "grace_used",
    "phone_verified": "mobile_verified",
    "pending_email": "new_email",
    "pending_phone": "new_mobile",
    "previous_email": "old_email",
    "email_changed_at": "email_changed",
    "time_zone": "tz",
}


def users_table(md: sa.MetaData) -> sa.Table:
    """Declare the host's users table in ``md``."""
    return sa.Table(
        "app_users",
        md,
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(254)),
        sa.Column("login_key", sa.String(1024), unique=True),
        sa.Column("email", sa.String(254)),
        sa.Column("email_key", sa.String(1024), unique=True),
        sa.Column("mobile", sa.String(16), unique=True),
        sa.Column("password", sa.String(1024)),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("last_failed_login", sa.DateTime(timezone=True)),
        sa.Column("last_login", sa.DateTime(timezone=True)),
        sa.Column("date_joined", sa.DateTime(timezone=True), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("session_stamp", sa.String(64), nullable=False),
        sa.Column("tax_id", sa.String(12), unique=True),
        sa.Column("full_names", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("password_set", sa.DateTime(timezone=True)),
        sa.Column("must_change", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("grace_used", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("mobile_verified", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("new_email", sa.String(254)),
        sa.Column("new_mobile", sa.String(16)),
        sa.Column("old_email", sa.String(254)),
        sa.Column("email_changed", sa.DateTime(timezone=True)),
        sa.Column("tz", sa.Text()),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False, server_default=""),
    )


@dataclass
class Backend:
    """One database the tests run against: its engine, the library's tables, a users table."""

    name: str
    url: str
    engine: sa.Engine
    metadata: sa.MetaData
    users: sa.Table

    def tables(self) -> list[sa.Table]:
        return [*self.metadata.sorted_tables, self.users]

    def serializable_engine(self) -> sa.Engine:
        """An engine on a server whose default isolation, for autocommit too, is SERIALIZABLE."""
        return self.engine_for_tests(
            connect_args={"options": "-c default_transaction_isolation=serializable"},
            pool_size=8,
            max_overflow=40,
        )

    def reset(self) -> None:
        """Empty every table, so each test starts from nothing."""
        with self.engine.begin() as connection:
            for table in self.tables():
                connection.execute(sa.delete(table))

    def database(self) -> SQLAlchemyDatabase:
        return SQLAlchemyDatabase(self.engine, metadata=self.metadata)

    def table(self, name: str) -> sa.Table:
        """The library's table ``kaspi_<name>`` in this backend."""
        return next(t for t in self.metadata.sorted_tables if t.name == f"kaspi_{name}")

    def engine_for_tests(self, **options: Any) -> sa.Engine:
        """A separate engine on the same database (for fault injection)."""
        if self.name == "sqlite":
            options.setdefault("connect_args", {"timeout": 30.0})
        return sa.create_engine(self.url, hide_parameters=True, **options)


# Room for the contract's 32 racing threads plus a reader; idle connections above 8 close.
_POOL = {"pool_size": 8, "max_overflow": 40, "pool_timeout": 60, "hide_parameters": True}


def _postgresql_backend() -> Iterator[Backend]:
    url = require_server(POSTGRES_ENV)
    schema = f"kaspi_test_{secrets.token_hex(4)}"
    engine = sa.create_engine(url, **_POOL)
    with engine.begin() as connection:
        connection.execute(sa.schema.CreateSchema(schema))
    try:
        md = make_metadata(schema=schema)
        host = sa.MetaData(schema=schema)
        users = users_table(host)
        md.create_all(engine)
        host.create_all(engine)
        yield Backend("postgresql", url, engine, md, users)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.schema.DropSchema(schema, cascade=True))
        engine.dispose()


def _sqlite_backend(directory: Path) -> Iterator[Backend]:
    url = f"sqlite:///{directory / 'identity.sqlite3'}"
    engine = sa.create_engine(url, connect_args={"timeout": 30.0}, **_POOL)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode = WAL")
    host = sa.MetaData()
    users = users_table(host)
    metadata.create_all(engine)
    host.create_all(engine)
    try:
        yield Backend("sqlite", url, engine, metadata, users)
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """Each database once per module: PostgreSQL (a fresh schema), SQLite (a fresh file)."""
    if request.param == "postgresql":
        yield from _postgresql_backend()
    else:
        yield from _sqlite_backend(tmp_path_factory.mktemp("sqlalchemy"))


@pytest.fixture(scope="module")
def postgresql() -> Iterator[Backend]:
    """PostgreSQL alone, for what only a server can show (several processes)."""
    yield from _postgresql_backend()


class OnBackend:
    """Empties the backend's tables before each test and opens a database on its engine."""

    backend: Backend
    db: SQLAlchemyDatabase

    @pytest.fixture(autouse=True)
    def _database(self, backend: Backend) -> Iterator[None]:
        backend.reset()
        self.backend = backend
        self.db = backend.database()
        yield
        self.db.close()


class TestExistingUsersTable(OnBackend, AccountStoreContract):
    """The whole AccountStore contract on the host's own users table, mapped by name."""

    def make_accounts(self) -> AccountStore:
        return SQLAlchemyAccountStore(
            self.db,
            table=self.backend.users,
            columns=USER_COLUMNS,
            insert_defaults={"is_active": True},
        )

    def test_rows_are_the_hosts_rows(self, accounts: AccountStore) -> None:
        """The account lives in the host's columns: DateTime times, integer id, its defaults."""
        created = accounts.create(NewAccount(username="Aliya", phone=PHONE), now=T0)
        users = self.backend.users
        with self.backend.engine.connect() as connection:
            row = connection.execute(sa.select(users).where(users.c.pk == int(created.id))).one()
        assert (row.login, row.login_key, row.mobile, row.is_active, row.session_stamp) == (
            "Aliya",
            "aliya",
            PHONE,
            True,
            created.security_stamp,
        )
        joined = row.date_joined  # SQLite's DateTime comes back naive, in UTC
        assert (joined if joined.tzinfo else joined.replace(tzinfo=timezone.utc)) == T0
        assert row.display_name == ""

    def test_non_canonical_integer_ids_find_nothing(self, accounts: AccountStore) -> None:
        """'007', '+7', ' 7' or a number past 64 bits never name account 7."""
        created = accounts.create(NewAccount(username="aliya"), now=T0)
        assert accounts.get(created.id) == created
        for other in (f"0{created.id}", f"+{created.id}", f" {created.id}", "9" * 25, "-1"):
            assert accounts.get(other) is None


_REFUSE = "kaspi_test_refuse_history"


def refuse_history_writes(backend: Backend) -> None:
    """Install a trigger that aborts every insert into (or delete from) the history table.

    PL/pgSQL ``RAISE EXCEPTION`` on PostgreSQL, ``RAISE(ABORT)`` on SQLite: the statement
    fails inside the adapter's transaction, as a full disk or a revoked grant would.
    """
    table = backend.table("password_history").fullname
    if backend.name == "postgresql":
        function = f"{backend.metadata.schema}.{_REFUSE}"
        with backend.engine.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RAISE EXCEPTION 'history writes refused by the test'; END $$"
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER {_REFUSE} BEFORE INSERT OR UPDATE OR DELETE ON {table}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        return
    with _fresh_sqlite(backend) as raw:
        for event in ("INSERT", "UPDATE", "DELETE"):
            raw.execute(
                f"CREATE TRIGGER {_REFUSE}_{event.lower()} BEFORE {event} ON {table}"
                " BEGIN SELECT RAISE(ABORT, 'history writes refused by the test'); END"
            )


def allow_history_writes(backend: Backend) -> None:
    """Drop what :func:`refuse_history_writes` installed (nothing if it was not)."""
    table = backend.table("password_history").fullname
    if backend.name == "postgresql":
        with backend.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_REFUSE} ON {table}")
        return
    with _fresh_sqlite(backend) as raw:
        for event in ("insert", "update", "delete"):
            raw.execute(f"DROP TRIGGER IF EXISTS {_REFUSE}_{event}")


@contextmanager
def _fresh_sqlite(backend: Backend) -> Iterator[sqlite3.Connection]:
    """A new connection for DDL: a pooled one may prepare against its cached schema, where
    a trigger another connection dropped still exists ("trigger ... already exists")."""
    raw = sqlite3.connect(backend.url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        yield raw
    finally:
        raw.close()


class BreaksHistory:
    """The AccountWithHistoryContract fault hook: a trigger on the history table."""

    backend: Backend

    @pytest.fixture(autouse=True)
    def _history_trigger(self, backend: Backend) -> Iterator[None]:
        self.backend = backend
        allow_history_writes(backend)
        yield
        allow_history_writes(backend)

    def break_history_writes(self, storage: Storage) -> None:
        refuse_history_writes(self.backend)


class TestStorageBundle(BreaksHistory, StorageContract):
    """The bundle from sqlalchemy_storage() on the application's engine."""

    @pytest.fixture
    def storage(self, backend: Backend) -> Iterator[Storage]:
        backend.reset()
        with sqlalchemy_storage(backend.engine, metadata=backend.metadata, outbox=True) as storage:
            yield storage
        # Closing a bundle built on the application's engine leaves the engine usable.
        with backend.engine.connect() as connection:
            assert connection.execute(sa.select(sa.literal(1))).scalar() == 1


class TestUsersTableWithHistory(BreaksHistory, AccountWithHistoryContract):
    """with_history of a bundle whose accounts live in the host's users table."""

    @pytest.fixture
    def storage(self, backend: Backend) -> Iterator[Storage]:
        backend.reset()
        with sqlalchemy_storage(
            backend.engine,
            metadata=backend.metadata,
            accounts_table=backend.users,
            columns=USER_COLUMNS,
            insert_defaults={"is_active": True},
            outbox=True,
        ) as storage:
            yield storage


class TestWithHistoryWiring(OnBackend):
    def test_bundle_writes_the_tables_it_reads(self) -> None:
        """The factory's with_history runs on the bundle's own account and history stores."""
        with sqlalchemy_storage(self.backend.engine, metadata=self.backend.metadata) as storage:
            with_history = storage.with_history
            assert isinstance(with_history, SQLAlchemyAccountWithHistory)
            assert with_history.accounts is storage.accounts
            assert with_history.history is storage.history
            assert with_history.database is with_history.accounts.database
            assert with_history.accounts.table is self.backend.table("accounts")

    def test_bundle_on_the_hosts_users_table(self) -> None:
        """accounts_table/columns put accounts and with_history in the host's table."""
        users = self.backend.users
        with sqlalchemy_storage(
            self.backend.engine,
            metadata=self.backend.metadata,
            accounts_table=users,
            columns=USER_COLUMNS,
            insert_defaults={"is_active": True},
        ) as storage:
            with_history = storage.with_history
            assert isinstance(with_history, SQLAlchemyAccountWithHistory)
            assert with_history.accounts is storage.accounts
            assert isinstance(storage.accounts, SQLAlchemyAccountStore)
            assert storage.accounts.table is users
            created = with_history.create_with_history(
                NewAccount(username="Aliya", iin=IIN, names=("Алия", "Нурланова")),
                now=T0,
                entry=None,
                keep=1,
            )
        with self.backend.engine.connect() as connection:
            row = connection.execute(sa.select(users).where(users.c.pk == int(created.id))).one()
        assert (row.login, row.tax_id, row.full_names, row.is_active) == (
            "Aliya",
            IIN,
            ["Алия", "Нурланова"],
            True,
        )
        assert _rows(self.backend, "accounts") == []

    def test_registration_in_one_statement_on_a_users_table(self) -> None:
        """A host table with a text key (so the id is made before the write: on PostgreSQL
        one statement): JSON names, aware DateTime and integer-flag columns, an insert
        default -- each value cast to its column's type -- read back as they were given."""
        md = sa.MetaData(schema=self.backend.metadata.schema)
        kept = [c._copy() for c in self.backend.users.columns if c.name != "pk"]
        users = sa.Table(
            f"text_key_{secrets.token_hex(3)}",
            md,
            sa.Column("pk", sa.String(32), primary_key=True),
            *kept,
        )
        md.create_all(self.backend.engine)
        entry = HistoryEntry(password_hash=HASH_A, fingerprint=b"fp", created_at=T0)
        try:
            with sqlalchemy_storage(
                self.backend.engine,
                metadata=self.backend.metadata,
                accounts_table=users,
                columns=USER_COLUMNS,
                insert_defaults={"is_active": True},
            ) as storage:
                with_history = storage.with_history
                assert with_history is not None
                new = NewAccount(
                    username="Aliya",
                    email="A@example.kz",
                    phone=PHONE,
                    iin=IIN,
                    names=("Алия", "Нурланова"),
                    password_hash=HASH_A,
                    must_change_password=True,
                    time_zone="Asia/Almaty",
                )
                created = with_history.create_with_history(
                    new, now=T0, entry=lambda _: entry, keep=6
                )
                assert storage.accounts.get(created.id) == created
                assert created.must_change_password
                assert created.password_changed_at == T0
                assert storage.history.recent(created.id, 10) == [entry]
                with pytest.raises(DuplicateAccountError) as caught:
                    with_history.create_with_history(
                        dataclasses.replace(new, username="other", email=None, phone=None),
                        now=T0,
                        entry=lambda _: entry,
                        keep=6,
                    )
                assert caught.value.field == "iin"
            with self.backend.engine.connect() as connection:
                row = connection.execute(sa.select(users)).one()
            assert (row.login, row.full_names, row.is_active) == (
                "Aliya",
                ["Алия", "Нурланова"],
                True,
            )
        finally:
            md.drop_all(self.backend.engine)

    def test_a_bundle_with_other_accounts_keeps_no_stale_unit_of_work(self) -> None:
        """Replacing accounts on a finished bundle: refused unless with_history goes too."""
        users = self.backend.users
        with sqlalchemy_storage(self.backend.engine, metadata=self.backend.metadata) as storage:
            with_history = storage.with_history
            assert isinstance(with_history, SQLAlchemyAccountWithHistory)
            db = with_history.database
            mine = SQLAlchemyAccountStore(
                db, table=users, columns=USER_COLUMNS, insert_defaults={"is_active": True}
            )
            assert with_history.covers(storage.accounts, storage.history)
            assert with_history.covers(storage.accounts, SQLAlchemyPasswordHistoryStore(db))
            assert not with_history.covers(mine, storage.history)
            assert not with_history.covers(SQLAlchemyAccountStore(db), storage.history)
            assert not with_history.covers(storage.accounts, memory_storage().history)
            with self.backend.database() as other:
                history = SQLAlchemyPasswordHistoryStore(other)
                assert not with_history.covers(storage.accounts, history)
            # The with_history of the bundled table would go on writing kaspi_accounts.
            with pytest.raises(ValueError, match="with_history"):
                dataclasses.replace(storage, accounts=mine)
            assert dataclasses.replace(storage, accounts=mine, with_history=None).accounts is mine

    def test_unusable_users_table_closes_what_it_opened(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A users table the store cannot map: ValueError, and the URL's engine is disposed."""
        closed: list[SQLAlchemyDatabase] = []
        original = SQLAlchemyDatabase.close

        def close(db: SQLAlchemyDatabase) -> None:
            closed.append(db)
            original(db)

        monkeypatch.setattr(SQLAlchemyDatabase, "close", close)
        table = sa.Table("bare", sa.MetaData(), sa.Column("id", sa.String(40), primary_key=True))
        with pytest.raises(ValueError, match="cannot map"):
            sqlalchemy_storage(f"sqlite:///{tmp_path / 'x.db'}", accounts_table=table)
        assert len(closed) == 1
        with pytest.raises(ValueError, match="columns and insert_defaults need the table"):
            sqlalchemy_storage(self.backend.engine, columns={"id": "pk"})

    def test_stores_on_different_databases_are_refused(self) -> None:
        """One transaction needs one database object: other pairs and types are refused."""
        with self.backend.database() as first, self.backend.database() as second:
            accounts = SQLAlchemyAccountStore(first)
            history = SQLAlchemyPasswordHistoryStore(first)
            assert SQLAlchemyAccountWithHistory(accounts, history).database is first
            with pytest.raises(ValueError, match="same SQLAlchemyDatabase"):
                SQLAlchemyAccountWithHistory(accounts, SQLAlchemyPasswordHistoryStore(second))
            with pytest.raises(TypeError, match="accounts"):
                SQLAlchemyAccountWithHistory(history, history)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="history"):
                SQLAlchemyAccountWithHistory(accounts, accounts)  # type: ignore[arg-type]

    def test_close_closes_with_history_too(self, tmp_path: Path) -> None:
        """Storage.close() reaches with_history (the same database): later calls fail."""
        storage = sqlalchemy_storage(f"sqlite:///{tmp_path / 'c.db'}", create_tables=True)
        with_history = storage.with_history
        assert isinstance(with_history, SQLAlchemyAccountWithHistory)
        storage.close()
        with pytest.raises(StorageError, match="closed"):
            with_history.create_with_history(NewAccount(username="a"), now=T0, entry=None, keep=1)
        with_history.close()  # idempotent


BOUNDED = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_agrees_with_memory(backend: Backend) -> None:
    """Random sequences on all five protocols give the same answers as the memory adapter."""

    def candidate() -> Storage:
        backend.reset()
        return sqlalchemy_storage(backend.engine, metadata=backend.metadata)

    run_state_machine_as_test(make_comparison_machine(candidate), settings=BOUNDED)


class TestImport:
    def test_missing_extra_names_the_install_command(self) -> None:
        """Without SQLAlchemy the import fails with the exact pip command."""
        code = (
            "import sys\n"
            "sys.modules['sqlalchemy'] = None\n"
            "try:\n"
            "    import kaspi_identity.storage.sqlalchemy\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert "pip install 'kaspi-identity[sqlalchemy]'" in out.stdout

    def test_storage_package_does_not_import_sqlalchemy(self) -> None:
        """`import kaspi_identity.storage` leaves SQLAlchemy unloaded."""
        code = "import sys, kaspi_identity.storage\nprint('sqlalchemy' in sys.modules)\n"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"


class TestMetadata:
    def test_default_tables(self) -> None:
        """The module's metadata holds the six kaspi_ tables."""
        assert set(metadata.tables) == {
            "kaspi_accounts",
            "kaspi_password_history",
            "kaspi_consumed_tokens",
            "kaspi_one_time_codes",
            "kaspi_rate_limits",
            "kaspi_outbox",
        }

    def test_casefolded_keys_are_unique(self) -> None:
        """Uniqueness rests on unique constraints: casefolded keys, the phone and the IIN."""
        accounts = metadata.tables["kaspi_accounts"]
        unique = {
            tuple(c.name for c in constraint.columns)
            for constraint in accounts.constraints
            if isinstance(constraint, sa.UniqueConstraint)
        }
        assert unique == {("username_key",), ("email_key",), ("phone",), ("iin",)}
        assert tuple(c.name for c in accounts.columns) == ACCOUNT_FIELDS

    def test_iin_and_names_columns(self) -> None:
        """iin: nullable String(12); names: NOT NULL Text defaulting to an empty JSON list."""
        accounts = metadata.tables["kaspi_accounts"]
        iin, names = accounts.c.iin, accounts.c.names
        assert isinstance(iin.type, sa.String)
        assert (iin.type.length, iin.nullable) == (12, True)
        assert isinstance(names.type, sa.Text)
        assert names.nullable is False
        assert isinstance(names.server_default, sa.DefaultClause)
        assert str(names.server_default.arg) == "[]"

    def test_binary_and_integer_columns(self) -> None:
        """Times are BigInteger microseconds; fingerprints and code hashes are binary."""
        history = metadata.tables["kaspi_password_history"]
        codes = metadata.tables["kaspi_one_time_codes"]
        assert isinstance(history.c.fingerprint.type, sa.LargeBinary)
        assert isinstance(codes.c.code_hash.type, sa.LargeBinary)
        assert isinstance(history.c.created_at.type, sa.BigInteger)
        assert isinstance(metadata.tables["kaspi_accounts"].c.created_at.type, sa.BigInteger)

    def test_prefix_and_schema(self) -> None:
        """make_metadata() names the tables with the prefix, in the schema."""
        md = make_metadata("idp_", schema="auth")
        assert sorted(md.tables) == [
            "auth.idp_accounts",
            "auth.idp_consumed_tokens",
            "auth.idp_one_time_codes",
            "auth.idp_outbox",
            "auth.idp_password_history",
            "auth.idp_rate_limits",
        ]
        assert make_metadata("").tables.keys() >= {"accounts", "rate_limits"}

    @pytest.mark.parametrize("prefix", ["1x_", "a-b_", "x" * 31, "kaspi; drop"])
    def test_bad_prefix(self, prefix: str) -> None:
        """A prefix that is not a plain identifier is a ValueError."""
        with pytest.raises(ValueError, match="prefix"):
            make_metadata(prefix)

    def test_create_tables_is_idempotent(self, tmp_path: Path) -> None:
        """create_tables=True creates the tables once; opening again leaves the data."""
        url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        with sqlalchemy_storage(url, create_tables=True) as storage:
            assert storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is True
        with sqlalchemy_storage(url, create_tables=True) as storage:
            assert storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is False
        raw = sqlite3.connect(tmp_path / "fresh.sqlite3")
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        raw.close()

    def test_unsupported_databases_are_refused(self, tmp_path: Path) -> None:
        """In-memory SQLite, other databases, garbage URLs and wrong types are refused."""
        for url in ("sqlite://", "sqlite:///:memory:"):
            with pytest.raises(ValueError, match="memory"):
                SQLAlchemyDatabase(url)
            with pytest.raises(ValueError, match="memory"):
                SQLAlchemyDatabase(sa.create_engine(url))
        with pytest.raises(ValueError, match="PostgreSQL and SQLite"):
            SQLAlchemyDatabase("mysql+pymysql://u:secret@localhost/db")
        with pytest.raises(ValueError, match="URL") as caught:
            SQLAlchemyDatabase("not a url with s3cret")
        assert "s3cret" not in str(caught.value)
        with pytest.raises(TypeError):
            SQLAlchemyDatabase(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="make_metadata"):
            SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'x.db'}", metadata=sa.MetaData())
        with pytest.raises(TypeError):
            SQLAlchemyTokenLedger(f"sqlite:///{tmp_path / 'x.db'}")  # type: ignore[arg-type]

    def test_repr_hides_the_password(self) -> None:
        """The database's repr shows the URL without its password."""
        db = SQLAlchemyDatabase("postgresql+psycopg://kaspi:s3cret@127.0.0.1:1/none")
        assert "s3cret" not in repr(db)
        assert db.backend == "postgresql"
        db.close()


class TestMappingErrors:
    def test_every_problem_is_reported(self, tmp_path: Path) -> None:
        """Missing columns, unknown fields and unusable types are listed together."""
        md = sa.MetaData()
        table = sa.Table(
            "people",
            md,
            sa.Column("uid", sa.Uuid(), primary_key=True),
            sa.Column("created_at", sa.String(30)),
        )
        with SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'm.db'}") as db:
            with pytest.raises(ValueError, match="cannot map") as caught:
                SQLAlchemyAccountStore(db, table=table, columns={"id": "uid", "nickname": "x"})
            message = str(caught.value)
            for expected in ("'nickname'", "id: the column", "created_at: the column", "phone"):
                assert expected in message
            with pytest.raises(ValueError, match="table"):
                SQLAlchemyAccountStore(db, columns={"id": "pk"})

    def test_a_table_without_the_security_stamp(self, tmp_path: Path) -> None:
        """A users table from before the stamp: a ValueError that names the column to add."""
        without = sa.Table("before_stamps", sa.MetaData(), *_account_columns())
        with SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'm.db'}") as db:
            with pytest.raises(ValueError, match="cannot map") as caught:
                SQLAlchemyAccountStore(db, table=without)
            message = str(caught.value)
            assert "security_stamp: table 'before_stamps' has no column 'security_stamp'" in message
            assert "String(64)" in message
            assert "docs/storage.md" in message
            # Renamed: the message names the column the mapping asked for.
            with pytest.raises(ValueError, match="no column 'session_stamp'"):
                SQLAlchemyAccountStore(
                    db, table=without, columns={"security_stamp": "session_stamp"}
                )
            # Too short for a stamp, or not text at all.
            for kind in (sa.String(16), sa.Integer(), sa.LargeBinary()):
                short = sa.Table(
                    "short_stamps",
                    sa.MetaData(),
                    *_account_columns(),
                    sa.Column("security_stamp", kind, nullable=False),
                )
                with pytest.raises(ValueError, match="security_stamp: the column must be a string"):
                    SQLAlchemyAccountStore(db, table=short)
            for kind in (sa.String(64), sa.String(), sa.Text(), sa.Unicode(200)):
                fine = sa.Table(
                    "fine_stamps",
                    sa.MetaData(),
                    *_account_columns(),
                    sa.Column("security_stamp", kind, nullable=False),
                )
                assert SQLAlchemyAccountStore(db, table=fine).table is fine
            with pytest.raises(TypeError):
                SQLAlchemyAccountStore(db, table="users")  # type: ignore[arg-type]

    def test_a_table_without_iin_and_names(self, tmp_path: Path) -> None:
        """A users table from before IIN and names: both columns named, with what to add."""
        before = sa.Table(
            "before_names",
            sa.MetaData(),
            *(column for column in _account_columns(stamp=True) if column.name not in _NEW),
        )
        with SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'm.db'}") as db:
            with pytest.raises(ValueError, match="cannot map") as caught:
                SQLAlchemyAccountStore(db, table=before)
            message = str(caught.value)
            assert "iin: table 'before_names' has no column 'iin'" in message
            assert "map 'iin' to None" in message
            assert "names: table 'before_names' has no column 'names'" in message
            assert "NOT NULL Text column with the default '[]'" in message
            assert message.count("docs/storage.md") == 2
            # Without IIN log-ins the table still needs the names.
            with pytest.raises(ValueError, match="cannot map") as caught:
                SQLAlchemyAccountStore(db, table=before, columns={"iin": None})
            assert "iin" not in str(caught.value)
            assert "no column 'names'" in str(caught.value)
            # names cannot be switched off: the personal-data rule needs them.
            with pytest.raises(ValueError, match="names: the field is required"):
                SQLAlchemyAccountStore(db, columns={"names": None}, table=before)
            with pytest.raises(ValueError, match="security_stamp: the field is required"):
                SQLAlchemyAccountStore(db, columns={"security_stamp": None}, table=before)

    @pytest.mark.parametrize(
        ("column", "problem"),
        [
            (sa.Column("iin", sa.String(11)), "iin: the column must be a string with room for 12"),
            (sa.Column("iin", sa.BigInteger()), "iin: the column must be a string"),
            (
                sa.Column("names", sa.String(NAMES_ROOM - 1), nullable=False),
                f"names: the column must be Text, JSON or a string with room for {NAMES_ROOM}",
            ),
            (sa.Column("names", sa.LargeBinary(), nullable=False), "names: the column must be"),
            (sa.Column("names", sa.Text(), nullable=True), "names: the column must be NOT NULL"),
            (sa.Column("names", sa.JSON(), nullable=True), "names: the column must be NOT NULL"),
        ],
    )
    def test_unusable_iin_and_names_columns(
        self, tmp_path: Path, column: sa.Column[Any], problem: str
    ) -> None:
        """Too short, not text, or a names column that admits NULL: refused with the reason."""
        kept = [c for c in _account_columns(stamp=True) if c.name != column.name]
        table = sa.Table("odd_users", sa.MetaData(), *kept, column)
        with SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'm.db'}") as db:
            with pytest.raises(ValueError, match="cannot map") as caught:
                SQLAlchemyAccountStore(db, table=table)
            assert problem in str(caught.value)

    @pytest.mark.parametrize(
        "kind", [sa.String(12), sa.String(), sa.Text(), sa.Unicode(40)], ids=repr
    )
    def test_usable_iin_columns(self, tmp_path: Path, kind: sa.types.TypeEngine[Any]) -> None:
        """Any string column with room for 12 characters holds an IIN."""
        kept = [c for c in _account_columns(stamp=True) if c.name != "iin"]
        table = sa.Table("iin_users", sa.MetaData(), *kept, sa.Column("iin", kind))
        with SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'm.db'}") as db:
            assert SQLAlchemyAccountStore(db, table=table).table is table

    @pytest.mark.parametrize(
        "kind",
        [sa.Text(), sa.String(), sa.String(NAMES_ROOM), sa.JSON(), JSONB()],
        ids=repr,
    )
    def test_usable_names_columns(self, tmp_path: Path, kind: sa.types.TypeEngine[Any]) -> None:
        """Text, an unbounded or roomy String, JSON or JSONB (NOT NULL) hold the names."""
        kept = [c for c in _account_columns(stamp=True) if c.name != "names"]
        table = sa.Table(
            "names_users", sa.MetaData(), *kept, sa.Column("names", kind, nullable=False)
        )
        with SQLAlchemyDatabase(f"sqlite:///{tmp_path / 'm.db'}") as db:
            assert SQLAlchemyAccountStore(db, table=table).table is table

    def test_longest_names_fit_the_smallest_column(self, backend: Backend) -> None:
        """Eight names of 128 escaped characters fit a String of the documented room."""
        md = sa.MetaData(schema=backend.metadata.schema)
        kept = [c for c in _account_columns(stamp=True) if c.name != "names"]
        table = sa.Table(
            f"roomy_{secrets.token_hex(3)}",
            md,
            *kept,
            sa.Column("names", sa.String(NAMES_ROOM), nullable=False),
        )
        md.create_all(backend.engine)
        try:
            with backend.database() as db:
                store = SQLAlchemyAccountStore(db, table=table)
                # A control character is the longest JSON escape: \u0001, six characters.
                names = ("\x01" * 128,) * 8
                created = store.create(NewAccount(username="aliya", names=names), now=T0)
                assert store.get(created.id) == created
                assert created.names == names
            with backend.engine.connect() as connection:
                stored = connection.execute(sa.select(table.c.names)).scalar_one()
            assert len(stored) == NAMES_ROOM
        finally:
            md.drop_all(backend.engine)

    def test_a_table_without_iin_logins(self, backend: Backend) -> None:
        """iin mapped to None: no account has an IIN, and one with an IIN is not stored."""
        md = sa.MetaData(schema=backend.metadata.schema)
        kept = [c for c in _account_columns(stamp=True) if c.name != "iin"]
        table = sa.Table(f"no_iin_{secrets.token_hex(3)}", md, *kept)
        md.create_all(backend.engine)
        try:
            with backend.database() as db:
                store = SQLAlchemyAccountStore(db, table=table, columns={"iin": None})
                history = SQLAlchemyPasswordHistoryStore(db)
                with_history = SQLAlchemyAccountWithHistory(store, history)
                created = store.create(NewAccount(username="aliya", names=("Алия",)), now=T0)
                assert (created.iin, store.get(created.id)) == (None, created)
                assert store.find_by_login("iin", IIN) is None
                with pytest.raises(ValueError, match="keeps no IIN"):
                    store.create(NewAccount(username="bolat", iin=IIN), now=T0)
                with pytest.raises(ValueError, match="keeps no IIN"):
                    with_history.create_with_history(
                        NewAccount(username="bolat", iin=IIN), now=T0, entry=None, keep=1
                    )
                assert store.find_by_login("username", "bolat") is None
                with pytest.raises(ValueError, match="kind"):
                    store.find_by_login("tin", IIN)  # type: ignore[arg-type]
        finally:
            md.drop_all(backend.engine)

    def test_naive_datetime_and_string_ids(self, backend: Backend) -> None:
        """A table with naive DateTime columns and string ids round-trips exact UTC times."""
        md = sa.MetaData(schema=backend.metadata.schema)
        columns = [
            sa.Column(name, sa.String(254))
            for name in ("username", "username_key", "email", "email_key")
        ]
        table = sa.Table(
            f"naive_{secrets.token_hex(3)}",
            md,
            sa.Column("id", sa.String(40), primary_key=True),
            *columns,
            sa.Column("phone", sa.String(16), unique=True),
            sa.Column("password_hash", sa.Text()),
            sa.Column("email_confirmed", sa.Integer(), nullable=False),
            sa.Column("failed_logins", sa.Integer(), nullable=False),
            sa.Column("last_failed_login_at", sa.DateTime()),
            sa.Column("last_login_at", sa.DateTime()),
            sa.Column("created_at", sa.DateTime(), nullable=False),
            sa.Column("language", sa.String(35), nullable=False),
            sa.Column("security_stamp", sa.Text(), nullable=False),
            sa.Column("names", sa.Text(), nullable=False, server_default="[]"),
        )
        md.create_all(backend.engine)
        try:
            with backend.database() as db:
                # Neither IIN log-ins, nor the password's age, nor the contact details.
                store = SQLAlchemyAccountStore(
                    db,
                    table=table,
                    columns={
                        "iin": None,
                        **dict.fromkeys(AGE_FIELDS),
                        **dict.fromkeys(CONTACT_FIELDS),
                    },
                )
                moment = T0.astimezone(timezone(timedelta(hours=5))) + timedelta(microseconds=7)
                created = store.create(NewAccount(email="a@example.kz", phone=PHONE), now=moment)
                store.record_login_success(created.id, now=moment + HOUR)
                stored = store.get(created.id)
                assert stored is not None
                assert stored.created_at == moment
                assert stored.created_at.utcoffset() == timedelta(0)
                assert stored.last_login_at == moment + HOUR
                assert len(created.id) == 32
                # A new password is stored; the age is not kept, and cannot be asked for.
                assert store.set_password_hash(created.id, expected=None, new=HASH_A, now=T0)
                stored = store.get(created.id)
                assert stored is not None
                assert (stored.password_hash, stored.password_changed_at) == (HASH_A, None)
                with pytest.raises(ValueError, match="keeps no password age"):
                    store.set_must_change_password(created.id, True)
                with pytest.raises(ValueError, match="keeps no password age"):
                    store.use_grace_login(created.id, expected=0)
                with pytest.raises(ValueError, match="keeps no password age"):
                    store.create(NewAccount(username="temp", must_change_password=True), now=T0)
        finally:
            md.drop_all(backend.engine)

    def test_a_table_without_the_contact_columns(self, backend: Backend) -> None:
        """Contact fields mapped to None: every phone verified, the rest None and unwritable."""
        md = sa.MetaData(schema=backend.metadata.schema)
        kept = [c for c in _account_columns(stamp=True) if c.name not in CONTACT_FIELDS]
        table = sa.Table(f"no_contact_{secrets.token_hex(3)}", md, *kept)
        md.create_all(backend.engine)
        try:
            with backend.database() as db:
                with pytest.raises(ValueError, match="add the six contact columns") as caught:
                    SQLAlchemyAccountStore(db, table=table)
                assert all(field in str(caught.value) for field in CONTACT_FIELDS)
                with pytest.raises(ValueError, match="both to columns or both to None"):
                    SQLAlchemyAccountStore(
                        db,
                        table=backend.users,
                        columns={**USER_COLUMNS, "email_changed_at": None},
                        insert_defaults={"is_active": True},
                    )
                store = SQLAlchemyAccountStore(
                    db, table=table, columns=dict.fromkeys(CONTACT_FIELDS)
                )
                history = SQLAlchemyPasswordHistoryStore(db)
                with_history = SQLAlchemyAccountWithHistory(store, history)
                created = store.create(NewAccount(email="a@example.kz", phone=PHONE), now=T0)
                plain = store.create(NewAccount(username="bolat"), now=T0)
                assert created.phone_verified  # as every phone stored in this table
                assert (store.get(created.id), store.get(plain.id)) == (created, plain)
                assert not plain.phone_verified
                with pytest.raises(StorageError, match="time_zone"):
                    store.create(NewAccount(username="tz", time_zone="Asia/Almaty"), now=T0)
                assert store.find_by_login("username", "tz") is None
                stamp = created.security_stamp
                for change, column in (
                    ({"pending_email": "next@example.kz"}, "pending_email"),
                    ({"pending_phone": "+77021234567"}, "pending_phone"),
                    ({"time_zone": "UTC"}, "time_zone"),
                    (
                        {"previous_email": "old@example.kz", "email_changed_at": T0},
                        "previous_email",
                    ),
                    ({"phone_verified": False}, "phone_verified"),  # it would read as verified
                ):
                    contact = dataclasses.replace(created.contact, **change)
                    for writer in (store, with_history):
                        with pytest.raises(StorageError, match=column):
                            writer.update_contact(created.id, expected_stamp=stamp, contact=contact)
                assert store.get(created.id) == created
                # What the table can keep is written: a new address, a phone removed.
                moved = store.update_contact(
                    created.id,
                    expected_stamp=stamp,
                    contact=dataclasses.replace(
                        created.contact, email="new@example.kz", phone=None, phone_verified=False
                    ),
                )
                assert moved is not None
                assert moved == store.get(created.id)
                assert (moved.email, moved.phone, moved.phone_verified) == (
                    "new@example.kz",
                    None,
                    False,
                )
                assert store.update_contact(
                    plain.id,
                    expected_stamp=plain.security_stamp,
                    contact=dataclasses.replace(plain.contact, phone=PHONE, phone_verified=True),
                    clear_password=True,
                ) == store.get(plain.id)
        finally:
            md.drop_all(backend.engine)


def _account_columns(*, stamp: bool = False) -> list[sa.Column[Any]]:
    """The account columns as the library's table has them (the stamp only if ``stamp``)."""
    return [
        sa.Column(
            c.name,
            c.type,
            primary_key=c.primary_key,
            nullable=c.nullable,
            server_default=None if c.server_default is None else c.server_default.arg,  # type: ignore[attr-defined]
        )
        for c in metadata.tables["kaspi_accounts"].columns
        if stamp or c.name != "security_stamp"
    ]


def _set(backend: Backend, table: str, assignment: str) -> None:
    with backend.engine.begin() as connection:
        name = backend.table(table).fullname
        connection.exec_driver_sql(f"UPDATE {name} SET {assignment}")  # noqa: S608


def _rows(backend: Backend, table: str) -> list[tuple[Any, ...]]:
    t = backend.table(table)
    with backend.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.select(t))]


def _seed(storage: Storage) -> str:
    account = storage.accounts.create(
        NewAccount(username="aliya", phone=PHONE, password_hash=HASH_A), now=T0
    )
    storage.history.append(
        account.id, HistoryEntry(password_hash=HASH_A, fingerprint=b"fp", created_at=T0), keep=6
    )
    storage.codes.put(PHONE, b"code", expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
    storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0)
    return account.id


# Garbage any database can hold, and garbage only SQLite's loose typing lets in.
_BAD_ACCOUNTS = [
    "created_at = 900000000000000000",
    "failed_logins = -1",
    "phone = 'not a phone'",
    "language = ''",
    "password_hash = ''",
    "security_stamp = ''",
    "iin = '12345'",
    "iin = '88010130012x'",
    "phone = NULL, phone_verified = true",  # verified, but no phone
    "pending_email = ''",
    "pending_phone = '87011234567'",
    "previous_email = 'old@example.kz'",  # without its time
    "email_changed_at = 42",  # without the address
    "previous_email = 'a@b.kz', email_changed_at = 900000000000000000",
    "time_zone = 'Not a zone!'",
    *(
        f"names = '{garbage}'"
        for garbage in (
            "Aliya",
            "",
            "{}",
            "null",
            '"[]"',  # a JSON string, not a list
            "[1]",
            "[null]",
            '[""]',
            '["a", ["b"]]',
            '["a\\u0000b"]',
            '["\\ud800"]',
            "[" + ",".join(['"a"'] * 9) + "]",  # nine names
            '["' + "x" * 129 + '"]',
            "[" * 5000,  # deep enough to exhaust json's recursion
            "[" * 30000 + "]" * 30000,  # longer than any stored names
        )
    ),
]
_BAD_ACCOUNTS_SQLITE = [
    "created_at = 'yesterday'",
    "phone_verified = 2",
    "phone_verified = 'yes'",
    "time_zone = X'417369612f416c6d617479'",  # the name as a blob
    "last_login_at = 1.5",
    "email_confirmed = 7",
    "username = X'00ff'",
    "security_stamp = X'00ff'",
    "iin = X'383830313031333030313233'",  # the digits as a blob
    "names = X'5b5d'",
]
_BAD_CODES = ["failures = 2", "failure_window = 0", "expires_at = NULL, failures = -1"]
_BAD_CODES_SQLITE = ["code_hash = 'code'", "failures = 'x'", "expires_at = 'later'"]
_BAD_LIMITS = ["window_length = 0", "hits = 0"]
# Outbox garbage (each set on one row); the first four are due and pending.
_BAD_OUTBOX = [
    "payload = '[]'",
    "channel = 'fax'",
    "attempts = -1",
    "language = ''",
    "next_attempt_at = -900000000000000000",
]
_TICK = timedelta(microseconds=1)


def _letter(index: int, created_at: datetime = T0) -> OutboxMessage:
    """The ``index``-th queued letter (its id orders as ``index`` does)."""
    return OutboxMessage(
        id=f"{index:032x}",
        channel="email",
        kind="password_reset",
        to=f"user{index}@example.kz",
        language="kk",
        payload='{"v": 1}',
        account_id=f"acct-{index}",
        created_at=created_at,
    )


_BAD_LIMITS_SQLITE = ["hits = 'lots'", "window_start = 2.5"]


class TestCorruptRows(OnBackend):
    @pytest.fixture
    def storage(self, backend: Backend) -> Iterator[Storage]:
        with sqlalchemy_storage(backend.engine, metadata=backend.metadata) as storage:
            yield storage

    @property
    def _sqlite(self) -> bool:
        return self.backend.name == "sqlite"

    def _cases(self, common: list[str], sqlite_only: list[str]) -> list[str]:
        return common + (sqlite_only if self._sqlite else [])

    def test_bad_account_rows(self, storage: Storage) -> None:
        """A hand-edited account row raises CorruptRecordError, never a raw error."""
        for assignment in self._cases(_BAD_ACCOUNTS, _BAD_ACCOUNTS_SQLITE):
            self.backend.reset()
            account_id = _seed(storage)
            _set(self.backend, "accounts", assignment)
            with pytest.raises(CorruptRecordError) as caught:
                storage.accounts.get(account_id)
            assert HASH_A not in str(caught.value)
            with pytest.raises(CorruptRecordError):
                storage.accounts.find_by_login("username", "aliya")

    def test_contact_update_of_a_bad_row_writes_nothing(self, storage: Storage) -> None:
        """The row update_contact returns is read before COMMIT: garbage rolls it back."""
        for assignment in ("failed_logins = -1", "names = 'Aliya'", "language = ''"):
            self.backend.reset()
            account_id = _seed(storage)
            seeded = storage.accounts.get(account_id)
            assert seeded is not None
            _set(self.backend, "accounts", assignment)
            before = _rows(self.backend, "accounts")
            for store in (storage.accounts, storage.with_history):
                assert store is not None
                with pytest.raises(CorruptRecordError):
                    store.update_contact(
                        account_id,
                        expected_stamp=seeded.security_stamp,
                        contact=dataclasses.replace(seeded.contact, email="new@example.kz"),
                    )
            assert _rows(self.backend, "accounts") == before

    def test_bad_failure_count_is_not_overwritten(self, storage: Storage) -> None:
        """A garbage count is CorruptRecordError to read; no reservation ever matches it."""
        garbage = ["-5", "-1"] + (["'many'", "2.5", "X'00'"] if self._sqlite else [])
        for assignment in garbage:
            self.backend.reset()
            account_id = _seed(storage)
            _set(self.backend, "accounts", f"failed_logins = {assignment}")
            before = _rows(self.backend, "accounts")
            with pytest.raises(CorruptRecordError):
                storage.accounts.get(account_id)
            for expected in (0, 1, 2, 3, 2**31 - 2):
                assert not storage.accounts.reserve_login_attempt(
                    account_id, expected_failures=expected, now=T0 + HOUR
                ), assignment
            assert _rows(self.backend, "accounts") == before, assignment

    def test_bad_names_in_a_json_column(self) -> None:
        """A JSON names column holding a JSON string, object or number: CorruptRecordError."""
        users = self.backend.users
        storage = sqlalchemy_storage(
            self.backend.engine,
            metadata=self.backend.metadata,
            accounts_table=users,
            columns=USER_COLUMNS,
            insert_defaults={"is_active": True},
        )
        created = storage.accounts.create(NewAccount(username="aliya", names=("Алия",)), now=T0)
        with self.backend.engine.connect() as connection:
            text = connection.execute(sa.select(sa.cast(users.c.full_names, sa.Text))).scalar()
        assert isinstance(text, str)
        assert json.loads(text) == ["Алия"]
        for garbage in ('"[]"', '"Aliya"', '{"a": 1}', "[1]", "7", "null", '[""]'):
            with self.backend.engine.begin() as connection:
                connection.exec_driver_sql(
                    f"UPDATE {users.fullname} SET full_names = '{garbage}'"  # noqa: S608
                )
            with pytest.raises(CorruptRecordError):
                storage.accounts.get(created.id)
            with pytest.raises(CorruptRecordError):
                storage.accounts.find_by_login("username", "aliya")
        storage.close()

    def test_bad_history_rows(self, storage: Storage) -> None:
        """A hand-edited history row raises CorruptRecordError."""
        cases = ["password_hash = ''", "created_at = -900000000000000000"]
        if self.backend.name == "sqlite":
            cases += ["fingerprint = 'text, not bytes'", "created_at = 'noon'"]
        for assignment in cases:
            self.backend.reset()
            account_id = _seed(storage)
            _set(self.backend, "password_history", assignment)
            with pytest.raises(CorruptRecordError) as caught:
                storage.history.recent(account_id, 6)
            assert HASH_A not in str(caught.value)

    def test_bad_code_rows_are_not_overwritten(self, storage: Storage) -> None:
        """put() and attempt() on a garbage code row raise and leave it as it was."""
        for assignment in self._cases(_BAD_CODES, _BAD_CODES_SQLITE):
            self.backend.reset()
            _seed(storage)
            _set(self.backend, "one_time_codes", assignment)
            before = _rows(self.backend, "one_time_codes")
            with pytest.raises(CorruptRecordError):
                storage.codes.attempt(PHONE, [b"code"], now=T0, max_attempts=3)
            with pytest.raises(CorruptRecordError):
                storage.codes.put(PHONE, b"new", expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
            assert _rows(self.backend, "one_time_codes") == before, assignment

    def test_bad_rate_limit_rows_are_not_overwritten(self, storage: Storage) -> None:
        """hit() on a garbage window row raises and leaves it as it was."""
        for assignment in self._cases(_BAD_LIMITS, _BAD_LIMITS_SQLITE):
            self.backend.reset()
            _seed(storage)
            _set(self.backend, "rate_limits", assignment)
            before = _rows(self.backend, "rate_limits")
            with pytest.raises(CorruptRecordError):
                storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0)
            assert _rows(self.backend, "rate_limits") == before, assignment

    def _queue(self) -> Storage:
        return sqlalchemy_storage(self.backend.engine, metadata=self.backend.metadata, outbox=True)

    def test_a_bad_outbox_row_fails_the_claim_and_writes_nothing(self) -> None:
        """One garbage row among the due ones: CorruptRecordError, every row as it was.

        On PostgreSQL the claim is one autocommit statement that has leased the rows by the
        time they are decoded: it puts them back before it raises.
        """
        with self._queue() as storage:
            outbox = storage.outbox
            assert outbox is not None
            for assignment in _BAD_OUTBOX:
                self.backend.reset()
                for index in range(3):
                    outbox.enqueue(_letter(index), now=T0 + index * _TICK)
                _set(self.backend, "outbox", f"{assignment} WHERE id = '{_letter(1).id}'")
                before = sorted(_rows(self.backend, "outbox"))
                with pytest.raises(CorruptRecordError):
                    outbox.claim(now=T0 + HOUR, lease=HOUR, limit=10)
                assert sorted(_rows(self.backend, "outbox")) == before, assignment
                if assignment.startswith("next_attempt_at"):
                    continue  # the garbage row is now the first due
                # Rows before the garbage one in due order are still claimed one by one.
                (first,) = outbox.claim(now=T0 + HOUR, lease=HOUR, limit=1)
                assert (first.id, first.attempts) == (_letter(0).id, 1)

    def test_a_bad_outbox_row_fails_its_settle_and_writes_nothing(self) -> None:
        """complete() and fail() of a garbage row: CorruptRecordError, the row as it was."""
        with self._queue() as storage:
            outbox = storage.outbox
            assert outbox is not None
            for assignment in _BAD_OUTBOX:
                self.backend.reset()
                outbox.enqueue(_letter(0), now=T0)
                outbox.enqueue(_letter(1), now=T0)
                outbox.claim(now=T0, lease=HOUR, limit=2)
                _set(self.backend, "outbox", f"{assignment} WHERE id = '{_letter(0).id}'")
                before = sorted(_rows(self.backend, "outbox"))
                key = _letter(0).id
                with pytest.raises(CorruptRecordError):
                    outbox.complete(key, attempt=1, now=T0)
                with pytest.raises(CorruptRecordError):
                    outbox.fail(key, attempt=1, now=T0, retry_at=T0 + HOUR, error="X")
                with pytest.raises(CorruptRecordError):
                    outbox.fail(key, attempt=1, now=T0, retry_at=None, error="X")
                assert sorted(_rows(self.backend, "outbox")) == before, assignment
                assert outbox.complete(_letter(1).id, attempt=1, now=T0) is True

    def test_an_attempt_count_at_its_limit_fails_the_claim(self) -> None:
        """PostgreSQL: attempts at the column's maximum cannot count one more: StorageError,
        nothing written (the other due rows are not leased either)."""
        if self._sqlite:
            pytest.skip("SQLite integers have no 32-bit limit")
        with self._queue() as storage:
            outbox = storage.outbox
            assert outbox is not None
            outbox.enqueue(_letter(0), now=T0)
            outbox.enqueue(_letter(1), now=T0)
            _set(self.backend, "outbox", f"attempts = 2147483647 WHERE id = '{_letter(1).id}'")
            before = sorted(_rows(self.backend, "outbox"))
            with pytest.raises(StorageError):
                outbox.claim(now=T0, lease=HOUR, limit=10)
            assert sorted(_rows(self.backend, "outbox")) == before


class TestErrors:
    def test_closed_storage(self, backend: Backend) -> None:
        """After close() every call raises StorageError; closing twice is fine."""
        storage = sqlalchemy_storage(backend.engine, metadata=backend.metadata)
        storage.close()
        storage.close()
        with pytest.raises(StorageError, match="closed"):
            storage.ledger.consume("tok-1", T0 + HOUR, now=T0)
        with pytest.raises(StorageError, match="closed"):
            storage.accounts.get("x")

    def test_owned_engine_is_disposed(self, tmp_path: Path) -> None:
        """A storage opened from a URL disposes its engine on close()."""
        storage = sqlalchemy_storage(f"sqlite:///{tmp_path / 'own.db'}", create_tables=True)
        ledger = storage.ledger
        assert isinstance(ledger, SQLAlchemyTokenLedger)
        pool = ledger.database.engine.pool
        assert isinstance(pool, sa.pool.QueuePool)
        assert storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is True
        assert pool.checkedin() == 1
        storage.close()
        assert pool.checkedin() == 0

    def test_database_errors_are_wrapped(self, backend: Backend) -> None:
        """A failing statement is a StorageError with SQLAlchemy's error as cause, no secret."""
        md = make_metadata(f"broken_{secrets.token_hex(3)}_", schema=backend.metadata.schema)
        md.create_all(backend.engine)
        try:
            storage = sqlalchemy_storage(backend.url, metadata=md)
            tokens = next(t for t in md.sorted_tables if t.name.endswith("consumed_tokens"))
            tokens.drop(backend.engine)
            with pytest.raises(StorageError) as caught:
                storage.ledger.consume("tok-secret", T0 + HOUR, now=T0)
            assert isinstance(caught.value.__cause__, sa.exc.DBAPIError)
            assert "tok-secret" not in str(caught.value)
            # An engine made from a URL hides bound values even in the chained error.
            assert "tok-secret" not in str(caught.value.__cause__)
            # The transaction was rolled back; the pool still works.
            assert storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0).allowed
            storage.close()
        finally:
            md.drop_all(backend.engine)

    def test_unreachable_server(self) -> None:
        """A server that does not answer is a StorageError without the URL's password."""
        storage = sqlalchemy_storage("postgresql+psycopg://kaspi:s3cret@127.0.0.1:1/none")
        with pytest.raises(StorageError) as caught:
            storage.ledger.consume("tok-1", T0 + HOUR, now=T0)
        assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
        assert "s3cret" not in str(caught.value)
        assert "tok-1" not in str(caught.value)
        storage.close()

    def test_locked_sqlite_times_out_with_storage_error(self, tmp_path: Path) -> None:
        """Another process holding SQLite's write lock past the timeout gives StorageError."""
        path = tmp_path / "locked.sqlite3"
        sqlalchemy_storage(f"sqlite:///{path}", create_tables=True).close()
        engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
        storage = sqlalchemy_storage(engine)
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageError, match="locked"):
                storage.ledger.consume("tok-1", T0 + HOUR, now=T0)
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        assert storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is True
        storage.close()
        engine.dispose()


class TestSingleStatements(OnBackend):
    """Each compare-and-set on an account is one UPDATE: nothing read before it."""

    def test_account_compare_and_sets(self) -> None:
        """reserve_login_attempt, mark_email_confirmed, set_password_hash: one UPDATE each."""
        engine = self.backend.engine_for_tests()
        with engine.connect() as connection:  # the dialect's first-connect queries, uncounted
            connection.execute(sa.select(sa.literal(1)))
        statements: list[str] = []

        def record(connection: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement.split(None, 1)[0].upper())

        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            with sqlalchemy_storage(engine, metadata=self.backend.metadata) as storage:
                accounts = storage.accounts
                new = NewAccount(username="aliya", email="a@example.kz", password_hash=HASH_A)
                account_id = accounts.create(new, now=T0).id
                reserve = partial(accounts.reserve_login_attempt, account_id, now=T0)
                mark = partial(accounts.mark_email_confirmed, account_id, now=T0)
                change = partial(accounts.set_password_hash, account_id)
                calls: list[tuple[Callable[[], bool], bool]] = [
                    (partial(reserve, expected_failures=0), True),
                    (partial(reserve, expected_failures=0), False),
                    (partial(mark, email="A@Example.kz"), True),
                    (partial(mark, email="b@example.kz"), False),
                    (partial(change, expected=HASH_A, new=HASH_B), True),
                    (partial(change, expected=HASH_A, new=HASH_B), False),
                    (partial(change, expected=HASH_B, new=HASH_A, rotate_stamp=False), True),
                ]
                for call, answer in calls:
                    statements.clear()
                    assert call() is answer
                    assert [s for s in statements if s != "BEGIN"] == ["UPDATE"]
        finally:
            engine.dispose()

    def test_contact_update_is_one_update(self) -> None:
        """update_contact, won or lost, and with_history's: one UPDATE ... RETURNING."""
        engine = self.backend.engine_for_tests()
        with engine.connect() as connection:  # the dialect's first-connect queries, uncounted
            connection.execute(sa.select(sa.literal(1)))
        statements: list[str] = []

        def record(connection: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            with sqlalchemy_storage(engine, metadata=self.backend.metadata) as storage:
                created = storage.accounts.create(
                    NewAccount(username="aliya", email="a@example.kz", phone=PHONE), now=T0
                )
                contact = dataclasses.replace(created.contact, time_zone="Asia/Almaty")
                assert storage.with_history is not None
                for store, stamp, won in (
                    (storage.accounts, created.security_stamp, True),
                    (storage.accounts, created.security_stamp, False),
                    (storage.with_history, created.security_stamp, False),
                ):
                    statements.clear()
                    written = store.update_contact(
                        created.id, expected_stamp=stamp, contact=contact
                    )
                    assert (written is not None) is won
                    sent = [s for s in statements if not s.upper().startswith("BEGIN")]
                    assert len(sent) == 1, sent
                    assert sent[0].upper().startswith("UPDATE")
                    assert "RETURNING" in sent[0].upper()
                statements.clear()
                assert (
                    storage.accounts.update_contact(
                        "x" * 10_000, expected_stamp="s", contact=contact
                    )
                    is None
                )
                assert (
                    storage.accounts.update_contact(
                        created.id, expected_stamp="\x00", contact=contact
                    )
                    is None
                )
                assert statements == []
        finally:
            engine.dispose()

    def test_with_history_is_one_transaction(self) -> None:
        """Each AccountWithHistory call: one BEGIN ... COMMIT on one connection, the store's
        own statements inside; a lost compare-and-set sends its UPDATE and nothing else."""
        engine = self.backend.engine_for_tests()
        with engine.connect() as connection:
            connection.execute(sa.select(sa.literal(1)))
        trace: list[tuple[int, str]] = []

        def record(connection: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
            word = statement.split(None, 1)[0].upper()
            if word != "BEGIN":  # SQLite's BEGIN IMMEDIATE; the begin event is recorded below
                trace.append((id(connection.connection.dbapi_connection), word))

        def mark(word: str) -> Callable[[sa.Connection], None]:
            def listener(connection: sa.Connection) -> None:
                trace.append((id(connection.connection.dbapi_connection), word))

            return listener

        sa.event.listen(engine, "before_cursor_execute", record)
        for word in ("begin", "commit", "rollback"):
            sa.event.listen(engine, word, mark(word.upper()))
        # PostgreSQL appends in one call of the history function (lock, insert and trim).
        append = ["SELECT"] if self.backend.name == "postgresql" else ["INSERT", "DELETE"]
        entry = HistoryEntry(password_hash=HASH_B, fingerprint=b"fp", created_at=T0)
        try:
            with sqlalchemy_storage(engine, metadata=self.backend.metadata) as storage:
                with_history = storage.with_history
                assert with_history is not None
                # The first append looks up the function once (uncounted).
                storage.history.append("warm-up", entry, keep=1)
                trace.clear()
                created = with_history.create_with_history(
                    NewAccount(username="aliya", iin=IIN, password_hash=HASH_A),
                    now=T0,
                    entry=lambda _: entry,
                    keep=6,
                )
                if self.backend.name == "sqlite":  # PostgreSQL: one statement (tests below)
                    # The identifiers are checked in one SELECT, then the account, its entry.
                    self._assert_one_transaction(trace, ["SELECT", "INSERT", *append])
                trace.clear()
                if self.backend.name == "sqlite":
                    assert with_history.replace_password(
                        created.id, expected=HASH_A, new=HASH_B, entry=entry, keep=6
                    )
                    self._assert_one_transaction(trace, ["UPDATE", *append])
                    trace.clear()
                    assert not with_history.replace_password(
                        created.id, expected=HASH_A, new=HASH_B, entry=entry, keep=6
                    )
                    self._assert_one_transaction(trace, ["UPDATE"])
                    trace.clear()
                assert not with_history.replace_password(
                    "x" * 10_000,
                    expected=HASH_A,
                    new=HASH_B,
                    entry=entry,
                    keep=6,
                )
                assert trace == []  # an id no account can have: nothing sent
        finally:
            engine.dispose()

    def test_units_of_work_are_one_statement(self) -> None:
        """PostgreSQL: with_history.replace_password -- the compare-and-set, the history
        append and the letters -- is one autocommit statement, won or lost, with or without
        an entry or messages; so is create_with_history, refused or not (the field named).
        What they promise holds: the entries, the letters, the hash."""
        if self.backend.name != "postgresql":
            pytest.skip("SQLite runs each unit of work in BEGIN IMMEDIATE")
        engine = self.backend.engine_for_tests()
        with engine.connect() as connection:
            connection.execute(sa.select(sa.literal(1)))
        sent: list[tuple[str, bool]] = []

        entry = HistoryEntry(password_hash=HASH_B, fingerprint=b"fp", created_at=T0)
        with sqlalchemy_storage(engine, metadata=self.backend.metadata, outbox=True) as storage:
            with_history = storage.with_history
            outbox = storage.outbox
            assert with_history is not None
            assert outbox is not None
            storage.history.append("warm-up", entry, keep=1)  # the function looked up once
            account = storage.accounts.create(
                NewAccount(username="aliya", password_hash=HASH_A), now=T0
            )
            letters = [
                OutboxMessage(
                    id=f"{i:032x}",
                    channel="email",
                    kind="password_changed",
                    to="алия@example.kz",
                    language="kk",
                    payload="{}",
                    account_id=account.id,
                    created_at=T0,
                    deliver=i != 1,  # an unknown account's twin is stored too
                )
                for i in range(5)
            ]
            with _recording(engine, sent):
                cases: list[tuple[str, str, HistoryEntry | None, list[OutboxMessage], bool]] = [
                    (HASH_A, HASH_B, entry, letters[:2], True),
                    (HASH_A, HASH_B, entry, letters[2:3], False),  # lost: nothing written
                    (HASH_B, HASH_A, None, [], True),
                    (HASH_A, HASH_B, None, letters[2:3], True),
                    (HASH_B, HASH_A, entry, [], True),
                ]
                registered = with_history.create_with_history(
                    NewAccount(
                        username="erlan", email="e@example.kz", iin=IIN, password_hash=HASH_A
                    ),
                    now=T0,
                    entry=lambda _: entry,
                    keep=6,
                    messages=lambda made: [dataclasses.replace(letters[3], account_id=made.id)],
                )
                assert sent == [("WITH", True)]
                assert storage.accounts.get(registered.id) == registered
                assert storage.history.recent(registered.id, 10) == [entry]
                for clash, field in (
                    (NewAccount(username="ERLAN", iin=IIN), "username"),
                    (NewAccount(username="other", email="E@example.kz", iin=IIN), "email"),
                    (NewAccount(username="other", iin=IIN), "iin"),
                ):
                    sent.clear()
                    with pytest.raises(DuplicateAccountError) as caught:
                        with_history.create_with_history(
                            clash,
                            now=T0,
                            entry=lambda _: entry,
                            keep=6,
                            messages=lambda _: [letters[4]],
                        )
                    assert caught.value.field == field
                    assert sent == [("WITH", True)]
                for expected, new, made, queued, won in cases:
                    sent.clear()
                    assert (
                        with_history.replace_password(
                            account.id,
                            expected=expected,
                            new=new,
                            entry=made,
                            keep=6,
                            now=T0,
                            messages=queued,
                        )
                        is won
                    )
                    assert sent == [("WITH", True)]
            assert storage.history.recent(account.id, 10) == [entry, entry]
            statuses = {e.message.id: e.status for e in outbox.list()}
            assert statuses == {
                letters[0].id: "pending",
                letters[1].id: "void",
                letters[2].id: "pending",
                letters[3].id: "pending",  # the registration's; the clashes' none
            }
            stored = storage.accounts.get(account.id)
            assert stored is not None
            assert stored.password_hash == HASH_A
            assert stored.password_changed_at == T0
        engine.dispose()

    def test_contact_update_with_letters_is_one_statement(self) -> None:
        """PostgreSQL: with_history.update_contact with messages sends one autocommit
        statement (the UPDATE and the outbox inserts), however many letters; won, lost or
        refused by a unique index, the letters go with the change or not at all."""
        if self.backend.name != "postgresql":
            pytest.skip("SQLite runs each unit of work in BEGIN IMMEDIATE")
        engine = self.backend.engine_for_tests()
        with engine.connect() as connection:
            connection.execute(sa.select(sa.literal(1)))
        sent: list[tuple[str, bool]] = []

        with sqlalchemy_storage(engine, metadata=self.backend.metadata, outbox=True) as storage:
            with_history, outbox = storage.with_history, storage.outbox
            assert with_history is not None
            assert outbox is not None
            created = storage.accounts.create(NewAccount(email="a@example.kz"), now=T0)
            storage.accounts.create(NewAccount(email="b@example.kz"), now=T0)
            letters = [
                OutboxMessage(
                    id=f"{i:032x}",
                    channel="email",
                    kind="email_changed",
                    to="a@example.kz",
                    language="ru",
                    payload="{}",
                    account_id=created.id,
                    created_at=T0,
                )
                for i in range(5)
            ]
            contact = dataclasses.replace(created.contact, email="c@example.kz")
            with _recording(engine, sent):
                written = with_history.update_contact(
                    created.id,
                    expected_stamp=created.security_stamp,
                    contact=contact,
                    messages=letters[:3],
                )
                assert written is not None
                assert written.contact == contact
                assert sent == [("WITH", True)]
                sent.clear()
                lost = with_history.update_contact(
                    created.id,
                    expected_stamp=created.security_stamp,
                    contact=contact,
                    messages=letters[3:4],
                )
                assert lost is None
                assert sent == [("WITH", True)]
                with pytest.raises(DuplicateAccountError):
                    with_history.update_contact(
                        created.id,
                        expected_stamp=written.security_stamp,
                        contact=dataclasses.replace(contact, email="B@example.kz"),
                        messages=letters[4:],
                    )
            assert {e.message for e in outbox.list()} == set(letters[:3])
            assert storage.accounts.get(created.id) == written
        engine.dispose()

    @staticmethod
    def _assert_one_transaction(trace: list[tuple[int, str]], statements: list[str]) -> None:
        assert {connection for connection, _ in trace} == {trace[0][0]}, trace
        assert [word for _, word in trace] == ["BEGIN", *statements, "COMMIT"]


class TestPostgreSQLAccountStatements:
    """PostgreSQL writes each account change as one autocommit statement."""

    def test_account_writes_are_one_statement(self, postgresql: Backend) -> None:
        """PostgreSQL: create, set_email and update_contact each send one autocommit
        statement, won or refused (the refusal named from the same statement's snapshot):
        a taken identifier, an unknown id, a stale stamp."""
        postgresql.reset()
        engine = postgresql.engine_for_tests()
        sent: list[tuple[str, bool]] = []

        def one(word: str, call: Callable[[], object]) -> object:
            sent.clear()
            try:
                return call()
            finally:
                assert sent == [(word, True)], sent

        with sqlalchemy_storage(engine, metadata=postgresql.metadata) as storage:
            accounts = storage.accounts
            with engine.connect() as connection:
                connection.execute(sa.select(sa.literal(1)))
            with _recording(engine, sent):
                made = one(
                    "WITH",
                    lambda: accounts.create(
                        NewAccount(username="aliya", email="a@example.kz", iin=IIN), now=T0
                    ),
                )
                assert isinstance(made, Account)
                for clash, field in (
                    (NewAccount(username="ALIYA", email="a@example.kz"), "username"),
                    (NewAccount(username="other", email="A@example.kz", iin=IIN), "email"),
                    (NewAccount(username="other", iin=IIN), "iin"),
                ):
                    with pytest.raises(DuplicateAccountError) as caught:
                        one("WITH", partial(accounts.create, clash, now=T0))
                    assert caught.value.field == field
                other = one(
                    "WITH", lambda: accounts.create(NewAccount(email="b@example.kz"), now=T0)
                )
                assert isinstance(other, Account)
                one("WITH", lambda: accounts.set_email(made.id, "c@example.kz", confirmed=True))
                with pytest.raises(DuplicateAccountError) as caught:
                    one("WITH", lambda: accounts.set_email(made.id, "B@example.kz"))
                assert caught.value.field == "email"
                with pytest.raises(AccountNotFoundError):
                    one("WITH", lambda: accounts.set_email("f" * 32, "d@example.kz"))
                current = accounts.get(made.id)
                assert current is not None
                assert (current.email, current.email_confirmed) == ("c@example.kz", True)
                contact = dataclasses.replace(current.contact, email="e@example.kz")
                written = one(
                    "UPDATE",
                    lambda: accounts.update_contact(
                        made.id, expected_stamp=current.security_stamp, contact=contact
                    ),
                )
                assert isinstance(written, Account)
                assert written == accounts.get(made.id)
                assert written.contact == contact
                assert written.security_stamp != current.security_stamp
                stale = one(
                    "UPDATE",
                    lambda: accounts.update_contact(
                        made.id, expected_stamp=current.security_stamp, contact=current.contact
                    ),
                )
                assert stale is None
            assert accounts.get(made.id) == written
            assert accounts.get(other.id) == other
        engine.dispose()

    def test_a_garbage_row_undoes_the_contact_change_and_its_letters(
        self, postgresql: Backend
    ) -> None:
        """PostgreSQL's one statement commits before the row is decoded: garbage in a
        column the change does not write undoes the change and deletes its letters, and
        the address stays free for another account."""
        postgresql.reset()
        with sqlalchemy_storage(
            postgresql.engine, metadata=postgresql.metadata, outbox=True
        ) as storage:
            with_history, outbox = storage.with_history, storage.outbox
            assert with_history is not None
            assert outbox is not None
            seeded = storage.accounts.create(
                NewAccount(username="aliya", email="a@example.kz", password_hash=HASH_A), now=T0
            )
            letter = OutboxMessage(
                id="ab" * 16,
                channel="email",
                kind="email_changed",
                to="a@example.kz",
                language="kk",
                payload="{}",
                account_id=seeded.id,
                created_at=T0,
            )
            for assignment in ("failed_logins = -1", "names = 'Aliya'", "language = ''"):
                _set(postgresql, "accounts", "failed_logins = 0, names = '[]', language = 'kk'")
                _set(postgresql, "accounts", assignment)
                before = _rows(postgresql, "accounts")
                with pytest.raises(CorruptRecordError):
                    with_history.update_contact(
                        seeded.id,
                        expected_stamp=seeded.security_stamp,
                        contact=dataclasses.replace(seeded.contact, email="new@example.kz"),
                        messages=[letter],
                    )
                assert _rows(postgresql, "accounts") == before, assignment
                assert outbox.list() == [], assignment
            _set(postgresql, "accounts", "failed_logins = 0, names = '[]', language = 'kk'")
            assert storage.accounts.create(NewAccount(email="new@example.kz"), now=T0)

    def test_a_failed_undo_still_raises_the_corrupt_row(
        self, postgresql: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The undo of a change over a garbage row fails as well: CorruptRecordError all the
        same (not the undo's StorageError), and one warning that names no value."""
        postgresql.reset()
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            seeded = storage.accounts.create(
                NewAccount(username="aliya", email="a@example.kz", password_hash=HASH_A), now=T0
            )
            _set(postgresql, "accounts", "failed_logins = -1")
            database = storage.accounts.database  # type: ignore[attr-defined]

            def refuse(operation: object) -> None:
                raise StorageError("PostgreSQL storage failed: the connection was cut")

            monkeypatch.setattr(database, "_write", refuse)
            with (
                caplog.at_level("WARNING", logger="kaspi_identity.storage"),
                pytest.raises(CorruptRecordError),
            ):
                storage.accounts.update_contact(
                    seeded.id,
                    expected_stamp=seeded.security_stamp,
                    contact=dataclasses.replace(seeded.contact, email="new@example.kz"),
                )
            warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert len(warnings) == 1
            assert "not set back" in warnings[0]
            assert "new@example.kz" not in warnings[0]
            assert HASH_A not in warnings[0]

    def test_outside_read_committed_account_writes_open_transactions(
        self, postgresql: Backend
    ) -> None:
        """A SERIALIZABLE server default: racing creates, set_email and contact updates
        keep their promises (one winner each), whether a statement ran in autocommit or a
        serialization failure turned the store to READ COMMITTED transactions."""
        postgresql.reset()
        engine = postgresql.serializable_engine()
        try:
            with sqlalchemy_storage(engine, metadata=postgresql.metadata) as storage:
                accounts = storage.accounts

                def create(index: int) -> str:
                    try:
                        accounts.create(
                            NewAccount(username="Aliya" if index % 2 else "ALIYA"), now=T0
                        )
                    except DuplicateAccountError as exc:
                        return exc.field
                    return "created"

                outcomes: list[str] = []
                _in_threads(16, lambda i: outcomes.append(create(i)))
                assert sorted(outcomes) == ["created"] + ["username"] * 15
                made = [
                    accounts.create(NewAccount(email=f"u{i}@example.kz"), now=T0) for i in range(16)
                ]
                taken: list[int] = []

                def take(index: int) -> None:
                    try:
                        accounts.set_email(made[index].id, "wanted@example.kz")
                    except DuplicateAccountError:
                        return
                    taken.append(index)

                _in_threads(16, take)
                assert len(taken) == 1
                owner = accounts.find_by_login("email", "wanted@example.kz")
                assert owner is not None
                assert owner.id == made[taken[0]].id
                target = accounts.get(made[0].id)
                assert target is not None
                won: list[Account] = []

                def change(index: int) -> None:
                    contact = dataclasses.replace(target.contact, phone=f"+7702{index:07d}")
                    result = accounts.update_contact(
                        target.id, expected_stamp=target.security_stamp, contact=contact
                    )
                    if result is not None:
                        won.append(result)

                _in_threads(16, change)
                assert len(won) == 1
                assert accounts.get(target.id) == won[0]
        finally:
            engine.dispose()


@contextmanager
def _recording(engine: sa.Engine, sent: list[tuple[str, bool]]) -> Iterator[None]:
    """Append (first keyword, autocommit?) of each statement ``engine`` sends to ``sent``."""

    def record(connection: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
        driver = connection.connection.dbapi_connection
        sent.append((statement.split(None, 1)[0].upper(), bool(driver.autocommit)))  # type: ignore[union-attr]

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _in_threads(count: int, action: Callable[[int], object]) -> None:
    """Run ``action(i)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            action(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]


class TestHistoryFunction:
    """PostgreSQL appends history through one function call, made with the tables."""

    @staticmethod
    def _function(backend: Backend) -> str:
        return f"{backend.metadata.schema}.kaspi_password_history_append"

    @staticmethod
    def _exists(backend: Backend) -> bool:
        signature = (
            f"{TestHistoryFunction._function(backend)}(text,text,bytea,bigint,integer,bigint)"
        )
        with backend.engine.connect() as connection:
            found = connection.execute(sa.select(sa.func.to_regprocedure(signature)))
            return found.scalar() is not None

    def _drop(self, backend: Backend) -> None:
        with backend.engine.begin() as connection:
            connection.exec_driver_sql(
                f"DROP FUNCTION {self._function(backend)}(text,text,bytea,bigint,integer,bigint)"
            )

    @staticmethod
    def _statements(engine: sa.Engine) -> list[str]:
        statements: list[str] = []
        sa.event.listen(
            engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: statements.append(statement.split("(", 1)[0]),
        )
        return statements

    def test_create_all_makes_it_and_one_statement_appends(self, postgresql: Backend) -> None:
        """metadata.create_all made the function; an append is one SELECT of it, autocommit."""
        postgresql.reset()
        assert self._exists(postgresql)
        engine = postgresql.engine_for_tests()
        statements = self._statements(engine)
        entry = HistoryEntry(password_hash=HASH_A, fingerprint=b"f", created_at=T0)
        try:
            with sqlalchemy_storage(engine, metadata=postgresql.metadata) as storage:
                storage.history.append("acct-1", entry, keep=2)  # looks the function up
                statements.clear()
                for _ in range(3):
                    storage.history.append("acct-1", entry, keep=2)
                assert statements == [f"SELECT {self._function(postgresql)}"] * 3
                assert storage.history.recent("acct-1", 10) == [entry, entry]
        finally:
            engine.dispose()

    def test_missing_function_falls_back_and_create_tables_adds_it(
        self, postgresql: Backend, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Tables from before the function: appends still keep the promise (the old
        transaction, one warning); create_tables() adds the function, creating nothing else."""
        postgresql.reset()
        self._drop(postgresql)
        try:
            with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
                with caplog.at_level("WARNING", logger="kaspi_identity.storage"):
                    for index in range(4):
                        storage.history.append("acct-1", _racer_entry(0, index), keep=2)
                    _in_threads(
                        16, lambda i: storage.history.append("acct-1", _racer_entry(1, i), keep=3)
                    )
                warnings = [r for r in caplog.records if "history_function_sql" in r.message]
                assert len(warnings) == 1
                assert "$argon2id" not in caplog.text
                assert len(storage.history.recent("acct-1", 100)) == 3
                with_history = storage.with_history
                assert with_history is not None
                created = with_history.create_with_history(
                    NewAccount(username="aliya"), now=T0, entry=lambda _: _racer_entry(2, 0), keep=6
                )
                assert storage.history.recent(created.id, 10) == [_racer_entry(2, 0)]
                assert not self._exists(postgresql)
                storage.accounts.database.create_tables()  # type: ignore[attr-defined]
                assert self._exists(postgresql)
            engine = postgresql.engine_for_tests()
            statements = self._statements(engine)
            try:
                with sqlalchemy_storage(engine, metadata=postgresql.metadata) as storage:
                    storage.history.append("acct-1", _racer_entry(3, 0), keep=1)
                    statements.clear()
                    storage.history.append("acct-1", _racer_entry(3, 1), keep=1)
                    assert statements == [f"SELECT {self._function(postgresql)}"]
                    assert storage.history.recent("acct-1", 10) == [_racer_entry(3, 1)]
            finally:
                engine.dispose()
        finally:
            if not self._exists(postgresql):
                with postgresql.engine.begin() as connection:
                    connection.exec_driver_sql(history_function_sql(postgresql.metadata))

    def test_a_missing_function_is_looked_up_again(self, postgresql: Backend) -> None:
        """A store that found no function finds it after a migration, without a restart."""
        postgresql.reset()
        self._drop(postgresql)
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            history = storage.history
            assert isinstance(history, SQLAlchemyPasswordHistoryStore)
            entry = _racer_entry(0, 0)
            history.append("acct-1", entry, keep=1)
            assert history._function is False
            # The documented migration: what Alembic's op.execute() would run.
            with postgresql.engine.begin() as connection:
                connection.exec_driver_sql(history_function_sql(postgresql.metadata))
            for _ in range(300):
                history.append("acct-1", entry, keep=1)
            assert history._function is True
            assert history.recent("acct-1", 10) == [entry]

    def test_outside_read_committed_it_opens_a_transaction(self, postgresql: Backend) -> None:
        """A server whose default isolation is SERIALIZABLE: the function refuses the
        autocommit call (its statements would share one snapshot), the store appends in a
        READ COMMITTED transaction instead, and racing appends still keep at most keep."""
        postgresql.reset()
        engine = postgresql.serializable_engine()
        try:
            with engine.connect() as connection:
                level = connection.exec_driver_sql("SHOW default_transaction_isolation")
                assert level.scalar() == "serializable"
            with sqlalchemy_storage(engine, metadata=postgresql.metadata) as storage:
                history = storage.history
                assert isinstance(history, SQLAlchemyPasswordHistoryStore)
                history.append("acct-1", _racer_entry(0, 0), keep=6)
                assert history.database._autocommit_writes is False
                assert history.recent("acct-1", 10) == [_racer_entry(0, 0)]
                _in_threads(32, lambda i: history.append("acct-1", _racer_entry(1, i), keep=6))
                stored = history.recent("acct-1", 100)
                assert len(stored) == 6
                assert set(stored) <= {_racer_entry(1, i) for i in range(32)}
        finally:
            engine.dispose()

    def test_outside_read_committed_the_unit_of_work_opens_a_transaction(
        self, postgresql: Backend
    ) -> None:
        """A SERIALIZABLE server default: with_history's one statement is refused (the
        function's KI001, nothing written), the call runs as a READ COMMITTED transaction,
        and so does every later one: racing changes still have one winner, one entry."""
        postgresql.reset()
        engine = postgresql.serializable_engine()
        try:
            with sqlalchemy_storage(engine, metadata=postgresql.metadata) as storage:
                with_history = storage.with_history
                assert isinstance(with_history, SQLAlchemyAccountWithHistory)
                first = _racer_entry(0, 0)
                created = with_history.create_with_history(
                    NewAccount(username="aliya", password_hash=HASH_A),
                    now=T0,
                    entry=lambda _: first,
                    keep=6,
                )
                assert with_history.database._autocommit_writes is False
                assert storage.accounts.get(created.id) == created
                assert storage.history.recent(created.id, 10) == [first]
                with pytest.raises(DuplicateAccountError):
                    with_history.create_with_history(
                        NewAccount(username="ALIYA"), now=T0, entry=lambda _: first, keep=6
                    )
                wins: list[int] = []

                def change(i: int) -> None:
                    if with_history.replace_password(
                        created.id,
                        expected=HASH_A,
                        new=_racer_hash(1, i),
                        entry=_racer_entry(1, i),
                        keep=6,
                    ):
                        wins.append(i)

                _in_threads(16, change)
                assert len(wins) == 1
                stored = storage.accounts.get(created.id)
                assert stored is not None
                assert stored.password_hash == _racer_hash(1, wins[0])
                assert storage.history.recent(created.id, 10) == [_racer_entry(1, wins[0]), first]
        finally:
            engine.dispose()

    def test_sql_for_migrations(self) -> None:
        """history_function_sql names the function after the table, in its schema, quoted
        where the names need it; a metadata not from make_metadata is refused."""
        default = history_function_sql()
        assert default.startswith("CREATE OR REPLACE FUNCTION kaspi_password_history_append(")
        assert "INSERT INTO kaspi_password_history " in default
        assert "pg_advisory_xact_lock(p_lock)" in default
        mixed = history_function_sql(make_metadata("Idp_", schema="Auth"))
        assert 'FUNCTION "Auth"."Idp_password_history_append"(' in mixed
        assert 'INSERT INTO "Auth"."Idp_password_history" ' in mixed
        with pytest.raises(ValueError, match="make_metadata"):
            history_function_sql(sa.MetaData())
        with pytest.raises(TypeError):
            history_function_sql("kaspi_")  # type: ignore[arg-type]

    def test_drop_all_drops_it(self, postgresql: Backend) -> None:
        """A metadata's drop_all removes the function with the table; create_all brings both."""
        md = make_metadata(f"gone_{secrets.token_hex(3)}_", schema=postgresql.metadata.schema)
        table = next(t for t in md.sorted_tables if t.name.endswith("password_history"))
        signature = f"{md.schema}.{table.name}_append(text,text,bytea,bigint,integer,bigint)"
        probe = sa.select(sa.func.to_regprocedure(signature))
        md.create_all(postgresql.engine)
        with postgresql.engine.connect() as connection:
            assert connection.execute(probe).scalar() is not None
        md.drop_all(postgresql.engine)
        with postgresql.engine.connect() as connection:
            assert connection.execute(probe).scalar() is None


# The migration docs/storage.md gives for a deployment from before security stamps.
_ADD_STAMP = {
    "postgresql": [
        "ALTER TABLE {table} ADD COLUMN security_stamp varchar(64) NOT NULL"
        " DEFAULT replace(gen_random_uuid()::text, '-', '')",
    ],
    "sqlite": [
        "ALTER TABLE {table} ADD COLUMN security_stamp VARCHAR(64) NOT NULL DEFAULT ''",
        "UPDATE {table} SET security_stamp = lower(hex(randomblob(16))) WHERE security_stamp = ''",
    ],
}


class TestAddingTheStamp(OnBackend):
    def test_documented_migration(self) -> None:
        """Rows from before the stamp get distinct random stamps; the store then works."""
        engine = self.backend.engine
        md = make_metadata(f"old_{secrets.token_hex(3)}_", schema=self.backend.metadata.schema)
        md.create_all(engine)
        table = next(t for t in md.sorted_tables if t.name.endswith("accounts"))
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    f"ALTER TABLE {table.fullname} DROP COLUMN security_stamp"
                )
            old = sa.Table(table.name, sa.MetaData(schema=md.schema), *_account_columns())
            ids = [secrets.token_hex(16) for _ in range(5)]
            rows = [
                {
                    "id": account_id,
                    "username": f"user{i}",
                    "username_key": f"user{i}",
                    "email_confirmed": False,
                    "failed_logins": 0,
                    "created_at": 1_700_000_000_000_000 + i,
                    "language": "en",
                }
                for i, account_id in enumerate(ids)
            ]
            with engine.begin() as connection:
                connection.execute(sa.insert(old), rows)
                for statement in _ADD_STAMP[self.backend.name]:
                    connection.exec_driver_sql(statement.format(table=table.fullname))
            with SQLAlchemyDatabase(engine, metadata=md) as db:
                store = SQLAlchemyAccountStore(db)
                found = [store.get(account_id) for account_id in ids]
                stamps = {account.security_stamp for account in found if account is not None}
                assert len(stamps) == len(rows)
                assert all(len(stamp) == 32 for stamp in stamps)
                created = store.create(NewAccount(username="aliya"), now=T0)
                assert created.security_stamp not in stamps
                assert store.get(created.id) == created
        finally:
            md.drop_all(engine)


# The migration docs/storage.md gives for a deployment from before iin and names.
_ADD_IIN_AND_NAMES = {
    "postgresql": [
        "ALTER TABLE {table} ADD COLUMN iin varchar(12)",
        "ALTER TABLE {table} ADD CONSTRAINT {unique} UNIQUE (iin)",
        "ALTER TABLE {table} ADD COLUMN names text NOT NULL DEFAULT '[]'",
    ],
    "sqlite": [
        "ALTER TABLE {table} ADD COLUMN iin VARCHAR(12)",
        "CREATE UNIQUE INDEX {unique} ON {table} (iin)",
        "ALTER TABLE {table} ADD COLUMN names TEXT NOT NULL DEFAULT '[]'",
    ],
}


class TestAddingIinAndNames(OnBackend):
    def test_documented_migration(self) -> None:
        """Old rows read as no IIN and no names; an IIN is unique; old inserts get '[]'."""
        engine = self.backend.engine
        prefix = f"pre_{secrets.token_hex(3)}_"
        md = make_metadata(prefix, schema=self.backend.metadata.schema)
        table = next(t for t in md.sorted_tables if t.name.endswith("accounts"))
        # The accounts table as the previous release created it.
        old_md = sa.MetaData(schema=md.schema)
        old = sa.Table(
            table.name,
            old_md,
            *(column for column in _account_columns(stamp=True) if column.name not in _NEW),
            *(
                sa.UniqueConstraint(name, name=f"uq_{table.name}_{name}")
                for name in ("username_key", "email_key", "phone")
            ),
        )
        old_md.create_all(engine)
        try:
            rows: list[dict[str, Any]] = [
                {
                    "id": secrets.token_hex(16),
                    "username": f"user{i}",
                    "username_key": f"user{i}",
                    "email_confirmed": False,
                    "failed_logins": 0,
                    "created_at": 1_700_000_000_000_000 + i,
                    "language": "en",
                    "security_stamp": secrets.token_hex(16),
                }
                for i in range(3)
            ]
            with engine.begin() as connection:
                connection.execute(sa.insert(old), rows[:2])
                for statement in _ADD_IIN_AND_NAMES[self.backend.name]:
                    sql = statement.format(table=table.fullname, unique=f"uq_{table.name}_iin")
                    connection.exec_driver_sql(sql)
                # A server still on the previous release inserts without the new columns.
                connection.execute(sa.insert(old), rows[2:])
            with SQLAlchemyDatabase(engine, metadata=md) as db:
                store = SQLAlchemyAccountStore(db)
                for row in rows:
                    found = store.get(row["id"])
                    assert found is not None
                    assert (found.username, found.iin, found.names) == (row["username"], None, ())
                created = store.create(NewAccount(iin=IIN, names=("Алия",)), now=T0)
                assert store.find_by_login("iin", IIN) == created
                with pytest.raises(DuplicateAccountError) as caught:
                    store.create(NewAccount(username="other", iin=IIN), now=T0)
                assert caught.value.field == "iin"
            # The unique constraint itself, not only the store's check, refuses a second IIN.
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
                connection.execute(
                    sa.update(table).where(table.c.id == rows[0]["id"]), {"iin": IIN}
                )
        finally:
            md.drop_all(engine)


class TestContactDuplicates(OnBackend):
    def test_the_email_is_named_before_the_phone(self) -> None:
        """Both taken: the e-mail is named (as at create); each alone names itself."""
        for table, columns in ((None, None), (self.backend.users, USER_COLUMNS)):
            self.backend.reset()
            defaults = None if table is None else {"is_active": True}
            store = SQLAlchemyAccountStore(
                self.db, table=table, columns=columns, insert_defaults=defaults
            )
            created = store.create(NewAccount(username="aliya", email="a@example.kz"), now=T0)
            store.create(NewAccount(username="b", email="b@example.kz", phone=PHONE), now=T0)
            for change, field in (
                ({"email": "B@example.kz", "phone": PHONE}, "email"),
                ({"phone": PHONE}, "phone"),
                ({"email": "b@EXAMPLE.kz"}, "email"),
            ):
                with pytest.raises(DuplicateAccountError) as caught:
                    store.update_contact(
                        created.id,
                        expected_stamp=created.security_stamp,
                        contact=dataclasses.replace(created.contact, **change),  # type: ignore[arg-type]
                    )
                assert caught.value.field == field
                assert store.get(created.id) == created

    def test_without_returning(self) -> None:
        """A dialect without UPDATE ... RETURNING (SQLite before 3.35): UPDATE, then SELECT."""
        engine = self.backend.engine_for_tests()
        engine.dialect.update_returning = False
        statements: list[str] = []

        def record(connection: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement.split(None, 1)[0].upper())

        try:
            with sqlalchemy_storage(engine, metadata=self.backend.metadata) as storage:
                created = storage.accounts.create(NewAccount(email="a@example.kz"), now=T0)
                storage.accounts.create(NewAccount(email="b@example.kz"), now=T0)
                sa.event.listen(engine, "before_cursor_execute", record)
                contact = dataclasses.replace(created.contact, phone=PHONE, time_zone="UTC")
                written = storage.accounts.update_contact(
                    created.id, expected_stamp=created.security_stamp, contact=contact
                )
                assert written is not None
                assert written == storage.accounts.get(created.id)
                assert written.contact == contact
                assert [s for s in statements if s != "BEGIN"][:2] == ["UPDATE", "SELECT"]
                assert storage.with_history is not None
                for store in (storage.accounts, storage.with_history):
                    stale = store.update_contact(
                        created.id, expected_stamp=created.security_stamp, contact=contact
                    )
                    assert stale is None
                    with pytest.raises(DuplicateAccountError):
                        store.update_contact(
                            created.id,
                            expected_stamp=written.security_stamp,
                            contact=dataclasses.replace(contact, email="B@example.kz"),
                        )
                assert storage.accounts.get(created.id) == written
        finally:
            engine.dispose()


# The migration docs/storage.md gives for the contact details (existing phones verified).
_ADD_CONTACT = {
    "postgresql": [
        "ALTER TABLE {table} ADD COLUMN phone_verified boolean NOT NULL DEFAULT false",
        "UPDATE {table} SET phone_verified = true WHERE phone IS NOT NULL",
    ],
    "sqlite": [
        "ALTER TABLE {table} ADD COLUMN phone_verified BOOLEAN NOT NULL DEFAULT 0",
        "UPDATE {table} SET phone_verified = 1 WHERE phone IS NOT NULL",
    ],
}
_ADD_CONTACT_NULLABLE = (
    "ALTER TABLE {table} ADD COLUMN pending_email VARCHAR(254)",
    "ALTER TABLE {table} ADD COLUMN pending_phone VARCHAR(16)",
    "ALTER TABLE {table} ADD COLUMN previous_email VARCHAR(254)",
    "ALTER TABLE {table} ADD COLUMN email_changed_at BIGINT",
    "ALTER TABLE {table} ADD COLUMN time_zone VARCHAR(64)",
)


class TestAddingTheContactColumns(OnBackend):
    def test_documented_migration(self) -> None:
        """A table from before the contact columns: its phones read verified, the rest None."""
        engine = self.backend.engine
        md = make_metadata(f"pre_{secrets.token_hex(3)}_", schema=self.backend.metadata.schema)
        table = next(t for t in md.sorted_tables if t.name.endswith("accounts"))
        old_md = sa.MetaData(schema=md.schema)
        old = sa.Table(
            table.name,
            old_md,
            *(c for c in _account_columns(stamp=True) if c.name not in CONTACT_FIELDS),
            *(
                sa.UniqueConstraint(name, name=f"uq_{table.name}_{name}")
                for name in ("username_key", "email_key", "phone", "iin")
            ),
        )
        old_md.create_all(engine)
        try:
            rows: list[dict[str, Any]] = [
                {
                    "id": secrets.token_hex(16),
                    "username": f"user{i}",
                    "username_key": f"user{i}",
                    "phone": None if i % 2 else f"+7701000000{i}",
                    "email_confirmed": False,
                    "failed_logins": 0,
                    "created_at": 1_700_000_000_000_000 + i,
                    "language": "en",
                    "security_stamp": secrets.token_hex(16),
                }
                for i in range(4)
            ]
            with engine.begin() as connection:
                connection.execute(sa.insert(old), rows)
                for statement in (*_ADD_CONTACT[self.backend.name], *_ADD_CONTACT_NULLABLE):
                    connection.exec_driver_sql(statement.format(table=table.fullname))
            with SQLAlchemyDatabase(engine, metadata=md) as db:
                store = SQLAlchemyAccountStore(db)
                for i, row in enumerate(rows):
                    found = store.get(row["id"])
                    assert found is not None
                    assert found.phone_verified is (i % 2 == 0)
                    assert found.contact == Contact(
                        email=None,
                        email_confirmed=False,
                        phone=row["phone"],
                        phone_verified=i % 2 == 0,
                    )
                moved = store.update_contact(
                    rows[1]["id"],
                    expected_stamp=rows[1]["security_stamp"],
                    contact=Contact(
                        email="new@example.kz",
                        email_confirmed=False,
                        phone=None,
                        phone_verified=False,
                        pending_phone="+77020000001",
                        time_zone="Asia/Almaty",
                    ),
                )
                assert moved is not None
                assert moved == store.get(rows[1]["id"])
        finally:
            md.drop_all(engine)


class TestHostEngines(OnBackend):
    def test_stricter_default_isolation(self) -> None:
        """An engine defaulting to SERIALIZABLE still gives exact answers under a race."""
        engine = self.backend.engine_for_tests(
            isolation_level="SERIALIZABLE", pool_size=32, max_overflow=4
        )
        try:
            storage = sqlalchemy_storage(engine, metadata=self.backend.metadata)
            storage.codes.put(PHONE, b"right", expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
            barrier = threading.Barrier(16)
            outcomes: list[CodeAttempt] = []

            def attempt() -> None:
                barrier.wait(timeout=30)
                outcomes.append(storage.codes.attempt(PHONE, [b"wrong"], now=T0, max_attempts=5))

            threads = [threading.Thread(target=attempt) for _ in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert sorted(o.value for o in outcomes) == sorted(
                ["mismatch"] * 5 + ["exhausted"] + ["missing"] * 10
            )
            storage.close()
        finally:
            engine.dispose()


class Fault:
    """Breaks the connection under the next statement that starts with ``marker``, once.

    PostgreSQL: ``pg_terminate_backend`` on the session's backend, from a second connection,
    before (or after) the statement runs -- the server drops the connection. SQLite has no
    connection to drop: the driver raises a disk I/O error there instead.
    """

    def __init__(self, backend: Backend, engine: sa.Engine) -> None:
        self.backend = backend
        self.engine = engine
        self.admin = backend.engine
        self.marker: str | None = None
        self.after = False
        self.fired = 0
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def arm(self, marker: str, *, after: bool = False) -> None:
        self.marker, self.after = marker, after

    def _before(self, connection: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
        if not self.after:
            self._maybe_cut(connection, statement)

    def _after(self, connection: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
        if self.after:
            self._maybe_cut(connection, statement)

    def _maybe_cut(self, connection: sa.Connection, statement: str) -> None:
        if self.marker is None or not statement.lstrip().startswith(self.marker):
            return
        self.marker = None
        self.fired += 1
        if self.backend.name == "sqlite":
            raise sqlite3.OperationalError("disk I/O error")
        driver: Any = connection.connection.driver_connection
        # psycopg's connection info, or asyncpg's (the async face's tests cut those too).
        pid = driver.info.backend_pid if hasattr(driver, "info") else driver.get_server_pid()
        with self.admin.connect() as admin:
            admin.execute(sa.select(sa.func.pg_terminate_backend(pid, 5000)))


def _history_statement(backend: Backend, marker: str) -> str:
    """The start of the statement of a history append that ``marker`` names on SQLite.

    On PostgreSQL the lock, the insert and the trim are one call of the history function.
    """
    if backend.name == "sqlite":
        return marker
    return f"SELECT {backend.metadata.schema}.kaspi_password_history_append("


_SELF_CUT = "kaspi_test_cut_history"


@contextmanager
def history_trim_cuts_the_connection(backend: Backend) -> Iterator[None]:
    """PostgreSQL: the history's trim (inside the function, after its insert) ends its own
    session, as a server crash or a killed backend would, half-way through the append."""
    table = backend.table("password_history").fullname
    function = f"{backend.metadata.schema}.{_SELF_CUT}"
    with backend.engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);"
            " RETURN NULL; END $$"
        )
        connection.exec_driver_sql(
            f"CREATE TRIGGER {_SELF_CUT} BEFORE DELETE ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    try:
        yield
    finally:
        with backend.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_SELF_CUT} ON {table}")


class TestFaults(OnBackend):
    """The connection drops in the middle of a flow: typed error, nothing half-done."""

    @pytest.fixture
    def faulty(self, backend: Backend) -> Iterator[tuple[Storage, Fault]]:
        engine = backend.engine_for_tests(pool_size=2, max_overflow=2)
        fault = Fault(backend, engine)
        with sqlalchemy_storage(engine, metadata=backend.metadata) as storage:
            yield storage, fault
        engine.dispose()

    def test_token_is_never_redeemed_twice(self, faulty: tuple[Storage, Fault]) -> None:
        """A connection cut before or after the insert: StorageError, and one True in all."""
        storage, fault = faulty
        for after in (False, True):
            token = f"tok-{after}"
            fault.arm("INSERT", after=after)
            outcomes: list[bool | None] = []
            errors: list[StorageError] = []
            for _ in range(4):
                try:
                    outcomes.append(storage.ledger.consume(token, T0 + HOUR, now=T0))
                except StorageError as exc:
                    errors.append(exc)
                    outcomes.append(None)
            assert all(isinstance(exc.__cause__, sa.exc.DBAPIError) for exc in errors)
            assert not any(token in str(exc) for exc in errors)
            assert outcomes.count(True) == 1, outcomes
            assert None in outcomes
            assert outcomes[-1] is False
        assert fault.fired == 2

    def test_code_is_not_accepted_after_its_attempts_ran_out(
        self, faulty: tuple[Storage, Fault]
    ) -> None:
        """Cut between the locked read and the write: StorageError, and the count holds.

        On PostgreSQL the attempt is one statement (``WITH old AS (... FOR UPDATE) ...``),
        so the cut falls before it; on SQLite between the read and the UPDATE.
        """
        storage, fault = faulty
        storage.codes.put(PHONE, b"right", expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        for _ in range(2):
            assert storage.codes.attempt(PHONE, [b"wrong"], now=T0, max_attempts=2) is (
                CodeAttempt.MISMATCH
            )
        fault.arm("UPDATE" if fault.backend.name == "sqlite" else "WITH")
        with pytest.raises(StorageError):
            storage.codes.attempt(PHONE, [b"right"], now=T0, max_attempts=2)
        assert fault.fired == 1
        assert storage.codes.attempt(PHONE, [b"right"], now=T0, max_attempts=2) is (
            CodeAttempt.EXHAUSTED
        )
        assert storage.codes.attempt(PHONE, [b"right"], now=T0, max_attempts=2) is (
            CodeAttempt.MISSING
        )

    def test_right_code_is_accepted_once(self, faulty: tuple[Storage, Fault]) -> None:
        """Cut before the delete of a right code: StorageError, then OK exactly once.

        On PostgreSQL the delete is part of the attempt's one statement: cut before it.
        """
        storage, fault = faulty
        storage.codes.put(PHONE, b"right", expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        fault.arm("DELETE" if fault.backend.name == "sqlite" else "WITH")
        with pytest.raises(StorageError):
            storage.codes.attempt(PHONE, [b"right"], now=T0, max_attempts=5)
        results = [storage.codes.attempt(PHONE, [b"right"], now=T0, max_attempts=5) for _ in "ab"]
        assert results == [CodeAttempt.OK, CodeAttempt.MISSING]

    def test_history_append_is_all_or_nothing(self, faulty: tuple[Storage, Fault]) -> None:
        """Cut between the insert and the trim: the history is exactly as before."""
        storage, fault = faulty
        entries = [
            HistoryEntry(password_hash=f"$argon2id$h{i}", fingerprint=bytes([i]), created_at=T0)
            for i in range(3)
        ]
        for entry in entries[:2]:
            storage.history.append("acct-1", entry, keep=2)
        fault.arm(_history_statement(fault.backend, "DELETE"))
        with pytest.raises(StorageError):
            storage.history.append("acct-1", entries[2], keep=2)
        assert fault.fired == 1
        assert storage.history.recent("acct-1", 10) == [entries[1], entries[0]]
        if fault.backend.name == "postgresql":
            # The function's own insert done, its trim cut: the server drops it all.
            with history_trim_cuts_the_connection(fault.backend), pytest.raises(StorageError):
                storage.history.append("acct-1", entries[2], keep=2)
            assert storage.history.recent("acct-1", 10) == [entries[1], entries[0]]
        storage.history.append("acct-1", entries[2], keep=2)
        assert storage.history.recent("acct-1", 10) == [entries[2], entries[1]]

    def test_password_change_keeps_the_old_hash(self, faulty: tuple[Storage, Fault]) -> None:
        """A cut compare-and-set leaves the old hash; a retry then wins."""
        storage, fault = faulty
        account = storage.accounts.create(
            NewAccount(username="aliya", password_hash=HASH_A), now=T0
        )
        fault.arm("UPDATE")
        with pytest.raises(StorageError) as caught:
            storage.accounts.set_password_hash(account.id, expected=HASH_A, new=HASH_B)
        assert HASH_A not in str(caught.value)
        assert HASH_B not in str(caught.value)
        stored = storage.accounts.get(account.id)
        assert stored is not None
        assert stored.password_hash == HASH_A
        assert storage.accounts.set_password_hash(account.id, expected=HASH_A, new=HASH_B)

    @pytest.mark.parametrize(("marker", "after"), [("INSERT", False), ("DELETE", True)])
    def test_replace_password_cut_keeps_the_old_password(
        self, faulty: tuple[Storage, Fault], marker: str, after: bool
    ) -> None:
        """Cut at the history insert, or after the trim before COMMIT: old hash, old stamp,
        old history -- then a retry writes both.

        On PostgreSQL the change is one statement: cut before it, or -- from inside it --
        in the history function's trim, after the UPDATE and the insert ran.
        """
        storage, fault = faulty
        with_history = storage.with_history
        assert with_history is not None
        account = storage.accounts.create(
            NewAccount(username="aliya", password_hash=HASH_A), now=T0
        )
        old = HistoryEntry(password_hash=HASH_A, fingerprint=b"old", created_at=T0)
        new = HistoryEntry(password_hash=HASH_B, fingerprint=b"new", created_at=T0 + HOUR)
        storage.history.append(account.id, old, keep=1)
        cut: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if fault.backend.name == "sqlite":
            fault.arm(marker, after=after)
        elif after:
            cut = history_trim_cuts_the_connection(fault.backend)
        else:
            fault.arm("WITH")
        with cut, pytest.raises(StorageError) as caught:
            with_history.replace_password(
                account.id, expected=HASH_A, new=HASH_B, entry=new, keep=1
            )
        assert fault.fired == (0 if fault.backend.name == "postgresql" and after else 1)
        assert HASH_B not in str(caught.value)
        assert storage.accounts.get(account.id) == account
        assert storage.history.recent(account.id, 10) == [old]
        assert with_history.replace_password(
            account.id, expected=HASH_A, new=HASH_B, entry=new, keep=1
        )
        assert storage.history.recent(account.id, 10) == [new]

    def test_create_with_history_cut_leaves_no_account(self, faulty: tuple[Storage, Fault]) -> None:
        """Cut after the entry's trim, before COMMIT: no account; a retry registers.

        On PostgreSQL the registration is one statement: cut from inside it, in the
        history function's trim, after the account's INSERT and the entry's ran.
        """
        storage, fault = faulty
        with_history = storage.with_history
        assert with_history is not None
        entry = HistoryEntry(password_hash=HASH_A, fingerprint=b"fp", created_at=T0)
        new = NewAccount(username="aliya", phone=PHONE, iin=IIN, password_hash=HASH_A)
        storage.history.append("warm-up", entry, keep=1)  # looks up the history function
        cut: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if fault.backend.name == "sqlite":
            fault.arm("DELETE", after=True)
        else:
            cut = history_trim_cuts_the_connection(fault.backend)
        with cut, pytest.raises(StorageError):
            with_history.create_with_history(new, now=T0, entry=lambda _: entry, keep=6)
        assert fault.fired == (1 if fault.backend.name == "sqlite" else 0)
        for kind, value in (("username", "aliya"), ("phone", PHONE), ("iin", IIN)):
            assert storage.accounts.find_by_login(kind, value) is None  # type: ignore[arg-type]
        assert len(_rows(self.backend, "password_history")) == 1  # the warm-up's
        created = with_history.create_with_history(new, now=T0, entry=lambda _: entry, keep=6)
        assert storage.history.recent(created.id, 10) == [entry]


class TestServerHelper:
    def test_missing_server_skips_with_instructions(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the variable the test skips, saying how to start the servers."""
        monkeypatch.delenv("CI", raising=False)
        monkeypatch.delenv("KASPI_TEST_NO_SUCH_URL", raising=False)
        with pytest.raises(pytest.skip.Exception, match="scripts/test-servers start"):
            require_server("KASPI_TEST_NO_SUCH_URL")
        assert "test-servers" in HOW_TO_ENABLE

    def test_missing_server_fails_in_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With CI=true a missing or unreachable server is a failure, not a skip."""
        monkeypatch.setenv("CI", "true")
        monkeypatch.delenv("KASPI_TEST_NO_SUCH_URL", raising=False)
        with pytest.raises(pytest.fail.Exception):
            require_server("KASPI_TEST_NO_SUCH_URL")
        monkeypatch.setenv("KASPI_TEST_NO_SUCH_URL", "postgresql://127.0.0.1:1/none")
        with pytest.raises(pytest.fail.Exception, match="unreachable"):
            require_server("KASPI_TEST_NO_SUCH_URL")


_PROCESSES = 8
_THREADS_PER_PROCESS = 16
#: The racing code attempts and hits stop counting as allowed here (of 8 x 16 racers).
_RACE_ATTEMPTS = 37
_RACE_LIMIT = 53


def _race_in_process(url: str, schema: str, account_id: str, start: Any, results: Any) -> None:
    """Child process: 16 threads race to consume one token id, then one CAS attempt."""
    engine = sa.create_engine(url, pool_size=_THREADS_PER_PROCESS, max_overflow=0)
    storage = sqlalchemy_storage(engine, metadata=make_metadata(schema=schema))
    local = threading.Barrier(_THREADS_PER_PROCESS)
    wins: list[bool] = []

    def consume() -> None:
        local.wait(timeout=60)
        wins.append(storage.ledger.consume("shared-token", T0 + HOUR, now=T0))

    threads = [threading.Thread(target=consume) for _ in range(_THREADS_PER_PROCESS)]
    start.wait(timeout=120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    start.wait(timeout=120)
    changed = storage.accounts.set_password_hash(account_id, expected=HASH_A, new=HASH_B)
    results.put((len(wins), wins.count(True), changed))
    storage.close()
    engine.dispose()


def _codes_and_hits_in_process(url: str, schema: str, start: Any, results: Any) -> None:
    """Child process: 16 threads each make one wrong code attempt and one rate-limit hit."""
    engine = sa.create_engine(url, pool_size=_THREADS_PER_PROCESS, max_overflow=0)
    storage = sqlalchemy_storage(engine, metadata=make_metadata(schema=schema))
    local = threading.Barrier(_THREADS_PER_PROCESS)
    outcomes: list[tuple[CodeAttempt, bool]] = []

    def race() -> None:
        local.wait(timeout=60)
        attempt = storage.codes.attempt(PHONE, [b"wrong"], now=T0, max_attempts=_RACE_ATTEMPTS)
        hit = storage.rate_limits.hit("ip:race", limit=_RACE_LIMIT, window=HOUR, now=T0)
        outcomes.append((attempt, hit.allowed))

    threads = [threading.Thread(target=race) for _ in range(_THREADS_PER_PROCESS)]
    start.wait(timeout=120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    results.put([(attempt.name, allowed) for attempt, allowed in outcomes])
    storage.close()
    engine.dispose()


def _reserve_in_process(
    url: str, schema: str, account_id: str, process: int, start: Any, results: Any
) -> None:
    """Child process: 16 threads each read the count and reserve it, until one reserve wins."""
    engine = sa.create_engine(url, pool_size=_THREADS_PER_PROCESS, max_overflow=0)
    storage = sqlalchemy_storage(engine, metadata=make_metadata(schema=schema))
    local = threading.Barrier(_THREADS_PER_PROCESS)
    won: list[tuple[int, datetime, int]] = []

    def reserve(thread: int) -> None:
        now = T0 + timedelta(microseconds=process * _THREADS_PER_PROCESS + thread)
        local.wait(timeout=60)
        for tries in itertools.count(1):
            account = storage.accounts.get(account_id)
            assert account is not None
            seen = account.failed_logins
            if storage.accounts.reserve_login_attempt(account_id, expected_failures=seen, now=now):
                won.append((seen, now, tries))
                return

    threads = [
        threading.Thread(target=reserve, args=(thread,)) for thread in range(_THREADS_PER_PROCESS)
    ]
    start.wait(timeout=120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results.put(won)
    storage.close()
    engine.dispose()


#: Each racer of the history race appends this many entries.
_APPENDS = 3
_KEEP = 6


def _history_entry(process: int, thread: int, index: int) -> HistoryEntry:
    return HistoryEntry(
        password_hash=f"$argon2id$v=19$m=65536,t=3,p=4$h{process}x{thread}x{index}",
        fingerprint=bytes([process, thread, index]),
        created_at=T0,
    )


def _append_in_process(url: str, schema: str, process: int, start: Any, results: Any) -> None:
    """Child process: 16 threads each append 3 entries to one account's history.

    Odd processes append as a release without the history function did (advisory lock,
    INSERT, DELETE in a transaction), even ones through the function: both take the same
    lock, so a rolling upgrade keeps the promise too.
    """
    engine = sa.create_engine(url, pool_size=_THREADS_PER_PROCESS, max_overflow=0)
    storage = sqlalchemy_storage(engine, metadata=make_metadata(schema=schema))
    history = storage.history
    assert isinstance(history, SQLAlchemyPasswordHistoryStore)
    if process % 2:
        history._function = False
    local = threading.Barrier(_THREADS_PER_PROCESS)
    done: list[int] = []

    def append(thread: int) -> None:
        local.wait(timeout=60)
        for index in range(_APPENDS):
            history.append("acct-race", _history_entry(process, thread, index), keep=_KEEP)
        done.append(thread)

    threads = [
        threading.Thread(target=append, args=(thread,)) for thread in range(_THREADS_PER_PROCESS)
    ]
    start.wait(timeout=120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results.put((len(done), history._function))
    storage.close()
    engine.dispose()


def _replace_in_process(
    url: str, schema: str, account_id: str, process: int, start: Any, results: Any
) -> None:
    """Child process: 16 threads replace the password from one expected hash, with history."""
    engine = sa.create_engine(url, pool_size=_THREADS_PER_PROCESS, max_overflow=0)
    storage = sqlalchemy_storage(engine, metadata=make_metadata(schema=schema))
    with_history = storage.with_history
    assert with_history is not None
    local = threading.Barrier(_THREADS_PER_PROCESS)
    won: list[tuple[int, int, bool]] = []

    def replace(thread: int) -> None:
        local.wait(timeout=60)
        changed = with_history.replace_password(
            account_id,
            expected=HASH_A,
            new=_racer_hash(process, thread),
            entry=_racer_entry(process, thread),
            keep=6,
        )
        won.append((process, thread, changed))

    threads = [
        threading.Thread(target=replace, args=(thread,)) for thread in range(_THREADS_PER_PROCESS)
    ]
    start.wait(timeout=120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results.put(won)
    storage.close()
    engine.dispose()


def _racer_hash(process: int, thread: int) -> str:
    return f"$argon2id$v=19$m=65536,t=3,p=4$racer{process}x{thread}"


def _racer_entry(process: int, thread: int) -> HistoryEntry:
    return HistoryEntry(
        password_hash=_racer_hash(process, thread),
        fingerprint=bytes([process, thread]),
        created_at=T0 + HOUR,
    )


def _forkserver() -> Any:
    # A fork server imports this module once and forks the children from it: the
    # children start in milliseconds, and from a process that has no threads.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _in_processes(
    count: int, target: Callable[..., None], args: Callable[[int], tuple[Any, ...]], timeout: float
) -> list[Any]:
    """Run ``target(*args(index), start, results)`` in ``count`` processes of the fork server.

    ``start`` is a barrier of ``count`` parties that releases them together, ``results``
    the queue each puts one item on. Returns the items in the order they came, once every
    process has exited with status 0.
    """
    context = _forkserver()
    start = context.Barrier(count)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*args(index), start, results))
        for index in range(count)
    ]
    for process in processes:
        process.start()
    items = [results.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    results.close()
    results.join_thread()
    return items


class TestAcrossProcesses:
    def test_racing_processes(self, postgresql: Backend) -> None:
        """8 processes x 16 threads consume one id: one True; their CAS race: one winner."""
        postgresql.reset()
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            account = storage.accounts.create(
                NewAccount(username="aliya", password_hash=HASH_A), now=T0
            )
        schema = postgresql.metadata.schema
        assert schema is not None
        outcomes = _in_processes(
            _PROCESSES, _race_in_process, lambda _: (postgresql.url, schema, account.id), 180
        )
        assert sum(calls for calls, _, _ in outcomes) == _PROCESSES * _THREADS_PER_PROCESS
        assert sum(won for _, won, _ in outcomes) == 1
        assert sum(changed for _, _, changed in outcomes) == 1

    def test_racing_code_attempts_and_hits(self, postgresql: Backend) -> None:
        """8 processes x 16 threads: exactly 37 wrong attempts count, exactly 53 hits pass.

        The attempt and the hit are single statements on PostgreSQL; this is their
        atomicity across connections of different processes.
        """
        postgresql.reset()
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            storage.codes.put(PHONE, b"right", expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        schema = postgresql.metadata.schema
        assert schema is not None
        batches = _in_processes(
            _PROCESSES, _codes_and_hits_in_process, lambda _: (postgresql.url, schema), 180
        )
        outcomes = [item for batch in batches for item in batch]
        attempts = [attempt for attempt, _ in outcomes]
        assert len(outcomes) == _PROCESSES * _THREADS_PER_PROCESS
        assert attempts.count("MISMATCH") == _RACE_ATTEMPTS
        assert attempts.count("EXHAUSTED") == 1
        assert attempts.count("MISSING") == len(outcomes) - _RACE_ATTEMPTS - 1
        assert [allowed for _, allowed in outcomes].count(True) == _RACE_LIMIT
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            assert storage.codes.attempt(PHONE, [b"right"], now=T0, max_attempts=99) is (
                CodeAttempt.MISSING
            )
            hit = storage.rate_limits.hit("ip:race", limit=_RACE_LIMIT, window=HOUR, now=T0)
            assert not hit.allowed

    def test_racing_password_replacements(self, postgresql: Backend) -> None:
        """8 processes x 16 threads replace_password from one hash: one True, one new entry."""
        postgresql.reset()
        seeded = HistoryEntry(password_hash=HASH_A, fingerprint=b"seed", created_at=T0)
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            account = storage.accounts.create(
                NewAccount(username="aliya", password_hash=HASH_A), now=T0
            )
            storage.history.append(account.id, seeded, keep=6)
        schema = postgresql.metadata.schema
        assert schema is not None
        batches = _in_processes(
            _PROCESSES,
            _replace_in_process,
            lambda index: (postgresql.url, schema, account.id, index),
            300,
        )
        outcomes = [entry for batch in batches for entry in batch]
        assert len(outcomes) == _PROCESSES * _THREADS_PER_PROCESS
        winners = [(process, thread) for process, thread, changed in outcomes if changed]
        assert len(winners) == 1
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            stored = storage.accounts.get(account.id)
            history = storage.history.recent(account.id, 100)
        assert stored is not None
        assert stored.password_hash == _racer_hash(*winners[0])
        assert stored.security_stamp != account.security_stamp
        assert history == [_racer_entry(*winners[0]), seeded]

    def test_racing_history_appends(self, postgresql: Backend) -> None:
        """8 processes x 16 threads x 3 appends, keep=6, half through the function and half
        through the old statements, and a reader: never more than 6, and the newest 6."""
        postgresql.reset()
        schema = postgresql.metadata.schema
        assert schema is not None
        table = postgresql.table("password_history")
        context = _forkserver()
        start = context.Barrier(_PROCESSES + 1)
        results = context.Queue()
        processes = [
            context.Process(
                target=_append_in_process, args=(postgresql.url, schema, index, start, results)
            )
            for index in range(_PROCESSES)
        ]
        for process in processes:
            process.start()
        counted = sa.select(sa.func.count()).where(table.c.account_id == "acct-race")
        seen: list[int] = []
        with postgresql.engine.connect() as reader:
            start.wait(timeout=120)
            while len(seen) < 5 or any(process.is_alive() for process in processes):
                seen.append(reader.execute(counted).scalar_one())
                reader.rollback()
                if len(seen) > 100_000:
                    break
        outcomes = [results.get(timeout=300) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        assert sorted(outcomes) == [(_THREADS_PER_PROCESS, False)] * (_PROCESSES // 2) + [
            (_THREADS_PER_PROCESS, True)
        ] * (_PROCESSES // 2)
        assert max(seen) <= _KEEP
        with postgresql.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.seq).where(table.c.account_id == "acct-race")
            ).all()
            sequence = sa.func.pg_get_serial_sequence(table.fullname, "seq")
            last = connection.execute(
                sa.select(sa.func.pg_sequence_last_value(sa.cast(sequence, REGCLASS)))
            ).scalar_one()
        # Appends hold the account's lock from their insert to their commit, so the ids go
        # out in commit order and the newest six are the six last ids handed out.
        assert sorted(seq for (seq,) in rows) == list(range(last - _KEEP + 1, last + 1))
        results.close()
        results.join_thread()

    def test_racing_log_in_reservations(self, postgresql: Backend) -> None:
        """8 processes x 16 threads read-then-reserve until each wins: every count once."""
        postgresql.reset()
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            account = storage.accounts.create(NewAccount(username="aliya"), now=T0)
        schema = postgresql.metadata.schema
        assert schema is not None
        batches = _in_processes(
            _PROCESSES,
            _reserve_in_process,
            lambda index: (postgresql.url, schema, account.id, index),
            300,
        )
        won = [entry for batch in batches for entry in batch]
        racers = _PROCESSES * _THREADS_PER_PROCESS
        # Every racer won once, each count value went to exactly one of them ...
        assert len(won) == racers
        assert sorted(seen for seen, _, _ in won) == list(range(racers))
        # ... and some lost a race first: the reads really overlapped.
        assert max(tries for _, _, tries in won) > 1
        with sqlalchemy_storage(postgresql.engine, metadata=postgresql.metadata) as storage:
            stored = storage.accounts.get(account.id)
        assert stored is not None
        assert stored.failed_logins == racers
        last = next(now for seen, now, _ in won if seen == racers - 1)
        assert stored.last_failed_login_at == last
        assert stored.security_stamp == account.security_stamp


def test_sqlite_write_lock_wait_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, item 3: a writer queued behind a stuck one gives up with StorageError.

    No timing is asserted: the lock is held by this very thread, so the call can only
    return by giving up after the (patched) wait.
    """
    from kaspi_identity.storage import sqlalchemy as module

    monkeypatch.setattr(module, "_SQLITE_LOCK_WAIT", 0.05)
    with sqlalchemy_storage(f"sqlite:///{tmp_path / 'lock.sqlite3'}") as storage:
        database = storage.accounts.database  # type: ignore[attr-defined]
        database.create_tables()
        assert database._write_lock.acquire(timeout=1)
        try:
            with pytest.raises(StorageError, match="no write lock within"):
                storage.rate_limits.hit("k", limit=1, window=timedelta(seconds=1), now=T0)
        finally:
            database._write_lock.release()
        assert storage.rate_limits.hit("k", limit=1, window=timedelta(seconds=1), now=T0).allowed


# -- the outbox on PostgreSQL: one statement per claim and per settle ------------------------

_DUE = 200
_CLAIM_BATCH = 7
_OUTBOX_PROCESSES = 4
_OUTBOX_THREADS = 4


def _enqueue_due(storage: Storage, count: int) -> list[str]:
    """Queue ``count`` letters, the i-th due at T0 + i microseconds; their ids in due order."""
    outbox = storage.outbox
    assert outbox is not None
    for index in range(count):
        outbox.enqueue(_letter(index), now=T0 + index * _TICK)
    return [_letter(index).id for index in range(count)]


def _claim_until_empty(storage: Storage) -> list[list[tuple[str, int]]]:
    """Claim batches until a claim finds nothing; each batch as (id, attempts) pairs."""
    outbox = storage.outbox
    assert outbox is not None
    batches = []
    while batch := outbox.claim(now=T0 + HOUR, lease=HOUR, limit=_CLAIM_BATCH):
        assert len(batch) <= _CLAIM_BATCH
        batches.append([(entry.id, entry.attempts) for entry in batch])
    return batches


def _claims_in_process(url: str, schema: str, start: Any, results: Any) -> None:
    """Child process: 4 threads claim batches until the queue has nothing due."""
    engine = sa.create_engine(url, pool_size=_OUTBOX_THREADS, max_overflow=0)
    storage = sqlalchemy_storage(engine, metadata=make_metadata(schema=schema), outbox=True)
    local = threading.Barrier(_OUTBOX_THREADS)
    batches: list[list[tuple[str, int]]] = []

    def claim() -> None:
        local.wait(timeout=60)
        batches.extend(_claim_until_empty(storage))

    threads = [threading.Thread(target=claim) for _ in range(_OUTBOX_THREADS)]
    start.wait(timeout=120)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results.put(batches)
    storage.close()
    engine.dispose()


def _check_claimed_once(batches: list[list[tuple[str, int]]], ids: list[str]) -> None:
    """Every id claimed exactly once, at attempt 1; each batch in due order."""
    claimed = [key for batch in batches for key, _ in batch]
    assert sorted(claimed) == sorted(ids)
    assert {attempts for batch in batches for _, attempts in batch} == {1}
    position = {key: index for index, key in enumerate(ids)}
    for batch in batches:
        assert [key for key, _ in batch] == sorted(
            (key for key, _ in batch), key=position.__getitem__
        )


class TestOutboxOnPostgreSQL:
    """The outbox's one-statement claim and settles, where only a server shows them."""

    @pytest.fixture
    def storage(self, postgresql: Backend) -> Iterator[Storage]:
        postgresql.reset()
        with sqlalchemy_storage(
            postgresql.engine, metadata=postgresql.metadata, outbox=True
        ) as storage:
            yield storage

    @staticmethod
    def _outbox(storage: Storage) -> Any:
        outbox = storage.outbox
        assert outbox is not None
        return outbox

    def test_threads_claim_each_message_once(self, storage: Storage) -> None:
        """16 threads claim 200 due letters in batches: each once, attempts 1, in due order."""
        ids = _enqueue_due(storage, _DUE)
        batches: list[list[tuple[str, int]]] = []
        _in_threads(16, lambda _: batches.extend(_claim_until_empty(storage)))
        _check_claimed_once(batches, ids)
        outbox = self._outbox(storage)
        assert outbox.database._autocommit_writes is True  # READ COMMITTED: never fell back
        assert {(e.attempts, e.next_attempt_at) for e in outbox.list(limit=1000)} == {
            (1, T0 + 2 * HOUR)
        }

    def test_processes_claim_each_message_once(self, postgresql: Backend, storage: Storage) -> None:
        """4 processes x 4 threads claim 200 due letters: each exactly once, attempts 1."""
        ids = _enqueue_due(storage, _DUE)
        schema = postgresql.metadata.schema
        assert schema is not None
        per_process = _in_processes(
            _OUTBOX_PROCESSES, _claims_in_process, lambda _: (postgresql.url, schema), 300
        )
        batches = [batch for batches in per_process for batch in batches]
        _check_claimed_once(batches, ids)
        assert self._outbox(storage).claim(now=T0 + HOUR, lease=HOUR, limit=10) == []

    def test_racing_settles_of_one_attempt(self, storage: Storage) -> None:
        """16 threads complete or fail each of 20 claimed letters: one write per letter, and
        its status is the winner's."""
        outbox = self._outbox(storage)
        ids = _enqueue_due(storage, 20)
        assert len(outbox.claim(now=T0 + HOUR, lease=HOUR, limit=20)) == 20
        won: list[tuple[str, str]] = []

        def settle(index: int) -> None:
            for key in ids if index % 4 < 2 else ids[::-1]:
                if index % 2:
                    if outbox.complete(key, attempt=1, now=T0 + HOUR):
                        won.append((key, "sent"))
                elif outbox.fail(key, attempt=1, now=T0 + HOUR, retry_at=None, error="X"):
                    won.append((key, "dead"))

        _in_threads(16, settle)
        assert sorted(key for key, _ in won) == sorted(ids)
        assert dict(won) == {entry.id: entry.status for entry in outbox.list(limit=100)}

    def test_stale_and_unknown_settles_write_nothing(
        self, postgresql: Backend, storage: Storage
    ) -> None:
        """A stale or future attempt, a wrong status, an unknown id: False, no row changed."""
        outbox = self._outbox(storage)
        (key,) = _enqueue_due(storage, 1)
        outbox.claim(now=T0, lease=HOUR, limit=1)
        outbox.claim(now=T0 + HOUR, lease=HOUR, limit=1)  # attempt 2: the first is stale
        before = _rows(postgresql, "outbox")
        for attempt in (1, 3):
            assert outbox.complete(key, attempt=attempt, now=T0 + HOUR) is False
            assert outbox.fail(key, attempt=attempt, now=T0, retry_at=None, error="X") is False
        assert outbox.retry(key, now=T0 + HOUR) is False  # pending, not dead
        assert outbox.complete("f" * 32, attempt=1, now=T0) is False
        assert outbox.retry("f" * 32, now=T0) is False
        assert _rows(postgresql, "outbox") == before

    def test_fail_in_the_past_is_due_now_and_errors_are_kept(self, storage: Storage) -> None:
        """fail() with a retry_at already past: due at now. A later complete or retry keeps
        the error label; retry resets the attempts."""
        outbox = self._outbox(storage)
        (key,) = _enqueue_due(storage, 1)
        outbox.claim(now=T0, lease=HOUR, limit=1)
        now = T0 + 2 * HOUR
        assert outbox.fail(key, attempt=1, now=now, retry_at=T0, error="SMTPError") is True
        entry = outbox.get(key)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.last_error) == ("pending", 1, "SMTPError")
        assert (entry.next_attempt_at, entry.updated_at) == (now, now)
        assert outbox.claim(now=now - _TICK, lease=HOUR, limit=1) == []
        (again,) = outbox.claim(now=now, lease=HOUR, limit=1)
        assert again.attempts == 2
        assert outbox.fail(key, attempt=2, now=now, retry_at=None, error="Refused") is True
        assert outbox.retry(key, now=now + HOUR) is True
        entry = outbox.get(key)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.last_error) == ("pending", 0, "Refused")
        assert entry.next_attempt_at == now + HOUR
        (third,) = outbox.claim(now=now + HOUR, lease=HOUR, limit=1)
        assert outbox.complete(key, attempt=third.attempts, now=now + HOUR) is True
        entry = outbox.get(key)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.last_error) == ("sent", 1, "Refused")

    @staticmethod
    def _wait_for_a_lock_wait(postgresql: Backend) -> None:
        """Return once a statement on this schema's outbox waits for a row lock."""
        probe = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND position(:table in query) > 0"
        )
        table = postgresql.table("outbox").fullname
        with postgresql.engine.connect() as connection:
            for _ in range(600):
                if connection.execute(probe, {"table": table}).scalar():
                    return
                connection.rollback()
                threading.Event().wait(0.05)
        raise AssertionError("no statement waited for the row lock")

    def test_a_serialization_failure_switches_to_transactions(self, postgresql: Backend) -> None:
        """SERIALIZABLE by default: a complete() whose row a racer changed and committed
        meanwhile fails in its one statement (40001, nothing written); the store completes
        in a READ COMMITTED transaction instead, and runs transactions from then on."""
        postgresql.reset()
        engine = postgresql.serializable_engine()
        try:
            with sqlalchemy_storage(engine, metadata=postgresql.metadata, outbox=True) as storage:
                outbox = self._outbox(storage)
                (key,) = _enqueue_due(storage, 1)
                assert len(outbox.claim(now=T0, lease=HOUR, limit=1)) == 1
                # Alone, the statement met no conflict.
                assert outbox.database._autocommit_writes is True
                done: list[bool] = []
                table = postgresql.table("outbox").fullname
                with postgresql.engine.connect() as racer:
                    racer.execute(
                        sa.text(f"UPDATE {table} SET updated_at = updated_at WHERE id = :id"),  # noqa: S608
                        {"id": key},
                    )
                    worker = threading.Thread(
                        target=lambda: done.append(outbox.complete(key, attempt=1, now=T0))
                    )
                    worker.start()
                    self._wait_for_a_lock_wait(postgresql)
                    racer.commit()
                worker.join(timeout=60)
                assert done == [True]
                assert outbox.database._autocommit_writes is False
                entry = outbox.get(key)
                assert entry is not None
                assert (entry.status, entry.attempts) == ("sent", 1)
                assert outbox.complete(key, attempt=1, now=T0) is False
        finally:
            engine.dispose()

    def test_claims_outside_read_committed_run_as_transactions(self, postgresql: Backend) -> None:
        """SERIALIZABLE by default, and a trigger that refuses (40001) any outbox UPDATE not
        under READ COMMITTED: the first claim falls back to a transaction, and 16 racing
        threads then still claim each of 200 letters exactly once."""
        postgresql.reset()
        schema = postgresql.metadata.schema
        table = postgresql.table("outbox").fullname
        with postgresql.engine.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {schema}.kaspi_test_rc_only() RETURNS trigger"
                " LANGUAGE plpgsql AS $$ BEGIN"
                " IF current_setting('transaction_isolation') <> 'read committed' THEN"
                " RAISE EXCEPTION 'not read committed' USING ERRCODE = '40001'; END IF;"
                " RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER kaspi_test_rc_only BEFORE UPDATE ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {schema}.kaspi_test_rc_only()"
            )
        engine = postgresql.serializable_engine()
        try:
            with sqlalchemy_storage(engine, metadata=postgresql.metadata, outbox=True) as storage:
                outbox = self._outbox(storage)
                ids = _enqueue_due(storage, _DUE + 1)
                (first,) = outbox.claim(now=T0 + HOUR, lease=HOUR, limit=1)
                assert (first.id, first.attempts) == (ids[0], 1)
                assert outbox.database._autocommit_writes is False
                batches: list[list[tuple[str, int]]] = []
                _in_threads(16, lambda _: batches.extend(_claim_until_empty(storage)))
                _check_claimed_once(batches, ids[1:])
                assert outbox.complete(ids[1], attempt=1, now=T0 + HOUR) is True
        finally:
            engine.dispose()
            with postgresql.engine.begin() as connection:
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS kaspi_test_rc_only ON {table}")


_MINUTE = timedelta(minutes=1)
_OUTBOX_STEP = st.one_of(
    st.tuples(st.just("claim"), st.integers(0, 240), st.integers(1, 90), st.integers(1, 4)),
    st.tuples(st.just("complete"), st.integers(0, 4), st.integers(1, 4), st.integers(0, 240)),
    st.tuples(
        st.just("fail"),
        st.integers(0, 4),
        st.integers(1, 4),
        st.integers(0, 240),
        st.none() | st.integers(-60, 120),
        st.sampled_from(["SMTPError", "Refused"]),
    ),
    st.tuples(st.just("retry"), st.integers(0, 4), st.integers(0, 240)),
)


def _outbox_step(outbox: Any, step: tuple[Any, ...]) -> object:
    """Run one generated step on ``outbox``; its answer."""
    name, *args = step
    if name == "claim":
        at, lease, limit = args
        return outbox.claim(now=T0 + at * _MINUTE, lease=lease * _MINUTE, limit=limit)
    key = _letter(args[0]).id
    if name == "complete":
        return outbox.complete(key, attempt=args[1], now=T0 + args[2] * _MINUTE)
    if name == "fail":
        _, attempt, at, retry, error = args
        retry_at = None if retry is None else T0 + (at + retry) * _MINUTE
        return outbox.fail(
            key, attempt=attempt, now=T0 + at * _MINUTE, retry_at=retry_at, error=error
        )
    return outbox.retry(key, now=T0 + args[1] * _MINUTE)


class TestOutboxAgreesWithMemory:
    @given(steps=st.lists(_OUTBOX_STEP, max_size=25))
    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    def test_same_answers_as_the_memory_outbox(
        self, postgresql: Backend, steps: list[tuple[Any, ...]]
    ) -> None:
        """Any sequence of claims and settles: PostgreSQL's one statements answer and store
        what the memory reference's pure transitions do."""
        postgresql.reset()
        reference = memory_storage(outbox=True)
        with sqlalchemy_storage(
            postgresql.engine, metadata=postgresql.metadata, outbox=True
        ) as storage:
            stores = [reference.outbox, storage.outbox]
            for outbox in stores:
                assert outbox is not None
                for index in range(5):
                    outbox.enqueue(_letter(index), now=T0 + index * _TICK)
            for step in steps:
                expected, got = (_outbox_step(outbox, step) for outbox in stores)
                assert got == expected, step
            assert stores[1].list(limit=100) == stores[0].list(limit=100)  # type: ignore[union-attr]
            assert stores[1].database._autocommit_writes is True  # type: ignore[union-attr]


class TestOutboxPutBackFault:
    def test_a_failed_put_back_still_raises_the_corrupt_row(
        self, postgresql: Backend, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The connection drops before the put-back: CorruptRecordError all the same, a
        warning, and the good rows stay leased until the lease ends (then claimed again)."""
        postgresql.reset()
        engine = postgresql.engine_for_tests(pool_size=2, max_overflow=2)
        fault = Fault(postgresql, engine)
        try:
            with sqlalchemy_storage(engine, metadata=postgresql.metadata, outbox=True) as storage:
                outbox = storage.outbox
                assert outbox is not None
                outbox.enqueue(_letter(0), now=T0)
                outbox.enqueue(_letter(1), now=T0 + _TICK)
                _set(postgresql, "outbox", f"payload = '[]' WHERE id = '{_letter(1).id}'")
                fault.arm("UPDATE")
                with pytest.raises(CorruptRecordError), caplog.at_level("WARNING"):
                    outbox.claim(now=T0 + _TICK, lease=HOUR, limit=10)
                assert fault.fired == 1
                assert "were not put back" in caplog.text
                assert outbox.claim(now=T0 + HOUR, lease=HOUR, limit=10) == []
                with pytest.raises(CorruptRecordError):
                    outbox.claim(now=T0 + HOUR + _TICK, lease=HOUR, limit=10)
                (again,) = outbox.claim(now=T0 + HOUR + _TICK, lease=HOUR, limit=1)
                assert (again.id, again.attempts) == (_letter(0).id, 2)
        finally:
            engine.dispose()
