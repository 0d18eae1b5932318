"""The Redis adapter on a real Redis Cluster: three masters, each with a replica.

``scripts/test-servers start`` brings the cluster up on loopback (six ``redis-server
--cluster-enabled yes`` joined by ``redis-cli --cluster create``) and exports
``KASPI_IDENTITY_REDIS_CLUSTER_URL``. Here, through redis-py's cluster-aware clients
(``redis.cluster.RedisCluster`` and ``redis.asyncio.cluster.RedisCluster``):

- the contract suite of the five stores Redis keeps (the outbox's included), on both faces;
- where the keys land: each operation touches one key, hashed by its ``{...}`` tag, and a
  population of keys spreads over every master;
- 8 processes x 16 threads racing one token and one code; workers in threads and in
  processes draining the outbox with crashed claims and late completes;
- the flows end to end (register, confirm, log in, reset by e-mail and SMS), both faces;
- a fail-over: a replica takes over a master holding live state, and every answer after it
  is the one the state before it gives (the scripts reload themselves on the new master),
  and one of the outbox's master in the middle of a delivery.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import redis.asyncio.cluster
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from redis.cluster import RedisCluster
from redis.crc import key_slot

from _servers import require_server
from kaspi_identity._errors import InvalidTokenError
from kaspi_identity.delivery import EmailMessage, Outbox, extract_code, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.services import (
    AsyncIdentityService,
    IdentityService,
    IdentitySettings,
    ManualClock,
)
from kaspi_identity.storage import (
    CodeAttempt,
    HistoryEntry,
    OneTimeCodeStore,
    OutboxEntry,
    OutboxMessage,
    OutboxStore,
    PasswordHistoryStore,
    RateLimiter,
    Storage,
    TokenLedger,
)
from kaspi_identity.storage.memory import MemoryAccountStore, async_memory_storage
from kaspi_identity.storage.redis import (
    _LUA_ATTEMPT_CODE,
    RedisOneTimeCodeStore,
    RedisOutboxStore,
    RedisPasswordHistoryStore,
    RedisRateLimiter,
    RedisTokenLedger,
    async_redis_storage,
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

ENV_VAR = "KASPI_IDENTITY_REDIS_CLUSTER_URL"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
PHONE = "+77011234567"
CODE = b"\x01" * 32
WRONG = b"\x02" * 32
KEY = b"kaspi-identity tests: redis cluster key 0123"


@pytest.fixture(scope="module")
def cluster_url() -> str:
    """The cluster's URL (any node); skips (or fails with CI=true) when there is none."""
    return require_server(ENV_VAR)


def _unique_prefix() -> str:
    return f"kaspi-test:{uuid.uuid4().hex}:"


def _delete_prefixed(client: RedisCluster, prefix: str) -> None:
    # SCAN on a cluster client visits every master; keys of many slots are deleted one by one.
    for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
        client.delete(key)


def _slot(key: str) -> int:
    """The hash slot of ``key`` (by its first ``{...}`` tag when it has one)."""
    return key_slot(key.encode())


def _master_of(client: RedisCluster, key: str) -> Any:
    """The cluster node that serves ``key``'s slot now (``.host``, ``.port``, ``.name``)."""
    return cast(Any, client).get_node_from_key(key)


def _async_accounts() -> Any:
    return async_memory_storage().accounts


class ClusterServer:
    """A cluster client and a fresh key prefix per test; the prefix's keys deleted after."""

    client: RedisCluster
    prefix: str
    url: str

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster_url: str) -> Iterator[None]:
        self.url = cluster_url
        self.client = RedisCluster.from_url(cluster_url)
        self.prefix = _unique_prefix()
        yield
        _delete_prefixed(self.client, self.prefix)
        self.client.close()


class TestClusterTokenLedger(ClusterServer, TokenLedgerContract):
    def make_ledger(self) -> TokenLedger:
        return RedisTokenLedger(self.client, prefix=self.prefix)


class TestClusterOneTimeCodeStore(ClusterServer, OneTimeCodeStoreContract):
    def make_codes(self) -> OneTimeCodeStore:
        return RedisOneTimeCodeStore(self.client, prefix=self.prefix)


class TestClusterRateLimiter(ClusterServer, RateLimiterContract):
    def make_rate_limiter(self) -> RateLimiter:
        return RedisRateLimiter(self.client, prefix=self.prefix)


