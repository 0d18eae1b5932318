"""The outbox worker: delivers queued letters and SMS with retries, back-off and dead letters.

:class:`OutboxWorker` claims due messages from the service's
:class:`~kaspi_identity.storage.OutboxStore` under a lease, writes each one (sealing its link,
unmasking its code) and hands it to the service's sender with the message id as its
idempotency key; then it marks it sent. A failed send is retried after an exponentially
growing wait, and a message that keeps failing -- or that can never be written -- is moved to
``dead``, where ``kaspi-identity outbox list|retry|purge`` finds it.

Delivery is at-least-once: a worker that dies between the send and the mark loses its lease,
and the next claim sends the message again, with the same idempotency key and the very same
text (the link and the code are written from the same stored body and nonce), so a sender or
a receiving side that deduplicates by that key shows it once.

:class:`AsyncOutboxWorker` is the same worker for :class:`AsyncIdentityService`: the very
``run_once`` run through the greenlet bridge, and an asyncio task in place of the thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from kaspi_identity.services._letters import Letters, UnrenderableError
from kaspi_identity.storage import OutboxEntry, OutboxStore

if TYPE_CHECKING:
    import asyncio

    from kaspi_identity.services._async import AsyncIdentityService
    from kaspi_identity.services._service import IdentityService

__all__ = ["AsyncOutboxWorker", "OutboxWorker", "RetryPolicy", "WorkerRun"]

_log = logging.getLogger("kaspi_identity.outbox")
_MAX_BATCH: Final = 1000
_MICROSECOND: Final = timedelta(microseconds=1)


def _positive(value: object, name: str) -> timedelta:
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a timedelta, not {type(value).__name__}")
    if value <= timedelta(0):
        raise ValueError(f"{name} must be positive")
    return value


def _count(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long a worker retries a message before it gives up on it.

    The wait after failed attempt ``n`` is ``first_delay * 2 ** (n - 1)``, at most
    ``max_delay``; after ``max_attempts`` failed attempts the message is ``dead``. With
    the defaults (8 attempts, 30 s, 1 h) a message is tried for about 1 h 34 min.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: ``max_attempts`` is outside 1..100, a delay is not positive, or
            ``max_delay`` is below ``first_delay``.
    """

    max_attempts: int = 8
    first_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        _count(self.max_attempts, "max_attempts", 1, 100)
        _positive(self.first_delay, "first_delay")
        _positive(self.max_delay, "max_delay")
        if self.max_delay < self.first_delay:
            raise ValueError("max_delay must not be below first_delay")

    def delay(self, attempt: int) -> timedelta | None:
        """The wait after failed attempt ``attempt`` (1 for the first); ``None``: give up."""
        if attempt >= self.max_attempts:
            return None
        # In whole microseconds: first_delay * 2**40 would overflow a timedelta.
        first, cap = self.first_delay // _MICROSECOND, self.max_delay // _MICROSECOND
        exponent = min(attempt - 1, 64)
        return min(first << exponent, cap) * _MICROSECOND


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """What one :meth:`OutboxWorker.run_once` did: how many messages ended each way.

    ``lost`` counts messages sent whose mark came too late (the lease had passed and
    another worker claimed them): they will be sent once more, with the same key.
    """

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0


