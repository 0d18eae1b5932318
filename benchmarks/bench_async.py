"""The async face, measured: event-loop responsiveness, log-in throughput, per-flow overhead.

Run ``python benchmarks/bench_async.py [--quick]``. Three measurements, side by side in one
run, each reported as a ratio to its bound or peer (issue 12):

1. **Responsiveness.** A no-op coroutine is scheduled every 1 ms and its lateness recorded
   while ``--logins`` (16) log-ins run at once, with the default hash profile
   (``PasswordHasher()``, OWASP_MINIMUM) on the SQLite adapter: once on
   ``AsyncIdentityService`` over ``async_sqlite_storage``, once with the sync
   ``IdentityService`` called straight from ``async def`` (what a portal did before). The
   p50/p99/max lateness of the ticks is printed for both; the target is a p99 <= 5 ms on
   the async face.
2. **Throughput.** Log-ins per second on both faces, against the bound
   ``workers / one verification`` where ``workers = min(cores, hasher.max_concurrency)``:
   the sync face from that many threads, the async face from as many concurrent tasks as
   there are log-ins. The target is >= 0.9 x the bound on both.
3. **Overhead.** Each flow called one at a time on the memory adapter with a near-free
   hasher (the TESTS_ONLY profile), so what is left is the flow itself: the median µs on
   each face and the ratio async / sync (target <= 1.2). The async face's extra work is the
   greenlet switches, one await per store call, and the hop of each argon2 call to the
   hasher's pool (kept, since it is what the face does in production).

Numbers depend on the host: compare the ratios. The exit status is 0 (a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from kaspi_identity.delivery import Outbox
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import (
    AsyncIdentityService,
    IdentityService,
    IdentitySettings,
    RateLimit,
)
from kaspi_identity.storage.memory import async_memory_storage, memory_storage
from kaspi_identity.storage.sqlite import async_sqlite_storage, sqlite_storage

HUGE = RateLimit(10**9, timedelta(hours=1))
PASSWORD = "Correct-Horse-9-Battery"


def settings() -> IdentitySettings:
    """Every limit out of the way: the flows, not the refusals, are measured."""
    return IdentitySettings(
        secret_keys=(b"bench-key-" * 4,),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        site_name="portal.example.kz",
        login_per_client=HUGE,
        login_per_identifier=HUGE,
        register_per_client=HUGE,
        register_per_identifier=HUGE,
        reset_per_client=HUGE,
        reset_per_identifier=HUGE,
        backoff_after=99,
        lockout_after=100,
    )


def _email(i: int) -> str:
    return f"user{i}@example.kz"


def _register_sync(service: IdentityService, count: int) -> None:
    for i in range(count):
        result = service.register(
            email=_email(i), password=PASSWORD, confirmation=PASSWORD, client_key=f"r{i}"
        )
        assert result.ok, result


async def _register_async(service: AsyncIdentityService, count: int) -> None:
    for i in range(count):
        result = await service.register(
            email=_email(i), password=PASSWORD, confirmation=PASSWORD, client_key=f"r{i}"
        )
        assert result.ok, result


async def _ticks(stop: asyncio.Event, lateness: list[float]) -> None:
    """Sleep 1 ms again and again; record how late each wake-up is."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.001
        await asyncio.sleep(0.001)
        lateness.append(max(0.0, loop.time() - due))


def _quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return 0.0, 0.0, 0.0
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered), p99, ordered[-1]


async def _responsiveness(
    logins: Callable[[], Awaitable[object]],
) -> tuple[tuple[float, float, float], float]:
    stop, lateness = asyncio.Event(), []  # type: ignore[var-annotated]
    ticker = asyncio.create_task(_ticks(stop, lateness))
    await asyncio.sleep(0.05)  # the ticker is running
    lateness.clear()
    started = time.perf_counter()
    await logins()
    elapsed = time.perf_counter() - started
    stop.set()
    await ticker
    return _quantiles([x * 1000 for x in lateness]), elapsed


def measure_responsiveness(count: int, directory: Path) -> dict[str, Any]:
    """p50/p99/max tick lateness (ms) with ``count`` concurrent log-ins, on both faces."""
    out: dict[str, Any] = {}

    async def async_face() -> None:
        storage = async_sqlite_storage(directory / "async.sqlite3")
        service = AsyncIdentityService(storage, settings(), email_sender=Outbox())
        await _register_async(service, count)

        async def logins() -> None:
            results = await asyncio.gather(
                *(
                    service.authenticate(_email(i), PASSWORD, client_key=f"c{i}")
                    for i in range(count)
                )
            )
            assert all(r.ok for r in results)

        out["async"] = await _responsiveness(logins)
        await storage.aclose()

    async def sync_face() -> None:
        storage = sqlite_storage(directory / "sync.sqlite3")
        service = IdentityService(storage, settings(), email_sender=Outbox())
        _register_sync(service, count)

        async def one(i: int) -> None:  # what a portal's async view did: call it directly
            assert service.authenticate(_email(i), PASSWORD, client_key=f"c{i}").ok

        async def logins() -> None:
            await asyncio.gather(*(one(i) for i in range(count)))

        out["sync"] = await _responsiveness(logins)
        storage.close()

    asyncio.run(async_face())
    asyncio.run(sync_face())
    return out