class TestClusterPasswordHistoryStore(ClusterServer, PasswordHistoryStoreContract):
    def make_history(self) -> PasswordHistoryStore:
        return RedisPasswordHistoryStore(self.client, prefix=self.prefix)


class TestClusterOutboxStore(ClusterServer, OutboxStoreContract):
    def make_outbox(self) -> OutboxStore:
        return RedisOutboxStore(self.client, prefix=self.prefix)


class TestAsyncClusterStorage(
    ClusterServer,
    _FromBundle,
    TokenLedgerContract,
    OneTimeCodeStoreContract,
    RateLimiterContract,
    PasswordHistoryStoreContract,
    OutboxStoreContract,
):
    """The same contracts on async_redis_storage over ``redis.asyncio.cluster.RedisCluster``."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        client = redis.asyncio.cluster.RedisCluster.from_url(self.url)
        bundle = async_redis_storage(
            client, accounts=_async_accounts(), prefix=self.prefix, outbox=True
        )
        with blocking_storage(bundle) as storage:
            yield storage
        run_on_test_loop(client.aclose())


def test_the_cluster_agrees_with_memory(cluster_url: str) -> None:
    """Random operation sequences answer the same on the cluster as on the memory adapter."""
    client = RedisCluster.from_url(cluster_url)
    base = _unique_prefix()
    runs = itertools.count()

    def candidate() -> Storage:
        return redis_storage(client, accounts=MemoryAccountStore(), prefix=f"{base}{next(runs)}:")

    bounded = settings(
        max_examples=30,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    try:
        run_state_machine_as_test(make_comparison_machine(candidate), settings=bounded)
    finally:
        _delete_prefixed(client, base)
        client.close()


class TestKeysOnTheCluster(ClusterServer):
    def _write_everything(self, storage: Storage, index: int) -> None:
        entry = HistoryEntry(password_hash=f"$argon2id$h{index}", fingerprint=b"f", created_at=T0)
        storage.ledger.consume(f"token-{index}", T0 + HOUR, now=T0)
        storage.codes.put(
            f"+7701{index:07d}", CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR
        )
        storage.codes.attempt(f"+7701{index:07d}", [WRONG], now=T0, max_attempts=5)
        storage.rate_limits.hit(f"ip:{index}", limit=5, window=HOUR, now=T0)
        storage.history.append(f"account-{index}", entry, keep=3)

    def test_each_key_hashes_by_its_tag(self) -> None:
        """Every key written is in the slot of the caller's key alone (its ``{...}`` tag)."""
        storage = redis_storage(self.client, accounts=MemoryAccountStore(), prefix=self.prefix)
        self._write_everything(storage, 7)
        keys = [key.decode() for key in self.client.scan_iter(match=f"{self.prefix}*")]
        assert len(keys) == 4
        for key in keys:
            tag = key[key.index("{") + 1 : key.rindex("}")]
            assert _slot(key) == _slot(tag)

    def test_a_population_spreads_over_every_master(self) -> None:
        """200 accounts' keys land on all three masters: nothing pins the data to one."""
        storage = redis_storage(self.client, accounts=MemoryAccountStore(), prefix=self.prefix)
        for index in range(200):
            self._write_everything(storage, index)
        masters = Counter(
            _master_of(self.client, key.decode()).name
            for key in self.client.scan_iter(match=f"{self.prefix}*")
        )
        assert len(masters) == 3
        assert sum(masters.values()) == 800
        assert min(masters.values()) > 150


_PROCESSES = 8
_THREADS_PER_PROCESS = 16


def _race_in_process(url: str, prefix: str, start: Any, results: Any) -> None:
    """Child process: its own cluster client; 16 threads race one token, then one code."""
    import threading

    client = RedisCluster.from_url(url)
    ledger = RedisTokenLedger(client, prefix=prefix)
    codes = RedisOneTimeCodeStore(client, prefix=prefix)

    def race(action: Callable[[], object]) -> list[object]:
        ready = threading.Barrier(_THREADS_PER_PROCESS + 1)
        go = threading.Barrier(_THREADS_PER_PROCESS)
        outcomes: list[object] = []
        lock = threading.Lock()

        def worker() -> None:
            client.ping()
            ready.wait(timeout=60)
            go.wait(timeout=60)
            outcome = action()
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=worker) for _ in range(_THREADS_PER_PROCESS)]
        for thread in threads:
            thread.start()
        ready.wait(timeout=60)
        start.wait(timeout=60)
        for thread in threads:
            thread.join(timeout=60)
        return outcomes

    wins = race(lambda: ledger.consume("shared-token", T0 + HOUR, now=T0))
    attempts = race(lambda: codes.attempt(PHONE, [CODE], now=T0, max_attempts=1000).value)
    client.close()
    results.put((wins, attempts))


