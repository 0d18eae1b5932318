"""The storage contract suite against the Redis adapters on a real server, plus Redis only.

Both faces: the synchronous stores (``redis_storage``) and the async face
(``async_redis_storage`` on ``redis.asyncio``, run through ``blocking_storage`` or awaited
directly). The Redis-only classes that hold for both -- key layout, candidates, corrupt
data, dropped connections -- run once per face (``[sync]`` / ``[async]``).

Needs ``KASPI_IDENTITY_REDIS_URL`` (``eval "$(scripts/test-servers start)"``); without it
these tests skip, and with ``CI=true`` they fail. Every test writes under its own random key
prefix and deletes its keys afterwards, so the server may be shared.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from _servers import require_server
from kaspi_identity._errors import CorruptRecordError, InvalidTokenError, StorageError
from kaspi_identity.delivery import EmailMessage, Outbox, extract_code, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.services import AsyncIdentityService, IdentitySettings, ManualClock
from kaspi_identity.storage import (
    AsyncStorage,
    CodeAttempt,
    HistoryEntry,
    OneTimeCodeStore,
    OutboxStore,
    PasswordHistoryStore,
    RateLimiter,
    Storage,
    TokenLedger,
)
from kaspi_identity.storage.memory import (
    MemoryAccountStore,
    MemoryOneTimeCodeStore,
    MemoryRateLimiter,
    async_memory_storage,
)
from kaspi_identity.storage.redis import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_PREFIX,
    RedisOneTimeCodeStore,
    RedisOutboxStore,
    RedisPasswordHistoryStore,
    RedisRateLimiter,
    RedisTokenLedger,
    async_redis_client,
    async_redis_storage,
    redis_client,
    redis_storage,
)
from kaspi_identity.testing import (
    OneTimeCodeStoreContract,
    OutboxStoreContract,
    PasswordHistoryStoreContract,
    RateLimiterContract,
    TokenLedgerContract,
    blocking_storage,
    make_comparison_machine,
    run_on_test_loop,
)
from kaspi_identity.testing._contracts import _FromBundle

_T = TypeVar("_T")

ENV_VAR = "KASPI_IDENTITY_REDIS_URL"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
US = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
GRACE_MS = 5 * 60 * 1000
PHONE = "+77011234567"
CODE = b"\x01" * 32
WRONG = b"\x02" * 32
SECRET_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0$c2VjcmV0c2VjcmV0"


@pytest.fixture(scope="module")
def redis_url() -> str:
    """The server's URL; skips (or fails with CI=true) when there is none."""
    return require_server(ENV_VAR)


def _unique_prefix() -> str:
    return f"kaspi-test:{uuid.uuid4().hex}:"


def _with_client_name(url: str) -> tuple[str, str]:
    """``url`` with a fresh ``client_name``, and that name (to find its connections)."""
    name = f"kaspi-test-{uuid.uuid4().hex}"
    return f"{url}{'&' if '?' in url else '?'}client_name={name}", name


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix; its keys are deleted afterwards."""
    prefix = _unique_prefix()
    yield prefix
    cleaner = redis.Redis.from_url(redis_url)
    _delete_prefixed(cleaner, prefix)
    cleaner.close()


def _delete_prefixed(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def _async_accounts() -> Any:
    """An asynchronous account store (Redis keeps none): the async memory bundle's."""
    return async_memory_storage().accounts


@dataclass(frozen=True)
class Face:
    """One face of the Redis adapter, as the tests drive it: its clients and its stores."""

    name: str
    client_class: type[Any]
    retry_class: type[Any]
    #: Waits for what the face's client returns (a coroutine on the async face).
    wait: Callable[[Any], Any]
    close: Callable[[Any], None]
    #: The four Redis stores on a client under a prefix, behind the synchronous protocols.
    storage: Callable[[Any, str], Storage]

    def client(self, *, retry: bool = True, **kwargs: Any) -> Any:
        """A client with connection ``kwargs``; ``retry=False``: one that reports a drop at once."""
        if not retry:
            kwargs.update(retry=self.retry_class(NoBackoff(), 0), socket_timeout=5)
        return self.client_class(**kwargs)


SYNC = Face(
    "sync",
    redis.Redis,
    Retry,
    wait=lambda result: result,
    close=lambda client: client.close(),
    storage=lambda client, prefix: redis_storage(
        client, accounts=MemoryAccountStore(), prefix=prefix
    ),
)
ASYNC = Face(
    "async",
    redis.asyncio.Redis,
    AsyncRetry,
    wait=run_on_test_loop,
    close=lambda client: run_on_test_loop(client.aclose()),
    storage=lambda client, prefix: blocking_storage(
        async_redis_storage(client, accounts=_async_accounts(), prefix=prefix)
    ),
)


PIPELINED = Face(
    "pipelined",
    redis.Redis,
    Retry,
    wait=lambda result: result,
    close=lambda client: client.close(),
    storage=lambda client, prefix: redis_storage(
        client, accounts=MemoryAccountStore(), prefix=prefix, pipelining=True
    ),
)


class RedisServer:
    """A client and a fresh key prefix per test; the prefix's keys are deleted afterwards.

    ``client`` (synchronous) looks at the keys; the stores under test come from
    :meth:`stores`, on the face of the ``redis_face`` fixture: the sync one, or each in turn
    in an :class:`OnBothFaces` class.
    """

    client: redis.Redis
    prefix: str
    url: str
    face: Face

    @pytest.fixture
    def redis_face(self) -> Face:
        """The face under test."""
        return SYNC

    @pytest.fixture(autouse=True)
    def _redis(self, redis_url: str, redis_face: Face) -> Iterator[None]:
        self.url, self.face = redis_url, redis_face
        self.client = redis.Redis.from_url(redis_url)
        self.prefix = _unique_prefix()
        self._opened: list[Any] = []
        self._default: Any = None
        yield
        for client in self._opened:
            self.face.close(client)
        _delete_prefixed(self.client, self.prefix)
        self.client.close()

    def key(self, namespace: str, key: str) -> str:
        """The Redis key the documented layout gives ``key`` in ``namespace``."""
        return f"{self.prefix}{namespace}:{{{key}}}"

    def face_client(self, *, retry: bool = True, **kwargs: Any) -> Any:
        """A client of the face under test, to the test server unless ``kwargs`` say
        otherwise; closed after the test."""
        server = self.client.get_connection_kwargs()
        where = {"host": server["host"], "port": server["port"], "db": server.get("db", 0)}
        client = self.face.client(retry=retry, **(where | kwargs))
        self._opened.append(client)
        return client

    def wait_until_disconnected(self, name: str) -> None:
        """Wait (5 s at most) until no connection of the client ``name`` is left; check."""
        deadline = time.monotonic() + 5
        while name in self.client_names() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert name not in self.client_names()

    def client_names(self) -> set[str]:
        """The names of the clients connected to the server."""
        return {entry["name"] for entry in self.client.client_list()}

    def stores(self, client: Any = None, *, prefix: str | None = None) -> Storage:
        """The face's stores on ``client`` (default: one client to the server) under the
        test's prefix (or ``prefix``)."""
        if client is None:
            if self._default is None:
                self._default = self.face_client()
            client = self._default
        return self.face.storage(client, self.prefix if prefix is None else prefix)


class OnBothFaces(RedisServer):
    """Each test runs on the sync face and on the async face: one implementation, both ways."""

    @pytest.fixture(params=[SYNC, ASYNC], ids=["sync", "async"])
    def redis_face(self, request: pytest.FixtureRequest) -> Face:
        """The face under test: each in turn."""
        face: Face = request.param
        return face


class TestRedisTokenLedger(RedisServer, TokenLedgerContract):
    def make_ledger(self) -> TokenLedger:
        return RedisTokenLedger(self.client, prefix=self.prefix)


class TestRedisOneTimeCodeStore(RedisServer, OneTimeCodeStoreContract):
    def make_codes(self) -> OneTimeCodeStore:
        return RedisOneTimeCodeStore(self.client, prefix=self.prefix)


class TestRedisRateLimiter(RedisServer, RateLimiterContract):
    def make_rate_limiter(self) -> RateLimiter:
        return RedisRateLimiter(self.client, prefix=self.prefix)


class TestRedisPasswordHistoryStore(RedisServer, PasswordHistoryStoreContract):
    def make_history(self) -> PasswordHistoryStore:
        return RedisPasswordHistoryStore(self.client, prefix=self.prefix)


class TestRedisOutboxStore(RedisServer, OutboxStoreContract):
    def make_outbox(self) -> OutboxStore:
        return RedisOutboxStore(self.client, prefix=self.prefix)


