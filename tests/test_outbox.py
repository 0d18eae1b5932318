"""The durable outbox through the services: queued letters, the worker, faults, secrecy."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import given, settings
from hypothesis import strategies as st

from _servers import require_server
from kaspi_identity import StorageError
from kaspi_identity.delivery import (
    DeliveryError,
    EmailMessage,
    Outbox,
    SmsMessage,
    SmtpEmailSender,
    extract_code,
    extract_link,
)
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import (
    AsyncIdentityService,
    AsyncOutboxWorker,
    IdentityService,
    IdentitySettings,
    ManualClock,
    MemoryAuditLog,
    OutboxWorker,
    RetryPolicy,
    WorkerRun,
)
from kaspi_identity.storage import OutboxStore, Storage
from kaspi_identity.storage.memory import async_memory_storage, memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage
from kaspi_identity.testing import mark_phone_verified

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
KEY = "k" * 32
OTHER_KEY = "o" * 32
EMAIL = "aliya@example.kz"
PHONE = "+77011234567"
PASSWORD = "Alatau-Peak-2026!"
NEW_PASSWORD = "Medeu-Rink-1972?"
SECOND = timedelta(seconds=1)
LOOPBACK = "127.0.0.1"


def _settings(*keys: str) -> IdentitySettings:
    return IdentitySettings(
        secret_keys=tuple(k.encode() for k in keys or (KEY,)),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        site_name="portal.example.kz",
        sms_code_digits=8,
    )


@dataclass
class Env:
    """A service on a storage with an outbox, its senders, clock, audit and a worker."""

    storage: Storage
    service: IdentityService
    outbox: Outbox
    clock: ManualClock
    audit: MemoryAuditLog
    worker: OutboxWorker

    @property
    def queue(self) -> OutboxStore:
        assert self.storage.outbox is not None
        return self.storage.outbox

    def register(self, email: str = EMAIL, phone: str | None = PHONE) -> str:
        result = self.service.register(
            email=email, phone=phone, password=PASSWORD, confirmation=PASSWORD, client_key=email
        )
        assert result.ok
        account = self.storage.accounts.find_by_login("email", email)
        assert account is not None
        if account.phone is not None:  # only a proven number receives reset codes
            mark_phone_verified(self.storage.accounts, account.id)
        return account.id

    def deliver(self) -> WorkerRun:
        return self.worker.run_until_idle()


def _make_env(
    storage: Storage,
    *,
    email_sender: Any = None,
    keys: tuple[str, ...] = (KEY,),
    retry: RetryPolicy | None = None,
) -> Env:
    outbox, clock, audit = Outbox(), ManualClock(T0), MemoryAuditLog()
    service = IdentityService(
        storage,
        _settings(*keys),
        email_sender=email_sender if email_sender is not None else outbox,
        sms_sender=outbox,
        hasher=PasswordHasher(TESTS_ONLY),
        clock=clock,
        audit=audit,
    )
    worker = OutboxWorker(service, retry=retry, lease=timedelta(minutes=2))
    return Env(storage, service, outbox, clock, audit, worker)


def _redis_storage() -> Storage:
    from kaspi_identity.storage.redis import redis_storage

    url = require_server("KASPI_IDENTITY_REDIS_URL")
    import secrets

    return redis_storage(
        url,
        accounts=memory_storage().accounts,
        prefix=f"kaspi-test-{secrets.token_hex(4)}:",
        outbox=True,
    )


def _sqlalchemy_storage(tmp_path: Path) -> Storage:
    from kaspi_identity.storage.sqlalchemy import sqlalchemy_storage

    return sqlalchemy_storage(
        f"sqlite:///{tmp_path / 'sa.sqlite3'}", create_tables=True, outbox=True
    )


ADAPTERS = ["memory", "sqlite", "sqlalchemy", "redis"]


@pytest.fixture(params=ADAPTERS)
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Storage]]:
    """Makes a bundle with an outbox on each adapter; closes them afterwards."""
    made: list[Storage] = []

    def make() -> Storage:
        if request.param == "memory":
            storage = memory_storage(outbox=True)
        elif request.param == "sqlite":
            storage = sqlite_storage(tmp_path / f"id{len(made)}.sqlite3", outbox=True)
        elif request.param == "sqlalchemy":
            storage = _sqlalchemy_storage(tmp_path)
        else:
            storage = _redis_storage()
        made.append(storage)
        return storage

    yield make
    for storage in made:
        if request.param == "redis":
            outbox = storage.outbox
            client = getattr(outbox, "client", None)
            prefix = getattr(outbox, "prefix", "")
            if client is not None:
                for key in client.scan_iter(match=f"{prefix}*"):
                    client.delete(key)
        storage.close()


@pytest.fixture
def env(make_storage: Callable[[], Storage]) -> Env:
    return _make_env(make_storage())


class TestQueuedFlows:
    def test_nothing_is_sent_in_the_request(self, env: Env) -> None:
        """register() queues the confirmation; the worker sends it, once; the link works."""
        account_id = env.register()
        assert env.outbox.emails == []
        (entry,) = env.queue.list()
        assert (entry.status, entry.message.kind, entry.message.account_id) == (
            "pending",
            "confirm_email",
            account_id,
        )
        assert env.deliver() == WorkerRun(claimed=1, sent=1)
        letter = env.outbox.last_email(to=EMAIL)
        assert letter.idempotency_key == entry.id
        token = extract_link(letter).split("token=")[1]
        assert env.service.confirm_email(token) == account_id
        assert env.queue.get(entry.id).status == "sent"  # type: ignore[union-attr]
        assert env.deliver() == WorkerRun()

    def test_reset_by_link_through_the_queue(self, env: Env) -> None:
        """A reset link queued, sent by the worker, redeemed; the notice is queued too."""
        env.register()
        env.deliver()
        assert env.service.request_password_reset(EMAIL, client_key="c").accepted
        env.deliver()
        token = extract_link(env.outbox.last_email(to=EMAIL)).split("token=")[1]
        assert env.service.reset_password(token, NEW_PASSWORD, NEW_PASSWORD).ok
        notices = sorted(
            (e.message.channel, e.message.kind) for e in env.queue.list(status="pending")
        )
        assert notices == [("email", "password_was_reset"), ("sms", "password_was_reset")]
        env.deliver()
        assert env.outbox.last_email(to=EMAIL).kind == "password_was_reset"
        assert env.outbox.last_sms(to=PHONE).kind == "password_was_reset"

    def test_reset_by_sms_through_the_queue(self, env: Env) -> None:
        """The code written by the worker is the code the store holds a hash of."""
        env.register()
        assert env.service.request_sms_reset(PHONE, client_key="c").accepted
        assert env.outbox.sms == []
        env.deliver()
        code = extract_code(env.outbox.last_sms(to=PHONE))
        assert len(code) == 8
        grant = env.service.verify_sms_code(PHONE, code)
        assert env.service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD).ok

    def test_unknown_accounts_do_the_same_work(self, env: Env) -> None:
        """An unknown identifier queues one entry too -- void, never sent."""
        env.register()
        env.deliver()
        before = {e.id for e in env.queue.list()}
        env.service.request_password_reset(EMAIL, client_key="c")
        env.service.request_password_reset("nobody@example.kz", client_key="d")
        env.service.request_sms_reset("+77019998877", client_key="e")
        new = [e for e in env.queue.list() if e.id not in before]
        assert sorted(e.status for e in new) == ["pending", "void", "void"]
        sent = len(env.outbox.emails) + len(env.outbox.sms)
        env.deliver()
        assert len(env.outbox.emails) + len(env.outbox.sms) == sent + 1
        assert all(m.to in (EMAIL, PHONE) for m in env.outbox.emails + env.outbox.sms)

    def test_change_of_password_queues_its_notice(self, env: Env) -> None:
        """change_password() writes the notice with the change (pending right after it)."""
        account_id = env.register()
        env.deliver()
        result = env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c"
        )
        assert result.ok
        notices = env.queue.list(status="pending")
        assert sorted((n.message.channel, n.message.kind) for n in notices) == [
            ("email", "password_changed"),
            ("sms", "password_changed"),
        ]
        assert {n.message.account_id for n in notices} == {account_id}

    def test_a_failing_outbox_fails_the_request(self, env: Env) -> None:
        """The outbox down: the request raises StorageError rather than lose the letter."""
        env.register()

        def broken(*args: object, **kwargs: object) -> bool:
            raise StorageError("outbox down")

        object.__setattr__(env.queue, "enqueue", broken)
        with pytest.raises(StorageError):
            env.service.request_password_reset(EMAIL, client_key="c")


class TestNoSecretAtRest:
    def test_queued_rows_hold_no_link_or_code(self, env: Env, tmp_path: Path) -> None:
        """Every stored entry, before and after delivery: no token, signature or code in it."""
        account_id = env.register()
        env.service.request_password_reset(EMAIL, client_key="c")
        env.service.request_sms_reset(PHONE, client_key="c")
        env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c"
        )
        stored_before = _stored_text(env)
        env.deliver()
        stored = stored_before + _stored_text(env)
        links = [extract_link(m) for m in env.outbox.emails if "token=" in m.text]
        tokens = [link.split("token=")[1] for link in links]
        (code,) = [extract_code(m) for m in env.outbox.sms if m.kind == "reset_code"]
        assert len(tokens) == 2
        # A token is base64 of its body and a 16-byte tag; its last 20 characters spell tag
        # bits only, which nothing but the keys can make.
        secrets_ = [*tokens, *(t[-20:] for t in tokens), code, PASSWORD, NEW_PASSWORD]
        assert [s for s in secrets_ if s in stored] == []
        if isinstance(env.storage.outbox, object) and any(tmp_path.glob("*.sqlite3*")):
            raw = b"".join(p.read_bytes() for p in tmp_path.glob("*.sqlite3*"))
            for token in tokens:
                assert token[-20:].encode() not in raw
                assert token.encode() not in raw

    def test_stored_code_is_masked(self, env: Env) -> None:
        """The payload of a queued SMS holds the code masked, not the code."""
        env.register()
        env.service.request_sms_reset(PHONE, client_key="c")
        (entry,) = [e for e in env.queue.list() if e.message.channel == "sms"]
        env.deliver()
        code = extract_code(env.outbox.last_sms(to=PHONE))
        payload = json.loads(entry.message.payload)
        stored = payload["params"]["code"]
        assert set(stored) == {"code", "nonce", "masked", "digits"}
        assert stored["masked"] != code
        assert code not in entry.message.payload


def _stored_text(env: Env) -> str:
    """Every field of every entry the outbox holds, as text."""
    parts: list[str] = []
    for entry in env.queue.list(limit=1000):
        parts += [repr(entry), entry.message.payload, entry.message.to, str(entry.last_error)]
    return "\n".join(parts)


class _Crash(Exception):
    """A worker process dying between the send and the mark."""


class _CrashOnComplete:
    """An outbox whose next ``complete`` dies, as a worker killed after sending would."""

    def __init__(self, inner: OutboxStore) -> None:
        self._inner = inner
        self.crashes = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def complete(self, message_id: str, *, attempt: int, now: datetime) -> bool:
        if self.crashes:
            self.crashes -= 1
            raise _Crash
        return self._inner.complete(message_id, attempt=attempt, now=now)


class TestWorkerFaults:
    def test_crash_between_send_and_mark_sends_once(self, env: Env) -> None:
        """A worker dies after the send: the next one re-sends with the same key; one letter."""
        env.register()
        crashing = _CrashOnComplete(env.queue)
        env.worker._queue = crashing
        with pytest.raises(_Crash):
            env.worker.run_once()
        assert len(env.outbox.emails) == 1
        assert env.worker.run_once() == WorkerRun()  # still leased
        env.clock.advance(timedelta(minutes=2))
        assert env.worker.run_once() == WorkerRun(claimed=1, sent=1)
        assert len(env.outbox.emails) == 1
        assert env.outbox.duplicates == 1
        (entry,) = env.queue.list()
        assert (entry.status, entry.attempts) == ("sent", 2)

    def test_retries_with_exponential_back_off_then_dead(self, env: Env) -> None:
        """Attempts at 0, 30 s, 90 s ...; after max_attempts the letter is dead and listed."""
        env.worker.retry = RetryPolicy(max_attempts=3, first_delay=30 * SECOND)
        env.register()
        env.outbox.failing = True
        assert env.worker.run_once() == WorkerRun(claimed=1, retried=1)
        (entry,) = env.queue.list()
        assert entry.next_attempt_at == T0 + 30 * SECOND
        assert entry.last_error == "DeliveryError"
        env.clock.advance(30 * SECOND - timedelta(microseconds=1))
        assert env.worker.run_once() == WorkerRun()
        env.clock.advance(timedelta(microseconds=1))
        assert env.worker.run_once() == WorkerRun(claimed=1, retried=1)
        assert env.queue.list()[0].next_attempt_at == env.clock.now() + 60 * SECOND
        env.clock.advance(60 * SECOND)
        assert env.worker.run_once() == WorkerRun(claimed=1, dead=1)
        (dead,) = env.queue.list(status="dead")
        assert dead.attempts == 3
        assert "delivery_failed" in env.audit.kinds()
        # An operator retries it once the server is back.
        env.outbox.failing = False
        assert env.queue.retry(dead.id, now=env.clock.now())
        assert env.deliver().sent == 1
        assert len(env.outbox.emails) == 1

    def test_a_letter_that_cannot_be_written_dies_at_once(
        self, make_storage: Callable[[], Storage]
    ) -> None:
        """A code masked with a key since rotated out: dead on its first attempt, no retry."""
        storage = make_storage()
        old = _make_env(storage, keys=(OLD := "p" * 32,))
        old.register()
        old.service.request_sms_reset(PHONE, client_key="c")
        old.deliver()
        old.clock.advance(timedelta(minutes=2))
        old.service.request_sms_reset(PHONE, client_key="c")
        rotated = _make_env(storage, keys=(KEY,))  # OLD dropped from the ring
        rotated.clock.advance(timedelta(minutes=3))
        assert rotated.worker.run_once() == WorkerRun(claimed=1, dead=1)
        (dead,) = storage.outbox.list(status="dead")  # type: ignore[union-attr]
        assert dead.last_error == "UnrenderableError"
        assert OLD not in repr(dead)

    def test_key_rotation_keeps_queued_codes_working(
        self, make_storage: Callable[[], Storage]
    ) -> None:
        """A code queued before a rotation is written with the key it was masked with."""
        storage = make_storage()
        old = _make_env(storage, keys=(OTHER_KEY,))
        old.register()
        old.deliver()
        old.service.request_sms_reset(PHONE, client_key="c")
        rotated = _make_env(storage, keys=(KEY, OTHER_KEY))
        rotated.deliver()
        code = extract_code(rotated.outbox.last_sms(to=PHONE))
        assert rotated.service.verify_sms_code(PHONE, code)

    def test_two_workers_share_the_queue(self, make_storage: Callable[[], Storage]) -> None:
        """Two worker threads on one queue: every one of 30 letters is sent exactly once."""
        env = _make_env(make_storage())
        for index in range(30):
            env.register(f"user{index}@example.kz", phone=None)
        other = OutboxWorker(env.service, batch=3)
        env.worker = OutboxWorker(env.service, batch=3)
        runs: list[WorkerRun] = []
        threads = [
            threading.Thread(target=lambda w=w: runs.append(w.run_until_idle()))
            for w in (env.worker, other)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(run.sent for run in runs) == 30
        assert len(env.outbox.emails) == 30
        assert env.outbox.duplicates == 0
        assert {e.status for e in env.queue.list()} == {"sent"}


# -- a real SMTP server going down and coming back --------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(envelope.original_content or b"")
        return "250 2.0.0 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class TestSmtpOutage:
    def test_letter_survives_an_outage_and_is_delivered_once(
        self, make_storage: Callable[[], Storage]
    ) -> None:
        """The server down for two attempts: retried with back-off, delivered once after."""
        port = _free_port()
        smtp = SmtpEmailSender(
            LOOPBACK, port, sender="noreply@example.kz", security="none", timeout=2.0
        )
        env = _make_env(make_storage(), email_sender=smtp)
        env.register()
        assert env.worker.run_once() == WorkerRun(claimed=1, retried=1)
        env.clock.advance(30 * SECOND)
        assert env.worker.run_once() == WorkerRun(claimed=1, retried=1)
        recorder = _Recorder()
        controller = Controller(recorder, hostname=LOOPBACK, port=port, ready_timeout=5.0)
        controller.start()
        try:
            env.clock.advance(60 * SECOND)
            assert env.worker.run_once() == WorkerRun(claimed=1, sent=1)
            env.clock.advance(timedelta(hours=2))
            assert env.worker.run_once() == WorkerRun()
        finally:
            controller.stop()
        (raw,) = recorder.received
        (entry,) = env.queue.list()
        assert f"Message-ID: <{entry.id}@example.kz>".encode() in raw
        assert entry.attempts == 3


# -- the policy and bad input ------------------------------------------------------------


class TestRetryPolicy:
    def test_delays_double_up_to_the_cap(self) -> None:
        """30 s, 60 s, 120 s ... capped at max_delay; None at max_attempts."""
        policy = RetryPolicy(
            max_attempts=10, first_delay=30 * SECOND, max_delay=timedelta(minutes=5)
        )
        delays = [policy.delay(n) for n in range(1, 11)]
        assert delays[:4] == [30 * SECOND, 60 * SECOND, 120 * SECOND, 240 * SECOND]
        assert delays[4:9] == [timedelta(minutes=5)] * 5
        assert delays[9] is None
        assert RetryPolicy(max_attempts=1).delay(1) is None

    def test_huge_attempt_numbers_stay_capped(self) -> None:
        """An attempt number far past 64 does not overflow the doubling."""
        policy = RetryPolicy(max_attempts=100)
        assert policy.delay(99) == policy.max_delay

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"max_attempts": 0}, ValueError),
            ({"max_attempts": 101}, ValueError),
            ({"max_attempts": True}, TypeError),
            ({"first_delay": timedelta(0)}, ValueError),
            ({"first_delay": 30}, TypeError),
            ({"first_delay": timedelta(hours=2), "max_delay": timedelta(hours=1)}, ValueError),
        ],
    )
    def test_bad_policies(self, kwargs: dict[str, Any], error: type[Exception]) -> None:
        """Out-of-range or mistyped fields raise at construction."""
        with pytest.raises(error):
            RetryPolicy(**kwargs)

    def test_worker_needs_an_outbox_and_sane_arguments(self) -> None:
        """No outbox, a batch out of range, a non-positive lease, a bad poll: refused."""
        plain = _make_env(memory_storage(outbox=True)).service
        no_queue = IdentityService(
            memory_storage(), _settings(), email_sender=Outbox(), hasher=PasswordHasher(TESTS_ONLY)
        )
        with pytest.raises(ValueError, match="outbox"):
            OutboxWorker(no_queue)
        for bad in (0, 1001):
            with pytest.raises(ValueError, match="batch"):
                OutboxWorker(plain, batch=bad)
        with pytest.raises(TypeError):
            OutboxWorker(plain, batch="5")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="lease"):
            OutboxWorker(plain, lease=timedelta(0))
        with pytest.raises(TypeError):
            OutboxWorker(plain, retry=3)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="poll"):
            OutboxWorker(plain).start(poll=0)

    def test_garbage_payload_is_dead_not_a_crash(self) -> None:
        """A payload someone edited by hand: the entry dies with a label, the worker goes on."""
        env = _make_env(memory_storage(outbox=True))
        env.register()
        (entry,) = env.queue.list()
        queue = env.queue
        garbage = replace(entry.message, id="f" * 32, payload='{"v": 1, "params": {"x": 1}}')
        queue.enqueue(garbage, now=T0)
        unknown = replace(entry.message, id="e" * 32, payload='{"v": 99}')
        queue.enqueue(unknown, now=T0)
        run = env.deliver()
        assert (run.sent, run.dead) == (1, 2)
        assert {e.last_error for e in queue.list(status="dead")} == {"UnrenderableError"}


class _FlakySender:
    """Raises on every send until ``up`` is set (any exception, not only DeliveryError)."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[EmailMessage | SmsMessage] = []

    def send_email(self, message: EmailMessage) -> None:
        if not self.up:
            raise DeliveryError("down")
        self.sent.append(message)


