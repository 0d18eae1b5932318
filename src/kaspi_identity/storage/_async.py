"""The asynchronous storage protocols, and the bundle :class:`AsyncIdentityService` takes.

Each protocol has the methods, arguments, results, errors and promises of its synchronous
namesake in :mod:`kaspi_identity.storage` -- only every method is a coroutine. The
contract suite (:mod:`kaspi_identity.testing`) proves an asynchronous store with the same
cases as a synchronous one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, runtime_checkable

from .._errors import StorageError
from ._outbox import OutboxEntry, OutboxMessage, OutboxStatus
from ._protocols import (
    LoginKind,
    Storage,
    check_units,
    distinct_components,
    remap,
)
from ._records import Account, CodeAttempt, Contact, HistoryEntry, NewAccount, RateLimitResult

__all__ = [
    "AsyncAccountStore",
    "AsyncAccountWithHistory",
    "AsyncOneTimeCodeStore",
    "AsyncOutboxStore",
    "AsyncPasswordHistoryStore",
    "AsyncRateLimiter",
    "AsyncStorage",
    "AsyncTokenLedger",
]


class AsyncAccountStore(Protocol):
    """:class:`~kaspi_identity.storage.AccountStore`, with coroutine methods."""

    async def create(self, new: NewAccount, *, now: datetime) -> Account:
        """As :meth:`AccountStore.create`."""
        ...

    async def get(self, account_id: str) -> Account | None:
        """As :meth:`AccountStore.get`."""
        ...

    async def find_by_login(self, kind: LoginKind, value: str) -> Account | None:
        """As :meth:`AccountStore.find_by_login`."""
        ...

    async def set_password_hash(
        self,
        account_id: str,
        *,
        expected: str | None,
        new: str,
        rotate_stamp: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """As :meth:`AccountStore.set_password_hash`."""
        ...

    async def set_email(self, account_id: str, email: str, *, confirmed: bool = False) -> None:
        """As :meth:`AccountStore.set_email`."""
        ...

    async def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
    ) -> Account | None:
        """As :meth:`AccountStore.update_contact`."""
        ...

    async def mark_email_confirmed(self, account_id: str, *, email: str, now: datetime) -> bool:
        """As :meth:`AccountStore.mark_email_confirmed`."""
        ...

    async def reserve_login_attempt(
        self, account_id: str, *, expected_failures: int, now: datetime
    ) -> bool:
        """As :meth:`AccountStore.reserve_login_attempt`."""
        ...

    async def record_login_success(self, account_id: str, *, now: datetime) -> None:
        """As :meth:`AccountStore.record_login_success`."""
        ...

    async def clear_login_failures(self, account_id: str) -> None:
        """As :meth:`AccountStore.clear_login_failures`."""
        ...

    async def set_must_change_password(self, account_id: str, required: bool) -> None:
        """As :meth:`AccountStore.set_must_change_password`."""
        ...

    async def use_grace_login(self, account_id: str, *, expected: int) -> bool:
        """As :meth:`AccountStore.use_grace_login`."""
        ...


class AsyncPasswordHistoryStore(Protocol):
    """:class:`~kaspi_identity.storage.PasswordHistoryStore`, with coroutine methods."""

    async def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """As :meth:`PasswordHistoryStore.append`."""
        ...

    async def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """As :meth:`PasswordHistoryStore.recent`."""
        ...


class AsyncTokenLedger(Protocol):
    """:class:`~kaspi_identity.storage.TokenLedger`, with coroutine methods."""

    async def consume(self, token_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """As :meth:`TokenLedger.consume`."""
        ...


class AsyncOneTimeCodeStore(Protocol):
    """:class:`~kaspi_identity.storage.OneTimeCodeStore`, with coroutine methods."""

    async def put(
        self,
        key: str,
        code_hash: bytes,
        *,
        expires_at: datetime,
        now: datetime,
        failure_window: timedelta,
    ) -> None:
        """As :meth:`OneTimeCodeStore.put`."""
        ...

    async def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        """As :meth:`OneTimeCodeStore.attempt`."""
        ...


class AsyncRateLimiter(Protocol):
    """:class:`~kaspi_identity.storage.RateLimiter`, with a coroutine ``hit``."""

    async def hit(
        self, key: str, *, limit: int, window: timedelta, now: datetime
    ) -> RateLimitResult:
        """As :meth:`RateLimiter.hit`."""
        ...


class AsyncAccountWithHistory(Protocol):
    """:class:`~kaspi_identity.storage.AccountWithHistory`, with coroutine methods."""

    async def create_with_history(
        self,
        new: NewAccount,
        *,
        now: datetime,
        entry: Callable[[Account], HistoryEntry] | None,
        keep: int,
        messages: Callable[[Account], Sequence[OutboxMessage]] | None = None,
    ) -> Account:
        """As :meth:`AccountWithHistory.create_with_history`."""
        ...

    async def replace_password(
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
        """As :meth:`AccountWithHistory.replace_password`."""
        ...

    async def update_contact(
        self,
        account_id: str,
        *,
        expected_stamp: str,
        contact: Contact,
        rotate_stamp: bool = True,
        clear_password: bool = False,
        messages: Sequence[OutboxMessage] = (),
    ) -> Account | None:
        """As :meth:`AccountWithHistory.update_contact`."""
        ...


class AsyncOutboxStore(Protocol):
    """:class:`~kaspi_identity.storage.OutboxStore`, with coroutine methods."""

    async def enqueue(self, message: OutboxMessage, *, now: datetime) -> bool:
        """As :meth:`OutboxStore.enqueue`."""
        ...

    async def claim(self, *, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        """As :meth:`OutboxStore.claim`."""
        ...

    async def complete(self, message_id: str, *, attempt: int, now: datetime) -> bool:
        """As :meth:`OutboxStore.complete`."""
        ...

    async def fail(
        self,
        message_id: str,
        *,
        attempt: int,
        now: datetime,
        retry_at: datetime | None,
        error: str,
    ) -> bool:
        """As :meth:`OutboxStore.fail`."""
        ...

    async def get(self, message_id: str) -> OutboxEntry | None:
        """As :meth:`OutboxStore.get`."""
        ...

    async def list(
        self, *, status: OutboxStatus | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """As :meth:`OutboxStore.list`."""
        ...

    async def retry(self, message_id: str, *, now: datetime) -> bool:
        """As :meth:`OutboxStore.retry`."""
        ...

    async def purge(
        self, *, before: datetime, statuses: tuple[OutboxStatus, ...] = ("sent", "void")
    ) -> int:
        """As :meth:`OutboxStore.purge`."""
        ...


@runtime_checkable
class _AsyncCloseable(Protocol):
    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AsyncStorage:
    """The asynchronous stores the async service needs, bundled.

    :class:`~kaspi_identity.storage.Storage`'s asynchronous twin, taken by
    :class:`~kaspi_identity.services.AsyncIdentityService`.

    :meth:`aclose` (also on leaving an ``async with`` block) awaits ``aclose()`` on each
    distinct component that has one. The factories (``async_memory_storage``,
    ``async_sqlite_storage``, ``async_redis_storage``, ``async_sqlalchemy_storage``) fill
    ``with_history`` where accounts and history share one database, as the synchronous
    ones do.
    """

    accounts: AsyncAccountStore
    history: AsyncPasswordHistoryStore
    ledger: AsyncTokenLedger
    codes: AsyncOneTimeCodeStore
    rate_limits: AsyncRateLimiter
    with_history: AsyncAccountWithHistory | None = None
    outbox: AsyncOutboxStore | None = None

    def __post_init__(self) -> None:
        check_units(self)

    async def aclose(self) -> None:
        """Await ``aclose()`` on every component that has one, each once."""
        for component in distinct_components(self):
            if isinstance(component, _AsyncCloseable):
                await component.aclose()

    async def __aenter__(self) -> AsyncStorage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _bridged(self) -> Storage:
        """The synchronous face the flows call, from inside ``_bridge.run_flow``."""
        from kaspi_identity._bridge import Awaiting

        return remap(self, Awaiting, Storage)


class _WorkerThreads:
    """Runs a store's synchronous calls on a few threads of its own, off the event loop.

    Shared by the components of one bundle; its threads stop when the last component using
    it is closed.
    """

    def __init__(self, workers: int, name: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._users = 0

    async def __call__(self, call: Callable[[], object]) -> object:
        import asyncio

        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, call)
        except RuntimeError:  # the pool was shut down: the bundle is closed
            closed = True
        else:
            closed = False
        if closed:
            # Raised outside the except block, so no RuntimeError rides along as context.
            raise StorageError("the storage is closed")
        return await future

    def use(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._pool.shutdown(wait=False)


def coroutining(
    storage: Storage,
    *,
    threads: int | None = None,
    name: str = "",
    runner: Callable[[Callable[[], object]], Awaitable[object]] | None = None,
) -> AsyncStorage:
    """An :class:`AsyncStorage` over the synchronous ``storage``: one implementation, two faces.

    With ``threads=None`` each call runs right away on the event loop -- right only for
    stores that never block (the memory adapter). With a number, each call runs on that
    many worker threads of the bundle's own (the SQLite adapter: one hop to a thread per
    store operation, a whole transaction on the thread). Closing the bundle closes
    ``storage`` on those threads and stops them. A ``runner`` (instead of ``threads``)
    awaits each call itself: the SQLAlchemy adapter runs it in a greenlet whose database
    I/O the event loop awaits (``sqlalchemy.util.greenlet_spawn``).
    """
    from kaspi_identity._bridge import Coroutining

    if runner is not None and threads is not None:
        raise ValueError("pass threads or runner, not both")
    workers = None if threads is None else _WorkerThreads(threads, name or "kaspi-identity-store")

    def face(component: object) -> Coroutining:
        if workers is not None:
            workers.use()
            return Coroutining(component, workers)
        return Coroutining(component, runner)

    return remap(storage, face, AsyncStorage)