def _entry(index: int) -> HistoryEntry:
    return HistoryEntry(
        password_hash=f"{SECRET_HASH}-{index}",
        fingerprint=bytes([index]) * 32,
        created_at=T0 + index * US,
    )


class TestKeysAndExpiry(OnBothFaces):
    def test_token_key_and_ttl(self) -> None:
        """A consumed id is a string key that lives until expires_at + 5 minutes."""
        ledger = self.stores().ledger
        assert ledger.consume("tok-1", T0 + HOUR, now=T0) is True
        key = self.key("token", "tok-1")
        assert self.client.get(key) == b"1"
        ttl = self.client.pttl(key)
        assert 3_600_000 + GRACE_MS - 2_000 < ttl <= 3_600_000 + GRACE_MS

    def test_expiry_is_measured_from_the_callers_clock(self) -> None:
        """The TTL is expires_at - now (+ grace) even when the caller's clock is years off."""
        ledger = self.stores().ledger
        far_future = datetime(2200, 1, 1, tzinfo=timezone.utc)
        assert ledger.consume("tok-1", far_future + 2 * HOUR, now=far_future) is True
        ttl = self.client.pttl(self.key("token", "tok-1"))
        assert 7_200_000 + GRACE_MS - 2_000 < ttl <= 7_200_000 + GRACE_MS

    def test_dead_token_writes_nothing(self) -> None:
        """consume() of an expired token touches no key."""
        ledger = self.stores().ledger
        assert ledger.consume("tok-1", T0, now=T0) is False
        assert list(self.client.scan_iter(match=f"{self.prefix}*")) == []

    def test_code_key_layout_and_ttl(self) -> None:
        """A code is one hash; its TTL covers the later of the code's and the counter's end."""
        codes = self.stores().codes
        five, fifteen = timedelta(minutes=5), timedelta(minutes=15)
        codes.put(PHONE, CODE, expires_at=T0 + five, now=T0, failure_window=fifteen)
        key = self.key("code", PHONE)
        expires = (T0 + five - datetime(1970, 1, 1, tzinfo=timezone.utc)) // US
        assert self.client.hgetall(key) == {
            b"h": CODE,
            b"e": str(expires).encode(),
            b"w": b"900000000",
            b"f": b"0",
        }
        assert 300_000 + GRACE_MS - 2_000 < self.client.pttl(key) <= 300_000 + GRACE_MS
        assert codes.attempt(PHONE, [WRONG], now=T0, max_attempts=3) is CodeAttempt.MISMATCH
        assert 900_000 + GRACE_MS - 2_000 < self.client.pttl(key) <= 900_000 + GRACE_MS
        assert codes.attempt(PHONE, [CODE], now=T0, max_attempts=3) is CodeAttempt.OK
        assert self.client.exists(key) == 0

    def test_rate_key_layout_and_ttl(self) -> None:
        """A window is one hash (start, length, hits) that expires after the window ends."""
        limiter = self.stores().rate_limits
        for _ in range(3):
            limiter.hit("ip:1", limit=2, window=timedelta(seconds=10), now=T0)
        key = self.key("rate", "ip:1")
        fields = self.client.hgetall(key)
        assert (fields[b"l"], fields[b"n"]) == (b"10000000", b"3")
        assert 10_000 + GRACE_MS - 2_000 < self.client.pttl(key) <= 10_000 + GRACE_MS

    def test_history_is_a_list_without_expiry(self) -> None:
        """History is a list, newest first, trimmed to keep, and never expires."""
        history = self.stores().history
        for index in range(4):
            history.append("acct-1", _entry(index), keep=3)
        key = self.key("history", "acct-1")
        assert self.client.llen(key) == 3
        assert self.client.pttl(key) == -1
        assert history.recent("acct-1", 10) == [_entry(3), _entry(2), _entry(1)]

    def test_entries_are_compact(self) -> None:
        """An entry takes 11 bytes besides its hash and fingerprint."""
        history = self.stores().history
        history.append("acct-1", _entry(1), keep=3)
        (raw,) = self.client.lrange(self.key("history", "acct-1"), 0, -1)
        assert len(raw) == 11 + len(_entry(1).password_hash) + 32

    def test_keys_with_braces_and_unicode(self) -> None:
        """Caller keys holding braces, colons or Cyrillic stay distinct."""
        limiter = self.stores().rate_limits
        for key in ("a}b", "a}c", "{x}", "x", "Айгерим", "ip:1:2"):
            assert limiter.hit(key, limit=1, window=HOUR, now=T0).allowed
        assert not limiter.hit("a}b", limit=1, window=HOUR, now=T0).allowed

    def test_prefixes_are_separate(self) -> None:
        """Two stores with different prefixes never see each other's keys."""
        first = self.stores(prefix=self.prefix + "a:").ledger
        second = self.stores(prefix=self.prefix + "b:").ledger
        assert first.consume("tok-1", T0 + HOUR, now=T0) is True
        assert second.consume("tok-1", T0 + HOUR, now=T0) is True
        assert first.consume("tok-1", T0 + HOUR, now=T0) is False

    def test_extreme_durations_agree_with_memory(self) -> None:
        """Windows of millions of years and far-future expiry answer exactly as memory does."""
        huge = timedelta(days=999_999_999)
        far = datetime(9999, 12, 31, tzinfo=timezone.utc)
        redis_codes = self.stores().codes
        memory_codes = MemoryOneTimeCodeStore()
        redis_limiter = self.stores().rate_limits
        memory_limiter = MemoryRateLimiter()
        for codes in (redis_codes, memory_codes):
            codes.put(PHONE, CODE, expires_at=far, now=T0, failure_window=huge)
        for step, code in enumerate([WRONG, WRONG, CODE, WRONG, CODE]):
            now = T0 + step * HOUR
            expected = memory_codes.attempt(PHONE, [code], now=now, max_attempts=2)
            assert redis_codes.attempt(PHONE, [code], now=now, max_attempts=2) is expected
        for step in range(3):
            now = T0 + step * US
            expected_hit = memory_limiter.hit("ip:1", limit=1, window=huge, now=now)
            assert redis_limiter.hit("ip:1", limit=1, window=huge, now=now) == expected_hit
        assert redis_limiter.hit("ip:1", limit=1, window=huge, now=T0).retry_after == huge


