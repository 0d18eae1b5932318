"""The async face itself: the bridge, the off-loop hasher, cancellation, context, collaborators.

The flows' behaviour on the async face is proved by the flow suites (tests/_faces.py runs
each of their cases on both faces); here is what only the async face has.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kaspi_identity import StorageError
from kaspi_identity._bridge import Awaiting, Coroutining, await_, run_flow
from kaspi_identity.delivery import DeliveryError, EmailMessage, Outbox
from kaspi_identity.hashing import TESTS_ONLY, HashProfile, PasswordHasher, _OffLoop
from kaspi_identity.services import (
    AsyncIdentityService,
    AuditEvent,
    IdentityService,
    IdentitySettings,
    MemoryAuditLog,
    RateLimit,
)
from kaspi_identity.storage import Storage
from kaspi_identity.storage.memory import async_memory_storage, memory_storage
from kaspi_identity.storage.sqlite import async_sqlite_storage

PW = "Correct-Horse-9-Battery"
EMAIL = "aliya@example.kz"
# Above the inline threshold, so hashes really go to the pool, and still fast.
SMALL = HashProfile(time_cost=1, memory_cost=256, parallelism=1)
HUGE = RateLimit(10**6, timedelta(hours=1))


def _settings(**changes: Any) -> IdentitySettings:
    base: dict[str, Any] = {
        "secret_keys": (b"k" * 32,),
        "confirm_url": "https://portal.example.kz/confirm",
        "reset_url": "https://portal.example.kz/reset",
        "site_name": "portal.example.kz",
        "login_per_client": HUGE,
        "login_per_identifier": HUGE,
    }
    base.update(changes)
    return IdentitySettings(**base)


def _service(**kwargs: Any) -> AsyncIdentityService:
    kwargs.setdefault("email_sender", Outbox())
    kwargs.setdefault("hasher", PasswordHasher(TESTS_ONLY))
    return AsyncIdentityService(async_memory_storage(), _settings(), **kwargs)


async def _register(service: AsyncIdentityService, email: str = EMAIL) -> None:
    result = await service.register(email=email, password=PW, confirmation=PW, client_key="c")
    assert result.ok, result


class TestFace:
    def test_every_flow_is_a_coroutine_with_the_sync_signature(self) -> None:
        flows = [
            name
            for name, value in vars(IdentityService).items()
            if callable(value) and not name.startswith("_")
        ]
        assert len(flows) == 18  # the 11 of issue 12 and the 7 contact-detail flows
        for name in flows:
            method = getattr(AsyncIdentityService, name)
            assert inspect.iscoroutinefunction(method), name
            assert inspect.signature(method) == inspect.signature(getattr(IdentityService, name))
            assert method.__doc__
            assert method.__doc__.startswith("Coroutine: ")

    def test_a_sync_storage_is_refused(self) -> None:
        with pytest.raises(TypeError, match="AsyncStorage"):
            AsyncIdentityService(memory_storage(), _settings(), email_sender=Outbox())  # type: ignore[arg-type]

    def test_bad_input_raises_the_sync_faces_typed_error(self) -> None:
        service = _service()

        async def go() -> None:
            with pytest.raises(TypeError):
                await service.authenticate(None, PW, client_key="c")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await service.register(
                    email=b"a@b.kz",  # type: ignore[arg-type]
                    password=PW,
                    confirmation=PW,
                    client_key="c",
                )

        asyncio.run(go())
        assert asyncio.run(service.storage.accounts.find_by_login("email", "a@b.kz")) is None

    def test_repr_names_no_secret(self) -> None:
        assert "k" * 32 not in repr(_service())


class TestBridge:
    def test_an_async_collaborator_outside_a_flow_is_a_clear_error(self) -> None:
        async def later() -> int:
            return 1

        with pytest.raises(RuntimeError, match="outside AsyncIdentityService"):
            await_(later())

        class Store:
            async def get(self) -> int:
                return 1

        with pytest.raises(RuntimeError):
            Awaiting(Store()).get()

    def test_a_face_over_a_store_that_never_blocks_calls_it_directly(self) -> None:
        tokens = memory_storage().ledger
        face = Awaiting(Coroutining(tokens))
        assert face.consume == tokens.consume  # no coroutine, no switch
        assert Awaiting(Coroutining(tokens, runner=lambda call: call())).consume != tokens.consume

    def test_results_and_errors_cross_every_kind_of_wait(self) -> None:
        async def ready(x: int) -> int:
            return x

        async def waits(x: int) -> int:
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            return x * 2

        async def fails() -> None:
            await asyncio.sleep(0)
            raise LookupError("from the store")

        def flow() -> tuple[int, int, str]:
            first = await_(ready(1))
            second = await_(waits(2))
            future = asyncio.get_running_loop().run_in_executor(None, lambda: 5)
            third = await_(future)
            try:
                await_(fails())
            except LookupError as exc:
                return first + third, second, str(exc)
            raise AssertionError("not raised")

        assert asyncio.run(run_flow(flow)) == (6, 4, "from the store")

    def test_context_variables_reach_the_flow(self) -> None:
        request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")

        async def go() -> str:
            request_id.set("req-42")
            return await run_flow(request_id.get)

        assert asyncio.run(go()) == "req-42"

    def test_cancellation_unwinds_the_flow(self) -> None:
        unwound: list[str] = []

        def flow() -> None:
            try:
                await_(asyncio.sleep(10))
            finally:
                unwound.append("finally")

        async def go() -> None:
            task = asyncio.create_task(run_flow(flow))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(go())
        assert unwound == ["finally"]

    def test_many_flows_interleave_on_one_loop(self) -> None:
        order: list[str] = []

        def flow(name: str) -> str:
            for step in range(3):
                await_(asyncio.sleep(0))
                order.append(f"{name}{step}")
            return name

        async def go() -> list[str]:
            return list(await asyncio.gather(*(run_flow(flow, n) for n in "abc")))

        assert asyncio.run(go()) == ["a", "b", "c"]
        assert order[:3] == ["a0", "b0", "c0"]  # each waited, the others ran meanwhile


class RecordingHasher(PasswordHasher):
    """Records the thread each argon2 computation runs on."""

    def __init__(self) -> None:
        super().__init__(SMALL, max_concurrency=2)
        self.threads: list[str] = []
        self.verified: list[str] = []

    def hash(self, password: str) -> str:
        self.threads.append(threading.current_thread().name)
        return super().hash(password)

    def verify(self, hash: str, password: str) -> None:
        self.threads.append(threading.current_thread().name)
        self.verified.append(hash)
        super().verify(hash, password)


class TestHashingOffTheLoop:
    def test_argon2_runs_on_the_hashers_pool_never_on_the_loop(self) -> None:
        hasher = RecordingHasher()
        service = _service(hasher=hasher)

        async def go() -> str:
            await _register(service)
            assert (await service.authenticate(EMAIL, PW, client_key="c")).ok
            assert not (await service.authenticate(EMAIL, "wrong-" + PW, client_key="c")).ok
            return threading.current_thread().name

        loop_thread = asyncio.run(go())
        assert len(hasher.threads) >= 3
        assert loop_thread not in hasher.threads
        assert all(name.startswith("kaspi-identity-verify") for name in hasher.threads)

    def test_the_loop_keeps_running_while_a_real_hash_is_computed(self) -> None:
        service = _service(hasher=PasswordHasher())  # OWASP_MINIMUM: tens of ms a hash

        async def go() -> int:
            ticks = 0
            task = asyncio.create_task(_register(service))
            while not task.done():
                ticks += 1
                await asyncio.sleep(0)
            await task
            return ticks

        assert asyncio.run(go()) > 10

    def test_the_memory_bound_is_the_wrapped_hashers(self) -> None:
        inner = PasswordHasher(SMALL, max_concurrency=3)
        assert _OffLoop(inner).max_concurrency == 3
        assert repr(_OffLoop(inner)) == repr(inner)


class TestCollaborators:
    def test_async_sender_and_sink_are_awaited(self) -> None:
        sent: list[EmailMessage] = []
        events: list[AuditEvent] = []

        class Sender:
            async def send_email(self, message: EmailMessage) -> None:
                await asyncio.sleep(0)
                sent.append(message)

        class Sink:
            async def emit(self, event: AuditEvent) -> None:
                await asyncio.sleep(0)
                events.append(event)

        service = _service(email_sender=Sender(), audit=Sink())
        asyncio.run(_register(service))
        assert [m.to for m in sent] == [EMAIL]
        assert [e.kind for e in events] == ["registered"]

    def test_failing_async_sender_and_sink_do_not_break_the_flow(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Sender:
            async def send_email(self, message: EmailMessage) -> None:
                await asyncio.sleep(0)
                raise DeliveryError("relay down")

        class Sink:
            async def emit(self, event: AuditEvent) -> None:
                raise RuntimeError("sink down")

        service = _service(email_sender=Sender(), audit=Sink())
        asyncio.run(_register(service))
        assert "audit sink failed" in caplog.text
        assert PW not in caplog.text

    def test_sync_collaborators_that_never_block_are_taken(self) -> None:
        outbox, audit = Outbox(), MemoryAuditLog()
        service = _service(email_sender=outbox, audit=audit)
        asyncio.run(_register(service))
        assert outbox.last_email(to=EMAIL) is not None
        assert audit.kinds() == ["registered"]


@pytest.fixture
def sqlite_service(tmp_path: Any) -> Iterator[AsyncIdentityService]:
    storage = async_sqlite_storage(tmp_path / "identity.sqlite3")
    yield AsyncIdentityService(
        storage, _settings(), email_sender=Outbox(), hasher=PasswordHasher(SMALL)
    )
    asyncio.run(storage.aclose())


class TestAsyncSQLite:
    def test_concurrent_wrong_guesses_verify_at_most_backoff_after(self, tmp_path: Any) -> None:
        """The reservation holds across tasks: 32 wrong guesses at once, 3 verified."""
        hasher = RecordingHasher()
        storage = async_sqlite_storage(tmp_path / "race.sqlite3")
        service = AsyncIdentityService(
            storage, _settings(backoff_after=3), email_sender=Outbox(), hasher=hasher
        )

        async def go() -> None:
            await _register(service)
            account = await storage.accounts.find_by_login("email", EMAIL)
            assert account is not None
            stored.append(account.password_hash or "")
            results = await asyncio.gather(
                *(
                    service.authenticate(EMAIL, f"wrong-{i}-{PW}", client_key=f"c{i}")
                    for i in range(32)
                )
            )
            assert not any(r.ok for r in results)
            await storage.aclose()

        stored: list[str] = []
        asyncio.run(go())
        # Throttled guesses burn a dummy verification (equal work), never the stored hash.
        assert hasher.verified.count(stored[0]) == 3

    def test_a_closed_bundle_raises_storage_error(self, tmp_path: Any) -> None:
        """A call on a closed bundle is a StorageError with nothing chained, not RuntimeError."""
        storage = async_sqlite_storage(tmp_path / "closed.sqlite3", threads=2)
        now = datetime.now(timezone.utc)
        caught: list[BaseException] = []

        async def go() -> None:
            await storage.aclose()
            with pytest.raises(StorageError, match="closed") as first:
                await storage.accounts.get("nobody")
            with pytest.raises(StorageError, match="closed") as second:
                await storage.rate_limits.hit("k", limit=1, window=timedelta(minutes=1), now=now)
            caught.extend((first.value, second.value))

        asyncio.run(go())
        assert len(caught) == 2
        assert all(e.__cause__ is None and e.__context__ is None for e in caught)

    def test_closing_stops_the_worker_threads(self, tmp_path: Any) -> None:
        storage = async_sqlite_storage(tmp_path / "close.sqlite3", threads=2)

        async def go() -> None:
            await storage.accounts.get("nobody")
            async with storage:
                pass

        asyncio.run(go())
        workers = [t for t in threading.enumerate() if t.name.startswith("kaspi-identity-sqlite")]
        for worker in workers:
            worker.join(timeout=10)
        assert not any(worker.is_alive() for worker in workers)

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5])
    def test_bad_thread_counts_are_refused(self, tmp_path: Any, bad: Any) -> None:
        with pytest.raises(ValueError, match="threads"):
            async_sqlite_storage(tmp_path / "bad.sqlite3", threads=bad)

    def test_the_sync_bundle_is_not_an_async_one(self) -> None:
        assert not isinstance(memory_storage(), type(async_memory_storage()))
        assert isinstance(memory_storage(), Storage)


class TestNestedFlows:
    def test_a_collaborator_that_runs_a_flow_of_its_own_waits_correctly(self) -> None:
        """A sender built on run_flow, called from a flow: results go where they belong."""

        def inner(x: int) -> int:
            first = await_(asyncio.sleep(0.001, result=x))
            second = await_(asyncio.sleep(0, result=first + 1))
            return second * 10

        class Sender:
            async def send(self, x: int) -> int:
                return await run_flow(inner, x)

        face = Awaiting(Sender())

        def outer() -> list[int]:
            got = []
            for x in range(3):
                got.append(face.send(x))
                got.append(await_(asyncio.sleep(0, result=-x)))
            return got

        async def go() -> list[list[int]]:
            return list(await asyncio.gather(run_flow(outer), run_flow(outer)))

        assert asyncio.run(go()) == [[10, 0, 20, -1, 30, -2]] * 2


class TestSyncFaceRefusesAsyncCollaborators:
    """Given to the sync face, an async sender would never be awaited: nothing sent."""

    def test_async_sender_sink_or_storage_is_a_type_error(self) -> None:
        class Sender:
            async def send_email(self, message: EmailMessage) -> None: ...

            async def send_sms(self, message: Any) -> None: ...

        class Sink:
            async def emit(self, event: AuditEvent) -> None: ...

        cases: list[dict[str, Any]] = [
            {"email_sender": Sender()},
            {"email_sender": Outbox(), "sms_sender": Sender()},
            {"email_sender": Outbox(), "audit": Sink()},
        ]
        for kwargs in cases:
            with pytest.raises(TypeError, match="AsyncIdentityService"):
                IdentityService(memory_storage(), _settings(), **kwargs)
        with pytest.raises(TypeError, match="AsyncIdentityService"):
            IdentityService(async_memory_storage(), _settings(), email_sender=Outbox())  # type: ignore[arg-type]


class TestReusedFlowGreenlets:
    """Finished flows' greenlets serve the next flows; nothing of one flow reaches another."""

    def test_errors_cancellations_and_results_alternate_cleanly(self) -> None:
        seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="none")

        def ok(x: int) -> tuple[int, str]:
            before = seen.get()
            seen.set(f"flow-{x}")  # set inside the flow: must not leak into the next one
            await_(asyncio.sleep(0))
            return x, before

        def fails() -> None:
            await_(asyncio.sleep(0))
            raise LookupError("from the flow")

        def waits() -> None:
            await_(asyncio.sleep(10))

        async def go() -> list[object]:
            out: list[object] = []
            for round_ in range(5):
                out.append(await run_flow(ok, round_))
                with pytest.raises(LookupError, match="from the flow"):
                    await run_flow(fails)
                task = asyncio.create_task(run_flow(waits))
                await asyncio.sleep(0.001)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            many = await asyncio.gather(*(run_flow(ok, i) for i in range(100)))
            out.append(len(many))
            return out

        results = asyncio.run(go())
        assert results[:5] == [(i, "none") for i in range(5)]
        assert results[5] == 100

    def test_a_flow_whose_coroutine_is_closed_unwinds_and_its_greenlet_serves_again(
        self,
    ) -> None:
        """Dropping a suspended run_flow (coroutine close) unwinds the flow's finally."""
        unwound: list[str] = []

        def waits() -> None:
            try:
                await_(asyncio.sleep(10))
            finally:
                unwound.append("finally")

        async def go() -> int:
            coroutine = run_flow(waits)
            pending = coroutine.send(None)  # suspended on the sleep's future
            assert pending is not None
            coroutine.close()
            return await run_flow(lambda: 7)

        assert asyncio.run(go()) == 7
        assert unwound == ["finally"]
