"""Flows end to end: requests per second on SQLite, Redis and PostgreSQL, both faces.

Three requests a portal serves most, through ``IdentityService`` and
``AsyncIdentityService`` on each adapter:

* **reset request** -- ``request_password_reset(email)`` for a registered address (look-up,
  two rate-limit hits, a token, a letter to the in-memory outbox);
* **SMS code verify** -- ``verify_sms_code(phone, code)`` with the right code (one code
  attempt, a grant token); the code is requested before, untimed;
* **wrong-password log-in** -- ``authenticate(email, wrong)`` with the default argon2
  profile (``OWASP_MINIMUM``): hashing dominates, so its row is also given against the
  hash bound ``workers / one verification`` (``workers = min(cores,
  hasher.max_concurrency)``), with that many threads (sync) or concurrent tasks (async).

The first two run one request at a time (their cost is the flow and the store's round
trips, not the CPU of a pool). Adapters: SQLite (a temporary file, ``synchronous=FULL``),
Redis (``KASPI_IDENTITY_REDIS_URL``; Redis keeps no accounts, so they are the memory
adapter's) and PostgreSQL (``KASPI_IDENTITY_POSTGRES_URL``, a fresh schema dropped after).
Every rate limit is out of reach, so the flows, not their refusals, are measured.

Run: ``python benchmarks/bench_flows.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from kaspi_identity.delivery import Outbox, extract_code
from kaspi_identity.hashing import PasswordHasher
from kaspi_identity.services import (
    AsyncIdentityService,
    IdentityService,
    IdentitySettings,
    RateLimit,
)
from kaspi_identity.storage import AccountStore, AsyncAccountStore, AsyncStorage, Storage
from kaspi_identity.testing import mark_phone_verified

HUGE = RateLimit(10**9, timedelta(hours=1))
PASSWORD = "Correct-Horse-9-Battery"
WRONG = "Wrong-Horse-9-Battery"


def settings() -> IdentitySettings:
    """Every limit out of the way, SMS caps included."""
    return IdentitySettings(
        secret_keys=(b"bench-key-" * 4,),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        login_per_client=HUGE,
        login_per_identifier=HUGE,
        register_per_client=HUGE,
        register_per_identifier=HUGE,
        reset_per_client=HUGE,
        reset_per_identifier=HUGE,
        backoff_after=99,
        lockout_after=100,
        sms_per_phone_daily=10**6,
        sms_per_client_daily=10**6,
        sms_cooldown=timedelta(microseconds=1),
    )


@dataclass(frozen=True)
class Adapter:
    """A named way to open a fresh storage on each face; ``unavailable`` says why not."""

    name: str
    sync: Callable[[], AbstractContextManager[Storage]]
    asynchronous: Callable[[], AbstractAsyncContextManager[AsyncStorage]]
    unavailable: str | None = None


def sqlite_adapter() -> Adapter:
    from kaspi_identity.storage.sqlite import async_sqlite_storage, sqlite_storage

    @contextmanager
    def sync() -> Iterator[Storage]:
        with (
            tempfile.TemporaryDirectory() as directory,
            sqlite_storage(Path(directory) / "bench.sqlite3") as storage,
        ):
            yield storage

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[AsyncStorage]:
        with tempfile.TemporaryDirectory() as directory:
            storage = async_sqlite_storage(Path(directory) / "bench.sqlite3")
            try:
                yield storage
            finally:
                await storage.aclose()

    return Adapter("SQLite", sync, asynchronous)


def redis_adapter(url: str | None) -> Adapter:
    if not url:
        return Adapter("Redis", sqlite_adapter().sync, sqlite_adapter().asynchronous, "n/a")
    import redis

    from kaspi_identity.storage.memory import MemoryAccountStore, async_memory_storage
    from kaspi_identity.storage.redis import async_redis_storage, redis_storage

    def clean(prefix: str) -> None:
        client = redis.Redis.from_url(url)
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)
        client.close()

    @contextmanager
    def sync() -> Iterator[Storage]:
        prefix = f"kaspi-bench:{uuid.uuid4().hex}:"
        try:
            with redis_storage(url, accounts=MemoryAccountStore(), prefix=prefix) as storage:
                yield storage
        finally:
            clean(prefix)

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[AsyncStorage]:
        prefix = f"kaspi-bench:{uuid.uuid4().hex}:"
        accounts = async_memory_storage().accounts
        storage = async_redis_storage(url, accounts=accounts, prefix=prefix)
        try:
            yield storage
        finally:
            await storage.aclose()
            clean(prefix)

    return Adapter("Redis", sync, asynchronous)


def postgresql_adapter(url: str | None) -> Adapter:
    if not url:
        return Adapter("PostgreSQL", sqlite_adapter().sync, sqlite_adapter().asynchronous, "n/a")
    import sqlalchemy as sa

    from kaspi_identity.storage.sqlalchemy import (
        async_sqlalchemy_storage,
        make_metadata,
        sqlalchemy_storage,
    )

    @contextmanager
    def schema() -> Iterator[tuple[sa.Engine, sa.MetaData]]:
        name = f"kaspi_bench_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(url, pool_size=16, hide_parameters=True)
        with engine.begin() as connection:
            connection.execute(sa.schema.CreateSchema(name))
        tables = make_metadata(schema=name)
        tables.create_all(engine)
        try:
            yield engine, tables
        finally:
            with engine.begin() as connection:
                connection.execute(sa.schema.DropSchema(name, cascade=True, if_exists=True))
            engine.dispose()

    @contextmanager
    def sync() -> Iterator[Storage]:
        with schema() as (engine, tables), sqlalchemy_storage(engine, metadata=tables) as storage:
            yield storage

    @asynccontextmanager
    async def asynchronous() -> AsyncIterator[AsyncStorage]:
        async_url = sa.make_url(url).set(drivername="postgresql+asyncpg")
        with schema() as (_, tables):
            storage = await async_sqlalchemy_storage(async_url, metadata=tables)
            try:
                yield storage
            finally:
                await storage.aclose()

    return Adapter("PostgreSQL", sync, asynchronous)


def _email(i: int) -> str:
    return f"user{i}@example.kz"


def _phone(i: int) -> str:
    return f"+7701{i:07d}"


def _verify_phone(accounts: AccountStore, email: str) -> None:
    """Mark the phone of the account with ``email`` verified: only a verified phone gets
    reset codes (a registration's number is unproven until its code is)."""
    account = accounts.find_by_login("email", email)
    assert account is not None
    mark_phone_verified(accounts, account.id)


async def _verify_phone_async(accounts: AsyncAccountStore, email: str) -> None:
    """:func:`_verify_phone` on an async store (what ``mark_phone_verified`` writes)."""
    account = await accounts.find_by_login("email", email)
    assert account is not None
    contact = replace(account.contact, phone_verified=True)
    written = await accounts.update_contact(
        account.id, expected_stamp=account.security_stamp, contact=contact, rotate_stamp=False
    )
    assert written is not None


def _rate(durations: Sequence[float]) -> float:
    return len(durations) / sum(durations)


def run_sync(adapter: Adapter, count: int, workers: int) -> dict[str, float]:
    """Requests per second of each flow on the sync face."""
    outbox = Outbox()
    with adapter.sync() as storage:
        service = IdentityService(storage, settings(), email_sender=outbox, sms_sender=outbox)
        for i in range(count):
            registered = service.register(
                email=_email(i),
                phone=_phone(i),
                password=PASSWORD,
                confirmation=PASSWORD,
                client_key="bench",
            )
            assert registered.ok, registered
            _verify_phone(storage.accounts, _email(i))
        resets = []
        for i in range(count):
            started = time.perf_counter()
            service.request_password_reset(_email(i), client_key="bench")
            resets.append(time.perf_counter() - started)
        verifies = []
        for i in range(count):
            service.request_sms_reset(_phone(i), client_key="bench")
            code = extract_code(outbox.last_sms(to=_phone(i)))
            started = time.perf_counter()
            service.verify_sms_code(_phone(i), code)
            verifies.append(time.perf_counter() - started)

        def login(i: int) -> None:
            assert not service.authenticate(_email(i), WRONG, client_key="bench").ok

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(login, range(workers)))
            started = time.perf_counter()
            list(pool.map(login, range(count)))
            logins = count / (time.perf_counter() - started)
    return {"reset": _rate(resets), "sms": _rate(verifies), "login": logins}