class TestCandidates(OnBothFaces):
    """The attempt script compares every candidate and counts the attempt once."""

    def test_any_position_verifies(self) -> None:
        """The right hash is found first, last or in the middle of eight; NUL bytes kept."""
        codes = self.stores().codes
        stored = b"\x00" + CODE[1:]
        others = [bytes([i]) * 32 for i in range(3, 10)]
        for position in (0, 3, 7):
            codes.put(PHONE, stored, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
            candidates = [*others[:position], stored, *others[position:]]
            assert len(candidates) == 8
            assert codes.attempt(PHONE, candidates, now=T0, max_attempts=1) is CodeAttempt.OK
            assert self.client.exists(self.key("code", PHONE)) == 0

    def test_eight_wrong_candidates_are_one_attempt(self) -> None:
        """Eight wrong hashes add one to the stored count; near misses do not match."""
        codes = self.stores().codes
        codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        near = [CODE[:-1], CODE + b"\x00", CODE.upper() + b"x", b"\x01" * 31 + b"\x00"]
        assert codes.attempt(PHONE, near * 2, now=T0, max_attempts=3) is CodeAttempt.MISMATCH
        assert self.client.hget(self.key("code", PHONE), "f") == b"1"
        assert codes.attempt(PHONE, [WRONG], now=T0, max_attempts=3) is CodeAttempt.MISMATCH
        assert self.client.hget(self.key("code", PHONE), "f") == b"2"
        assert codes.attempt(PHONE, [WRONG, CODE], now=T0, max_attempts=3) is CodeAttempt.OK


class TestConnectionPool:
    """A client opened from a URL waits a bounded time for a free connection."""

    def test_defaults(self, redis_url: str, prefix: str) -> None:
        """A URL gets a BlockingConnectionPool of 50 that waits 5 s; a client keeps its own."""
        assert (DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_TIMEOUT) == (50, 5.0)
        with redis_storage(redis_url, accounts=MemoryAccountStore(), prefix=prefix) as storage:
            assert isinstance(storage.ledger, RedisTokenLedger)
            pool = cast(redis.Redis, storage.ledger.client).connection_pool
            assert isinstance(pool, redis.BlockingConnectionPool)
            assert (pool.max_connections, pool.timeout) == (50, 5.0)
        client = redis_client(redis_url, max_connections=3, pool_timeout=0.5)
        pool = client.connection_pool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (3, 0.5)
        assert RedisRateLimiter(client, prefix=prefix).hit("ip:1", limit=1, window=HOUR, now=T0)
        client.close()
        own = redis.Redis.from_url(redis_url)
        storage = redis_storage(own, accounts=MemoryAccountStore(), prefix=prefix)
        assert isinstance(storage.codes, RedisOneTimeCodeStore)
        assert cast(redis.Redis, storage.codes.client).connection_pool is own.connection_pool
        own.close()

    def test_a_thousand_concurrent_calls_on_ten_connections(
        self, redis_url: str, prefix: str
    ) -> None:
        """1,000 hits from 500 threads through a pool of 10: each waits its turn, none fails."""
        url, name = _with_client_name(redis_url)
        calls = 1000
        storage = redis_storage(
            url, accounts=MemoryAccountStore(), prefix=prefix, max_connections=10
        )
        observer = redis.Redis.from_url(redis_url)
        try:
            start = threading.Barrier(500)

            def hit(index: int) -> bool:
                if index < 500:
                    start.wait(timeout=60)
                return storage.rate_limits.hit("burst", limit=calls, window=HOUR, now=T0).allowed

            with ThreadPoolExecutor(max_workers=500) as pool:
                results = list(pool.map(hit, range(calls)))
            assert results == [True] * calls
            # Each hit was counted exactly once: the next one is over the limit.
            assert not storage.rate_limits.hit("burst", limit=calls, window=HOUR, now=T0).allowed
            opened = [entry for entry in observer.client_list() if entry["name"] == name]
            assert 1 <= len(opened) <= 10
        finally:
            storage.close()
            observer.close()

    def test_an_exhausted_pool_gives_storage_error(self, redis_url: str, prefix: str) -> None:
        """Every connection busy past pool_timeout: StorageError naming the wait, no key."""
        storage = redis_storage(
            redis_url,
            accounts=MemoryAccountStore(),
            prefix=prefix,
            max_connections=1,
            pool_timeout=0.05,
        )
        assert isinstance(storage.ledger, RedisTokenLedger)
        assert storage.ledger.consume("warm-up", T0 + HOUR, now=T0) is True
        pool = cast(redis.Redis, storage.ledger.client).connection_pool
        held = pool.get_connection()  # the pool's only connection, busy elsewhere
        try:
            began = time.monotonic()
            with pytest.raises(StorageError) as caught:
                storage.ledger.consume("tok-secret", T0 + HOUR, now=T0)
            waited = time.monotonic() - began
            assert str(caught.value) == (
                "Redis storage failed: none of the pool's 1 connections became free within 0.05 s"
            )
            assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
            assert 0.04 <= waited < 2
            for call in (
                lambda: storage.codes.attempt(PHONE, [CODE], now=T0, max_attempts=3),
                lambda: storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0),
                lambda: storage.history.recent("acct-1", 6),
            ):
                with pytest.raises(StorageError, match="became free"):
                    call()
        finally:
            pool.release(held)
        # Free again: the call goes through, and the refused one wrote nothing.
        assert storage.ledger.consume("tok-secret", T0 + HOUR, now=T0) is True
        storage.close()

    def test_a_waiting_call_gets_the_connection_when_it_is_freed(
        self, redis_url: str, prefix: str
    ) -> None:
        """A call that finds the pool busy proceeds as soon as a connection comes back."""
        storage = redis_storage(
            redis_url, accounts=MemoryAccountStore(), prefix=prefix, max_connections=1
        )
        assert isinstance(storage.ledger, RedisTokenLedger)
        pool = cast(redis.Redis, storage.ledger.client).connection_pool
        held = pool.get_connection()
        timer = threading.Timer(0.2, pool.release, args=(held,))
        timer.start()
        began = time.monotonic()
        assert storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is True
        assert 0.15 <= time.monotonic() - began < DEFAULT_POOL_TIMEOUT
        timer.join()
        storage.close()

    def test_bad_pool_settings(self, redis_url: str) -> None:
        """Pool settings out of range or of the wrong type are refused; with a client too."""
        accounts = MemoryAccountStore()
        for bad_count in (0, -1):
            with pytest.raises(ValueError, match="max_connections"):
                redis_storage(redis_url, accounts=accounts, max_connections=bad_count)
        for wrong_count in (True, 2.0, "10"):
            with pytest.raises(TypeError, match="max_connections"):
                redis_storage(redis_url, accounts=accounts, max_connections=wrong_count)  # type: ignore[arg-type]
        for bad_wait in (0, -1.0, float("inf"), float("nan")):
            with pytest.raises(ValueError, match="pool_timeout"):
                redis_storage(redis_url, accounts=accounts, pool_timeout=bad_wait)
        for wrong_wait in (True, "5", timedelta(seconds=5)):
            with pytest.raises(TypeError, match="pool_timeout"):
                redis_storage(redis_url, accounts=accounts, pool_timeout=wrong_wait)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="url"):
            redis_client(42)  # type: ignore[arg-type]
        client = redis.Redis.from_url(redis_url)
        for settings_ in ({"max_connections": 10}, {"pool_timeout": 1.0}):
            with pytest.raises(ValueError, match="your own client"):
                redis_storage(client, accounts=accounts, **settings_)
        client.close()


class TestConstruction(RedisServer):
    def test_default_prefix(self) -> None:
        """The default prefix is documented and used."""
        assert DEFAULT_PREFIX == "kaspi-identity:"
        assert RedisTokenLedger(self.client).prefix == DEFAULT_PREFIX

    def test_bad_arguments(self, redis_url: str) -> None:
        """A non-client, an empty prefix or a decoding client is refused."""
        with pytest.raises(TypeError, match=r"redis\.Redis"):
            RedisTokenLedger(redis_url)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="prefix"):
            RedisRateLimiter(self.client, prefix="")
        with pytest.raises(TypeError):
            RedisRateLimiter(self.client, prefix=None)  # type: ignore[arg-type]
        decoding = redis.Redis.from_url(redis_url, decode_responses=True)
        with pytest.raises(ValueError, match="decode_responses"):
            RedisPasswordHistoryStore(decoding)
        decoding.close()
        with pytest.raises(TypeError, match="URL"):
            redis_storage(42, accounts=MemoryAccountStore())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="scheme"):
            redis_storage("http://example.kz", accounts=MemoryAccountStore())

    def test_times_beyond_lua_precision(self) -> None:
        """Codes and rate limits refuse a ``now`` past 2255, where Lua doubles round."""
        late = datetime(2300, 1, 1, tzinfo=timezone.utc)
        codes = RedisOneTimeCodeStore(self.client, prefix=self.prefix)
        with pytest.raises(ValueError, match="2255"):
            codes.put(PHONE, CODE, expires_at=late + HOUR, now=late, failure_window=HOUR)
        with pytest.raises(ValueError, match="2255"):
            codes.attempt(PHONE, [CODE], now=late, max_attempts=3)
        limiter = RedisRateLimiter(self.client, prefix=self.prefix)
        with pytest.raises(ValueError, match="2255"):
            limiter.hit("ip:1", limit=1, window=HOUR, now=late)
        ledger = RedisTokenLedger(self.client, prefix=self.prefix)
        assert ledger.consume("tok-1", late + HOUR, now=late) is True

    def test_huge_keep_and_limit(self) -> None:
        """keep and limit far beyond any list length work (clamped for LTRIM/LRANGE)."""
        history = RedisPasswordHistoryStore(self.client, prefix=self.prefix)
        history.append("acct-1", _entry(1), keep=10**30)
        history.append("acct-1", _entry(2), keep=2**63)
        assert history.recent("acct-1", 10**30) == [_entry(2), _entry(1)]

    def test_repr_shows_only_the_prefix(self) -> None:
        """A store's repr names its class and prefix, nothing else."""
        ledger = RedisTokenLedger(self.client, prefix=self.prefix)
        assert repr(ledger) == f"RedisTokenLedger(prefix={self.prefix!r})"

    def test_redis_storage_with_a_client(self) -> None:
        """redis_storage(client) bundles the accounts given with the four Redis stores."""
        accounts = MemoryAccountStore()
        storage = redis_storage(self.client, accounts=accounts, prefix=self.prefix)
        assert storage.accounts is accounts
        assert isinstance(storage.ledger, RedisTokenLedger)
        assert isinstance(storage.codes, RedisOneTimeCodeStore)
        assert isinstance(storage.rate_limits, RedisRateLimiter)
        assert isinstance(storage.history, RedisPasswordHistoryStore)
        assert storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is True
        storage.close()
        with pytest.raises(StorageError, match="closed"):
            storage.ledger.consume("tok-2", T0 + HOUR, now=T0)
        # The caller's client stays usable.
        assert self.client.ping() is True

    def test_redis_storage_with_a_url(self, redis_url: str) -> None:
        """redis_storage(url) opens its own client and disconnects it with the bundle."""
        url, name = _with_client_name(redis_url)
        with redis_storage(url, accounts=MemoryAccountStore(), prefix=self.prefix) as storage:
            assert storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0).allowed
            assert name in self.client_names()
        with pytest.raises(StorageError, match="closed"):
            storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0)
        self.wait_until_disconnected(name)


