"""The SQLAlchemy adapter's async face: ``async_sqlalchemy_storage`` on asyncpg and aiosqlite.

The same stores as the synchronous face, so the same proof: the whole contract suite through
``blocking_storage`` (each call a task on one shared event loop; the contract's racing
threads become racing tasks), then what only the async face can get wrong -- tasks racing
on one row, a connection cut half-way, a cancelled call, the SQLite write lock awaited on
the loop -- and the async service end to end. PostgreSQL runs through asyncpg on the server
in ``KASPI_IDENTITY_POSTGRES_URL`` (skipped without it, failed with ``CI=true``), SQLite
through aiosqlite on a file. Each module run works in a fresh schema, as the sync tests do.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import test_storage_sqlalchemy as sync_tests
from kaspi_identity import PasswordHasher, StorageError
from kaspi_identity._bridge import Coroutining
from kaspi_identity.delivery import Outbox, extract_link
from kaspi_identity.hashing import TESTS_ONLY
from kaspi_identity.services import AsyncIdentityService, IdentitySettings
from kaspi_identity.storage import (
    AsyncStorage,
    CodeAttempt,
    HistoryEntry,
    NewAccount,
    Storage,
)
from kaspi_identity.storage.sqlalchemy import (
    SQLAlchemyAccountStore,
    SQLAlchemyAccountWithHistory,
    SQLAlchemyDatabase,
    async_sqlalchemy_storage,
    make_metadata,
    sqlalchemy_storage,
)
from kaspi_identity.testing import (
    AccountWithHistoryContract,
    StorageContract,
    blocking_storage,
    run_on_test_loop,
)
from test_storage_sqlalchemy import (
    _POOL,
    HASH_A,
    HASH_B,
    HOUR,
    PHONE,
    T0,
    USER_COLUMNS,
    Backend,
    BreaksHistory,
    Fault,
)

T = TypeVar("T")
RACERS = 32


def async_url(url: str) -> str:
    """The test server's URL with the async driver: asyncpg, or aiosqlite for a file."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    driver = "asyncpg" if backend == "postgresql" else "aiosqlite"
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


# The sync tests' fixture: each database once per module, a fresh schema or a fresh file.
backend = sync_tests.backend


@pytest.fixture(scope="module")
def async_engine(backend: Backend) -> Iterator[AsyncEngine]:
    """An AsyncEngine on the backend's database (asyncpg or aiosqlite), on the test loop."""
    options: dict[str, Any] = dict(_POOL)
    if backend.name == "sqlite":
        options["connect_args"] = {"timeout": 30.0}
    engine = create_async_engine(async_url(backend.url), **options)
    yield engine
    run_on_test_loop(engine.dispose())


