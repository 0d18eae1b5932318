"""Storage operations per second: each adapter, 1 and 16 clients, next to redis-benchmark.

Three operations the services run on every request that touches recovery, each through the
protocol on a :class:`~kaspi_identity.storage.Storage`:

* **consume** -- ``TokenLedger.consume`` of a fresh token id (the insert that makes a link
  single-use);
* **code-verify** -- ``OneTimeCodeStore.attempt`` with a wrong code against a live code (the
  increment-then-compare; ``max_attempts`` is huge so the code never burns);
* **rate-limit hit** -- ``RateLimiter.hit`` on a key whose limit is never reached.

Each cell runs the operation for a fixed time in 1 or 16 threads (each thread its own keys,
so the figure is throughput, not contention on one row) and reports operations per second.
Backends are a list of :class:`Backend` (name + a function that opens a fresh ``Storage``):
memory, SQLite (``synchronous`` FULL and NORMAL), SQLite through SQLAlchemy, Redis when
``KASPI_IDENTITY_REDIS_URL`` (or ``--redis-url``) is set, and PostgreSQL (SQLAlchemy and
psycopg 3, a fresh schema per cell) when ``KASPI_IDENTITY_POSTGRES_URL`` (or
``--postgres-url``) is set. Another adapter adds one entry in :func:`default_backends`.

A Redis Cluster row is added when ``KASPI_IDENTITY_REDIS_CLUSTER_URL`` (or
``--redis-cluster-url``) is set (``redis.cluster.RedisCluster``; the threads' keys spread
over the masters).

As the ceiling, ``redis-benchmark -t set,incr -q -n N`` runs against the same server with 1,
16 and its default 50 clients, and the Redis rows are given as a fraction of it. It writes
its two fixed keys (``key:__rand_int__``, ``counter:__rand_int__``); they are deleted after.

Last, **round trips per operation** for every protocol operation of the stores Redis and
PostgreSQL keep: the ledger, codes, rate limits, history and outbox everywhere; on
PostgreSQL also every account-store operation and ``with_history``'s password change,
registration and contact change with its letter (Redis keeps no accounts). On Redis
the replies the client waits for (a counting connection class), on PostgreSQL the times
the client speaks after the server has (a counting TCP relay between the driver and the
server, so BEGIN and COMMIT count as what they are). Each operation runs 50 times
after a warm-up (connections and script cache); the SQLAlchemy stores' sweep of expired
rows (one statement every 256 writes of a store) is amortised into the figure.

Then, on PostgreSQL, history appends per second through the function against the
statements of a deployment without it, and the writes that are one statement (a
``with_history`` password change, ``create``, ``set_email``, ``update_contact``) per second
against the transaction each replaced (cells alternating).

Run: ``python benchmarks/bench_storage.py [--quick] [--redis-url URL]`` (about 1 minute;
``--quick`` about 20 s). Start the server with ``eval "$(scripts/test-servers start)"``.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from kaspi_identity.storage import Storage
from kaspi_identity.storage.memory import MemoryAccountStore, memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage

REDIS_ENV = "KASPI_IDENTITY_REDIS_URL"
REDIS_CLUSTER_ENV = "KASPI_IDENTITY_REDIS_CLUSTER_URL"
POSTGRES_ENV = "KASPI_IDENTITY_POSTGRES_URL"
CLIENTS = (1, 16)
_CODE = b"\x01" * 32
_WRONG = b"\x02" * 32
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Backend:
    """A named way to open a fresh, empty :class:`Storage` for one measurement.

    ``open`` is a context manager factory: it yields the storage and cleans up afterwards
    (closes it, deletes files or keys). ``unavailable`` says why the backend is skipped.
    """

    name: str
    open: Callable[[], AbstractContextManager[Storage]]
    unavailable: str | None = None


@contextmanager
def _memory() -> Iterator[Storage]:
    with memory_storage() as storage:
        yield storage


def sqlite_backend(synchronous: Literal["FULL", "NORMAL"]) -> Backend:
    """SQLite in a temporary directory, with ``synchronous`` FULL (default) or NORMAL."""

    @contextmanager
    def open_sqlite() -> Iterator[Storage]:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "bench.sqlite3"
            with sqlite_storage(path, synchronous=synchronous) as storage:
                yield storage

    return Backend(f"SQLite ({synchronous})", open_sqlite)


def redis_backend(url: str | None, *, pipelining: bool = False) -> Backend:
    """Redis through ``kaspi_identity.storage.redis`` under a random prefix, deleted after.

    ``pipelining``: the bundle's pipelining face (concurrent callers share round trips).
    """
    name = "Redis, pipelining" if pipelining else "Redis"
    if not url:
        return Backend(name, _memory, f"n/a: set {REDIS_ENV} or --redis-url")
    try:
        import redis

        from kaspi_identity.storage.redis import redis_storage
    except ImportError as exc:
        return Backend(name, _memory, f"n/a: {exc}")

    @contextmanager
    def open_redis() -> Iterator[Storage]:
        client = redis.Redis.from_url(url)
        prefix = f"kaspi-bench:{uuid.uuid4().hex}:"
        try:
            with redis_storage(
                client, accounts=MemoryAccountStore(), prefix=prefix, pipelining=pipelining
            ) as storage:
                yield storage
        finally:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.close()

    try:
        probe = redis.Redis.from_url(url, socket_connect_timeout=2)
        probe.ping()
        probe.close()
    except redis.exceptions.RedisError as exc:
        return Backend(name, open_redis, f"n/a: {type(exc).__name__} at {_address(url)}")
    return Backend(name, open_redis)


def redis_cluster_backend(url: str | None) -> Backend:
    """A Redis Cluster through ``redis.cluster.RedisCluster``, under a random prefix."""
    if not url:
        return Backend("Redis Cluster", _memory, f"n/a: set {REDIS_CLUSTER_ENV}")
    try:
        from redis.cluster import RedisCluster

        from kaspi_identity.storage.redis import redis_storage
    except ImportError as exc:
        return Backend("Redis Cluster", _memory, f"n/a: {exc}")

    @contextmanager
    def open_cluster() -> Iterator[Storage]:
        client = RedisCluster.from_url(url)
        prefix = f"kaspi-bench:{uuid.uuid4().hex}:"
        try:
            with redis_storage(client, accounts=MemoryAccountStore(), prefix=prefix) as storage:
                yield storage
        finally:
            for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
                client.delete(key)
            client.close()

    try:
        probe = RedisCluster.from_url(url, socket_connect_timeout=2)
        probe.ping()
        probe.close()
    except Exception as exc:
        return Backend("Redis Cluster", open_cluster, f"n/a: {type(exc).__name__}")
    return Backend("Redis Cluster", open_cluster)


def sqlalchemy_sqlite_backend() -> Backend:
    """SQLite through ``kaspi_identity.storage.sqlalchemy`` (its own engine: WAL, FULL)."""
    try:
        from kaspi_identity.storage.sqlalchemy import sqlalchemy_storage
    except ImportError as exc:
        return Backend("SQLAlchemy SQLite", _memory, f"n/a: {exc}")

    @contextmanager
    def open_sqlalchemy_sqlite() -> Iterator[Storage]:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{Path(directory) / 'bench.sqlite3'}"
            with sqlalchemy_storage(url, create_tables=True) as storage:
                yield storage

    return Backend("SQLAlchemy SQLite", open_sqlalchemy_sqlite)


def postgresql_backend(url: str | None, *, outbox: bool = False) -> Backend:
    """PostgreSQL through ``kaspi_identity.storage.sqlalchemy``, in a fresh schema dropped after.

    ``outbox``: the bundle has the outbox too.
    """
    if not url:
        return Backend("PostgreSQL", _memory, f"n/a: set {POSTGRES_ENV} or --postgres-url")
    try:
        import sqlalchemy as sa

        from kaspi_identity.storage.sqlalchemy import make_metadata, sqlalchemy_storage
    except ImportError as exc:
        return Backend("PostgreSQL", _memory, f"n/a: {exc}")

    @contextmanager
    def open_postgresql() -> Iterator[Storage]:
        schema = f"kaspi_bench_{uuid.uuid4().hex[:12]}"
        # One pooled connection per client, as an app server would size its pool.
        engine = sa.create_engine(url, pool_size=max(CLIENTS), hide_parameters=True)
        try:
            with engine.begin() as connection:
                connection.execute(sa.schema.CreateSchema(schema))
            tables = make_metadata(schema=schema)
            with sqlalchemy_storage(
                engine, metadata=tables, create_tables=True, outbox=outbox
            ) as storage:
                yield storage
        finally:
            with engine.begin() as connection:
                connection.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
            engine.dispose()

    try:
        probe = sa.create_engine(url)
        with probe.connect():
            pass
        probe.dispose()
    except sa.exc.SQLAlchemyError as exc:
        return Backend("PostgreSQL", open_postgresql, f"n/a: {type(exc).__name__}")
    return Backend("PostgreSQL", open_postgresql)


def default_backends(
    redis_url: str | None, postgres_url: str | None = None, cluster_url: str | None = None
) -> list[Backend]:
    """The backends measured, in table order. Add another adapter's :class:`Backend` here."""
    return [
        Backend("memory", _memory),
        sqlite_backend("FULL"),
        sqlite_backend("NORMAL"),
        sqlalchemy_sqlite_backend(),
        redis_backend(redis_url),
        redis_backend(redis_url, pipelining=True),
        redis_cluster_backend(cluster_url),
        postgresql_backend(postgres_url),
    ]