async def run_async(adapter: Adapter, count: int) -> dict[str, float]:
    """Requests per second of each flow on the async face."""
    outbox = Outbox()
    async with adapter.asynchronous() as storage:
        service = AsyncIdentityService(storage, settings(), email_sender=outbox, sms_sender=outbox)
        for i in range(count):
            registered = await service.register(
                email=_email(i),
                phone=_phone(i),
                password=PASSWORD,
                confirmation=PASSWORD,
                client_key="bench",
            )
            assert registered.ok, registered
            await _verify_phone_async(storage.accounts, _email(i))

        resets = []
        for i in range(count):
            started = time.perf_counter()
            await service.request_password_reset(_email(i), client_key="bench")
            resets.append(time.perf_counter() - started)
        verifies = []
        for i in range(count):
            await service.request_sms_reset(_phone(i), client_key="bench")
            code = extract_code(outbox.last_sms(to=_phone(i)))
            started = time.perf_counter()
            await service.verify_sms_code(_phone(i), code)
            verifies.append(time.perf_counter() - started)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(service.authenticate(_email(i), WRONG, client_key="bench") for i in range(count))
        )
        logins = count / (time.perf_counter() - started)
        assert not any(result.ok for result in results)
    return {"reset": _rate(resets), "sms": _rate(verifies), "login": logins}


def one_verification(hasher: PasswordHasher, rounds: int = 7) -> float:
    """Seconds per argon2 verification with ``hasher`` (median)."""
    stored = hasher.hash(PASSWORD)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.verify_and_update(stored, WRONG)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; the exit status is 0 (a measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests per cell")
    args = parser.parse_args(argv)
    count = 24 if args.quick else 120
    hasher = PasswordHasher()
    workers = min(os.cpu_count() or 1, hasher.max_concurrency)
    bound = workers / one_verification(hasher)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"requests per second, {count} per cell, {os.cpu_count()} cores, load {load:.2f}")
    print(f"log-in hash bound: {workers} workers / one verification = {bound:.1f}/s")
    print(
        f"{'adapter':<12}{'face':<7}{'reset request':>15}{'SMS verify':>12}"
        f"{'log-in (wrong)':>16}{'x bound':>9}"
    )
    for adapter in (
        sqlite_adapter(),
        redis_adapter(os.environ.get("KASPI_IDENTITY_REDIS_URL")),
        postgresql_adapter(os.environ.get("KASPI_IDENTITY_POSTGRES_URL")),
    ):
        if adapter.unavailable:
            print(f"{adapter.name:<12}n/a: set its server's URL variable")
            continue
        for face, rates in (
            ("sync", run_sync(adapter, count, workers)),
            ("async", asyncio.run(run_async(adapter, count))),
        ):
            print(
                f"{adapter.name:<12}{face:<7}{rates['reset']:>15,.0f}{rates['sms']:>12,.0f}"
                f"{rates['login']:>16,.1f}{rates['login'] / bound:>9.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