class OutboxWorker:
    """Delivers what a service's flows queued: ``run_once``, ``run``, or a thread of its own.

    Args:
        service: the :class:`IdentityService` whose storage holds the outbox and whose
            senders, keys, settings and catalog the messages are written and sent with.
        batch: how many messages one claim takes (1 to 1000).
        lease: how long a claimed message is this worker's; a send must finish well
            within it (it is retried by another worker after it).
        retry: the retries and back-off (:class:`RetryPolicy`).

    Raises:
        ValueError: the service's storage has no outbox, or an argument is out of range.
        TypeError: an argument has the wrong type.
    """

    def __init__(
        self,
        service: IdentityService,
        *,
        batch: int = 20,
        lease: timedelta = timedelta(minutes=2),
        retry: RetryPolicy | None = None,
    ) -> None:
        queue = service.storage.outbox
        if queue is None:
            raise ValueError(
                "the service's storage has no outbox: build it with outbox=True"
                " (memory_storage(outbox=True), sqlite_storage(path, outbox=True), ...)"
            )
        self._queue: OutboxStore = queue
        self._plumbing = service._plumbing
        self._batch = _count(batch, "batch", 1, _MAX_BATCH)
        self._lease = _positive(lease, "lease")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, not {type(retry).__name__}")
        self.retry = retry if retry is not None else RetryPolicy()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<OutboxWorker batch={self._batch} lease={self._lease} retry={self.retry}>"

    def run_once(self) -> WorkerRun:
        """Claim one batch of due messages and deliver each; say what became of them.

        Raises:
            StorageError: the outbox cannot be read or written (nothing is lost: an
                unsettled claim is claimed again after its lease).
        """
        clock = self._plumbing.clock
        entries = self._queue.claim(now=clock.now(), lease=self._lease, limit=self._batch)
        sent = retried = dead = lost = 0
        for entry in entries:
            outcome = self._deliver(entry)
            sent += outcome == "sent"
            retried += outcome == "retried"
            dead += outcome == "dead"
            lost += outcome == "lost"
        return WorkerRun(len(entries), sent, retried, dead, lost)

    def _deliver(self, entry: OutboxEntry) -> str:
        p, message = self._plumbing, entry.message
        kind = message.kind
        try:
            written = p.letters.render(Letters.unqueued(message), key=message.id)
        except UnrenderableError as exc:
            return self._failed(entry, exc, permanent=True)
        try:
            p.transmit(written)
        except Exception as exc:  # any sender failure is retried; a message is never lost
            return self._failed(entry, exc, permanent=False)
        if not self._queue.complete(message.id, attempt=entry.attempts, now=p.clock.now()):
            _log.warning("outbox %s %s: sent after its lease ended", kind, message.id)
            return "lost"
        return "sent"

    def _failed(self, entry: OutboxEntry, exc: Exception, *, permanent: bool) -> str:
        p, message = self._plumbing, entry.message
        wait = None if permanent else self.retry.delay(entry.attempts)
        now = p.clock.now()
        label = type(exc).__name__[:200] or "Exception"
        retry_at = None if wait is None else now + wait
        written = self._queue.fail(
            message.id, attempt=entry.attempts, now=now, retry_at=retry_at, error=label
        )
        what = "sms" if message.channel == "sms" else "letter"
        final = "yes" if retry_at is None else "no"
        _log.warning(
            "outbox %s %s attempt %d failed: %s", message.kind, message.id, entry.attempts, label
        )
        p.emit("delivery_failed", message.account_id, **{what: message.kind, "dead": final})
        if not written:
            return "lost"
        return "dead" if retry_at is None else "retried"

    def run_until_idle(self, *, max_batches: int = 1000) -> WorkerRun:
        """:meth:`run_once` until a claim finds nothing due (or ``max_batches`` ran).

        For tests, the demo and a cron-style ``kaspi-identity worker --once``; the totals
        of every batch.
        """
        _count(max_batches, "max_batches", 1, 1_000_000)
        total = WorkerRun()
        for _ in range(max_batches):
            run = self.run_once()
            total = WorkerRun(*(a + b for a, b in zip(_fields(total), _fields(run), strict=True)))
            if run.claimed == 0:
                break
        return total

    def run(self, *, poll: float = 1.0) -> None:
        """Deliver until :meth:`stop`: a batch, then (when it was not full) wait ``poll`` s.

        A failing outbox (``StorageError``) is logged and tried again after ``poll``.
        """
        poll = _poll(poll)
        while not self._stop.is_set():
            try:
                run = self.run_once()
            except Exception:  # the store is down: keep the worker alive, try again
                _log.exception("outbox worker: a batch failed")
                run = WorkerRun()
            if run.claimed < self._batch:
                self._stop.wait(poll)

    def start(self, *, poll: float = 1.0) -> None:
        """Run :meth:`run` on a daemon thread of its own (small deployments, the demo).

        Raises:
            RuntimeError: the worker is already running.
        """
        poll = _poll(poll)
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the outbox worker is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, kwargs={"poll": poll}, name="kaspi-identity-outbox", daemon=True
        )
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> bool:
        """Ask the worker to stop after its current message; whether it stopped in time."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()


def _fields(run: WorkerRun) -> tuple[int, int, int, int, int]:
    return run.claimed, run.sent, run.retried, run.dead, run.lost


def _poll(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"poll must be a number of seconds, not {type(value).__name__}")
    if not 0 < value <= 3600:
        raise ValueError("poll must be above 0 and at most 3600 seconds")
    return float(value)


class AsyncOutboxWorker:
    """:class:`OutboxWorker` for :class:`AsyncIdentityService`: coroutines and an asyncio task.

    ``run_once`` and ``run_until_idle`` are the synchronous worker's own, run through the
    greenlet bridge so that every store and sender call is awaited; :meth:`start` runs
    them in a task on the running loop. Arguments and errors as for :class:`OutboxWorker`.
    """

    def __init__(
        self,
        service: AsyncIdentityService,
        *,
        batch: int = 20,
        lease: timedelta = timedelta(minutes=2),
        retry: RetryPolicy | None = None,
    ) -> None:
        self._worker = OutboxWorker(service._core, batch=batch, lease=lease, retry=retry)
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Async{repr(self._worker)[1:]}"

    async def run_once(self) -> WorkerRun:
        """Coroutine: as :meth:`OutboxWorker.run_once`."""
        from kaspi_identity._bridge import run_flow

        return await run_flow(OutboxWorker.run_once, self._worker)

    async def run_until_idle(self, *, max_batches: int = 1000) -> WorkerRun:
        """Coroutine: as :meth:`OutboxWorker.run_until_idle`."""
        from kaspi_identity._bridge import run_flow

        return await run_flow(OutboxWorker.run_until_idle, self._worker, max_batches=max_batches)

    async def run(self, *, poll: float = 1.0) -> None:
        """Coroutine: deliver until cancelled (or :meth:`stop`), waiting ``poll`` s when idle."""
        import asyncio

        poll = _poll(poll)
        while True:
            try:
                run = await self.run_once()
            except Exception:  # the store is down: keep the task alive, try again
                _log.exception("outbox worker: a batch failed")
                run = WorkerRun()
            if run.claimed < self._worker._batch:
                await asyncio.sleep(poll)

    def start(self, *, poll: float = 1.0) -> asyncio.Task[None]:
        """Run :meth:`run` in a task on the running event loop; return the task.

        Raises:
            RuntimeError: no event loop is running, or the worker is already running.
        """
        import asyncio

        poll = _poll(poll)
        if self._task is not None and not self._task.done():
            raise RuntimeError("the outbox worker is already running")
        self._task = asyncio.get_running_loop().create_task(
            self.run(poll=poll), name="kaspi-identity-outbox"
        )
        return self._task

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        import asyncio

        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