# -- the operations ------------------------------------------------------------------------

#: Given the storage, a thread number and the clock, return the call to repeat.
Operation = Callable[[Storage, int, datetime], Callable[[], object]]


def consume(storage: Storage, thread: int, now: datetime) -> Callable[[], object]:
    """A fresh token id per call: every consume inserts."""
    counter = iter(range(sys.maxsize))
    expires = now + _HOUR

    def run() -> object:
        return storage.ledger.consume(f"t{thread}-{next(counter)}", expires, now=now)

    return run


def code_verify(storage: Storage, thread: int, now: datetime) -> Callable[[], object]:
    """A wrong code against a live one: increment, compare, write back."""
    key = f"+7701{thread:07d}"
    storage.codes.put(key, _CODE, expires_at=now + _HOUR, now=now, failure_window=_HOUR)

    def run() -> object:
        return storage.codes.attempt(key, [_WRONG], now=now, max_attempts=2**40)

    return run


def rate_limit_hit(storage: Storage, thread: int, now: datetime) -> Callable[[], object]:
    """A hit counted in an open window, far below its limit."""
    key = f"ip:{thread}"

    def run() -> object:
        return storage.rate_limits.hit(key, limit=2**40, window=_HOUR, now=now)

    return run


OPERATIONS: tuple[tuple[str, Operation], ...] = (
    ("consume", consume),
    ("code-verify", code_verify),
    ("rate-limit hit", rate_limit_hit),
)