class TestCorruptData(OnBothFaces):
    def _codes(self) -> OneTimeCodeStore:
        return self.stores().codes

    def _dump(self, key: str) -> object:
        return self.client.dump(key)

    @pytest.mark.parametrize(
        "fields",
        [
            {"h": "x", "e": "soon", "w": "1", "f": "0"},
            {"h": "x", "e": "1", "w": "0", "f": "0"},
            {"h": "x", "e": "1", "w": "1", "f": "2"},
            {"h": "x", "e": "1", "w": "1", "f": "0", "x": "5"},
            {"h": "x", "w": "1", "f": "0"},
            {"e": "1", "w": "1", "f": "-1"},
            {"h": "", "e": "1", "w": "1", "f": "0"},
            {"w": "1.5", "f": "0"},
            {"unknown": "field"},
        ],
    )
    def test_bad_code_hash_is_not_overwritten(self, fields: dict[str, str]) -> None:
        """put() and attempt() on a garbage code hash raise and leave it byte for byte."""
        key = self.key("code", PHONE)
        self.client.hset(key, mapping=fields)  # type: ignore[arg-type]
        before = self._dump(key)
        codes = self._codes()
        with pytest.raises(CorruptRecordError, match="one-time code"):
            codes.attempt(PHONE, [CODE], now=T0, max_attempts=3)
        with pytest.raises(CorruptRecordError, match="one-time code"):
            codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        assert self._dump(key) == before

    @pytest.mark.parametrize(
        "fields",
        [
            {"s": "1", "l": "10", "n": "lots"},
            {"s": "1", "l": "0", "n": "1"},
            {"s": "2.5", "l": "10", "n": "1"},
            {"s": "1", "l": "10", "n": "0"},
            {"s": "1", "l": "10"},
            {"other": "1"},
        ],
    )
    def test_bad_window_hash_is_not_overwritten(self, fields: dict[str, str]) -> None:
        """hit() on a garbage window raises CorruptRecordError and leaves it as it was."""
        key = self.key("rate", "ip:1")
        self.client.hset(key, mapping=fields)  # type: ignore[arg-type]
        before = self._dump(key)
        limiter = self.stores().rate_limits
        with pytest.raises(CorruptRecordError, match="rate limit"):
            limiter.hit("ip:1", limit=1, window=HOUR, now=T0)
        assert self._dump(key) == before

    def test_keys_of_another_type(self) -> None:
        """A key holding another Redis type raises CorruptRecordError and is left alone."""
        for namespace, key in (("code", PHONE), ("rate", "ip:1"), ("history", "acct-1")):
            self.client.set(self.key(namespace, key), SECRET_HASH)
        codes = self._codes()
        limiter = self.stores().rate_limits
        history = self.stores().history
        calls: list[Callable[[], object]] = [
            lambda: codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR),
            lambda: codes.attempt(PHONE, [CODE], now=T0, max_attempts=3),
            lambda: limiter.hit("ip:1", limit=1, window=HOUR, now=T0),
            lambda: history.append("acct-1", _entry(1), keep=6),
            lambda: history.recent("acct-1", 6),
        ]
        for call in calls:
            with pytest.raises(CorruptRecordError) as caught:
                call()
            assert SECRET_HASH not in str(caught.value)
            assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)
        for namespace, key in (("code", PHONE), ("rate", "ip:1"), ("history", "acct-1")):
            assert self.client.get(self.key(namespace, key)) == SECRET_HASH.encode()

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"\x01short",
            b"\x02" + b"\x00" * 10 + b"unknown version",
            b"\x01" + b"\x00" * 8 + b"\x00\x40" + b"truncated",
            b"\x01" + b"\x00" * 8 + b"\x00\x02" + b"\xff\xfe",
            b"\x01" + b"\x7f" + b"\xff" * 7 + b"\x00\x01" + b"h",
            b"\x01" + b"\x00" * 8 + b"\x00\x00",
            b"\x01" + b"\x00" * 8 + b"\x00\x01" + b"\x00",
        ],
    )
    def test_garbage_history_entries(self, raw: bytes) -> None:
        """An entry that cannot be decoded raises CorruptRecordError; the list is kept."""
        history = self.stores().history
        history.append("acct-1", _entry(1), keep=6)
        key = self.key("history", "acct-1")
        self.client.lpush(key, raw)
        with pytest.raises(CorruptRecordError, match="password history") as caught:
            history.recent("acct-1", 6)
        assert SECRET_HASH not in str(caught.value)
        assert self.client.llen(key) == 2


def _missing_extra_script() -> str:
    return (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "try:\n"
        "    import kaspi_identity.storage.redis\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('imported without redis')\n"
    )