def on_loop(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` on the shared test loop (where the async engine's connections live)."""

    async def run() -> T:
        return await make()

    return run_on_test_loop(run())


def open_storage(engine: AsyncEngine, backend: Backend, **options: Any) -> AsyncStorage:
    """``await async_sqlalchemy_storage(engine, metadata=...)``, on the test loop."""
    return on_loop(lambda: async_sqlalchemy_storage(engine, metadata=backend.metadata, **options))


def selects_one(engine: AsyncEngine) -> bool:
    """Whether the engine still answers a query (a bundle's close leaves it open)."""

    async def query() -> bool:
        async with engine.connect() as connection:
            return (await connection.execute(sa.select(sa.literal(1)))).scalar() == 1

    return on_loop(query)


def target(component: object) -> Any:
    """The synchronous store behind a component of the async bundle."""
    assert isinstance(component, Coroutining)
    return component.target


# -- the contract suite --------------------------------------------------------------------


class TestAsyncStorageBundle(BreaksHistory, StorageContract):
    """Every contract on async_sqlalchemy_storage(async_engine), through blocking_storage."""

    @pytest.fixture
    def storage(self, backend: Backend, async_engine: AsyncEngine) -> Iterator[Storage]:
        backend.reset()
        with blocking_storage(open_storage(async_engine, backend, outbox=True)) as storage:
            yield storage
        assert selects_one(async_engine)


class TestAsyncUsersTable(BreaksHistory, StorageContract):
    """Every contract with the accounts in the host's users table (DateTime, integer ids)."""

    @pytest.fixture
    def storage(self, backend: Backend, async_engine: AsyncEngine) -> Iterator[Storage]:
        backend.reset()
        bundle = open_storage(
            async_engine,
            backend,
            accounts_table=backend.users,
            columns=USER_COLUMNS,
            insert_defaults={"is_active": True},
            outbox=True,
        )
        with blocking_storage(bundle) as storage:
            yield storage


class TestAsyncUsersTableWithHistory(BreaksHistory, AccountWithHistoryContract):
    """The unit of work on the host's users table, made from a URL the factory opens."""

    @pytest.fixture
    def storage(self, backend: Backend) -> Iterator[Storage]:
        backend.reset()
        bundle = on_loop(
            lambda: async_sqlalchemy_storage(
                async_url(backend.url),
                metadata=backend.metadata,
                accounts_table=backend.users,
                columns=USER_COLUMNS,
                insert_defaults={"is_active": True},
                outbox=True,
            )
        )
        with blocking_storage(bundle) as storage:
            yield storage


# -- the factory ----------------------------------------------------------------------------


class TestAsyncFactory:
    def test_with_history_is_set_over_the_bundles_stores(
        self, backend: Backend, async_engine: AsyncEngine
    ) -> None:
        """with_history is the sync unit of work over the very stores the bundle's faces wrap."""
        storage = open_storage(async_engine, backend)
        try:
            together = target(storage.with_history)
            assert isinstance(together, SQLAlchemyAccountWithHistory)
            assert together.accounts is target(storage.accounts)
            assert together.history is target(storage.history)
            database = together.database
            assert database.engine is async_engine.sync_engine
            assert database.backend == backend.name
            assert {id(target(c).database) for c in (storage.ledger, storage.codes)} == {
                id(database)
            }
        finally:
            on_loop(storage.aclose)
        assert selects_one(async_engine)

    def test_create_tables(self, tmp_path: Path) -> None:
        """create_tables=True makes the five tables, on a URL the factory opened and disposes."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'made.sqlite3'}"
        md = make_metadata("made_")
        storage = on_loop(lambda: async_sqlalchemy_storage(url, metadata=md, create_tables=True))
        ledger = target(storage.ledger)
        pool = ledger.database.engine.pool
        assert on_loop(lambda: storage.ledger.consume("tok-1", T0 + HOUR, now=T0)) is True
        assert pool.checkedin() == 1
        on_loop(storage.aclose)
        assert pool.checkedin() == 0
        with sqlite3.connect(tmp_path / "made.sqlite3") as raw:
            names = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
            (mode,) = raw.execute("PRAGMA journal_mode").fetchone()
        assert {t.name for t in md.sorted_tables} <= names
        assert mode == "wal"  # the connect listener ran on the async engine's connections
        with pytest.raises(StorageError, match="closed"):
            on_loop(lambda: storage.ledger.consume("tok-2", T0 + HOUR, now=T0))

    def test_a_sync_engine_is_refused(self, tmp_path: Path) -> None:
        """A synchronous Engine is a TypeError that names sqlalchemy_storage."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'sync.sqlite3'}")
        with pytest.raises(TypeError, match=r"sqlalchemy_storage\(\)"):
            on_loop(lambda: async_sqlalchemy_storage(engine))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="AsyncEngine, URL or str, not int"):
            on_loop(lambda: async_sqlalchemy_storage(7))  # type: ignore[arg-type]
        engine.dispose()

    def test_the_sync_face_refuses_an_async_engine(self, tmp_path: Path) -> None:
        """sqlalchemy_storage and SQLAlchemyDatabase name async_sqlalchemy_storage."""
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'async.sqlite3'}")
        with pytest.raises(TypeError, match=r"async_sqlalchemy_storage\(\)"):
            sqlalchemy_storage(engine)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"async_sqlalchemy_storage\(\)"):
            SQLAlchemyDatabase(engine)  # type: ignore[arg-type]
        on_loop(engine.dispose)

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("not a url", "not a database URL"),
            ("sqlite+aiosqlite://", "needs a file"),
            ("sqlite+aiosqlite:///:memory:", "needs a file"),
            ("mysql+aiomysql://u:pw@localhost/db", "PostgreSQL and SQLite, not mysql"),
            ("sqlite:///{tmp}/sync-driver.sqlite3", "'pysqlite' is not asynchronous"),
        ],
    )
    def test_bad_urls(self, tmp_path: Path, url: str, message: str) -> None:
        """The sync face's ValueErrors, plus one for a driver that is not asynchronous."""
        with pytest.raises(ValueError, match=message) as caught:
            on_loop(lambda: async_sqlalchemy_storage(url.format(tmp=tmp_path)))
        assert "pw" not in str(caught.value)

    def test_bad_arguments_are_the_sync_faces_errors(self, tmp_path: Path) -> None:
        """Bad metadata, a bad users table: the same TypeError and ValueError as sync."""
        url = f"sqlite+aiosqlite:///{tmp_path / 'bad.sqlite3'}"
        with pytest.raises(TypeError, match="metadata must be a sqlalchemy MetaData"):
            on_loop(lambda: async_sqlalchemy_storage(url, metadata="kaspi_"))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="must come from make_metadata"):
            on_loop(lambda: async_sqlalchemy_storage(url, metadata=sa.MetaData()))
        host = sa.MetaData()
        bare = sa.Table("bare", host, sa.Column("id", sa.Integer(), primary_key=True))
        with pytest.raises(ValueError, match="cannot map the account table") as caught:
            on_loop(lambda: async_sqlalchemy_storage(url, accounts_table=bare))
        assert "security_stamp" in str(caught.value)
        with pytest.raises(ValueError, match="columns and insert_defaults need the table"):
            on_loop(lambda: async_sqlalchemy_storage(url, columns={"id": "pk"}))

    def test_calls_check_their_arguments_as_sync_does(
        self, backend: Backend, async_engine: AsyncEngine
    ) -> None:
        """A naive time or a bad key is the sync face's ValueError/TypeError, nothing sent."""
        backend.reset()
        storage = open_storage(async_engine, backend)
        try:
            with pytest.raises(ValueError, match="UTC"):
                on_loop(lambda: storage.ledger.consume("t", T0.replace(tzinfo=None), now=T0))
            with pytest.raises(TypeError):
                on_loop(lambda: storage.history.recent(7, 3))  # type: ignore[arg-type]
        finally:
            on_loop(storage.aclose)


# -- errors ---------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


class TestAsyncErrors:
    def test_closed_storage(self, backend: Backend, async_engine: AsyncEngine) -> None:
        """After aclose() every call raises StorageError; closing twice is fine."""
        storage = open_storage(async_engine, backend)
        on_loop(storage.aclose)
        on_loop(storage.aclose)
        with pytest.raises(StorageError, match="closed"):
            on_loop(lambda: storage.accounts.get("x"))

    def test_database_errors_are_wrapped(self, backend: Backend) -> None:
        """A failing statement is a StorageError with SQLAlchemy's error as cause, no secret."""
        md = make_metadata("broken_async_", schema=backend.metadata.schema)
        md.create_all(backend.engine)
        try:
            storage = on_loop(lambda: async_sqlalchemy_storage(async_url(backend.url), metadata=md))
            tokens = next(t for t in md.sorted_tables if t.name.endswith("consumed_tokens"))
            tokens.drop(backend.engine)
            with pytest.raises(StorageError) as caught:
                on_loop(lambda: storage.ledger.consume("tok-secret", T0 + HOUR, now=T0))
            assert isinstance(caught.value.__cause__, sa.exc.DBAPIError)
            assert not any("tok-secret" in str(exc) for exc in _chain(caught.value))
            assert on_loop(lambda: storage.rate_limits.hit("ip", limit=1, window=HOUR, now=T0))
            on_loop(storage.aclose)
        finally:
            md.drop_all(backend.engine)

    def test_unreachable_server(self) -> None:
        """A server that does not answer: StorageError, no password anywhere in the chain."""
        url = "postgresql+asyncpg://kaspi:s3cret@127.0.0.1:1/none"
        storage = on_loop(lambda: async_sqlalchemy_storage(url))
        with pytest.raises(StorageError) as caught:
            on_loop(lambda: storage.ledger.consume("tok-1", T0 + HOUR, now=T0))
        assert isinstance(caught.value.__cause__, OSError)  # asyncpg raises it as it is
        assert not any("s3cret" in str(exc) for exc in _chain(caught.value))
        assert "tok-1" not in str(caught.value)
        on_loop(storage.aclose)

    def test_locked_sqlite_times_out_with_storage_error(self, tmp_path: Path) -> None:
        """Another process holding SQLite's write lock past the timeout gives StorageError."""
        path = tmp_path / "locked.sqlite3"
        made = on_loop(
            lambda: async_sqlalchemy_storage(f"sqlite+aiosqlite:///{path}", create_tables=True)
        )
        on_loop(made.aclose)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
        storage = on_loop(lambda: async_sqlalchemy_storage(engine))
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageError, match="locked"):
                on_loop(lambda: storage.ledger.consume("tok-1", T0 + HOUR, now=T0))
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        assert on_loop(lambda: storage.ledger.consume("tok-1", T0 + HOUR, now=T0)) is True
        on_loop(storage.aclose)
        on_loop(engine.dispose)


# -- the SQLite write lock on the loop ------------------------------------------------------


class TestSqliteWriteLockOnTheLoop:
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[AsyncStorage]:
        url = f"sqlite+aiosqlite:///{tmp_path / 'lock.sqlite3'}"
        storage = on_loop(lambda: async_sqlalchemy_storage(url, create_tables=True))
        yield storage
        on_loop(storage.aclose)

    def test_a_queued_writer_lets_the_loop_run(self, storage: AsyncStorage) -> None:
        """While a write waits for the in-process lock, other tasks (the holder's) go on."""
        lock = target(storage.ledger).database._write_lock._lock

        async def scenario() -> list[str]:
            order: list[str] = []
            await lock.acquire()
            writer = asyncio.create_task(storage.ledger.consume("tok", T0 + HOUR, now=T0))
            for _ in range(5):
                await asyncio.sleep(0.01)  # the loop runs: the writer waits, not the thread
                order.append("tick")
            assert not writer.done()
            lock.release()
            assert await writer is True
            order.append("written")
            return order

        assert on_loop(scenario) == ["tick"] * 5 + ["written"]

    def test_the_wait_is_bounded(
        self, storage: AsyncStorage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A writer queued behind a stuck one gives up with StorageError, as on the sync face."""
        from kaspi_identity.storage import sqlalchemy as module

        monkeypatch.setattr(module, "_SQLITE_LOCK_WAIT", 0.05)
        lock = target(storage.ledger).database._write_lock._lock
        on_loop(lock.acquire)
        try:
            with pytest.raises(StorageError, match="no write lock within"):
                on_loop(lambda: storage.rate_limits.hit("k", limit=1, window=HOUR, now=T0))
        finally:
            lock.release()
        assert on_loop(lambda: storage.rate_limits.hit("k", limit=1, window=HOUR, now=T0)).allowed

    def test_a_cancelled_waiter_leaves_the_lock_free(self, storage: AsyncStorage) -> None:
        """Cancelling a task queued for the write lock neither takes nor leaks the lock."""
        lock = target(storage.ledger).database._write_lock._lock

        async def scenario() -> bool:
            await lock.acquire()
            writer = asyncio.create_task(storage.ledger.consume("tok", T0 + HOUR, now=T0))
            await asyncio.sleep(0.01)
            writer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await writer
            lock.release()
            return await storage.ledger.consume("tok", T0 + HOUR, now=T0)

        assert on_loop(scenario) is True
        assert not lock.locked()


# -- tasks racing on one row ----------------------------------------------------------------


@pytest.fixture
def racing(backend: Backend, async_engine: AsyncEngine) -> Iterator[AsyncStorage]:
    """A native async bundle on the backend, emptied first."""
    backend.reset()
    storage = open_storage(async_engine, backend)
    yield storage
    on_loop(storage.aclose)


async def _race(make: Callable[[int], Awaitable[T]], racers: int = RACERS) -> list[T]:
    return list(await asyncio.gather(*(make(i) for i in range(racers))))


class TestTasksRacing:
    """32 tasks on one loop, one row: every compare-and-set is won exactly once."""

    def test_password_compare_and_set(self, racing: AsyncStorage) -> None:
        """set_password_hash from one expected hash: one True, and the winner's hash stored."""

        async def scenario() -> None:
            account = await racing.accounts.create(
                NewAccount(username="aliya", password_hash=HASH_A), now=T0
            )
            new = [f"$argon2id$racer-{i}" for i in range(RACERS)]
            won = await _race(
                lambda i: racing.accounts.set_password_hash(account.id, expected=HASH_A, new=new[i])
            )
            assert won.count(True) == 1
            stored = await racing.accounts.get(account.id)
            assert stored is not None
            assert stored.password_hash == new[won.index(True)]

        on_loop(scenario)

    def test_log_in_reservations(self, racing: AsyncStorage) -> None:
        """Each task reads the count and reserves until it wins: 0..31 won once each."""

        async def scenario() -> None:
            account = await racing.accounts.create(NewAccount(username="aliya"), now=T0)

            async def reserve(i: int) -> int:
                while True:
                    seen = await racing.accounts.get(account.id)
                    assert seen is not None
                    count = seen.failed_logins
                    if await racing.accounts.reserve_login_attempt(
                        account.id, expected_failures=count, now=T0
                    ):
                        return count

            assert sorted(await _race(reserve)) == list(range(RACERS))
            stored = await racing.accounts.get(account.id)
            assert stored is not None
            assert stored.failed_logins == RACERS

        on_loop(scenario)

    def test_token_consume(self, racing: AsyncStorage) -> None:
        """One token id consumed by 32 tasks: exactly one True."""

        async def scenario() -> list[bool]:
            return await _race(lambda _: racing.ledger.consume("tok", T0 + HOUR, now=T0))

        assert on_loop(scenario).count(True) == 1

    def test_right_code(self, racing: AsyncStorage) -> None:
        """32 tasks presenting the right code: accepted once, the rest find it gone."""

        async def scenario() -> list[CodeAttempt]:
            await racing.codes.put(
                PHONE, b"right", expires_at=T0 + HOUR, now=T0, failure_window=HOUR
            )
            return await _race(
                lambda _: racing.codes.attempt(PHONE, [b"right"], now=T0, max_attempts=50)
            )

        outcomes = on_loop(scenario)
        assert outcomes.count(CodeAttempt.OK) == 1
        assert outcomes.count(CodeAttempt.MISSING) == RACERS - 1

    def test_rate_limit(self, racing: AsyncStorage) -> None:
        """32 hits on a limit of 5, all at once: exactly 5 allowed."""

        async def scenario() -> int:
            results = await _race(
                lambda _: racing.rate_limits.hit("ip", limit=5, window=HOUR, now=T0)
            )
            return sum(result.allowed for result in results)

        assert on_loop(scenario) == 5

    def test_replace_password_with_history(self, racing: AsyncStorage, backend: Backend) -> None:
        """with_history.replace_password raced: one True, one new entry -- the winner's."""
        together = racing.with_history
        assert together is not None

        async def scenario() -> None:
            account = await racing.accounts.create(
                NewAccount(username="aliya", password_hash=HASH_A), now=T0
            )
            entries = [
                HistoryEntry(password_hash=f"$argon2id$r{i}", fingerprint=b"f", created_at=T0)
                for i in range(RACERS)
            ]
            won = await _race(
                lambda i: together.replace_password(
                    account.id,
                    expected=HASH_A,
                    new=entries[i].password_hash,
                    entry=entries[i],
                    keep=RACERS,
                )
            )
            assert won.count(True) == 1
            winner = entries[won.index(True)]
            assert await racing.history.recent(account.id, 100) == [winner]
            stored = await racing.accounts.get(account.id)
            assert stored is not None
            assert stored.password_hash == winner.password_hash

        on_loop(scenario)


# -- faults ---------------------------------------------------------------------------------


class TestAsyncFaults(sync_tests.TestFaults):
    """The sync face's fault tests, cutting asyncpg and aiosqlite connections half-way.

    Each test calls the async bundle through ``blocking_storage``; the Fault listens on the
    async engine's ``sync_engine``, whose events fire for its connections.
    """

    @pytest.fixture
    def faulty(self, backend: Backend) -> Iterator[tuple[Storage, Fault]]:
        options: dict[str, Any] = {"pool_size": 2, "max_overflow": 2, "hide_parameters": True}
        if backend.name == "sqlite":
            options["connect_args"] = {"timeout": 30.0}
        engine = create_async_engine(async_url(backend.url), **options)
        fault = Fault(backend, engine.sync_engine)
        bundle = on_loop(lambda: async_sqlalchemy_storage(engine, metadata=backend.metadata))
        with blocking_storage(bundle) as storage:
            yield storage, fault
        on_loop(engine.dispose)


class TestCancellation:
    def test_a_cancelled_replace_password_writes_nothing(
        self, backend: Backend, async_engine: AsyncEngine, racing: AsyncStorage
    ) -> None:
        """A task cancelled while its UPDATE waits for a row lock: nothing written, pool fine."""
        if backend.name != "postgresql":
            pytest.skip("row locks held by another connection: PostgreSQL")
        together = racing.with_history
        assert together is not None
        entry = HistoryEntry(password_hash=HASH_B, fingerprint=b"new", created_at=T0)
        accounts = cast(SQLAlchemyAccountStore, target(racing.accounts)).table

        async def scenario() -> None:
            account = await racing.accounts.create(
                NewAccount(username="aliya", password_hash=HASH_A), now=T0
            )
            async with async_engine.connect() as blocker:
                await blocker.begin()
                locked = sa.select(accounts.c.id).where(accounts.c.id == account.id)
                await blocker.execute(locked.with_for_update())
                task = asyncio.create_task(
                    together.replace_password(
                        account.id, expected=HASH_A, new=HASH_B, entry=entry, keep=6
                    )
                )
                for _ in range(200):  # until its UPDATE waits for the row lock
                    waiting = await blocker.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                    )
                    if waiting.scalar():
                        break
                    await asyncio.sleep(0.01)
                else:
                    pytest.fail("the UPDATE never waited for the row lock")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await blocker.rollback()
            assert await racing.accounts.get(account.id) == account
            assert await racing.history.recent(account.id, 10) == []
            assert await together.replace_password(
                account.id, expected=HASH_A, new=HASH_B, entry=entry, keep=6
            )
            assert await racing.history.recent(account.id, 10) == [entry]

        on_loop(scenario)


# -- the async service, end to end ----------------------------------------------------------


class TestAsyncServiceEndToEnd:
    def test_register_confirm_authenticate(
        self, backend: Backend, async_engine: AsyncEngine
    ) -> None:
        """AsyncIdentityService on the async storage: register, confirm by link, log in."""
        backend.reset()
        settings = IdentitySettings(
            secret_keys=(b"k" * 32,),
            confirm_url="https://portal.example.kz/confirm",
            reset_url="https://portal.example.kz/reset",
            site_name="portal.example.kz",
        )
        password = "Tr0ub4dor&3x-Steppe"

        async def scenario() -> None:
            storage = await async_sqlalchemy_storage(async_engine, metadata=backend.metadata)
            async with storage:
                outbox = Outbox()
                service = AsyncIdentityService(
                    storage, settings, email_sender=outbox, hasher=PasswordHasher(TESTS_ONLY)
                )
                emails = [f"user{i}@example.kz" for i in range(4)]
                registered = await asyncio.gather(
                    *(
                        service.register(
                            email=email,
                            password=password,
                            confirmation=password,
                            client_key=f"198.51.100.{i}",
                        )
                        for i, email in enumerate(emails)
                    )
                )
                assert all(result.ok for result in registered)
                email = emails[0]
                before = await service.authenticate(email, password, client_key="198.51.100.9")
                link = extract_link(outbox.last_email(to=email))
                token = parse_qs(urlsplit(link).query)["token"][0]
                account_id = await service.confirm_email(token)
                account = await storage.accounts.get(account_id)
                assert account is not None
                assert account.email == email
                assert account.email_confirmed
                login = await service.authenticate(email, password, client_key="198.51.100.9")
                assert login.ok, (before, login)
                wrong = await service.authenticate(email, "not-it", client_key="198.51.100.9")
                assert not wrong.ok
                after = await storage.accounts.get(account_id)
                assert after is not None
                assert after.last_login_at is not None
                assert after.failed_logins == 1
                assert len(await storage.history.recent(account_id, 10)) <= 1

        on_loop(scenario)