def one_verification(hasher: PasswordHasher, rounds: int = 10) -> float:
    """Seconds per argon2 verification with ``hasher`` (median of ``rounds``)."""
    stored = hasher.hash(PASSWORD)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_throughput(count: int) -> dict[str, float]:
    """Log-ins per second on both faces (memory adapter), and the bound."""
    hasher = PasswordHasher()
    workers = min(os.cpu_count() or 1, hasher.max_concurrency)
    bound = workers / one_verification(hasher)

    sync_service = IdentityService(
        memory_storage(), settings(), email_sender=Outbox(), hasher=hasher
    )
    _register_sync(sync_service, count)

    def sync_login(i: int) -> None:
        assert sync_service.authenticate(_email(i), PASSWORD, client_key=f"c{i}").ok

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(sync_login, range(workers)))  # warm
        started = time.perf_counter()
        list(pool.map(sync_login, range(count)))
        sync_rate = count / (time.perf_counter() - started)

    async def async_run() -> float:
        service = AsyncIdentityService(
            async_memory_storage(), settings(), email_sender=Outbox(), hasher=hasher
        )
        await _register_async(service, count)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(service.authenticate(_email(i), PASSWORD, client_key=f"c{i}") for i in range(count))
        )
        assert all(r.ok for r in results)
        return count / (time.perf_counter() - started)

    async_rate = asyncio.run(async_run())
    return {"bound": bound, "sync": sync_rate, "async": async_rate, "workers": float(workers)}


def measure_overhead(rounds: int) -> dict[str, tuple[float, float]]:
    """Median µs per flow on each face, memory adapter, near-free hashing.

    Both faces are timed inside one running event loop (where a portal calls them), the
    sync call and the async one interleaved round by round, so drift in the machine's load
    falls on both alike.
    """
    hasher = PasswordHasher(TESTS_ONLY)
    sync_service = IdentityService(
        memory_storage(), settings(), email_sender=Outbox(), hasher=hasher
    )
    async_service = AsyncIdentityService(
        async_memory_storage(), settings(), email_sender=Outbox(), hasher=hasher
    )
    _register_sync(sync_service, 1)

    def form(i: int) -> dict[str, str]:
        return {"password": PASSWORD, "confirmation": PASSWORD, "client_key": "r"} | {
            "email": f"n{i}@e.kz"
        }

    flows: dict[str, tuple[Callable[[Any, int], Any], int]] = {
        "authenticate": (lambda s, i: s.authenticate(_email(0), PASSWORD, client_key=f"c{i}"), 0),
        "authenticate (unknown)": (
            lambda s, i: s.authenticate("x@y.kz", PASSWORD, client_key="c"),
            0,
        ),
        "register": (lambda s, i: s.register(**form(i)), 0),
        "request_password_reset": (
            lambda s, i: s.request_password_reset(_email(0), client_key="c"),
            0,
        ),
    }

    async def run() -> dict[str, tuple[float, float]]:
        await _register_async(async_service, 1)
        results: dict[str, tuple[float, float]] = {}
        for name, (call, _) in flows.items():
            sync_times, async_times = [], []
            for i in range(rounds + 20):
                started = time.perf_counter_ns()
                call(sync_service, i)
                middle = time.perf_counter_ns()
                await call(async_service, i)
                ended = time.perf_counter_ns()
                if i >= 20:  # the first rounds warm both up
                    sync_times.append(middle - started)
                    async_times.append(ended - middle)
            results[name] = (
                statistics.median(sync_times) / 1000,
                statistics.median(async_times) / 1000,
            )
        return results

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (~20 s)")
    parser.add_argument("--logins", type=int, default=16, help="concurrent log-ins (16)")
    args = parser.parse_args(argv)
    rounds = 200 if args.quick else 1000
    print(f"host: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"threads alive at start: {threading.active_count()}")

    with tempfile.TemporaryDirectory() as tmp:
        resp = measure_responsiveness(args.logins, Path(tmp))
    print(f"\n1. tick lateness (ms) with {args.logins} concurrent log-ins, SQLite, OWASP_MINIMUM")
    print(f"   {'face':<34}{'p50':>8}{'p99':>8}{'max':>8}{'wall s':>9}")
    for face, label in (
        ("async", "AsyncIdentityService"),
        ("sync", "IdentityService in async def"),
    ):
        (p50, p99, top), wall = resp[face]
        print(f"   {label:<34}{p50:8.2f}{p99:8.2f}{top:8.2f}{wall:9.2f}")
    print(f"   async p99 / 5 ms target: {resp['async'][0][1] / 5:.2f}")

    count = 32 if args.quick else 96
    tp = measure_throughput(count)
    print(f"\n2. log-ins per second ({count} log-ins, memory, OWASP_MINIMUM)")
    print(f"   bound = {tp['workers']:.0f} workers / one verification = {tp['bound']:.1f}/s")
    for face in ("sync", "async"):
        print(f"   {face:<6} {tp[face]:8.1f}/s   {tp[face] / tp['bound']:.2f} x bound")

    over = measure_overhead(rounds)
    print(f"\n3. per-flow µs, memory, TESTS_ONLY hashing (median of {rounds})")
    print(f"   {'flow':<26}{'sync':>9}{'async':>9}{'async/sync':>12}")
    for name, (sync_us, async_us) in over.items():
        print(f"   {name:<26}{sync_us:9.1f}{async_us:9.1f}{async_us / sync_us:12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