def test_missing_extra_names_the_install_command() -> None:
    """Without the redis package the import fails naming pip install 'kaspi-identity[redis]'."""
    result = subprocess.run(
        [sys.executable, "-c", _missing_extra_script()],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "pip install 'kaspi-identity[redis]'" in result.stdout


def test_storage_package_does_not_import_redis() -> None:
    """Importing kaspi_identity.storage leaves the redis adapter (and client) unloaded."""
    code = (
        "import sys, kaspi_identity, kaspi_identity.storage\n"
        "print(sorted(m for m in ('redis', 'kaspi_identity.storage.redis') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


# -- Faults: connections that drop after the server ran the command --------------------


class _CuttingProxy:
    """A TCP proxy to the Redis server that can drop one reply and cut the connection.

    With :meth:`cut_next_reply`, the next command reaches the server and runs, but its
    reply is thrown away and both sides of the connection are closed: the client sees the
    connection drop mid-call, the ambiguous case where it cannot know whether the command
    ran.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Set here, not in the thread: a close() that came first would leave the thread a
        # closed socket to configure (EBADF, seen once in CI).
        self._listener.settimeout(0.05)  # so close() is noticed without a connection
        self.port: int = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def cut_next_reply(self) -> None:
        self._cut.set()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            downstream.settimeout(None)
            upstream = socket.create_connection(self._target)
            thread = threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, downstream: socket.socket, upstream: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([downstream, upstream], [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is downstream:
                        upstream.sendall(data)
                    elif self._cut.is_set():
                        self._cut.clear()
                        return
                    else:
                        downstream.sendall(data)
        finally:
            for sock in (downstream, upstream):
                sock.close()


def _raises_storage_error(call: Callable[[], object], *secrets: str) -> StorageError:
    with pytest.raises(StorageError) as caught:
        call()
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    for secret in secrets:
        assert secret not in str(caught.value)
    return caught.value


class TestDroppedConnections(OnBothFaces):
    """The connection drops in the middle of a flow, after the server ran the command.

    On the pipelining face as well: the cut batch fails with StorageError, unretried.
    """

    @pytest.fixture(params=[SYNC, ASYNC, PIPELINED], ids=["sync", "async", "pipelined"])
    def redis_face(self, request: pytest.FixtureRequest) -> Face:
        """The face under test: each in turn, the pipelining one included."""
        face: Face = request.param
        return face

    proxy: _CuttingProxy
    flaky: Any  # a client of the face under test, through the proxy, without retries

    @pytest.fixture(autouse=True)
    def _proxy(self, _redis: None) -> Iterator[None]:
        kwargs = self.client.get_connection_kwargs()
        self.proxy = _CuttingProxy((kwargs["host"], kwargs["port"]))
        self.flaky = self.face.client(
            retry=False, host="127.0.0.1", port=self.proxy.port, db=kwargs.get("db", 0)
        )
        yield
        self.face.close(self.flaky)
        self.proxy.close()

    def lose_reply(self, call: Callable[[], object], *secrets: str) -> StorageError:
        """Run ``call`` with its reply dropped; check it raised StorageError."""
        # Connected and past the handshake, so the cut hits ``call``.
        self.face.wait(self.flaky.ping())
        self.proxy.cut_next_reply()
        return _raises_storage_error(call, *secrets)

    def test_token_is_never_redeemed_twice(self) -> None:
        """A consume whose reply is lost raises StorageError; the id is used all the same."""
        ledger = self.stores(self.flaky).ledger
        steady = self.stores().ledger
        assert ledger.consume("warm-up", T0 + HOUR, now=T0) is True
        self.lose_reply(lambda: ledger.consume("tok-1", T0 + HOUR, now=T0), "tok-1")
        assert ledger.consume("tok-1", T0 + HOUR, now=T0) is False
        assert steady.consume("tok-1", T0 + HOUR, now=T0) is False

    def test_lost_attempts_still_count(self) -> None:
        """Wrong attempts whose replies were lost still count: the right code is EXHAUSTED."""
        codes = self.stores(self.flaky).codes
        codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        assert codes.attempt(PHONE, [WRONG], now=T0, max_attempts=3) is CodeAttempt.MISMATCH
        for _ in range(2):
            self.lose_reply(lambda: codes.attempt(PHONE, [WRONG], now=T0, max_attempts=3))
        assert codes.attempt(PHONE, [CODE], now=T0, max_attempts=3) is CodeAttempt.EXHAUSTED
        assert codes.attempt(PHONE, [CODE], now=T0, max_attempts=3) is CodeAttempt.MISSING
        # A new code does not reset the count either.
        codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        assert codes.attempt(PHONE, [CODE], now=T0, max_attempts=3) is CodeAttempt.EXHAUSTED

    def test_lost_ok_is_not_reusable(self) -> None:
        """A right code whose OK was lost is gone: trying it again is MISSING, never OK."""
        codes = self.stores(self.flaky).codes
        codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        assert codes.attempt(PHONE, [WRONG], now=T0, max_attempts=5) is CodeAttempt.MISMATCH
        self.lose_reply(lambda: codes.attempt(PHONE, [CODE], now=T0, max_attempts=5))
        assert codes.attempt(PHONE, [CODE], now=T0, max_attempts=5) is CodeAttempt.MISSING
        assert self.client.exists(self.key("code", PHONE)) == 0

    def test_lost_put_keeps_the_counter_consistent(self) -> None:
        """A put whose reply is lost leaves a whole state: new code stored, counter kept."""
        codes = self.stores(self.flaky).codes
        codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        assert codes.attempt(PHONE, [CODE[:-1] + b"\x00"], now=T0, max_attempts=2) is (
            CodeAttempt.MISMATCH
        )
        self.lose_reply(
            lambda: codes.put(PHONE, WRONG, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        )
        fields = self.client.hgetall(self.key("code", PHONE))
        assert (fields[b"h"], fields[b"f"]) == (WRONG, b"1")
        assert codes.attempt(PHONE, [CODE], now=T0, max_attempts=2) is CodeAttempt.MISMATCH
        assert codes.attempt(PHONE, [WRONG], now=T0, max_attempts=2) is CodeAttempt.EXHAUSTED

    def test_lost_history_append_is_whole(self) -> None:
        """An append whose reply is lost is either whole or absent -- here, whole and trimmed."""
        history = self.stores(self.flaky).history
        history.append("acct-1", _entry(1), keep=2)
        history.append("acct-1", _entry(2), keep=2)
        self.lose_reply(lambda: history.append("acct-1", _entry(3), keep=2), SECRET_HASH)
        assert history.recent("acct-1", 10) == [_entry(3), _entry(2)]

    def test_lost_hit_is_counted(self) -> None:
        """A hit whose reply is lost still counted: the limit is never exceeded."""
        limiter = self.stores(self.flaky).rate_limits
        assert limiter.hit("ip:1", limit=2, window=HOUR, now=T0).allowed
        self.lose_reply(lambda: limiter.hit("ip:1", limit=2, window=HOUR, now=T0))
        assert not limiter.hit("ip:1", limit=2, window=HOUR, now=T0).allowed

    def test_default_retries_stay_safe(self, redis_url: str) -> None:
        """With redis-py's retries a lost consume is retried -- and answers False, not True.

        The pipelining face never retries: the lost consume is a StorageError, and the id
        is used all the same.
        """
        ledger = self.stores(self.face_client(host="127.0.0.1", port=self.proxy.port)).ledger
        assert ledger.consume("warm-up", T0 + HOUR, now=T0) is True
        self.proxy.cut_next_reply()
        if self.face is PIPELINED:
            _raises_storage_error(lambda: ledger.consume("tok-1", T0 + HOUR, now=T0), "tok-1")
        assert ledger.consume("tok-1", T0 + HOUR, now=T0) is False

    def test_unreachable_server(self) -> None:
        """A server that is not there gives StorageError (cause ConnectionError), no secret."""
        with socket.create_server(("127.0.0.1", 0)) as placeholder:
            port = placeholder.getsockname()[1]
        down = self.face_client(retry=False, port=port, socket_connect_timeout=2)
        stores = self.stores(down)
        ledger, codes, limiter = stores.ledger, stores.codes, stores.rate_limits
        error = _raises_storage_error(
            lambda: ledger.consume("tok-secret", T0 + HOUR, now=T0), "tok-secret"
        )
        assert str(error) == "Redis storage failed: ConnectionError"
        _raises_storage_error(
            lambda: codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        )
        _raises_storage_error(lambda: codes.attempt(PHONE, [CODE], now=T0, max_attempts=3))
        _raises_storage_error(lambda: limiter.hit("ip:1", limit=1, window=HOUR, now=T0))
        _raises_storage_error(lambda: stores.history.recent("acct-1", 6))


# -- Across processes -------------------------------------------------------------------

_PROCESSES = 8
_THREADS_PER_PROCESS = 16


def _race_threads(
    count: int, start: Any, action: Callable[[], _T], warm: Callable[[], object]
) -> list[_T]:
    """Warm ``count`` threads' connections, meet the other processes, then race ``action``."""
    ready = threading.Barrier(count + 1)
    go = threading.Barrier(count)
    results: list[_T] = []
    lock = threading.Lock()

    def worker() -> None:
        warm()
        ready.wait(timeout=60)
        go.wait(timeout=60)
        outcome = action()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=60)
    start.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=60)
    return results


def _race_in_process(url: str, prefix: str, start: Any, results: Any) -> None:
    """Child process: its own client; race 16 threads on one token, then on one code."""
    client = redis.Redis.from_url(url)
    ledger = RedisTokenLedger(client, prefix=prefix)
    codes = RedisOneTimeCodeStore(client, prefix=prefix)
    wins = _race_threads(
        _THREADS_PER_PROCESS,
        start,
        lambda: ledger.consume("shared-token", T0 + HOUR, now=T0),
        client.ping,
    )
    outcomes = _race_threads(
        _THREADS_PER_PROCESS,
        start,
        lambda: codes.attempt(PHONE, [CODE], now=T0, max_attempts=1000).value,
        client.ping,
    )
    client.close()
    results.put((wins, outcomes))