class TestThreadAndTask:
    def test_the_thread_delivers_and_stops(self) -> None:
        """start() delivers in the background; stop() ends the thread."""
        env = _make_env(memory_storage(outbox=True))
        env.worker.start(poll=0.01)
        try:
            env.register()
            for _ in range(500):
                if env.outbox.emails:
                    break
                threading.Event().wait(0.01)
        finally:
            assert env.worker.stop(timeout=5)
        assert len(env.outbox.emails) == 1
        env.worker.start()
        with pytest.raises(RuntimeError, match="already"):
            env.worker.start()
        env.worker.stop()

    def test_the_async_worker(self) -> None:
        """AsyncOutboxWorker: the same worker awaited, and as a task on the loop."""

        async def scenario() -> tuple[int, WorkerRun]:
            outbox = Outbox()
            service = AsyncIdentityService(
                async_memory_storage(outbox=True),
                _settings(),
                email_sender=outbox,
                hasher=PasswordHasher(TESTS_ONLY),
            )
            worker = AsyncOutboxWorker(service)
            await service.register(
                email=EMAIL, password=PASSWORD, confirmation=PASSWORD, client_key="c"
            )
            run = await worker.run_until_idle()
            task = worker.start(poll=0.01)
            await service.request_password_reset(EMAIL, client_key="c")
            for _ in range(500):
                if len(outbox.emails) == 2:
                    break
                await asyncio.sleep(0.01)
            await worker.stop()
            assert task.done()
            return len(outbox.emails), run

        sent, run = asyncio.run(scenario())
        assert sent == 2
        assert run == WorkerRun(claimed=1, sent=1)