def test_racing_processes_redeem_once_on_the_cluster(cluster_url: str) -> None:
    """8 processes x 16 threads, each process its own cluster client: one consume, one OK."""
    prefix = _unique_prefix()
    client = RedisCluster.from_url(cluster_url)
    try:
        RedisOneTimeCodeStore(client, prefix=prefix).put(
            PHONE, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR
        )
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(_PROCESSES)
        results = context.Queue()
        processes = [
            context.Process(target=_race_in_process, args=(cluster_url, prefix, start, results))
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


# -- The outbox: every key in one slot, claims and completes racing ------------------------

_LEASE = timedelta(seconds=30)
_ROUNDS = 10
_MESSAGES = 120


def _outbox_message(index: int) -> OutboxMessage:
    return OutboxMessage(
        id=f"{index:032x}",
        channel="email",
        kind="password_reset",
        to=f"user{index}@example.kz",
        language="kk",
        payload='{"minutes": 60}',
        account_id=f"acct-{index}",
        created_at=T0,
    )


def _drain_outbox(outbox: OutboxStore, worker: int) -> tuple[list[tuple[str, int]], int]:
    """One worker's rounds of claim-then-complete, each round one lease later than the last.

    A worker crashes on a seventh of the messages at their first claim (never completes
    them: their lease must run out and another worker claim them again), and completes a
    quarter of its claims only in its next round, after their lease ran out, racing
    whoever claimed them meanwhile. Returns the completes that won, as ``(id, attempt)``,
    and how many lost.
    """
    won: list[tuple[str, int]] = []
    lost = 0
    late: list[OutboxEntry] = []
    for round_ in range(_ROUNDS):
        now = T0 + round_ * _LEASE + timedelta(microseconds=worker)
        for entry in late:
            if outbox.complete(entry.id, attempt=entry.attempts, now=now):
                won.append((entry.id, entry.attempts))
            else:
                lost += 1
        late = []
        for entry in outbox.claim(now=now, lease=_LEASE, limit=2):
            number = int(entry.id, 16)
            if number % 7 == 0 and entry.attempts == 1:
                continue
            if number % 4 == round_ % 4:
                late.append(entry)
            elif outbox.complete(entry.id, attempt=entry.attempts, now=now):
                won.append((entry.id, entry.attempts))
            else:
                lost += 1
    return won, lost


def _check_drained(outbox: OutboxStore, won: list[tuple[str, int]]) -> None:
    """Every message sent once, by its latest claim; the crashed claims were claimed again."""
    later = T0 + (_ROUNDS + 2) * _LEASE
    for entry in outbox.claim(now=later, lease=_LEASE, limit=_MESSAGES):  # what is left
        assert outbox.complete(entry.id, attempt=entry.attempts, now=later)
        won.append((entry.id, entry.attempts))
    assert Counter(key for key, _ in won) == Counter(
        _outbox_message(i).id for i in range(_MESSAGES)
    )
    sent = {entry.id: entry for entry in outbox.list(status="sent", limit=_MESSAGES + 1)}
    assert len(sent) == _MESSAGES
    assert outbox.list(status="pending", limit=10) == []
    for key, attempt in won:
        assert sent[key].attempts == attempt  # only the latest claim's complete counts
        if int(key, 16) % 7 == 0:
            assert attempt >= 2


class TestOutboxOnTheCluster(ClusterServer):
    def test_every_outbox_key_is_in_one_slot(self) -> None:
        """Messages, the due index and the status indexes share the {outbox} tag: one slot,
        so each multi-key script runs on one master."""
        outbox = RedisOutboxStore(self.client, prefix=self.prefix)
        for index in range(12):
            outbox.enqueue(_outbox_message(index), now=T0)
        for entry in outbox.claim(now=T0, lease=_LEASE, limit=6):
            if int(entry.id, 16) % 2:
                assert outbox.complete(entry.id, attempt=1, now=T0)
            else:
                assert outbox.fail(entry.id, attempt=1, now=T0, retry_at=None, error="Boom")
        keys = [key.decode() for key in self.client.scan_iter(match=f"{self.prefix}*")]
        assert len(keys) == 12 + 5  # the messages, age, due and the three statuses used
        assert {_slot(key) for key in keys} == {_slot("outbox")}

    def test_claims_and_completes_race_across_threads(self) -> None:
        """16 threads drain 120 messages with crashes and late completes: each sent once."""
        outbox = RedisOutboxStore(self.client, prefix=self.prefix)
        for index in range(_MESSAGES):
            assert outbox.enqueue(_outbox_message(index), now=T0)
        results = _race(16, lambda worker: _drain_outbox(outbox, worker))
        won = [item for part, _ in results for item in part]
        _check_drained(outbox, won)

    def test_claims_and_completes_race_across_processes(self) -> None:
        """4 processes x 8 threads, each process its own cluster client: each sent once."""
        outbox = RedisOutboxStore(self.client, prefix=self.prefix)
        for index in range(_MESSAGES):
            assert outbox.enqueue(_outbox_message(index), now=T0)
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(4)
        results = context.Queue()
        processes = [
            context.Process(
                target=_drain_in_process, args=(self.url, self.prefix, index, start, results)
            )
            for index in range(4)
        ]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        results.close()
        results.join_thread()
        _check_drained(outbox, [(key, attempt) for won in outcomes for key, attempt in won])


def _race(count: int, action: Callable[[int], Any]) -> list[Any]:
    """``action(i)`` in ``count`` threads released together; the results in order."""
    import threading

    barrier = threading.Barrier(count)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = action(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return [results[index] for index in range(count)]


def _drain_in_process(url: str, prefix: str, process: int, start: Any, results: Any) -> None:
    """Child process: 8 threads drain the outbox on a cluster client of its own."""
    client = RedisCluster.from_url(url)
    outbox = RedisOutboxStore(client, prefix=prefix)
    client.ping()
    start.wait(timeout=60)
    parts = _race(8, lambda thread: _drain_outbox(outbox, process * 8 + thread))
    client.close()
    results.put([item for won, _ in parts for item in won])


# -- The flows, end to end -----------------------------------------------------------------


def _link_token(message: EmailMessage) -> str:
    return parse_qs(urlsplit(extract_link(message)).query)["token"][0]


def _settings() -> IdentitySettings:
    return IdentitySettings(
        secret_keys=(KEY,),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
    )


EMAIL, FIRST, SECOND, THIRD = (
    "aliya@example.kz",
    "Tr0ub4dor&3x",
    "Velvet#Quartz-9182",
    "Amber!Falcon-4471",
)


def test_the_flows_on_the_cluster(cluster_url: str) -> None:
    """Register, confirm, log in, reset by e-mail (once only) and by SMS, on the cluster."""
    prefix = _unique_prefix()
    client = RedisCluster.from_url(cluster_url)
    outbox = Outbox()
    accounts = MemoryAccountStore()
    service = IdentityService(
        redis_storage(client, accounts=accounts, prefix=prefix),
        _settings(),
        email_sender=outbox,
        sms_sender=outbox,
        policy=PasswordPolicy(history=6),
        hasher=PasswordHasher(TESTS_ONLY),
        clock=(clock := ManualClock()),
    )
    try:
        assert service.register(
            email=EMAIL, phone=PHONE, password=FIRST, confirmation=FIRST, client_key="ip-1"
        ).ok
        service.confirm_email(_link_token(outbox.last_email(to=EMAIL)))
        login = service.authenticate(EMAIL, FIRST, client_key="ip-1")
        assert login.ok
        assert login.account_id is not None
        # Only a proven number receives reset codes: its code is kept on the cluster too.
        assert service.request_phone_change(login.account_id, FIRST, PHONE, client_key="ip-1")
        assert service.verify_phone(login.account_id, extract_code(outbox.last_sms(to=PHONE)))
        clock.advance(service.settings.sms_cooldown)
        assert not service.authenticate(EMAIL, SECOND, client_key="ip-1").ok
        service.request_password_reset(EMAIL, client_key="ip-1")
        link = _link_token(outbox.last_email(to=EMAIL))
        assert service.reset_password(link, SECOND, SECOND).ok
        with pytest.raises(InvalidTokenError):
            service.reset_password(link, THIRD, THIRD)
        service.request_sms_reset(PHONE, client_key="ip-1")
        grant = service.verify_sms_code(PHONE, extract_code(outbox.last_sms(to=PHONE)))
        assert service.reset_password(grant, THIRD, THIRD).ok
        assert service.authenticate(EMAIL, THIRD, client_key="ip-2").ok
        account = accounts.find_by_login("email", EMAIL)
        assert account is not None
        assert client.llen(f"{prefix}history:{{{account.id}}}") == 3
    finally:
        _delete_prefixed(client, prefix)
        client.close()


def test_the_async_flows_on_the_cluster(cluster_url: str) -> None:
    """The same journey on AsyncIdentityService over redis.asyncio's cluster client."""
    prefix = _unique_prefix()
    client = redis.asyncio.cluster.RedisCluster.from_url(cluster_url)
    storage = async_redis_storage(client, accounts=_async_accounts(), prefix=prefix)
    outbox = Outbox()
    service = AsyncIdentityService(
        storage,
        _settings(),
        email_sender=outbox,
        sms_sender=outbox,
        policy=PasswordPolicy(history=6),
        hasher=PasswordHasher(TESTS_ONLY),
        clock=(clock := ManualClock()),
    )

    async def journey() -> None:
        registered = await service.register(
            email=EMAIL, phone=PHONE, password=FIRST, confirmation=FIRST, client_key="ip-1"
        )
        assert registered.ok
        await service.confirm_email(_link_token(outbox.last_email(to=EMAIL)))
        login = await service.authenticate(EMAIL, FIRST, client_key="ip-1")
        assert login.ok
        assert login.account_id is not None
        assert await service.request_phone_change(login.account_id, FIRST, PHONE, client_key="ip-1")
        assert await service.verify_phone(login.account_id, extract_code(outbox.last_sms(to=PHONE)))
        clock.advance(service.settings.sms_cooldown)
        await service.request_password_reset(EMAIL, client_key="ip-1")
        link = _link_token(outbox.last_email(to=EMAIL))
        assert (await service.reset_password(link, SECOND, SECOND)).ok
        with pytest.raises(InvalidTokenError):
            await service.reset_password(link, THIRD, THIRD)
        await service.request_sms_reset(PHONE, client_key="ip-1")
        grant = await service.verify_sms_code(PHONE, extract_code(outbox.last_sms(to=PHONE)))
        assert (await service.reset_password(grant, THIRD, THIRD)).ok
        assert (await service.authenticate(EMAIL, THIRD, client_key="ip-2")).ok

    cleaner = RedisCluster.from_url(cluster_url)
    try:
        run_on_test_loop(journey())
    finally:
        run_on_test_loop(client.aclose())
        _delete_prefixed(cleaner, prefix)
        cleaner.close()


# -- Fail-over -----------------------------------------------------------------------------


def _node(host: str, port: int) -> redis.Redis:
    return redis.Redis(host=host, port=port, socket_timeout=5)


def _wait(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _fail_over(client: RedisCluster, key: str) -> tuple[str, str]:
    """Promote the replica of ``key``'s master (``CLUSTER FAILOVER`` on it); wait until
    every node sees the new master. Returns (old master, new master) as ``host:port``."""
    master = _master_of(client, key)
    with _node(master.host, master.port) as old:
        master_id = old.execute_command("CLUSTER MYID").decode()
        # Right after a fail-over the new master may not list its replica yet.
        _wait(
            lambda: bool(old.execute_command("CLUSTER REPLICAS", master_id)),
            "the master to list its replica",
        )
        replicas = old.execute_command("CLUSTER REPLICAS", master_id)
    # redis-py parses the reply into {"host:port": {...}}, one entry per replica.
    host, port = next(iter(replicas)).split("@")[0].rsplit(":", 1)
    with _node(host, int(port)) as replica:
        replica.execute_command("CLUSTER FAILOVER")
        _wait(lambda: replica.execute_command("ROLE")[0] == b"master", "the replica's promotion")
    with _node(master.host, master.port) as old:
        _wait(lambda: old.execute_command("ROLE")[0] == b"slave", "the old master's demotion")
        _wait(
            lambda: old.execute_command("CLUSTER INFO").get("cluster_state") == "ok",
            "the cluster to be ok again",
        )
    return f"{master.host}:{master.port}", f"{host}:{port}"


def test_state_survives_the_fail_over_of_a_master(cluster_url: str) -> None:
    """A replica takes over the master holding a token, a code, a window and a history.

    The state written before the fail-over gives exactly the answers after it: the token
    stays spent, the code's counter holds, the window keeps counting, the history is whole;
    the scripts, flushed from the new master's script cache, are loaded again on first use.
    The original master is then given its role back, so the cluster ends as it began.
    """
    prefix = _unique_prefix()
    client = RedisCluster.from_url(cluster_url)
    storage = redis_storage(client, accounts=MemoryAccountStore(), prefix=prefix)
    tag = "account-failover"
    entry = HistoryEntry(password_hash="$argon2id$h0", fingerprint=b"f", created_at=T0)
    try:
        assert storage.ledger.consume(tag, T0 + HOUR, now=T0)
        storage.codes.put(tag, CODE, expires_at=T0 + HOUR, now=T0, failure_window=HOUR)
        assert storage.codes.attempt(tag, [WRONG], now=T0, max_attempts=2) is CodeAttempt.MISMATCH
        assert storage.rate_limits.hit(tag, limit=2, window=HOUR, now=T0).allowed
        storage.history.append(tag, entry, keep=3)
        # Every key of the test shares the tag, so one master holds them all. A manual
        # fail-over waits until the replica has caught up with the master's writes.
        old_master, new_master = _fail_over(client, f"{{{tag}}}")
        assert old_master != new_master
        # A promoted replica may have never run the scripts (a fresh node has an empty
        # script cache): empty it, so the stores must load them again there.
        attempt_script = hashlib.sha1(_LUA_ATTEMPT_CODE.encode(), usedforsecurity=False)
        host, port = new_master.rsplit(":", 1)
        with _node(host, int(port)) as promoted:
            promoted.script_flush()
            assert promoted.script_exists(attempt_script.hexdigest()) == [False]
        assert not storage.ledger.consume(tag, T0 + HOUR, now=T0)
        assert storage.codes.attempt(tag, [WRONG], now=T0, max_attempts=2) is CodeAttempt.MISMATCH
        assert storage.codes.attempt(tag, [CODE], now=T0, max_attempts=2) is CodeAttempt.EXHAUSTED
        assert storage.rate_limits.hit(tag, limit=2, window=HOUR, now=T0).allowed
        assert not storage.rate_limits.hit(tag, limit=2, window=HOUR, now=T0).allowed
        assert storage.history.recent(tag, 10) == [entry]
        with _node(host, int(port)) as promoted:
            assert promoted.script_exists(attempt_script.hexdigest()) == [True]
        assert storage.ledger.consume(f"{tag}-new", T0 + HOUR, now=T0)
        # Give the old master its role back.
        back_old, back_new = _fail_over(client, f"{{{tag}}}")
        assert (back_old, back_new) == (new_master, old_master)
        assert not storage.ledger.consume(f"{tag}-new", T0 + HOUR, now=T0)
    finally:
        _delete_prefixed(client, prefix)
        client.close()


def test_the_outbox_survives_the_fail_over_of_its_master(cluster_url: str) -> None:
    """A replica takes over the master of the outbox's slot mid-delivery: a leased message
    stays leased and its claim can still complete it, a sent one stays sent, a waiting one
    is claimed next, and the scripts load themselves on the new master."""
    prefix = _unique_prefix()
    client = RedisCluster.from_url(cluster_url)
    outbox = RedisOutboxStore(client, prefix=prefix)
    messages = [_outbox_message(index) for index in range(3)]
    try:
        for message in messages:
            assert outbox.enqueue(message, now=T0)
        sent, leased = outbox.claim(now=T0, lease=_LEASE, limit=2)
        assert outbox.complete(sent.id, attempt=1, now=T0)
        old_master, new_master = _fail_over(client, "{outbox}")
        assert old_master != new_master
        host, port = new_master.rsplit(":", 1)
        with _node(host, int(port)) as promoted:
            promoted.script_flush()
        later = T0 + timedelta(seconds=1)
        assert [entry.id for entry in outbox.claim(now=later, lease=_LEASE, limit=5)] == [
            messages[2].id
        ]
        assert not outbox.complete(sent.id, attempt=1, now=later)
        assert outbox.complete(leased.id, attempt=1, now=later)
        assert outbox.complete(messages[2].id, attempt=1, now=later)
        assert len(outbox.list(status="sent", limit=10)) == 3
        back_old, back_new = _fail_over(client, "{outbox}")
        assert (back_old, back_new) == (new_master, old_master)
    finally:
        _delete_prefixed(client, prefix)
        client.close()