def test_racing_processes_redeem_once(redis_url: str) -> None:
    """8 processes x 16 threads, each process its own client: one consume, one OK code."""
    prefix = _unique_prefix()
    client = redis.Redis.from_url(redis_url)
    try:
        RedisOneTimeCodeStore(client, prefix=prefix).put(
            PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR
        )
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(_PROCESSES)
        results = context.Queue()
        processes = [
            context.Process(target=_race_in_process, args=(redis_url, prefix, start, results))
            for _ in range(_PROCESSES)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        results.close()
        results.join_thread()
        wins = [won for process_wins, _ in outcomes for won in process_wins]
        codes = Counter(code for _, process_codes in outcomes for code in process_codes)
        total = _PROCESSES * _THREADS_PER_PROCESS
        assert (len(wins), wins.count(True)) == (total, 1)
        assert codes == Counter({"ok": 1, "missing": total - 1})
    finally:
        _delete_prefixed(client, prefix)
        client.close()


# -- Agreement with the in-memory reference ---------------------------------------------

BOUNDED = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_redis_agrees_with_memory(redis_url: str) -> None:
    """Random sequences give the same answers from memory accounts + Redis and from memory."""
    client = redis.Redis.from_url(redis_url)
    base = _unique_prefix()
    runs = itertools.count()

    def candidate() -> Storage:
        return redis_storage(client, accounts=MemoryAccountStore(), prefix=f"{base}{next(runs)}:")

    try:
        run_state_machine_as_test(make_comparison_machine(candidate), settings=BOUNDED)
    finally:
        _delete_prefixed(client, base)
        client.close()


def test_async_redis_agrees_with_memory(redis_url: str) -> None:
    """The same random sequences on the async face (one redis.asyncio client) agree too.

    Fewer runs than the sync face's: the stores' code is the same, and each step here also
    crosses to the test loop's thread and back.
    """
    client = redis.asyncio.Redis.from_url(redis_url)
    cleaner = redis.Redis.from_url(redis_url)
    base = _unique_prefix()
    runs = itertools.count()

    def candidate() -> Storage:
        return blocking_storage(
            async_redis_storage(client, accounts=_async_accounts(), prefix=f"{base}{next(runs)}:")
        )

    try:
        machine = make_comparison_machine(candidate)
        run_state_machine_as_test(machine, settings=settings(BOUNDED, max_examples=30))
    finally:
        run_on_test_loop(client.aclose())
        _delete_prefixed(cleaner, base)
        cleaner.close()


# -- The async face: async_redis_storage on redis.asyncio --------------------------------


def _async_client_of(storage: AsyncStorage) -> redis.asyncio.Redis:
    """The redis.asyncio client under an async_redis_storage bundle's stores."""
    # The component is a Coroutining face on a RedisTokenLedger whose client is the
    # _AwaitedClient over the redis.asyncio client.
    client: redis.asyncio.Redis = cast(Any, storage.ledger).target.client.target
    return client


class TestAsyncRedisStorage(
    RedisServer,
    _FromBundle,
    TokenLedgerContract,
    OneTimeCodeStoreContract,
    RateLimiterContract,
    PasswordHistoryStoreContract,
    OutboxStoreContract,
):
    """The contracts of the five stores Redis keeps, on async_redis_storage (its own client).

    The same five as the sync face runs; accounts are the host's (here the async memory
    adapter's, proved with the memory bundle), so there is no with_history to prove.
    """

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        bundle = async_redis_storage(
            self.url, accounts=_async_accounts(), prefix=self.prefix, outbox=True
        )
        with blocking_storage(bundle) as storage:
            yield storage


class TestAsyncConstruction(RedisServer):
    def test_a_url_bundle_owns_its_client(self) -> None:
        """From a URL: accounts as given, no with_history; aclose() disconnects the client."""
        url, name = _with_client_name(self.url)
        accounts = _async_accounts()
        storage = async_redis_storage(url, accounts=accounts, prefix=self.prefix)
        assert storage.accounts is accounts
        assert storage.with_history is None
        assert isinstance(_async_client_of(storage), redis.asyncio.Redis)
        blocking = blocking_storage(storage)
        assert blocking.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0).allowed
        assert name in self.client_names()
        blocking.close()
        with pytest.raises(StorageError, match="closed"):
            blocking.ledger.consume("tok-1", T0 + HOUR, now=T0)
        self.wait_until_disconnected(name)

    def test_a_client_of_your_own_stays_open(self) -> None:
        """With a redis.asyncio.Redis: the bundle uses it as it is and leaves it open."""
        own = redis.asyncio.Redis.from_url(self.url)
        storage = async_redis_storage(own, accounts=_async_accounts(), prefix=self.prefix)
        assert _async_client_of(storage) is own
        assert run_on_test_loop(storage.ledger.consume("tok-1", T0 + HOUR, now=T0)) is True
        run_on_test_loop(storage.aclose())
        assert ASYNC.wait(own.ping()) is True
        assert self.client.get(self.key("token", "tok-1")) == b"1"
        run_on_test_loop(own.aclose())

    def test_bad_arguments(self) -> None:
        """Wrong clients, a decoding client, an empty prefix and bad pool settings: refused."""
        accounts = _async_accounts()
        with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
            async_redis_storage(self.client, accounts=accounts)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="URL"):
            async_redis_storage(42, accounts=accounts)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="scheme"):
            async_redis_storage("http://example.kz", accounts=accounts)
        own = redis.asyncio.Redis.from_url(self.url)
        with pytest.raises(TypeError, match=r"redis\.Redis"):
            redis_storage(own, accounts=MemoryAccountStore())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"redis\.Redis"):
            RedisTokenLedger(own)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="prefix"):
            async_redis_storage(own, accounts=accounts, prefix="")
        for settings_ in ({"max_connections": 10}, {"pool_timeout": 1.0}):
            with pytest.raises(ValueError, match="your own client"):
                async_redis_storage(own, accounts=accounts, **settings_)
        decoding = redis.asyncio.Redis.from_url(self.url, decode_responses=True)
        with pytest.raises(ValueError, match="decode_responses"):
            async_redis_storage(decoding, accounts=accounts)
        # From a URL too; nothing had connected, so nothing is left open.
        with pytest.raises(ValueError, match="decode_responses"):
            async_redis_storage(f"{self.url}?decode_responses=true", accounts=accounts)
        with pytest.raises(ValueError, match="max_connections"):
            async_redis_storage(self.url, accounts=accounts, max_connections=0)
        with pytest.raises(TypeError, match="pool_timeout"):
            async_redis_client(self.url, pool_timeout=True)
        with pytest.raises(ValueError, match="pool_timeout"):
            async_redis_client(self.url, pool_timeout=float("nan"))
        for client in (own, decoding):
            run_on_test_loop(client.aclose())

    def test_flushed_scripts_are_loaded_again(self) -> None:
        """After SCRIPT FLUSH (a restart, a failover) the async face's scripts still run."""
        storage = blocking_storage(
            async_redis_storage(self.url, accounts=_async_accounts(), prefix=self.prefix)
        )
        storage.codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        self.client.script_flush()
        assert storage.codes.attempt(PHONE, [CODE], now=T0, max_attempts=3) is CodeAttempt.OK
        storage.close()


