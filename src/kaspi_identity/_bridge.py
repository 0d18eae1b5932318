"""How the async face runs the one implementation of each flow.

Every flow, rule and storage transition is written once, as ordinary synchronous code that
calls its collaborators (stores, senders, the audit sink, the hasher) through their
synchronous protocols. The async face runs that same code in a greenlet (the technique
SQLAlchemy's asyncio extension is built on):

- :func:`run_flow` starts the flow in a greenlet of its own, from a coroutine;
- when the flow calls a collaborator that is really asynchronous, the call goes through
  :class:`Awaiting`, whose :func:`await_` hands the awaitable back to :func:`run_flow`;
- :func:`run_flow` awaits it on the event loop (other tasks run meanwhile) and switches back
  into the flow with the result, or throws the exception (cancellation included) into it.

So nothing is generated and nothing is written twice: the sync face calls the flow directly
with synchronous collaborators, the async face calls the very same function through
:func:`run_flow` with asynchronous ones. A greenlet switch costs about a microsecond.

The flow code must not hold a ``threading`` lock across a collaborator call: on the async
face every flow of a loop shares one thread, so a second flow waiting on that lock would
stop the loop. None does (see ``IdentityService._dummy``).

``greenlet`` is imported here only, and this module only by the async face, so
``import kaspi_identity`` stays light.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

__all__ = ["Awaiting", "Coroutining", "Face", "await_", "run_flow"]

P = ParamSpec("P")
T = TypeVar("T")


class _FlowGreenlet(greenlet):
    """The greenlet a flow runs in; :func:`await_` accepts no other."""


class _Outcome:
    """How a flow ended: ``value`` returned, or ``error`` raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


def _serve(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A flow greenlet's life: run a flow, hand its outcome up, wait for the next one."""
    while True:
        try:
            outcome = _Outcome(fn(*args, **kwargs))
        except GreenletExit:  # the greenlet is being collected mid-flow: let it die
            raise
        except BaseException as exc:  # handed to run_flow, which raises it in the task
            outcome = _Outcome(error=exc)
        del fn, args, kwargs  # keep nothing of a finished flow alive while parked
        parent = getcurrent().parent
        assert parent is not None
        fn, args, kwargs = parent.switch(outcome)


# Finished flow greenlets kept per thread for the next flow: starting a greenlet costs more
# than the rest of the bridge (~10 us here, more for a deep flow), reusing one costs a switch.
_parked = threading.local()
_PARK_AT_MOST = 64


def _flow_greenlet() -> _FlowGreenlet:
    idle: list[_FlowGreenlet] | None = getattr(_parked, "idle", None)
    while idle:
        flow = idle.pop()
        if not flow.dead:
            return flow
    return _FlowGreenlet(_serve)


async def run_flow(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the synchronous ``fn`` to the end, awaiting what it hands over via :func:`await_`.

    The flow sees the caller's context variables (a copy, as a task does).
    """
    flow = _flow_greenlet()
    flow.parent = getcurrent()
    flow.gr_context = contextvars.copy_context()
    handed: Any = flow.switch(fn, args, kwargs)
    while not isinstance(handed, _Outcome):
        try:
            value = await handed
        except BaseException as exc:  # cancellation too: the flow unwinds from where it is
            flow.parent = getcurrent()
            handed = flow.throw(exc)
        else:
            # Whoever resumes this coroutine is the flow's parent from now on, so a flow is
            # never switched back into a greenlet that has since moved on.
            flow.parent = getcurrent()
            handed = flow.switch(value)
    flow.gr_context = None
    idle = getattr(_parked, "idle", None)
    if idle is None:
        idle = _parked.idle = []
    if len(idle) < _PARK_AT_MOST:
        idle.append(flow)
    if handed.error is not None:
        error, handed.error = handed.error, None
        raise error
    result: T = handed.value
    return result


def await_(awaitable: Awaitable[T]) -> T:
    """From inside a flow started by :func:`run_flow`: wait for ``awaitable``, return its result.

    Raises:
        RuntimeError: called from anywhere else (an async store called by sync code); the
            awaitable is closed so no "never awaited" warning follows.
    """
    current = getcurrent()
    if not isinstance(current, _FlowGreenlet):
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError(
            "an asynchronous collaborator was called outside AsyncIdentityService's flows;"
            " give the synchronous IdentityService synchronous stores and senders"
        )
    parent = current.parent
    assert parent is not None  # run_flow gave it the caller's greenlet
    result: T = parent.switch(awaitable)
    return result


class Face:
    """A face on ``target``: each method goes through :meth:`_wrap`, once, and is kept.

    Attributes that are not callables pass through. :class:`Awaiting`, :class:`Coroutining`
    and the testing kit's ``Blocking`` differ only in how they wrap a method.
    """

    def __init__(self, target: object) -> None:
        self._target = target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._target!r})"

    @property
    def target(self) -> object:
        """The object behind this face."""
        return self._target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute
        call = self._wrap(name, attribute)
        self.__dict__[name] = call
        return call

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError


class Awaiting(Face):
    """A synchronous face on an asynchronous object, for use inside :func:`run_flow`.

    A method call on the face calls the target's method and, when that returns an
    awaitable, waits for it with :func:`await_`; a plain result (a sender such as the
    Outbox that never blocks) passes through.
    """

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        target = self._target
        if isinstance(target, Coroutining) and target.runs_inline:
            # A face over a face of a store that never blocks (the memory adapter): call
            # the store itself, with no coroutine to make and no switch to wait for.
            direct: Callable[..., Any] = getattr(target.target, name)
            return direct
        isawaitable = inspect.isawaitable

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await_(result) if isawaitable(result) else result

        return call

    def covers(self, accounts: object, history: object) -> bool:
        """Always ``True``: the asynchronous bundle checked its own ``with_history``."""
        return True


Runner = Callable[[Callable[[], Any]], Awaitable[Any]]


class Coroutining(Face):
    """An asynchronous face on a synchronous store: every method becomes a coroutine.

    ``runner`` decides where the synchronous call runs: by default (``None``) right away
    on the loop, for stores that never block (the memory adapter); the SQLite adapter
    passes one that runs it on the store's own worker threads.
    """

    def __init__(self, target: object, runner: Runner | None = None) -> None:
        super().__init__(target)
        self._runner = runner

    @property
    def runs_inline(self) -> bool:
        """Whether each call runs right away on the loop (no runner: the store never blocks)."""
        return self._runner is None

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        runner = self._runner
        call: Callable[..., Coroutine[Any, Any, Any]]
        if runner is None:

            async def call(*args: Any, **kwargs: Any) -> Any:
                return method(*args, **kwargs)

        else:

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await runner(functools.partial(method, *args, **kwargs))

        return call

    def covers(self, accounts: object, history: object) -> bool:
        """Whether the synchronous target writes to the stores behind ``accounts``, ``history``."""
        check = getattr(self._target, "covers", None)
        if check is None:
            return True
        inner = [x._target if isinstance(x, Coroutining) else x for x in (accounts, history)]
        return bool(check(*inner))

    async def aclose(self) -> None:
        """Close the synchronous target (where the runner runs it), then release the runner."""
        close = getattr(self._target, "close", None)
        try:
            if close is not None:
                if self._runner is None:
                    close()
                else:
                    await self._runner(close)
        finally:
            release = getattr(self._runner, "release", None)
            if release is not None:
                release()