def ops_per_second(storage: Storage, operation: Operation, clients: int, seconds: float) -> float:
    """Run ``operation`` in ``clients`` threads for ``seconds``; return total calls per second."""
    now = datetime.now(timezone.utc)
    calls = [operation(storage, thread, now) for thread in range(clients)]
    for call in calls:
        call()  # connect and warm up outside the clock
    counts = [0] * clients
    barrier = threading.Barrier(clients + 1)
    stop = threading.Event()

    def worker(index: int) -> None:
        call = calls[index]
        barrier.wait()
        done = 0
        while not stop.is_set():
            call()
            done += 1
        counts[index] = done

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def measure(backend: Backend, seconds: float) -> dict[tuple[str, int], float]:
    """Every operation at every client count on fresh storage: ``{(operation, clients): ops/s}``."""
    results: dict[tuple[str, int], float] = {}
    for name, operation in OPERATIONS:
        for clients in CLIENTS:
            with backend.open() as storage:
                results[name, clients] = ops_per_second(storage, operation, clients, seconds)
    return results


# -- redis-benchmark -----------------------------------------------------------------------

_RPS = re.compile(r"([A-Z]+): ([0-9.]+) requests per second")


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def redis_benchmark(url: str, clients: int | None, requests: int) -> dict[str, float]:
    """Run ``redis-benchmark -t set,incr -q``; return ``{"SET": rps, "INCR": rps}``."""
    host, port = _address(url).rsplit(":", 1)
    db = urlsplit(url).path.strip("/") or "0"
    command = ["redis-benchmark", "-h", host, "-p", port, "--dbnum", db]
    command += ["-t", "set,incr", "-q", "-n", str(requests)]
    if clients is not None:
        command += ["-c", str(clients)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return {name: float(rps) for name, rps in _RPS.findall(output.stdout.replace("\r", "\n"))}


def _cleanup_redis_benchmark(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.delete("key:__rand_int__", "counter:__rand_int__")
    client.close()


# -- round trips per operation ------------------------------------------------------------

_RT_CALLS = 50
_RT_ENTRY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"


#: What an operation returns on a bundle without it (Redis keeps no accounts).
_UNSUPPORTED = object()


def _rt_operations(now: datetime) -> tuple[tuple[str, Callable[[Storage, int], object]], ...]:
    """Every protocol operation, each a call ``(storage, i)`` (``i`` from -3: the warm-up).

    The stores Redis keeps, the account store's operations and the ``with_history`` units
    of work where the bundle keeps accounts, and the outbox's. An operation that needs
    state (an account, claimed messages) makes it on its first warm-up call.
    """
    from dataclasses import replace

    from kaspi_identity.storage import Account, HistoryEntry, NewAccount, OutboxMessage

    def entry(i: int) -> HistoryEntry:
        return HistoryEntry(password_hash=f"{_RT_ENTRY_HASH}{i}", fingerprint=b"f", created_at=now)

    def keeps_accounts(st: Storage) -> bool:
        return not isinstance(st.accounts, MemoryAccountStore)

    made: dict[tuple[int, str], Account] = {}  # (id(storage), operation) -> its account

    def account(st: Storage, operation: str) -> Account:
        key = (id(st), operation)
        if key not in made:
            tag = uuid.uuid4().hex
            new = NewAccount(
                username=f"rt-{tag}",
                email=f"rt-{tag}@example.kz",
                password_hash=entry(-4).password_hash,
            )
            made[key] = st.accounts.create(new, now=now)
        return made[key]

    def on_accounts(
        operation: str, call: Callable[[Storage, Account, int], object]
    ) -> tuple[str, Callable[[Storage, int], object]]:
        def run(st: Storage, i: int) -> object:
            if not keeps_accounts(st):
                return _UNSUPPORTED
            return call(st, account(st, operation), i)

        return operation, run

    def create(st: Storage, _: Account, i: int) -> object:
        tag = uuid.uuid4().hex
        new = NewAccount(
            username=f"rt-{tag}", email=f"rt-{tag}@example.kz", password_hash=entry(i).password_hash
        )
        return st.accounts.create(new, now=now)

    def set_hash(st: Storage, acct: Account, i: int) -> object:
        return st.accounts.set_password_hash(
            acct.id, expected=entry(i - 1).password_hash, new=entry(i).password_hash
        )

    def update_contact(st: Storage, acct: Account, i: int, *, letters: int = 0) -> object:
        key = (id(st), "update contact" if not letters else "contact + letter")
        current = made[key]
        contact = replace(current.contact, email=f"rt-{uuid.uuid4().hex}@example.kz")
        if letters:
            if st.with_history is None or st.outbox is None:
                return _UNSUPPORTED
            changed = st.with_history.update_contact(
                current.id,
                expected_stamp=current.security_stamp,
                contact=contact,
                messages=[message() for _ in range(letters)],
            )
        else:
            changed = st.accounts.update_contact(
                current.id, expected_stamp=current.security_stamp, contact=contact
            )
        assert changed is not None
        made[key] = changed
        return changed

    changing: dict[int, str] = {}  # id(storage) -> the account whose password changes

    def change_password(st: Storage, i: int) -> object:
        if st.with_history is None:
            return _UNSUPPORTED
        if id(st) not in changing:
            new = NewAccount(
                username=f"rt-{uuid.uuid4().hex}", password_hash=entry(i - 1).password_hash
            )
            changing[id(st)] = st.accounts.create(new, now=now).id
        return st.with_history.replace_password(
            changing[id(st)],
            expected=entry(i - 1).password_hash,
            new=entry(i).password_hash,
            entry=entry(i),
            keep=6,
        )

    def register(st: Storage, i: int) -> object:
        if st.with_history is None:
            return _UNSUPPORTED
        new = NewAccount(username=f"rt-{uuid.uuid4().hex}", password_hash=entry(i).password_hash)
        return st.with_history.create_with_history(new, now=now, entry=lambda _: entry(i), keep=6)

    def message() -> OutboxMessage:
        return OutboxMessage(
            id=uuid.uuid4().hex,
            channel="email",
            kind="password_reset",
            to="rt@example.kz",
            language="en",
            payload="{}",
            created_at=now - _HOUR,
        )

    # Per storage: the ids enqueued and claimed for each settling operation to use up.
    leased: dict[tuple[int, str], list[str]] = {}

    def on_outbox(
        operation: str, call: Callable[[Storage, int], object], *, claimed: bool = False
    ) -> tuple[str, Callable[[Storage, int], object]]:
        def run(st: Storage, i: int) -> object:
            if st.outbox is None:
                return _UNSUPPORTED
            key = (id(st), operation)
            if claimed and key not in leased:
                # Enqueued and leased before the figure is counted; the lease is long,
                # so no other operation's claim takes them.
                for _ in range(_RT_CALLS + 3):
                    st.outbox.enqueue(message(), now=now - 2 * _HOUR)
                taken = st.outbox.claim(now=now - _HOUR, lease=100 * _HOUR, limit=_RT_CALLS + 3)
                leased[key] = [e.message.id for e in taken]
            return call(st, i)

        return operation, run

    def settle(operation: str) -> Callable[[Storage, int], object]:
        def run(st: Storage, i: int) -> object:
            assert st.outbox is not None
            key = leased[(id(st), operation)][i + 3]
            if operation == "outbox complete":
                return st.outbox.complete(key, attempt=1, now=now)
            return st.outbox.fail(key, attempt=1, now=now, retry_at=None, error="Refused")

        return run

    dead: dict[int, list[str]] = {}

    def retry(st: Storage, i: int) -> object:
        assert st.outbox is not None
        if id(st) not in dead:
            dead[id(st)] = [
                e.message.id for e in st.outbox.list(status="dead", limit=_RT_CALLS + 3)
            ]
        return st.outbox.retry(dead[id(st)][i + 3], now=now)

    filled: set[int] = set()

    def claim(st: Storage, i: int) -> object:
        assert st.outbox is not None
        if id(st) not in filled:  # one due message for each call
            for _ in range(_RT_CALLS + 3):
                st.outbox.enqueue(message(), now=now - 2 * _HOUR)
            filled.add(id(st))
        return st.outbox.claim(now=now - _HOUR, lease=100 * _HOUR, limit=1)

    def outbox_of(st: Storage) -> Any:
        return st.outbox

    return (
        ("consume", lambda st, i: st.ledger.consume(f"rt-{i}", now + _HOUR, now=now)),
        (
            "code put",
            lambda st, i: st.codes.put(
                f"+7702{i:07d}", _CODE, expires_at=now + _HOUR, now=now, failure_window=_HOUR
            ),
        ),
        (
            "code attempt",
            lambda st, i: st.codes.attempt("+77020000000", [_WRONG], now=now, max_attempts=2**40),
        ),
        (
            "rate-limit hit",
            lambda st, i: st.rate_limits.hit("ip:rt", limit=2**40, window=_HOUR, now=now),
        ),
        ("history append", lambda st, i: st.history.append("acct-rt", entry(i), keep=6)),
        ("history read", lambda st, i: st.history.recent("acct-rt", 6)),
        on_accounts("account create", create),
        on_accounts("account get", lambda st, a, i: st.accounts.get(a.id)),
        on_accounts(
            "find by login",
            lambda st, a, i: st.accounts.find_by_login("username", a.username or ""),
        ),
        on_accounts("set password hash", set_hash),
        on_accounts(
            "set email", lambda st, a, i: st.accounts.set_email(a.id, f"rt-{i}-{a.id}@example.kz")
        ),
        on_accounts("update contact", update_contact),
        on_accounts(
            "mark e-mail confirmed",
            lambda st, a, i: st.accounts.mark_email_confirmed(a.id, email=a.email or "", now=now),
        ),
        on_accounts(
            "reserve log-in",
            lambda st, a, i: st.accounts.reserve_login_attempt(
                a.id, expected_failures=i + 3, now=now
            ),
        ),
        on_accounts(
            "record log-in", lambda st, a, i: st.accounts.record_login_success(a.id, now=now)
        ),
        on_accounts("clear failures", lambda st, a, i: st.accounts.clear_login_failures(a.id)),
        on_accounts(
            "set must-change",
            lambda st, a, i: st.accounts.set_must_change_password(a.id, i % 2 == 0),
        ),
        on_accounts(
            "use grace log-in", lambda st, a, i: st.accounts.use_grace_login(a.id, expected=i + 3)
        ),
        ("password change", change_password),
        ("register", register),
        on_accounts("contact + letter", lambda st, a, i: update_contact(st, a, i, letters=1)),
        on_outbox("outbox enqueue", lambda st, i: outbox_of(st).enqueue(message(), now=now)),
        on_outbox("outbox claim", claim),
        on_outbox("outbox complete", settle("outbox complete"), claimed=True),
        on_outbox("outbox fail", settle("outbox fail"), claimed=True),
        on_outbox("outbox retry", retry),
        on_outbox("outbox get", lambda st, i: outbox_of(st).get(uuid.uuid4().hex)),
        on_outbox("outbox list", lambda st, i: outbox_of(st).list(limit=10)),
        on_outbox("outbox purge", lambda st, i: outbox_of(st).purge(before=now - 1000 * _HOUR)),
    )


def _per_call(storage: Storage, count: Callable[[], int], reset: Callable[[], None]) -> list[float]:
    """Round trips per call of each operation (after a warm-up of three calls each)."""
    now = datetime.now(timezone.utc)
    figures = []
    for _, call in _rt_operations(now):
        if any(call(storage, i) is _UNSUPPORTED for i in range(-3, 0)):
            figures.append(float("nan"))
            continue
        reset()
        for i in range(_RT_CALLS):
            call(storage, i)
        figures.append(count() / _RT_CALLS)
    return figures


def redis_round_trips(url: str, *, cluster: bool) -> list[float]:
    """Replies awaited per call of each operation, on a server or a cluster."""
    import redis
    from redis.cluster import RedisCluster

    from kaspi_identity.storage.redis import redis_storage

    replies = [0]

    class Counting(redis.Connection):
        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            replies[0] += 1
            return super().read_response(*args, **kwargs)

    prefix = f"kaspi-bench:{uuid.uuid4().hex}:"
    client: Any = (
        RedisCluster.from_url(url, connection_class=Counting)
        if cluster
        else redis.Redis(
            connection_pool=redis.ConnectionPool.from_url(url, connection_class=Counting)
        )
    )
    try:
        storage = redis_storage(client, accounts=MemoryAccountStore(), prefix=prefix, outbox=True)
        return _per_call(storage, lambda: replies[0], lambda: replies.__setitem__(0, 0))
    finally:
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)
        client.close()


class _Relay:
    """A TCP relay that counts how often a client speaks after the server has spoken.

    For a client that waits for each reply (no pipelining) that is its number of round trips,
    however its messages are split into writes.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.turns = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        last = "server"
        with selectors.DefaultSelector() as selector, client, server:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    source = cast(socket.socket, key.fileobj)
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client and last == "server":
                        with self._lock:
                            self.turns += 1
                    last = "client" if source is client else "server"
                    key.data.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def postgresql_round_trips(url: str) -> list[float]:
    """Times the driver speaks after the server, per call of each operation."""
    import sqlalchemy as sa

    target = sa.make_url(url)
    relay = _Relay(target.host or "127.0.0.1", target.port or 5432)
    try:
        backend = postgresql_backend(
            target.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
            outbox=True,
        )
        with backend.open() as storage:

            def reset() -> None:
                relay.turns = 0

            return _per_call(storage, lambda: relay.turns, reset)
    finally:
        relay.close()


def print_round_trips(args: argparse.Namespace) -> None:
    """The table of round trips per operation for Redis, the cluster and PostgreSQL."""
    columns: list[tuple[str, list[float] | str]] = []
    for name, url, measure in (
        ("Redis", args.redis_url, lambda u: redis_round_trips(u, cluster=False)),
        ("Cluster", args.redis_cluster_url, lambda u: redis_round_trips(u, cluster=True)),
        ("PostgreSQL", args.postgres_url, postgresql_round_trips),
    ):
        if not url:
            columns.append((name, "n/a"))
            continue
        try:
            columns.append((name, measure(url)))
        except Exception as exc:
            columns.append((name, f"n/a: {type(exc).__name__}"))
    print(f"\nround trips per operation ({_RT_CALLS} calls each, after a warm-up)")
    print(f"{'':<24}" + "".join(f"{name:>12}" for name, _ in columns))
    for row, (operation, _) in enumerate(_rt_operations(datetime.now(timezone.utc))):
        cells = [
            (f"{values[row]:>12.2f}" if values[row] == values[row] else f"{'-':>12}")
            if isinstance(values, list)
            else f"{values[:11]:>12}"
            for _, values in columns
        ]
        print(f"{operation:<24}" + "".join(cells))


# -- PostgreSQL history append: the function against the statements ------------------------


def _append_operation(shared: bool) -> Operation:
    def operation(storage: Storage, thread: int, now: datetime) -> Callable[[], object]:
        from kaspi_identity.storage import HistoryEntry

        entry = HistoryEntry(password_hash=_RT_ENTRY_HASH, fingerprint=b"f", created_at=now)
        account = "acct-shared" if shared else f"acct-{thread}"
        return lambda: storage.history.append(account, entry, keep=6)

    return operation


def print_history_paths(args: argparse.Namespace, seconds: float) -> None:
    """History appends per second on PostgreSQL: one call of the history function against
    the transaction of statements a deployment without the function runs, side by side
    (cells alternate), each thread on its own account and all on one account."""
    if not args.postgres_url:
        return
    import logging

    backend = postgresql_backend(args.postgres_url)
    if backend.unavailable:
        return
    # The fallback's one warning about the missing function is expected here.
    logging.getLogger("kaspi_identity.storage").setLevel(logging.ERROR)
    cases = [(clients, shared) for clients in CLIENTS for shared in (False, True)]
    cases.remove((1, True))
    rates: dict[tuple[str, int, bool], list[float]] = {}
    for _ in range(2):
        for path in ("function", "statements"):
            for clients, shared in cases:
                with backend.open() as storage:
                    if path == "statements":
                        _drop_history_function(storage)
                    rate = ops_per_second(storage, _append_operation(shared), clients, seconds)
                rates.setdefault((path, clients, shared), []).append(rate)
    print("\nPostgreSQL history append per second (best of 2), function vs statements")
    for clients, shared in cases:
        function = max(rates["function", clients, shared])
        statements = max(rates["statements", clients, shared])
        where = "one account" if shared else "own accounts"
        print(
            f"  {clients:>2} thread(s), {where:<12}  function {function:>8,.0f}"
            f"   statements {statements:>8,.0f}   ratio {function / statements:.2f}"
        )


def _password_change_operation(
    storage: Storage, thread: int, now: datetime
) -> Callable[[], object]:
    """A password change through ``with_history`` on the thread's own account, back and
    forth between two hashes, each with its history entry (keep=6)."""
    from kaspi_identity.storage import HistoryEntry, NewAccount

    together = storage.with_history
    assert together is not None
    hashes = [f"{_RT_ENTRY_HASH}a", f"{_RT_ENTRY_HASH}b"]
    entries = [HistoryEntry(password_hash=h, fingerprint=b"f", created_at=now) for h in hashes]
    new = NewAccount(username=f"uow-{thread}-{uuid.uuid4().hex}", password_hash=hashes[0])
    account = storage.accounts.create(new, now=now).id
    turn = [0]

    def change() -> object:
        old, fresh = turn[0] % 2, (turn[0] + 1) % 2
        turn[0] += 1
        return together.replace_password(
            account, expected=hashes[old], new=hashes[fresh], entry=entries[fresh], keep=6
        )

    return change


def _create_operation(storage: Storage, thread: int, now: datetime) -> Callable[[], object]:
    """A registration's account insert: a fresh user name and address on every call."""
    from kaspi_identity.storage import NewAccount

    tag = uuid.uuid4().hex[:12]
    counter = iter(range(sys.maxsize))

    def create() -> object:
        n = next(counter)
        new = NewAccount(username=f"c{tag}-{n}", email=f"c{tag}-{n}@example.kz")
        return storage.accounts.create(new, now=now)

    return create


def _set_email_operation(storage: Storage, thread: int, now: datetime) -> Callable[[], object]:
    """``set_email`` on the thread's own account, a fresh address on every call."""
    from kaspi_identity.storage import NewAccount

    tag = uuid.uuid4().hex[:12]
    account = storage.accounts.create(NewAccount(email=f"s{tag}@example.kz"), now=now).id
    counter = iter(range(sys.maxsize))
    return lambda: storage.accounts.set_email(account, f"s{tag}-{next(counter)}@example.kz")


def _update_contact_operation(storage: Storage, thread: int, now: datetime) -> Callable[[], object]:
    """``update_contact`` on the thread's own account (a fresh address on every call), from
    the stamp the previous call returned."""
    from dataclasses import replace

    from kaspi_identity.storage import NewAccount

    tag = uuid.uuid4().hex[:12]
    current = [storage.accounts.create(NewAccount(email=f"u{tag}@example.kz"), now=now)]
    counter = iter(range(sys.maxsize))

    def update() -> object:
        account = current[0]
        contact = replace(account.contact, email=f"u{tag}-{next(counter)}@example.kz")
        changed = storage.accounts.update_contact(
            account.id, expected_stamp=account.security_stamp, contact=contact
        )
        assert changed is not None
        current[0] = changed
        return changed

    return update


#: The writes PostgreSQL runs as one autocommit statement, each timed against the READ
#: COMMITTED transaction the store falls back to outside READ COMMITTED.
_ONE_STATEMENT_WRITES: tuple[tuple[str, Operation], ...] = (
    ("with_history password change", _password_change_operation),
    ("account create", _create_operation),
    ("set_email", _set_email_operation),
    ("update_contact", _update_contact_operation),
)


def print_unit_of_work_paths(args: argparse.Namespace, seconds: float) -> None:
    """Writes per second on PostgreSQL: each one-statement write (a password change through
    ``with_history``, create, set_email, update_contact) against the READ COMMITTED
    transaction it replaced, side by side, cells alternating."""
    if not args.postgres_url:
        return
    backend = postgresql_backend(args.postgres_url)
    if backend.unavailable:
        return
    rates: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(2):
        for name, operation in _ONE_STATEMENT_WRITES:
            for path in ("statement", "transaction"):
                for clients in CLIENTS:
                    with backend.open() as storage:
                        if path == "transaction":
                            # What the stores fall back to outside READ COMMITTED.
                            _database(storage)._autocommit_writes = False
                        rate = ops_per_second(storage, operation, clients, seconds)
                    rates.setdefault((name, path, clients), []).append(rate)
    print("\nPostgreSQL one-statement writes per second, against the transaction (best of 2)")
    for name, _ in _ONE_STATEMENT_WRITES:
        for clients in CLIENTS:
            one = max(rates[name, "statement", clients])
            old = max(rates[name, "transaction", clients])
            print(
                f"  {name:<29} {clients:>2} thread(s)  one statement {one:>8,.0f}"
                f"   transaction {old:>8,.0f}   ratio {one / old:.2f}"
            )


def _database(storage: Storage) -> Any:
    from kaspi_identity.storage.sqlalchemy import SQLAlchemyAccountStore

    accounts = storage.accounts
    assert isinstance(accounts, SQLAlchemyAccountStore)
    return accounts.database


def _drop_history_function(storage: Storage) -> None:
    from kaspi_identity.storage.sqlalchemy import SQLAlchemyPasswordHistoryStore

    history = storage.history
    assert isinstance(history, SQLAlchemyPasswordHistoryStore)
    table = next(t for t in history.database.metadata.sorted_tables if t.name.endswith("history"))
    with history.database.engine.begin() as connection:
        connection.exec_driver_sql(
            f"DROP FUNCTION {table.schema}.{table.name}_append"
            "(text, text, bytea, bigint, integer, bigint)"
        )


# -- report --------------------------------------------------------------------------------


def _row(name: str, cells: Sequence[str]) -> str:
    return f"{name:<20}" + "".join(f"{cell:>10}" for cell in cells)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of every backend and the redis-benchmark ceiling; exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter cells, fewer requests")
    parser.add_argument("--redis-url", default=os.environ.get(REDIS_ENV), help=f"${REDIS_ENV}")
    parser.add_argument(
        "--postgres-url", default=os.environ.get(POSTGRES_ENV), help=f"${POSTGRES_ENV}"
    )
    parser.add_argument(
        "--redis-cluster-url",
        default=os.environ.get(REDIS_CLUSTER_ENV),
        help=f"${REDIS_CLUSTER_ENV}",
    )
    args = parser.parse_args(argv)
    seconds, requests = (0.4, 20_000) if args.quick else (1.2, 100_000)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"operations per second, {seconds} s per cell, {os.cpu_count()} cores, load {load:.2f}")
    header = [f"{clients} cl." for _ in OPERATIONS for clients in CLIENTS]
    print(_row("", [f"{name[:9]:>9}" for name, _ in OPERATIONS for _ in CLIENTS]))
    print(_row("backend", header))
    measured: dict[str, dict[tuple[str, int], float]] = {}
    for backend in default_backends(args.redis_url, args.postgres_url, args.redis_cluster_url):
        if backend.unavailable:
            print(_row(backend.name, [backend.unavailable]))
            continue
        measured[backend.name] = results = measure(backend, seconds)
        cells = [f"{results[name, clients]:,.0f}" for name, _ in OPERATIONS for clients in CLIENTS]
        print(_row(backend.name, cells), flush=True)

    print_round_trips(args)
    print_history_paths(args, seconds)
    print_unit_of_work_paths(args, seconds)
    if "Redis" not in measured or args.redis_url is None:
        return 0
    if shutil.which("redis-benchmark") is None:
        print("\nredis-benchmark: n/a (apt-get install redis-tools)")
        return 0
    print(f"\nceiling: redis-benchmark -t set,incr -q -n {requests} on {_address(args.redis_url)}")
    ceiling: dict[int | None, dict[str, float]] = {}
    try:
        for clients in (1, 16, None):
            ceiling[clients] = rps = redis_benchmark(args.redis_url, clients, requests)
            label = f"-c {clients}" if clients else "-c 50 (default)"
            print(f"  {label:<16} SET {rps['SET']:>10,.0f}   INCR {rps['INCR']:>10,.0f}")
    finally:
        _cleanup_redis_benchmark(args.redis_url)
    for name in ("Redis", "Redis, pipelining"):
        if name not in measured:
            continue
        redis_rows = measured[name]
        print(f"\n{name}: the adapter as a fraction of redis-benchmark with as many clients:")
        for clients in CLIENTS:
            ceil = ceiling[clients]
            parts = [
                f"consume/SET {redis_rows['consume', clients] / ceil['SET']:.2f}",
                f"code-verify/INCR {redis_rows['code-verify', clients] / ceil['INCR']:.2f}",
                f"hit/INCR {redis_rows['rate-limit hit', clients] / ceil['INCR']:.2f}",
            ]
            print(f"  {clients:>2} client(s): " + "   ".join(parts))
        goal = redis_rows["consume", 16] / ceiling[16]["SET"]
        print(f"  goal: consume, 16 threads >= 0.5 x SET, 16 clients: {goal:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