class TestAsyncConnectionPool:
    """A redis.asyncio client opened from a URL: its tasks wait a bounded time for a connection."""

    def test_defaults(self, redis_url: str, prefix: str) -> None:
        """A URL gets a blocking pool of 50 that waits 5 s; async_redis_client takes sizes."""
        storage = async_redis_storage(redis_url, accounts=_async_accounts(), prefix=prefix)
        pool = _async_client_of(storage).connection_pool
        assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (50, 5.0)
        run_on_test_loop(storage.aclose())
        sized = async_redis_storage(
            redis_url, accounts=_async_accounts(), max_connections=3, pool_timeout=0.5
        )
        pool = _async_client_of(sized).connection_pool
        assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (3, 0.5)
        run_on_test_loop(sized.aclose())
        client = async_redis_client(redis_url, max_connections=3, pool_timeout=0.5)
        assert isinstance(client.connection_pool, redis.asyncio.BlockingConnectionPool)
        assert (client.connection_pool.max_connections, client.connection_pool.timeout) == (3, 0.5)
        run_on_test_loop(client.aclose())

    def test_a_thousand_tasks_on_ten_connections(self, redis_url: str, prefix: str) -> None:
        """1,000 concurrent hits through a pool of 10: each waits its turn, none fails."""
        url, name = _with_client_name(redis_url)
        calls = 1000
        storage = async_redis_storage(
            url, accounts=_async_accounts(), prefix=prefix, max_connections=10
        )
        observer = redis.Redis.from_url(redis_url)

        async def burst() -> list[bool]:
            hits = [
                storage.rate_limits.hit("burst", limit=calls, window=HOUR, now=T0)
                for _ in range(calls)
            ]
            return [result.allowed for result in await asyncio.gather(*hits)]

        try:
            assert run_on_test_loop(burst()) == [True] * calls
            # Each hit was counted exactly once: the next one is over the limit.
            over = storage.rate_limits.hit("burst", limit=calls, window=HOUR, now=T0)
            assert not run_on_test_loop(over).allowed
            opened = [entry for entry in observer.client_list() if entry["name"] == name]
            assert 1 <= len(opened) <= 10
        finally:
            run_on_test_loop(storage.aclose())
            observer.close()

    def test_an_exhausted_pool_gives_storage_error(self, redis_url: str, prefix: str) -> None:
        """Every connection busy past pool_timeout: StorageError naming the wait, no key."""
        storage = async_redis_storage(
            redis_url,
            accounts=_async_accounts(),
            prefix=prefix,
            max_connections=1,
            pool_timeout=0.05,
        )
        pool = _async_client_of(storage).connection_pool

        async def scenario() -> None:
            assert await storage.ledger.consume("warm-up", T0 + HOUR, now=T0) is True
            # The pool's only connection, busy elsewhere.
            held = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                began = time.monotonic()
                with pytest.raises(StorageError) as caught:
                    await storage.ledger.consume("tok-secret", T0 + HOUR, now=T0)
                waited = time.monotonic() - began
                assert str(caught.value) == (
                    "Redis storage failed:"
                    " none of the pool's 1 connections became free within 0.05 s"
                )
                assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
                assert 0.04 <= waited < 2
                calls: list[Callable[[], Awaitable[object]]] = [
                    lambda: storage.codes.attempt(PHONE, [CODE], now=T0, max_attempts=3),
                    lambda: storage.rate_limits.hit("ip:1", limit=1, window=HOUR, now=T0),
                    lambda: storage.history.recent("acct-1", 6),
                ]
                for call in calls:
                    with pytest.raises(StorageError, match="became free"):
                        await call()
            finally:
                await pool.release(held)
            # Free again: the call goes through, and the refused one wrote nothing.
            assert await storage.ledger.consume("tok-secret", T0 + HOUR, now=T0) is True

        try:
            run_on_test_loop(scenario())
        finally:
            run_on_test_loop(storage.aclose())

    def test_a_waiting_task_gets_the_connection_when_it_is_freed(
        self, redis_url: str, prefix: str
    ) -> None:
        """A task that finds the pool busy proceeds as soon as a connection comes back."""
        storage = async_redis_storage(
            redis_url, accounts=_async_accounts(), prefix=prefix, max_connections=1
        )
        pool = _async_client_of(storage).connection_pool

        async def scenario() -> float:
            held = await pool.get_connection()  # type: ignore[no-untyped-call]

            async def give_back() -> None:
                await asyncio.sleep(0.2)
                await pool.release(held)

            returning = asyncio.create_task(give_back())
            began = time.monotonic()
            assert await storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is True
            waited = time.monotonic() - began
            await returning
            return waited

        try:
            assert 0.15 <= run_on_test_loop(scenario()) < DEFAULT_POOL_TIMEOUT
        finally:
            run_on_test_loop(storage.aclose())

    def test_a_cancelled_call_is_cancelled(self, redis_url: str, prefix: str) -> None:
        """A task cancelled while it waits for a connection: CancelledError, nothing written."""
        storage = async_redis_storage(
            redis_url, accounts=_async_accounts(), prefix=prefix, max_connections=1
        )
        pool = _async_client_of(storage).connection_pool

        async def scenario() -> None:
            held = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                waiting = asyncio.create_task(storage.ledger.consume("tok-1", T0 + HOUR, now=T0))
                await asyncio.sleep(0.05)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            finally:
                await pool.release(held)
            assert await storage.ledger.consume("tok-1", T0 + HOUR, now=T0) is True

        try:
            run_on_test_loop(scenario())
        finally:
            run_on_test_loop(storage.aclose())

    def test_a_refused_connection_is_not_a_pool_timeout(self, prefix: str) -> None:
        """No server behind the URL: a plain ConnectionError, never "became free"."""
        with socket.create_server(("127.0.0.1", 0)) as placeholder:
            port = placeholder.getsockname()[1]
        storage = async_redis_storage(
            f"redis://127.0.0.1:{port}/0",
            accounts=_async_accounts(),
            prefix=prefix,
            max_connections=1,
            pool_timeout=0.05,
        )
        blocking = blocking_storage(storage)
        for _ in range(2):  # the failed connection went back to the pool
            error = _raises_storage_error(lambda: blocking.ledger.consume("t", T0 + HOUR, now=T0))
            assert str(error) == "Redis storage failed: ConnectionError"
        blocking.close()


class TestAsyncConcurrency(RedisServer):
    """Many tasks on one key at once, on one loop and one pool: exactly the promised winners."""

    TASKS = 300

    def test_racing_tasks_on_one_key(self) -> None:
        """One consume, one OK code, five counted wrong codes, ten hits, five entries kept."""
        storage = async_redis_storage(self.url, accounts=_async_accounts(), prefix=self.prefix)
        n = self.TASKS

        async def races() -> None:
            await storage.codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
            await storage.codes.put(
                "+77021234567", CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR
            )
            consumed, right, wrong, hits, _ = await asyncio.gather(
                asyncio.gather(
                    *(storage.ledger.consume("tok-1", T0 + HOUR, now=T0) for _ in range(n))
                ),
                asyncio.gather(
                    *(
                        storage.codes.attempt(PHONE, [CODE], now=T0, max_attempts=5)
                        for _ in range(n)
                    )
                ),
                asyncio.gather(
                    *(
                        storage.codes.attempt("+77021234567", [WRONG], now=T0, max_attempts=5)
                        for _ in range(n)
                    )
                ),
                asyncio.gather(
                    *(
                        storage.rate_limits.hit("ip:1", limit=10, window=HOUR, now=T0)
                        for _ in range(n)
                    )
                ),
                asyncio.gather(
                    *(storage.history.append("acct-1", _entry(i % 256), keep=5) for i in range(n))
                ),
            )
            assert consumed.count(True) == 1
            assert Counter(right) == Counter({CodeAttempt.OK: 1, CodeAttempt.MISSING: n - 1})
            assert Counter(wrong) == Counter(
                {CodeAttempt.MISMATCH: 5, CodeAttempt.EXHAUSTED: 1, CodeAttempt.MISSING: n - 6}
            )
            assert [hit.allowed for hit in hits].count(True) == 10
            assert len(await storage.history.recent("acct-1", n)) == 5

        try:
            run_on_test_loop(races())
        finally:
            run_on_test_loop(storage.aclose())


# -- End to end: AsyncIdentityService on Redis -------------------------------------------


def _link_token(message: EmailMessage) -> str:
    return parse_qs(urlsplit(extract_link(message)).query)["token"][0]


def test_async_service_on_redis(redis_url: str) -> None:
    """Register, confirm, log in, reset by e-mail and by SMS, all awaited, on Redis.

    Redis keeps no accounts: they live in the account store given (here the async memory
    adapter's), while tokens, codes, limits and history land under the Redis prefix.
    """
    prefix = _unique_prefix()
    accounts = _async_accounts()
    storage = async_redis_storage(redis_url, accounts=accounts, prefix=prefix)
    outbox = Outbox()
    service = AsyncIdentityService(
        storage,
        IdentitySettings(
            secret_keys=(b"kaspi-identity tests: async redis key 0123",),
            confirm_url="https://portal.example.kz/confirm",
            reset_url="https://portal.example.kz/reset",
        ),
        email_sender=outbox,
        sms_sender=outbox,
        policy=PasswordPolicy(history=6),
        hasher=PasswordHasher(TESTS_ONLY),
        clock=(clock := ManualClock()),
    )
    email, phone = "aliya@example.kz", "+77011234567"
    first, second, third = "Tr0ub4dor&3x", "Velvet#Quartz-9182", "Amber!Falcon-4471"

    async def journey() -> str:
        registered = await service.register(
            email=email, phone=phone, password=first, confirmation=first, client_key="ip-1"
        )
        assert registered.ok
        await service.confirm_email(_link_token(outbox.last_email(to=email)))
        login = await service.authenticate(email, first, client_key="ip-1")
        assert login.ok
        assert login.account_id is not None
        # Only a proven number receives reset codes: the code for it is kept in Redis too.
        assert await service.request_phone_change(login.account_id, first, phone, client_key="ip-1")
        code = extract_code(outbox.last_sms(to=phone))
        assert await service.verify_phone(login.account_id, code)
        clock.advance(service.settings.sms_cooldown)
        await service.request_password_reset(email, client_key="ip-1")
        link = _link_token(outbox.last_email(to=email))
        assert (await service.reset_password(link, second, second)).ok
        with pytest.raises(InvalidTokenError):  # the ledger in Redis: once only
            await service.reset_password(link, third, third)
        await service.request_sms_reset(phone, client_key="ip-1")
        grant = await service.verify_sms_code(phone, extract_code(outbox.last_sms(to=phone)))
        assert (await service.reset_password(grant, third, third)).ok
        assert not (await service.authenticate(email, second, client_key="ip-2")).ok
        assert (await service.authenticate(email, third, client_key="ip-2")).ok
        account = await accounts.find_by_login("email", email)
        assert account is not None
        assert account.email_confirmed
        return str(account.id)

    client = redis.Redis.from_url(redis_url)
    try:
        try:
            account_id = run_on_test_loop(journey())
        finally:
            run_on_test_loop(storage.aclose())
        keys = {key.decode() for key in client.scan_iter(match=f"{prefix}*")}
        assert {key[len(prefix) :].split(":", 1)[0] for key in keys} == {"token", "rate", "history"}
        assert client.llen(f"{prefix}history:{{{account_id}}}") == 3
    finally:
        _delete_prefixed(client, prefix)
        client.close()


