"""Both faces of the service for the flow tests: each test written once runs on both.

``make_service("sync", ...)`` is :class:`IdentityService` itself; ``make_service("async",
...)`` is :class:`AsyncIdentityService` over the same (synchronous) stores, turned
asynchronous by the adapters' own ``coroutining`` (each store call on a worker thread, as
``async_sqlite_storage`` does), behind :func:`kaspi_identity.testing.blocking_service` so
the test drives it with plain calls that await each flow on the shared test loop.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from kaspi_identity._bridge import Coroutining
from kaspi_identity.services import AsyncIdentityService, IdentityService, IdentitySettings
from kaspi_identity.storage import (
    AsyncStorage,
    Storage,
)
from kaspi_identity.storage._async import _WorkerThreads
from kaspi_identity.storage._protocols import remap
from kaspi_identity.testing import blocking_service

Face = Literal["sync", "async"]
FACES: tuple[Face, ...] = ("sync", "async")


def make_service(
    face: Face, storage: Storage, settings: IdentitySettings, **kwargs: Any
) -> IdentityService:
    """The service on ``face`` over ``storage``, with :class:`IdentityService`'s arguments."""
    if face == "sync":
        return IdentityService(storage, settings, **kwargs)
    service = AsyncIdentityService(as_async(storage), settings, **kwargs)
    return blocking_service(service)


# One pool for every test's stores: a pool per test would leave thousands of idle threads.
_WORKERS = _WorkerThreads(8, "kaspi-identity-test-store")


def as_async(storage: Storage) -> AsyncStorage:
    """``storage`` behind coroutine faces whose calls run on worker threads (never closed)."""

    return remap(storage, lambda component: Coroutining(component, _WORKERS), AsyncStorage)


def core_of(service: IdentityService) -> IdentityService:
    """The :class:`IdentityService` whose flows ``service`` runs (itself on the sync face).

    For reading its pure helpers (keys, hashes of codes) only: on the async face its store
    calls work only inside a flow.
    """
    if isinstance(service, IdentityService):
        return service
    target = cast(Any, service).target
    core: IdentityService = target._core
    return core


def innermost(storage: Storage) -> Storage:
    """The synchronous stores behind a blocking face on an async bundle (for fault hooks)."""

    def inner(component: object) -> Any:
        while hasattr(component, "target"):
            component = component.target
        return component

    return remap(storage, inner, Storage)
