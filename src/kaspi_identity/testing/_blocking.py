"""Blocking faces on asynchronous stores and services, so one test suite proves both faces.

The contract suite, the state machine and a host's own flow tests are written against the
synchronous protocols. :func:`blocking_storage` and :func:`blocking_service` put an
asynchronous store or service behind those protocols: each call is a coroutine run on one
event loop in a thread of its own (shared by the whole test session), and the calling
thread waits for its result. Many test threads calling at once are many tasks on that one
loop -- the concurrency an async deployment has.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

from kaspi_identity._bridge import Face
from kaspi_identity.storage import (
    AsyncStorage,
    Storage,
)
from kaspi_identity.storage._protocols import remap

if TYPE_CHECKING:
    from kaspi_identity.services import AsyncIdentityService, IdentityService

__all__ = ["Blocking", "blocking_service", "blocking_storage", "run_on_test_loop"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _test_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="kaspi-identity-test-loop", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


def run_on_test_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the shared test event loop and wait for its result.

    The loop runs in a daemon thread of its own, started on first use; async clients (a
    ``redis.asyncio`` pool, an ``AsyncEngine``) made and used through it stay on one loop.
    """
    loop = _test_loop()
    if threading.current_thread().name == "kaspi-identity-test-loop":
        coroutine.close()
        raise RuntimeError("run_on_test_loop was called from the test loop itself")
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


class Blocking(Face):
    """A synchronous face on an asynchronous object: each coroutine runs on the test loop."""

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.iscoroutine(result):
                return run_on_test_loop(result)
            if inspect.isawaitable(result):
                awaitable = result

                async def wait() -> Any:
                    return await awaitable

                return run_on_test_loop(wait())
            return result

        return call

    def covers(self, accounts: object, history: object) -> bool:
        """Always ``True``: the asynchronous bundle checked its own ``with_history``."""
        return True

    def close(self) -> None:
        """``aclose()`` the target on the test loop, if it has one."""
        aclose = getattr(self._target, "aclose", None)
        if aclose is not None:
            run_on_test_loop(aclose())


def blocking_storage(storage: AsyncStorage) -> Storage:
    """A :class:`~kaspi_identity.storage.Storage` over the asynchronous ``storage``.

    Run the contract suite on an async store with it: ``make_storage()`` (or any
    ``make_<thing>()``) returns ``blocking_storage(my_async_storage())``. ``close()`` on the
    result awaits ``storage.aclose()``.
    """
    # Storage.close() closes each component once: each face awaits its target's aclose().
    return remap(storage, Blocking, Storage)


def blocking_service(service: AsyncIdentityService) -> IdentityService:
    """An :class:`~kaspi_identity.services.IdentityService`-shaped face on ``service``.

    Each flow is awaited on the test loop, so a flow test written for the sync face proves
    the async one unchanged.
    """
    from kaspi_identity.services import IdentityService

    return cast(IdentityService, Blocking(service))