# -- Pipelining: concurrent callers share round trips ------------------------------------


class TestPipelinedRedisStorage(
    RedisServer,
    _FromBundle,
    TokenLedgerContract,
    OneTimeCodeStoreContract,
    RateLimiterContract,
    PasswordHistoryStoreContract,
):
    """The contracts of the four stores on ``redis_storage(..., pipelining=True)``."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        with redis_storage(
            self.url, accounts=MemoryAccountStore(), prefix=self.prefix, pipelining=True
        ) as storage:
            yield storage


def test_pipelined_redis_agrees_with_memory(redis_url: str) -> None:
    """Random sequences answer the same through the pipelining face as on memory."""
    client = redis.Redis.from_url(redis_url)
    base = _unique_prefix()
    runs = itertools.count()

    def candidate() -> Storage:
        return redis_storage(
            client, accounts=MemoryAccountStore(), prefix=f"{base}{next(runs)}:", pipelining=True
        )

    try:
        run_state_machine_as_test(make_comparison_machine(candidate), settings=BOUNDED)
    finally:
        _delete_prefixed(client, base)
        client.close()


class _CountingConnection(redis.Connection):
    """Counts the writes (batches) sent and the replies read, over all its instances."""

    writes = 0
    replies = 0

    def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        type(self).writes += 1
        super().send_packed_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        type(self).replies += 1
        return super().read_response(*args, **kwargs)


class TestPipelining(RedisServer):
    def _counted(self, **kwargs: Any) -> Storage:
        pool = redis.ConnectionPool.from_url(self.url, connection_class=_CountingConnection)
        client = redis.Redis(connection_pool=pool)
        self._opened_clients = [*getattr(self, "_opened_clients", []), client]
        return redis_storage(client, accounts=MemoryAccountStore(), prefix=self.prefix, **kwargs)

    @pytest.fixture(autouse=True)
    def _close_counted(self) -> Iterator[None]:
        yield
        for client in getattr(self, "_opened_clients", []):
            client.close()

    def test_one_thread_makes_one_round_trip_per_operation(self) -> None:
        """Alone, each operation is one write and one reply, as without pipelining."""
        storage = self._counted(pipelining=True)
        storage.codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        _CountingConnection.writes = _CountingConnection.replies = 0
        for i in range(20):
            assert storage.ledger.consume(f"t-{i}", T0 + HOUR, now=T0)
            assert storage.codes.attempt(PHONE, [WRONG], now=T0, max_attempts=99) is (
                CodeAttempt.MISMATCH
            )
        assert (_CountingConnection.writes, _CountingConnection.replies) == (40, 40)

    def test_racing_threads_share_round_trips_and_answers_stay_exact(self) -> None:
        """32 threads x 40 operations: fewer writes than operations, every answer right."""
        storage = self._counted(pipelining=True)
        storage.codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        _CountingConnection.writes = _CountingConnection.replies = 0
        start = threading.Barrier(32)
        consumed: list[bool] = []
        attempts: list[CodeAttempt] = []
        hits: list[bool] = []

        def worker(index: int) -> None:
            start.wait(timeout=30)
            for i in range(10):
                consumed.append(storage.ledger.consume(f"shared-{i}", T0 + HOUR, now=T0))
                consumed.append(storage.ledger.consume(f"own-{index}-{i}", T0 + HOUR, now=T0))
                attempts.append(storage.codes.attempt(PHONE, [WRONG], now=T0, max_attempts=100))
                hits.append(storage.rate_limits.hit("ip", limit=200, window=HOUR, now=T0).allowed)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert consumed.count(True) == 10 + 320
        assert Counter(attempts) == Counter(
            {CodeAttempt.MISMATCH: 100, CodeAttempt.EXHAUSTED: 1, CodeAttempt.MISSING: 219}
        )
        assert hits.count(True) == 200
        assert _CountingConnection.replies == 32 * 40
        assert _CountingConnection.writes < _CountingConnection.replies

    def test_a_flushed_script_is_loaded_again(self) -> None:
        """NOSCRIPT (a restart, SCRIPT FLUSH): the call loads the script and runs once."""
        storage = self.stores_pipelined()
        storage.codes.put(PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        self.client.script_flush()
        assert storage.codes.attempt(PHONE, [WRONG], now=T0, max_attempts=3) is (
            CodeAttempt.MISMATCH
        )
        self.client.script_flush()
        assert storage.codes.attempt(PHONE, [CODE], now=T0, max_attempts=3) is CodeAttempt.OK

    def stores_pipelined(self) -> Storage:
        return redis_storage(
            self.client, accounts=MemoryAccountStore(), prefix=self.prefix, pipelining=True
        )

    def test_errors_are_per_command(self) -> None:
        """A key of another type fails its own call only; the rest of a batch is answered."""
        storage = self.stores_pipelined()
        self.client.set(self.key("code", PHONE), b"not a hash")
        with pytest.raises(CorruptRecordError):
            storage.codes.attempt(PHONE, [CODE], now=T0, max_attempts=3)
        assert storage.ledger.consume("after", T0 + HOUR, now=T0)

    def test_pipelining_is_for_one_server_and_a_bool(self) -> None:
        """A cluster client or a non-bool is refused at construction."""
        with pytest.raises(TypeError, match="pipelining"):
            redis_storage(self.client, accounts=MemoryAccountStore(), pipelining=1)  # type: ignore[arg-type]
        fake_cluster = cast(Any, object.__new__(redis.cluster.RedisCluster))
        fake_cluster.nodes_manager = None
        with pytest.raises((TypeError, ValueError)):
            redis_storage(fake_cluster, accounts=MemoryAccountStore(), pipelining=True)


class TestPipeliningTurns:
    """The hand-over of the turn to send the next batch, when a waiting caller goes away."""

    def _waiting(self, client: Any, *, lead: bool = False) -> Any:
        from kaspi_identity.storage.redis import _Call

        call = _Call(("PING",))
        call.waiter = threading.Lock()
        call.waiter.acquire()
        call.lead = lead
        client._queue.append(call)
        return call

    def test_an_interrupted_caller_passes_its_turn_on(self) -> None:
        """The caller handed the next batch is interrupted: the next in line gets the turn."""
        from kaspi_identity.storage.redis import _PipeliningClient

        client = _PipeliningClient(redis.Redis())
        client._busy = True
        first = self._waiting(client, lead=True)
        second = self._waiting(client)
        client._abandon(first)
        assert client._queue == [second]
        assert second.lead
        assert second.waiter.acquire(blocking=False)  # released: it sends the next batch
        assert client._busy

    def test_the_last_interrupted_caller_ends_the_batching(self) -> None:
        """Nobody left in line: no batch is in flight, the next caller sends at once."""
        from kaspi_identity.storage.redis import _PipeliningClient

        client = _PipeliningClient(redis.Redis())
        client._busy = True
        only = self._waiting(client, lead=True)
        client._abandon(only)
        assert client._queue == []
        assert not client._busy

    def test_an_interrupted_waiter_takes_its_command_back(self) -> None:
        """A caller interrupted before its batch left: its command is not sent."""
        from kaspi_identity.storage.redis import _PipeliningClient

        client = _PipeliningClient(redis.Redis())
        client._busy = True
        waiting = self._waiting(client)
        client._abandon(waiting)
        assert client._queue == []
        assert client._busy  # the batch in flight still answers and hands over


def test_pipelining_in_a_forked_child(redis_url: str) -> None:
    """A child forked while the parent's bundle is in use batches on its own."""
    script = f"""
import os, sys, threading
from datetime import datetime, timedelta, timezone
from kaspi_identity.storage.memory import MemoryAccountStore
from kaspi_identity.storage.redis import redis_storage
now = datetime(2025, 3, 1, tzinfo=timezone.utc)
storage = redis_storage({redis_url!r}, accounts=MemoryAccountStore(),
                        prefix={_unique_prefix()!r}, pipelining=True)
assert storage.ledger.consume("parent", now + timedelta(hours=1), now=now)
face = storage.ledger._client
face._lock.acquire()  # as if a thread of the parent were queueing at the fork
face._busy = True
pid = os.fork()
if pid == 0:
    ok = storage.ledger.consume("child", now + timedelta(hours=1), now=now)
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
face._lock.release()
client = storage.ledger.client
client.delete(*client.keys(storage.ledger.prefix + "*"))
print(os.waitstatus_to_exitcode(status))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "0"