class TestSqliteUnitOfWork:
    def test_a_crash_after_the_change_keeps_the_notice(self, tmp_path: Path) -> None:
        """The change and its notice are one SQLite transaction: both rows, or neither."""
        path = tmp_path / "uow.sqlite3"
        env = _make_env(sqlite_storage(path, outbox=True))
        account_id = env.register()
        env.deliver()
        raw = sqlite3.connect(path)
        raw.execute(
            "CREATE TRIGGER no_outbox BEFORE INSERT ON outbox"
            " BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )
        raw.commit()
        before = env.storage.accounts.get(account_id)
        with pytest.raises(StorageError):
            env.service.change_password(
                account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c"
            )
        after = env.storage.accounts.get(account_id)
        assert before is not None
        assert after is not None
        assert after.password_hash == before.password_hash  # the change rolled back too
        raw.execute("DROP TRIGGER no_outbox")
        raw.commit()
        raw.close()
        env.storage.close()


# -- the command line --------------------------------------------------------------------


def _cli(*argv: str) -> tuple[int, str, str]:
    import io

    from kaspi_identity.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


class TestCli:
    @pytest.fixture
    def db(self, tmp_path: Path) -> Iterator[tuple[Path, Env]]:
        path = tmp_path / "cli.sqlite3"
        env = _make_env(sqlite_storage(path, outbox=True), retry=RetryPolicy(max_attempts=1))
        env.register()
        env.outbox.failing = True
        env.deliver()  # one attempt allowed: dead
        env.service.request_password_reset("nobody@example.kz", client_key="x")  # void
        yield path, env
        env.storage.close()

    def test_list(self, db: tuple[Path, Env]) -> None:
        """outbox list prints one line per message; --status and --json filter and format."""
        path, _ = db
        code, out, _ = _cli("outbox", "list", "--db", str(path))
        assert code == 0
        assert len(out.splitlines()) == 2
        assert EMAIL not in out  # no recipient, no payload
        code, out, _ = _cli("outbox", "list", "--db", str(path), "--status", "dead", "--json")
        (line,) = out.splitlines()
        row = json.loads(line)
        assert (row["status"], row["kind"], row["last_error"]) == (
            "dead",
            "confirm_email",
            "DeliveryError",
        )
        assert "payload" not in row

    def test_retry_then_deliver(self, db: tuple[Path, Env]) -> None:
        """outbox retry --all-dead makes the dead letter pending; the worker then sends it."""
        path, env = db
        code, out, _ = _cli("outbox", "retry", "--db", str(path), "--all-dead")
        assert (code, out.strip()) == (0, "retried 1 of 1")
        env.outbox.failing = False
        env.clock.advance(timedelta(days=365 * 10))  # the CLI retried at the real time
        assert env.deliver().sent == 1
        code, out, _ = _cli("outbox", "retry", "--db", str(path), "f" * 32)
        assert (code, out.strip()) == (1, "retried 0 of 1")
        code, _, err = _cli("outbox", "retry", "--db", str(path), "not-an-id")
        assert code == 2
        assert "message_id" in err

    def test_purge(self, db: tuple[Path, Env]) -> None:
        """outbox purge deletes old void/sent messages; --dead deletes dead ones too."""
        path, env = db
        code, out, _ = _cli("outbox", "purge", "--db", str(path), "--older-than-days", "0")
        assert (code, out.strip()) == (0, "purged 1")
        code, out, _ = _cli(
            "outbox", "purge", "--db", str(path), "--older-than-days", "0", "--dead"
        )
        assert (code, out.strip()) == (0, "purged 1")
        assert env.queue.list() == []
        code, _, _ = _cli("outbox", "purge", "--db", str(path), "--older-than-days", "-1")
        assert code == 2

    def test_worker_once_with_an_app(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """worker --app MODULE:NAME --once delivers what is due and prints a summary."""
        module = tmp_path / "portal_identity.py"
        module.write_text(
            "from kaspi_identity.delivery import Outbox\n"
            "from kaspi_identity.services import IdentityService, IdentitySettings\n"
            "from kaspi_identity.storage.memory import memory_storage\n"
            "outbox = Outbox()\n"
            "def service():\n"
            "    return SERVICE\n"
            "SERVICE = IdentityService(memory_storage(outbox=True), IdentitySettings(\n"
            "    secret_keys=[b'k' * 32], confirm_url='https://p.kz/c',\n"
            "    reset_url='https://p.kz/r'), email_sender=outbox)\n",
            encoding="utf-8",
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        import importlib

        portal = importlib.import_module("portal_identity")
        portal.SERVICE.register(
            email=EMAIL, password=PASSWORD, confirmation=PASSWORD, client_key="c"
        )
        code, out, _ = _cli("worker", "--app", "portal_identity:service", "--once")
        assert (code, out.strip()) == (0, "claimed 1, sent 1, retried 0, dead 0")
        assert len(portal.outbox.emails) == 1
        code, out, _ = _cli("outbox", "list", "--app", "portal_identity:SERVICE")
        assert " sent " in out
        for bad in (
            "portal_identity",
            "no_such_module:x",
            "portal_identity:nothing",
            "portal_identity:outbox",
        ):
            code, _, err = _cli("worker", "--app", bad, "--once")
            assert code == 2, bad
            assert "--app" in err


# -- times in letters --------------------------------------------------------------------


class TestNotices:
    def test_every_channel_the_account_had_is_told(self) -> None:
        """A change and a reset each notify the stored address and the phone, in the language."""
        env = _make_env(memory_storage(outbox=True))
        account_id = env.register()
        env.deliver()
        env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c"
        )
        env.deliver()
        assert env.outbox.last_email(to=EMAIL).kind == "password_changed"
        sms = env.outbox.last_sms(to=PHONE)
        assert sms.kind == "password_changed"
        assert "portal.example.kz" not in sms.text or len(sms.text) <= 160
        env.service.request_sms_reset(PHONE, client_key="c")
        env.deliver()
        grant = env.service.verify_sms_code(PHONE, extract_code(env.outbox.last_sms(to=PHONE)))
        env.service.reset_password(grant, PASSWORD + "x", PASSWORD + "x")
        env.deliver()
        assert env.outbox.last_email(to=EMAIL).kind == "password_was_reset"
        assert env.outbox.last_sms(to=PHONE).kind == "password_was_reset"

    def test_no_sms_notice_without_a_gateway_or_a_phone(self) -> None:
        """Without an SMS sender, or for an account without a phone: the letter only."""
        outbox = Outbox()
        service = IdentityService(
            memory_storage(), _settings(), email_sender=outbox, hasher=PasswordHasher(TESTS_ONLY)
        )
        service.register(
            email=EMAIL, phone=PHONE, password=PASSWORD, confirmation=PASSWORD, client_key="c"
        )
        account = service.storage.accounts.find_by_login("email", EMAIL)
        assert account is not None
        service.change_password(account.id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c")
        assert outbox.sms == []
        assert outbox.last_email().kind == "password_changed"
        env = _make_env(memory_storage(outbox=True))
        other = env.register("bolat@example.kz", phone=None)
        env.service.change_password(other, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c")
        env.deliver()
        assert env.outbox.sms == []

    @pytest.mark.parametrize("language", ["kk", "ru", "en"])
    @pytest.mark.parametrize("kind", ["password_changed", "password_was_reset"])
    def test_sms_notices_fit_one_segment(self, kind: str, language: str) -> None:
        """Every notice SMS fits one segment, with any site name (a long one is dropped)."""
        from kaspi_identity.delivery import render_sms, sms_segments

        for site in ("egov.kz", "portal.example.kz", "x" * 120, None):
            message = render_sms(kind, language, to=PHONE, site=site)
            assert sms_segments(message.text) == 1


class TestTimeZone:
    def test_notice_time_is_almaty_by_default(self) -> None:
        """The "password changed" letter tells the time in Asia/Almaty (UTC+05:00), not UTC."""
        env = _make_env(memory_storage(outbox=True))
        account_id = env.register()
        env.deliver()
        env.clock.advance(timedelta(hours=2))  # 11:00 UTC
        env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c"
        )
        env.deliver()
        notice = env.outbox.last_email(to=EMAIL)
        assert notice.kind == "password_changed"
        assert "2026-03-02 16:00 UTC+05:00" in notice.text

    def test_a_configured_zone(self) -> None:
        """time_zone="Europe/Moscow" writes the same moment at UTC+03:00, sent in the request."""
        outbox, clock = Outbox(), ManualClock(T0)
        settings = replace(_settings(), time_zone="Europe/Moscow")
        service = IdentityService(
            memory_storage(),
            settings,
            email_sender=outbox,
            hasher=PasswordHasher(TESTS_ONLY),
            clock=clock,
        )
        service.register(email=EMAIL, password=PASSWORD, confirmation=PASSWORD, client_key="c")
        token = extract_link(outbox.last_email()).split("token=")[1]
        service.confirm_email(token)
        service.request_password_reset(EMAIL, client_key="c")
        token = extract_link(outbox.last_email()).split("token=")[1]
        service.reset_password(token, NEW_PASSWORD, NEW_PASSWORD)
        assert "2026-03-02 12:00 UTC+03:00" in outbox.last_email().text

    @pytest.mark.parametrize("bad", ["", "Mars/Olympus", "../etc/passwd", "x" * 65, "UTC\x00"])
    def test_unknown_zones_are_refused(self, bad: str) -> None:
        """A zone zoneinfo does not know is a ValueError naming time_zone."""
        with pytest.raises(ValueError, match="time_zone"):
            replace(_settings(), time_zone=bad)

    def test_zone_must_be_text(self) -> None:
        """A non-str zone is refused too."""
        with pytest.raises(ValueError, match="time_zone"):
            replace(_settings(), time_zone=5)  # type: ignore[arg-type]


# -- properties --------------------------------------------------------------------------


class TestProperties:
    @given(
        digits=st.integers(min_value=6, max_value=8),
        keys=st.lists(st.binary(min_size=32, max_size=48), min_size=1, max_size=3, unique=True),
    )
    @settings(max_examples=60, deadline=None)
    def test_a_masked_code_unmasks_to_itself(self, digits: int, keys: list[bytes]) -> None:
        """For every key ring and length, the worker writes exactly the code the flow made."""
        from kaspi_identity._keys import KeyRing
        from kaspi_identity.services._letters import Letters
        from kaspi_identity.tokens import TokenService

        letters = Letters(_settings(), keys=KeyRing(keys), issuer=TokenService(keys), catalog=None)
        code, text = letters.new_code(digits)
        assert len(code) == digits
        assert code.isdigit()
        assert letters.code_of(text) == code
        assert len(text.masked) == digits

    @given(
        attempts=st.integers(min_value=1, max_value=100),
        first=st.integers(min_value=1, max_value=3600),
        cap=st.integers(min_value=0, max_value=86400),
    )
    def test_back_off_grows_and_is_capped(self, attempts: int, first: int, cap: int) -> None:
        """Waits never shrink, never pass max_delay, and end exactly at max_attempts."""
        policy = RetryPolicy(
            max_attempts=attempts,
            first_delay=timedelta(seconds=first),
            max_delay=timedelta(seconds=first + cap),
        )
        waits = [policy.delay(n) for n in range(1, attempts + 1)]
        assert waits[-1] is None
        finite = [w for w in waits[:-1] if w is not None]
        assert len(finite) == attempts - 1
        assert finite == sorted(finite)
        assert all(timedelta(seconds=first) <= w <= policy.max_delay for w in finite)

    @given(
        params=st.dictionaries(
            st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
            st.one_of(
                st.text(max_size=40).filter(lambda t: "\x00" not in t and _encodable(t)),
                st.integers(min_value=-(2**53), max_value=2**53),
                st.datetimes(timezones=st.just(timezone.utc)),
            ),
            max_size=6,
        )
    )
    def test_queued_letters_round_trip(self, params: dict[str, object]) -> None:
        """Whatever parameters a letter has, the worker reads back the same ones."""
        from kaspi_identity.services._letters import Letter, Letters

        letter = Letter(
            kind="password_changed",
            channel="email",
            to=EMAIL,
            language="kk",
            account_id="acct",
            params=params,
        )
        back = Letters.unqueued(Letters.queued(letter, T0))
        assert back == letter


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
