"""Redis storage: token ledger, one-time codes, rate limits and password history.

For deployments with several app servers: a token consumed through one server is dead on
every other at once. Every operation is one Redis command or one Lua script on one key,
so it is atomic for every client of the server, and a dropped connection can never leave
half of it written. Accounts are not kept here -- they belong in your SQL database; bundle
your :class:`~kaspi_identity.storage.AccountStore` with these stores with
:func:`redis_storage`. The client is one server's ``redis.Redis`` or a
``redis.cluster.RedisCluster`` (each operation goes to its key's master); scripts run from
the script cache (``EVALSHA``), so each operation is one round trip, and with
``pipelining=True`` the commands of concurrent threads share them.

Key layout (``prefix`` defaults to :data:`DEFAULT_PREFIX`; the caller's key or id is the
Redis Cluster hash tag, so each key hashes by the caller's key alone)::

    <prefix>token:{<token_id>}      string "1"                      TokenLedger
    <prefix>code:{<key>}            hash h e w f x                  OneTimeCodeStore
    <prefix>rate:{<key>}            hash s l n                      RateLimiter
    <prefix>history:{<account_id>}  list of encoded entries, newest first
    <prefix>outbox:{outbox}:...     hashes and sorted sets          OutboxStore

All times come from the caller's ``now``: they travel into the scripts as integer
microseconds since 1970, and every stored time is the caller's. Keys expire only to free
memory -- an expiry is a duration from the caller's ``now`` (``PX`` / ``PEXPIRE``, so the
Redis host's clock does not matter) plus the 5-minute grace every adapter keeps -- and never
decides an answer. App servers' clocks must agree to well within that grace (NTP).

Redis errors become :class:`~kaspi_identity.StorageError` with the original as
``__cause__``; a key holding something this adapter did not write raises
:class:`~kaspi_identity.CorruptRecordError` and is left as it was. A client opened from a
URL (:func:`redis_client`, :func:`redis_storage`) pools at most ``max_connections``, and a
call made while all are busy waits up to ``pool_timeout`` seconds for one instead of
failing at once; a wait that runs out is a ``StorageError`` too.

:func:`async_redis_storage` and :func:`async_redis_client` are the async face, on
``redis.asyncio``: the same store classes, run so that each Redis command is awaited, so
both faces share every script, key, encoding and error (docs/storage.md, "The async face").

Requires the ``redis`` client: ``pip install 'kaspi-identity[redis]'``.
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import re
import struct
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

try:
    import redis
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster
    import redis.exceptions
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "kaspi_identity.storage.redis needs the redis client: pip install 'kaspi-identity[redis]'"
    ) from exc

from .._errors import CorruptRecordError, StorageError
from ._async import (
    AsyncAccountStore,
    AsyncOneTimeCodeStore,
    AsyncOutboxStore,
    AsyncPasswordHistoryStore,
    AsyncRateLimiter,
    AsyncStorage,
    AsyncTokenLedger,
)
from ._checks import LEDGER_GRACE, from_microseconds, require_key, to_microseconds, utc_microseconds
from ._logic import check_append, check_attempt, check_consume, check_hit, check_put, check_recent
from ._outbox import (
    OutboxEntry,
    OutboxMessage,
    OutboxStatus,
    check_claim,
    check_enqueue,
    check_list,
    check_message_id,
    check_purge,
    check_settle,
    decode_outbox,
    entry_of,
    initial_state,
)
from ._protocols import AccountStore, Storage
from ._records import CodeAttempt, HistoryEntry, RateLimitResult

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_PREFIX",
    "RedisOneTimeCodeStore",
    "RedisOutboxStore",
    "RedisPasswordHistoryStore",
    "RedisRateLimiter",
    "RedisTokenLedger",
    "async_redis_client",
    "async_redis_storage",
    "redis_client",
    "redis_storage",
]

_T = TypeVar("_T")
_C = TypeVar("_C", redis.Redis, redis.asyncio.Redis)
# The clients a bundle runs on: one server, or a Redis Cluster (every operation touches one
# key, so a cluster client routes it to the key's master).
_SyncClient = redis.Redis | redis.cluster.RedisCluster
_AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

#: The key prefix used unless another is given.
DEFAULT_PREFIX = "kaspi-identity:"
#: Connections a client opened from a URL keeps open at most.
DEFAULT_MAX_CONNECTIONS = 50
#: Seconds a call waits for a free connection of such a client before ``StorageError``.
DEFAULT_POOL_TIMEOUT = 5.0

_US = timedelta(microseconds=1)
_MS = timedelta(milliseconds=1)
_GRACE_MS = LEDGER_GRACE // _MS
# Lua numbers are doubles: integers are exact below 2**53 microseconds (1684 to 2255).
_LUA_EXACT = 2**53
# Beyond what LTRIM/LRANGE indexes accept; no list gets near it.
_LIST_INDEX_MAX = 2**62
_ERROR_CODE = re.compile(r"[A-Z]{2,16}")

# Shared Lua: strict integer parsing, and an expiry as a duration from the caller's clock.
# Values are formatted with %.0f before they reach redis.call, because Redis would print a
# Lua number with an exponent. Scripts validate everything before their first write and
# issue no command that can fail after it, so a script never stops half-way.
_LUA_PRELUDE = """
local function int(value)
  if type(value) ~= 'string' or #value > 30 or not string.match(value, '^%-?%d+$') then
    return nil
  end
  return tonumber(value)
end
local function fmt(number)
  return string.format('%.0f', number)
end
local function expire(key, deadline, now, grace)
  local ttl = math.ceil((deadline - now) / 1000) + grace
  if ttl > 1e15 then ttl = 1e15 end
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', key, fmt(ttl))
end
"""

# A one-time code's state: h code hash, e expires_at, w failure window, f failures,
# x end of the failure window (present exactly when f > 0). A burned code keeps w, f, x.
_LUA_LOAD_CODE = """
local function load(key)
  local raw = redis.call('HMGET', key, 'h', 'e', 'w', 'f', 'x')
  if not (raw[1] or raw[2] or raw[3] or raw[4] or raw[5]) then
    if redis.call('EXISTS', key) == 1 then return nil, 'unknown fields' end
    return false
  end
  local s = {h = raw[1], es = raw[2], e = int(raw[2]), w = int(raw[3]), ws = raw[3],
             f = int(raw[4]), xs = raw[5], x = int(raw[5])}
  if not s.w or s.w <= 0 then return nil, 'failure window' end
  if not s.f or s.f < 0 then return nil, 'failure count' end
  if (s.f == 0) ~= (raw[5] == false) or (raw[5] and not s.x) then
    return nil, 'failure window end'
  end
  if (s.h == false) ~= (raw[2] == false) or (raw[2] and not s.e) or s.h == '' then
    return nil, 'code or expiry'
  end
  return s
end
"""

# KEYS[1] code key; ARGV: code hash, expires_at, now, failure window, grace (ms).
_LUA_PUT_CODE = (
    _LUA_PRELUDE
    + _LUA_LOAD_CODE
    + """
local key = KEYS[1]
local now = tonumber(ARGV[3])
local state, corrupt = load(key)
if corrupt then return corrupt end
local failures, window_end = 0, false
if state and state.xs and now < state.x then
  failures, window_end = state.f, state.xs
end
redis.call('HSET', key, 'h', ARGV[1], 'e', ARGV[2], 'w', ARGV[4], 'f', fmt(failures))
local deadline = tonumber(ARGV[2])
if window_end then
  redis.call('HSET', key, 'x', window_end)
  if tonumber(window_end) > deadline then deadline = tonumber(window_end) end
else
  redis.call('HDEL', key, 'x')
end
expire(key, deadline, now, tonumber(ARGV[5]))
return 1
"""
)

# KEYS[1] code key; ARGV: now, max attempts, grace (ms), then 1 to 8 candidate hashes.
# Returns 0 MISSING, 1 MISMATCH, 2 OK, 3 EXHAUSTED, or a string naming corrupt data.
# Every candidate is compared, a match or not, and the attempt is counted once.
_LUA_ATTEMPT_CODE = (
    _LUA_PRELUDE
    + _LUA_LOAD_CODE
    + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local state, corrupt = load(key)
if corrupt then return corrupt end
if not state or not state.h or now >= state.e then return 0 end
local failures, window_end, window_end_s = state.f, state.x, state.xs
if window_end_s and now >= window_end then
  failures, window_end, window_end_s = 0, nil, false
end
failures = failures + 1
if not window_end_s then
  window_end = now + state.w
  window_end_s = fmt(window_end)
end
local grace = tonumber(ARGV[3])
if failures > tonumber(ARGV[2]) then
  redis.call('HSET', key, 'f', fmt(failures), 'x', window_end_s)
  redis.call('HDEL', key, 'h', 'e')
  expire(key, window_end, now, grace)
  return 3
end
local right = false
for i = 4, #ARGV do
  if state.h == ARGV[i] then right = true end
end
if right then
  redis.call('DEL', key)
  return 2
end
redis.call('HSET', key, 'f', fmt(failures), 'x', window_end_s)
local deadline = state.e
if window_end > deadline then deadline = window_end end
expire(key, deadline, now, grace)
return 1
"""
)

# KEYS[1] rate key; ARGV: now, limit, window, grace (ms).
# Returns {allowed 1/0, window start, window length} or a string naming corrupt data.
_LUA_HIT = (
    _LUA_PRELUDE
    + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local raw = redis.call('HMGET', key, 's', 'l', 'n')
local start_s, length_s, hits
if raw[1] or raw[2] or raw[3] then
  local start, length, count = int(raw[1]), int(raw[2]), int(raw[3])
  if not start or not length or length <= 0 or not count or count < 1 then
    return 'window fields'
  end
  if now < start + length then
    start_s, length_s = raw[1], raw[2]
    hits = redis.call('HINCRBY', key, 'n', 1)
  end
elseif redis.call('EXISTS', key) == 1 then
  return 'unknown fields'
end
if not start_s then
  start_s, length_s, hits = ARGV[1], ARGV[3], 1
  redis.call('HSET', key, 's', start_s, 'l', length_s, 'n', '1')
end
expire(key, tonumber(start_s) + tonumber(length_s), now, tonumber(ARGV[4]))
local allowed = 0
if hits <= tonumber(ARGV[2]) then allowed = 1 end
return {allowed, start_s, length_s}
"""
)

# KEYS[1] history key; ARGV: encoded entry, keep. LPUSH is the first write: if the key
# holds another type it fails before anything is written.
_LUA_APPEND = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, ARGV[2])
return 1
"""

# An encoded history entry: version byte, created_at (signed 64-bit microseconds), length
# of the UTF-8 password hash (unsigned 16-bit), the hash, then the fingerprint bytes.
_ENTRY_VERSION = 1
_ENTRY_HEAD = struct.Struct(">BqH")


def _encode_entry(entry: HistoryEntry) -> bytes:
    password_hash = entry.password_hash.encode("utf-8")
    head = _ENTRY_HEAD.pack(_ENTRY_VERSION, to_microseconds(entry.created_at), len(password_hash))
    return head + password_hash + entry.fingerprint


def _decode_entry(raw: object) -> HistoryEntry:
    if not isinstance(raw, bytes) or len(raw) < _ENTRY_HEAD.size:
        raise _corrupt("password history entry", "too short")
    version, created, length = _ENTRY_HEAD.unpack_from(raw)
    if version != _ENTRY_VERSION:
        raise _corrupt("password history entry", "unknown format version")
    end = _ENTRY_HEAD.size + length
    if len(raw) < end:
        raise _corrupt("password history entry", "truncated password hash")
    try:
        return HistoryEntry(
            password_hash=raw[_ENTRY_HEAD.size : end].decode("utf-8"),
            fingerprint=raw[end:],
            created_at=from_microseconds(created),
        )
    except (UnicodeDecodeError, OverflowError, TypeError, ValueError) as exc:
        raise _corrupt("password history entry", type(exc).__name__) from exc


def _corrupt(what: str, reason: str) -> CorruptRecordError:
    return CorruptRecordError(f"a stored {what} in Redis is invalid: {reason}")


class _PoolExhausted(redis.exceptions.ConnectionError):
    """No connection of a pool became free within the pool's timeout."""

    def __init__(self, size: int, timeout: float | None) -> None:
        wait = "" if timeout is None else f" within {timeout:g} s"
        super().__init__(f"none of the pool's {size} connections became free{wait}")


class _WaitQueue(queue.LifoQueue[Any]):
    """The free list of a :class:`redis.BlockingConnectionPool` whose timeout is told apart.

    The pool waits for a connection with ``get(block=True, timeout=...)`` and turns
    :class:`queue.Empty` into a bare ``ConnectionError``, the same type as a refused
    connection; this queue raises :class:`_PoolExhausted` instead.
    """

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block, timeout)
        except queue.Empty:
            if not block:
                raise
            raise _PoolExhausted(self.maxsize, timeout) from None


class _AsyncWaitPool(redis.asyncio.BlockingConnectionPool):
    """A ``redis.asyncio.BlockingConnectionPool`` whose timeout is told apart, as above.

    Its wait for a free connection ends in a bare ``ConnectionError`` caused by
    ``asyncio.TimeoutError``; this pool raises :class:`_PoolExhausted` instead. A refused
    connection is no such error (nor is a connect timeout: redis-py's ``TimeoutError``).
    """

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.exceptions.ConnectionError as exc:
            if not isinstance(exc.__cause__, asyncio.TimeoutError):
                raise
            raise _PoolExhausted(self.max_connections, self.timeout) from None


class _AwaitedClient:
    """A synchronous face on a ``redis.asyncio`` client: the stores' commands, awaited.

    This is how the async face keeps one implementation of every store. Of two honest ways --
    splitting each method into a shared "prepare" (keys, arguments) and "decode" step with a
    sync and an async caller, or running the sync methods themselves so that each command is
    awaited -- this module takes the second, the smaller: :func:`async_redis_storage` builds
    the very store classes above on this face and runs each call through
    :func:`kaspi_identity._bridge.run_flow` (as ``AsyncIdentityService`` runs its flows). A
    command the store sends here starts on the ``redis.asyncio`` client and is handed to the
    event loop with ``await_``; its result, or its exception, comes back into the store's
    code where it was sent, so ``_run`` maps errors for both faces alike. The split would
    have put a second, async copy of every method's signature and call sequence beside the
    first.

    Only what the stores call is here: ``SET``, ``LRANGE``, registered scripts (redis-py's
    ``AsyncScript``, which reloads a flushed script as ``Script`` does), ``close`` and the
    connection settings. No pipeline or transaction is used. A ``redis.asyncio`` client
    belongs to the event loop it first ran on; so does the bundle built on it.
    """

    __slots__ = ("_await", "_setup", "_setup_lock", "target")

    def __init__(self, client: _AsyncClient) -> None:
        from kaspi_identity._bridge import await_  # greenlet, for the async face only

        self._await = await_
        self.target = client
        # redis-py's asyncio cluster client discovers the cluster on its first command; when
        # several commands start that discovery at once, one of them can be sent on a
        # connection it is closing (redis 8.1: "'NoneType' object has no attribute
        # 'writelines'"). So the first command of this face discovers it alone.
        self._setup = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._setup_lock: asyncio.Lock | None = None

    def _call(self, awaitable: Callable[[], Any]) -> Any:
        if self._setup:
            self._await(self._discover())
        return self._await(awaitable())

    async def _discover(self) -> None:
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        async with self._setup_lock:
            if self._setup:
                await cast(redis.asyncio.cluster.RedisCluster, self.target).initialize()
                self._setup = False

    def get_connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self.target.get_connection_kwargs()
        return kwargs

    def set(self, name: str, value: bytes, *, nx: bool, px: int) -> Any:
        return self._call(lambda: self.target.set(name, value, nx=nx, px=px))

    def lrange(self, name: str, start: int, end: int) -> Any:
        return self._call(lambda: self.target.lrange(name, start, end))

    def register_script(self, script: str) -> Callable[..., Any]:
        registered = self.target.register_script(script)

        def run(*, keys: Sequence[str], args: Sequence[bytes | str]) -> Any:
            return self._call(lambda: registered(keys=keys, args=args))

        return run

    def close(self) -> None:
        self._await(self.target.aclose())


class _Call:
    """One command waiting in a :class:`_PipeliningClient`'s queue, and its outcome."""

    __slots__ = ("args", "error", "lead", "reply", "waiter")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args
        self.reply: Any = None
        self.error: BaseException | None = None
        self.lead = False
        self.waiter: Any = None  # a held lock, released when the call is answered


class _PipeliningClient:
    """A ``redis.Redis`` face that sends the commands of concurrent callers together.

    With ``pipelining=True`` (:func:`redis_storage`) the stores' commands go through this
    face: a caller whose command finds no batch in flight sends it at once, with whatever
    other threads queued meanwhile, in one write on one pooled connection, and reads every
    reply in order; callers that arrive while a batch is in flight queue, and the first of
    them sends the next batch. One thread alone still makes one round trip per operation;
    sixteen share them, which is what lets a Python process approach the server's own rate
    (benchmarks/bench_storage.py). Each command keeps its own reply and its own error, as
    in a pipeline without ``MULTI``. A connection lost during a batch fails every call of
    it with :class:`~kaspi_identity.StorageError` and is not retried: a retried ``SET NX``
    could answer ``False`` for a token its first try consumed, a retried attempt could
    count twice. A script the server does not have (``NOSCRIPT``, after a restart or a
    ``SCRIPT FLUSH``) is run once more through redis-py's ``Script``, which loads it.
    """

    __slots__ = ("_busy", "_lock", "_pid", "_queue", "_scripts", "target")

    _MAX_BATCH = 256

    def __init__(self, client: redis.Redis) -> None:
        self.target = client
        self._lock = threading.Lock()
        self._queue: list[_Call] = []
        self._busy = False
        self._pid = os.getpid()
        self._scripts: dict[str, Any] = {}

    def get_connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = self.target.get_connection_kwargs()
        return kwargs

    def set(self, name: str, value: bytes, *, nx: bool, px: int) -> Any:
        args = ("SET", name, value, "NX", "PX", px) if nx else ("SET", name, value, "PX", px)
        return self._execute(args) == b"OK"

    def lrange(self, name: str, start: int, end: int) -> Any:
        return self._execute(("LRANGE", name, start, end))

    def register_script(self, script: str) -> Callable[..., Any]:
        registered = self.target.register_script(script)

        def run(*, keys: Sequence[str], args: Sequence[bytes | str]) -> Any:
            try:
                return self._execute(("EVALSHA", registered.sha, len(keys), *keys, *args))
            except redis.exceptions.NoScriptError:
                return registered(keys=keys, args=args)  # loads the script, runs it once

        return run

    def close(self) -> None:
        self.target.close()

    def _execute(self, args: tuple[Any, ...]) -> Any:
        if self._pid != os.getpid():
            # A forked child: the parent's queue, batch and lock (perhaps held by a thread
            # of the parent) are not the child's.
            self._pid, self._lock, self._queue, self._busy = (
                os.getpid(),
                threading.Lock(),
                [],
                False,
            )
        call = _Call(args)
        with self._lock:
            self._queue.append(call)
            lead = not self._busy
            if lead:
                self._busy = True
            else:
                call.waiter = threading.Lock()
                call.waiter.acquire()
        if not lead:
            try:
                call.waiter.acquire()  # answered, or handed the next batch to send
            except BaseException:
                self._abandon(call)
                raise
        if lead or call.lead:
            self._send_batch()
        if call.error is not None:
            raise call.error
        return call.reply

    def _abandon(self, call: _Call) -> None:
        """A waiting caller was interrupted: take its command back, pass on its turn."""
        with self._lock:
            if call in self._queue:
                self._queue.remove(call)
                if call.lead:  # it was to send the next batch: the next in line does
                    if self._queue:
                        self._queue[0].lead = True
                        self._queue[0].waiter.release()
                    else:
                        self._busy = False

    def _send_batch(self) -> None:
        with self._lock:
            batch = self._queue[: self._MAX_BATCH]
            del self._queue[: self._MAX_BATCH]
        try:
            self._exchange(batch)
        finally:
            with self._lock:
                if self._queue:
                    following = self._queue[0]
                    following.lead = True
                    following.waiter.release()
                else:
                    self._busy = False
            for call in batch:
                if call.waiter is not None and not call.lead:
                    call.waiter.release()

    def _exchange(self, batch: list[_Call]) -> None:
        pool = self.target.connection_pool
        try:
            connection: Any = pool.get_connection()
        except BaseException as exc:
            for call in batch:
                call.error = exc
            return
        answered = 0
        try:
            connection.send_packed_command(connection.pack_commands([c.args for c in batch]))
            for call in batch:
                try:
                    call.reply = connection.read_response()
                except redis.exceptions.ResponseError as exc:
                    call.error = exc
                answered += 1
        except BaseException as exc:
            connection.disconnect()
            for call in batch[answered:]:
                call.error = exc
        finally:
            pool.release(connection)


def _run(operation: Callable[[], _T]) -> _T:
    """Run ``operation``; a Redis error becomes StorageError (WRONGTYPE: CorruptRecordError)."""
    try:
        return operation()
    except _PoolExhausted as exc:
        raise StorageError(f"Redis storage failed: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        message = str(exc)
        if "WRONGTYPE" in message:
            raise CorruptRecordError("a Redis key of this store holds another data type") from exc
        # Only the error code (ERR, OOM, READONLY, NOAUTH ...), never the rest of the text.
        code = _ERROR_CODE.match(message)
        suffix = f" ({code.group()})" if code else ""
        raise StorageError(f"Redis storage failed: {type(exc).__name__}{suffix}") from exc
    except redis.exceptions.RedisError as exc:
        raise StorageError(f"Redis storage failed: {type(exc).__name__}") from exc


def _lua_time(value: object, name: str) -> int:
    """Return ``value`` in microseconds, refused where Lua's doubles stop being exact."""
    micros = utc_microseconds(value, name)
    if not -_LUA_EXACT < micros < _LUA_EXACT:
        raise ValueError(f"{name} must lie between the years 1685 and 2255 for Redis storage")
    return micros


def _ceil_ms(micros: int) -> int:
    return -(-micros // 1000)


class _RedisStore:
    """Common plumbing: the client, the key prefix, and closing."""

    _namespace = ""

    def __init__(
        self, client: _SyncClient | _PipeliningClient, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        # async_redis_storage passes an _AwaitedClient: the same commands, each awaited.
        if not isinstance(
            client, (redis.Redis, redis.cluster.RedisCluster, _AwaitedClient, _PipeliningClient)
        ):
            raise TypeError(
                "client must be a redis.Redis or a redis.cluster.RedisCluster,"
                f" not {type(client).__name__}"
            )
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the Redis client must be created with decode_responses=False")
        self._client = client
        self._prefix = require_key(prefix, "prefix")
        self._owns_client = False
        self._closed = False

    @property
    def client(self) -> _SyncClient:
        """The Redis client this store uses (under the pipelining face, if it has one)."""
        if isinstance(self._client, _PipeliningClient):
            return self._client.target
        return self._client

    @property
    def prefix(self) -> str:
        """The prefix of every key this store writes."""
        return self._prefix

    def close(self) -> None:
        """Refuse further calls; disconnect the client if :func:`redis_storage` opened it.

        A client passed in by the caller is left open: it belongs to the caller.
        """
        self._closed = True
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self._prefix!r})"

    def _key(self, key: str) -> str:
        if self._closed:
            raise StorageError("the Redis storage is closed")
        return f"{self._prefix}{self._namespace}:{{{key}}}"


class RedisTokenLedger(_RedisStore):
    """A :class:`~kaspi_identity.storage.TokenLedger`: ``SET <key> 1 NX PX <ttl>`` per id.

    An id is kept until 5 minutes (``LEDGER_GRACE``) past its ``expires_at``, measured from
    the caller's ``now``; Redis then deletes it.

    Args:
        client: a ``redis.Redis`` (with its connection pool) or a
            ``redis.cluster.RedisCluster``, ``decode_responses=False``.
        prefix: the prefix of every key (non-empty).

    Raises:
        TypeError: ``client`` is neither.
        ValueError: the client decodes responses, or ``prefix`` is empty.

    """

    _namespace = "token"

    def consume(self, token_id: str, expires_at: datetime, *, now: datetime) -> bool:
        """Record ``token_id`` as used; ``True`` only the first time, before expiry."""
        expires, at = check_consume(token_id, expires_at, now)
        if expires <= at:
            return False
        key = self._key(token_id)
        ttl = _ceil_ms(expires - at) + _GRACE_MS
        return _run(lambda: self._client.set(key, b"1", nx=True, px=ttl)) is True


class RedisOneTimeCodeStore(_RedisStore):
    """A :class:`~kaspi_identity.storage.OneTimeCodeStore`: one hash per key, Lua scripts.

    ``put`` and ``attempt`` are each one Lua script, so the increment-then-compare is
    atomic; an attempt compares the stored HMAC with each of its candidates (one per key)
    and counts once. The stored HMAC is compared with Lua's plain ``==``: both sides are keyed
    HMACs, so timing reveals nothing that helps forge one. Times must lie between the years
    1685 and 2255 (Lua counts in doubles). Arguments as for :class:`RedisTokenLedger`.
    """

    _namespace = "code"

    def __init__(
        self, client: _SyncClient | _PipeliningClient, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        super().__init__(client, prefix=prefix)
        self._put = client.register_script(_LUA_PUT_CODE)
        self._attempt = client.register_script(_LUA_ATTEMPT_CODE)

    def put(
        self,
        key: str,
        code_hash: bytes,
        *,
        expires_at: datetime,
        now: datetime,
        failure_window: timedelta,
    ) -> None:
        """Store a new code for ``key``, keeping the failure counter; see the protocol."""
        expires, at, window = check_put(
            key,
            code_hash,
            expires_at=expires_at,
            now=now,
            failure_window=failure_window,
            now_microseconds=_lua_time,
        )
        redis_key = self._key(key)
        args: list[bytes | str] = [code_hash, str(expires), str(at), str(window), str(_GRACE_MS)]
        result = _run(lambda: self._put(keys=[redis_key], args=args))
        if isinstance(result, bytes):
            raise _corrupt("one-time code", result.decode("ascii", "replace"))

    def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        """Count one attempt and compare every candidate, in one script; see the protocol."""
        at, hashes = check_attempt(
            key, candidates, now=now, max_attempts=max_attempts, now_microseconds=_lua_time
        )
        redis_key = self._key(key)
        args: list[bytes | str] = [str(at), str(max_attempts), str(_GRACE_MS), *hashes]
        result = _run(lambda: self._attempt(keys=[redis_key], args=args))
        if isinstance(result, bytes):
            raise _corrupt("one-time code", result.decode("ascii", "replace"))
        return _OUTCOMES[result]


_OUTCOMES = {
    0: CodeAttempt.MISSING,
    1: CodeAttempt.MISMATCH,
    2: CodeAttempt.OK,
    3: CodeAttempt.EXHAUSTED,
}


class RedisRateLimiter(_RedisStore):
    """A fixed-window :class:`~kaspi_identity.storage.RateLimiter`: a hash per key, one script.

    The window opens at the first hit, as in every adapter; the key expires after the
    window ends. ``now`` must lie between the years 1685 and 2255. Arguments as for
    :class:`RedisTokenLedger`.
    """

    _namespace = "rate"

    def __init__(
        self, client: _SyncClient | _PipeliningClient, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        super().__init__(client, prefix=prefix)
        self._hit = client.register_script(_LUA_HIT)

    def hit(self, key: str, *, limit: int, window: timedelta, now: datetime) -> RateLimitResult:
        """Count a hit on ``key`` in one script; see the protocol."""
        length, at = check_hit(key, limit=limit, window=window, now=now, now_microseconds=_lua_time)
        redis_key = self._key(key)
        args = [str(at), str(limit), str(length), str(_GRACE_MS)]
        result = _run(lambda: self._hit(keys=[redis_key], args=args))
        if isinstance(result, bytes):
            raise _corrupt("rate limit", result.decode("ascii", "replace"))
        allowed, start, stored_length = result
        if allowed == 1:
            return RateLimitResult(True, timedelta(0))
        return RateLimitResult(False, (int(start) + int(stored_length) - at) * _US)


class RedisPasswordHistoryStore(_RedisStore):
    """A :class:`~kaspi_identity.storage.PasswordHistoryStore`: a list per account.

    ``append`` is ``LPUSH`` + ``LTRIM`` in one Lua script. Entries are packed compactly
    (about 11 bytes besides the hash and fingerprint); one that cannot be decoded raises
    :class:`~kaspi_identity.CorruptRecordError`. History keys never expire: run Redis with
    persistence if it keeps history. Arguments as for :class:`RedisTokenLedger`.
    """

    _namespace = "history"

    def __init__(
        self, client: _SyncClient | _PipeliningClient, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        super().__init__(client, prefix=prefix)
        self._append = client.register_script(_LUA_APPEND)

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Append ``entry`` and keep the newest ``keep``, in one script; see the protocol."""
        check_append(account_id, entry, keep)
        key = self._key(account_id)
        args: list[bytes | str] = [_encode_entry(entry), str(min(keep, _LIST_INDEX_MAX) - 1)]
        _run(lambda: self._append(keys=[key], args=args))

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Return at most ``limit`` entries, newest first."""
        check_recent(account_id, limit)
        key = self._key(account_id)
        raw = _run(lambda: self._client.lrange(key, 0, min(limit, _LIST_INDEX_MAX) - 1))
        return [_decode_entry(item) for item in raw]


# The outbox: every key carries the one hash tag {outbox}, so a script that claims many
# messages touches keys of one Redis Cluster slot. KEYS[1] is the base name; a script
# reaches <base>:m:<id> (a message's hash), <base>:due (pending ids by next attempt, in
# microseconds), <base>:age (every id by creation) and <base>:s:<status> (ids of a status
# by creation). Message hash fields: i id, c channel, k kind, t recipient, l language, p payload,
# a account id ('' for none), r created, s status, n attempts, x next attempt, u updated,
# e last error (absent for none).
_LUA_OUTBOX_PRELUDE = """
local base = KEYS[1]
local function mkey(id) return base .. ':m:' .. id end
local function fmt(number) return string.format('%.0f', number) end
local function move(id, created, from, to)
  redis.call('ZREM', base .. ':s:' .. from, id)
  redis.call('ZADD', base .. ':s:' .. to, created, id)
end
local function entry(id)
  return redis.call('HGETALL', mkey(id))
end
"""

# ARGV: id, channel, kind, to, language, payload, account id, created, status, now.
_LUA_OUTBOX_ENQUEUE = (
    _LUA_OUTBOX_PRELUDE
    + """
local id = ARGV[1]
if redis.call('EXISTS', mkey(id)) == 1 then return 0 end
redis.call('HSET', mkey(id), 'i', id, 'c', ARGV[2], 'k', ARGV[3], 't', ARGV[4], 'l', ARGV[5],
  'p', ARGV[6], 'a', ARGV[7], 'r', ARGV[8], 's', ARGV[9], 'n', '0', 'x', ARGV[10],
  'u', ARGV[10])
redis.call('ZADD', base .. ':age', ARGV[8], id)
redis.call('ZADD', base .. ':s:' .. ARGV[9], ARGV[8], id)
if ARGV[9] == 'pending' then redis.call('ZADD', base .. ':due', ARGV[10], id) end
return 1
"""
)

# ARGV: now, lease, limit. Returns the claimed entries' field lists.
_LUA_OUTBOX_CLAIM = (
    _LUA_OUTBOX_PRELUDE
    + """
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', base .. ':due', '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local claimed = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HMGET', mkey(id), 's', 'n')
  if raw[1] == 'pending' and tonumber(raw[2]) then
    local next_at = fmt(now + lease)
    redis.call('HSET', mkey(id), 'n', fmt(tonumber(raw[2]) + 1), 'x', next_at, 'u', ARGV[1])
    redis.call('ZADD', base .. ':due', next_at, id)
    table.insert(claimed, entry(id))
  else
    redis.call('ZREM', base .. ':due', id)
  end
end
return claimed
"""
)

# ARGV: mode (complete, fail, retry), id, attempt, now, retry at ('' to die), error.
# Returns 1 if it wrote, else 0.
_LUA_OUTBOX_SETTLE = (
    _LUA_OUTBOX_PRELUDE
    + """
local mode, id, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
local raw = redis.call('HMGET', mkey(id), 's', 'n', 'r')
local status, attempts, created = raw[1], tonumber(raw[2]), raw[3]
if not status or not attempts or not created then return 0 end
if mode == 'retry' then
  if status ~= 'dead' then return 0 end
  redis.call('HSET', mkey(id), 's', 'pending', 'n', '0', 'x', ARGV[4], 'u', ARGV[4])
  redis.call('ZADD', base .. ':due', ARGV[4], id)
  move(id, created, 'dead', 'pending')
  return 1
end
if status ~= 'pending' or attempts ~= tonumber(ARGV[3]) then return 0 end
if mode == 'fail' then redis.call('HSET', mkey(id), 'e', ARGV[6]) end
if mode == 'fail' and ARGV[5] ~= '' then
  local again = tonumber(ARGV[5])
  if again < now then again = now end
  redis.call('HSET', mkey(id), 'x', fmt(again), 'u', ARGV[4])
  redis.call('ZADD', base .. ':due', fmt(again), id)
  return 1
end
local to = 'sent'
if mode == 'fail' then to = 'dead' end
redis.call('HSET', mkey(id), 's', to, 'x', ARGV[4], 'u', ARGV[4])
redis.call('ZREM', base .. ':due', id)
move(id, created, 'pending', to)
return 1
"""
)

# ARGV: id. Returns the entry's field list (empty: no such entry).
_LUA_OUTBOX_GET = _LUA_OUTBOX_PRELUDE + "return entry(ARGV[1])\n"

# ARGV: status ('' for all), limit. Returns the field lists, oldest first.
_LUA_OUTBOX_LIST = (
    _LUA_OUTBOX_PRELUDE
    + """
local index = base .. ':age'
if ARGV[1] ~= '' then index = base .. ':s:' .. ARGV[1] end
local found = {}
for _, id in ipairs(redis.call('ZRANGE', index, 0, tonumber(ARGV[2]) - 1)) do
  table.insert(found, entry(id))
end
return found
"""
)

# ARGV: before, then the statuses. Returns how many entries were deleted.
_LUA_OUTBOX_PURGE = (
    _LUA_OUTBOX_PRELUDE
    + """
local before, gone = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local index = base .. ':s:' .. ARGV[i]
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local updated = tonumber(redis.call('HGET', mkey(id), 'u'))
    if updated and updated < before then
      redis.call('DEL', mkey(id))
      redis.call('ZREM', index, id)
      redis.call('ZREM', base .. ':age', id)
      gone = gone + 1
    end
  end
end
return gone
"""
)

_OUTBOX_FIELDS = ("i", "c", "k", "t", "l", "p", "a", "r", "s", "n", "x", "u")
_OUTBOX_INTS = frozenset({"r", "n", "x", "u"})


def _decode_outbox_entry(raw: object) -> OutboxEntry | None:
    """The entry of a script's field list; ``None`` for an empty one."""
    if not isinstance(raw, list):
        raise _corrupt("outbox", "not a field list")
    if not raw:
        return None
    if len(raw) % 2:
        raise _corrupt("outbox", "odd field list")
    fields: dict[str, object] = {}
    try:
        for name, value in zip(raw[::2], raw[1::2], strict=True):
            key = name.decode("ascii")
            text = value.decode("utf-8")
            if key in _OUTBOX_INTS:
                if not text.lstrip("-").isdigit() or not text.isascii():
                    raise _corrupt("outbox", f"{key} is not an integer")
                fields[key] = int(text)
            else:
                fields[key] = text
    except (AttributeError, UnicodeError):
        raise _corrupt("outbox", "undecodable field") from None
    if any(name not in fields for name in _OUTBOX_FIELDS):
        raise _corrupt("outbox", "missing fields")
    decoded = decode_outbox(
        (
            fields["i"],
            fields["c"],
            fields["k"],
            fields["t"],
            fields["l"],
            fields["p"],
            fields["a"] or None,
            fields["r"],
            fields["s"],
            fields["n"],
            fields["x"],
            fields["u"],
            fields.get("e"),
        )
    )
    assert decoded is not None
    return entry_of(*decoded)


class RedisOutboxStore(_RedisStore):
    """An :class:`~kaspi_identity.storage.OutboxStore`: a hash per message, Lua scripts.

    Every operation is one script, so a claim's pick and lease are atomic for every client
    of the server. All the outbox's keys share the hash tag ``{outbox}`` (one Redis Cluster
    slot). Entries never expire: ``purge`` deletes the settled ones (``kaspi-identity
    outbox purge``); run Redis with persistence (AOF) if it keeps the outbox, or a letter
    queued just before a restart is lost. Ties between entries due at the same microsecond
    are claimed in id order. Times must lie between the years 1685 and 2255. Arguments as
    for :class:`RedisTokenLedger`.
    """

    _namespace = "outbox"

    def __init__(self, client: _SyncClient, *, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__(client, prefix=prefix)
        self._enqueue = client.register_script(_LUA_OUTBOX_ENQUEUE)
        self._claim = client.register_script(_LUA_OUTBOX_CLAIM)
        self._settle = client.register_script(_LUA_OUTBOX_SETTLE)
        self._get = client.register_script(_LUA_OUTBOX_GET)
        self._list = client.register_script(_LUA_OUTBOX_LIST)
        self._purge = client.register_script(_LUA_OUTBOX_PURGE)

    def _base(self) -> str:
        return self._key("outbox")

    def enqueue(self, message: OutboxMessage, *, now: datetime) -> bool:
        """Store ``message``, due at ``now``, in one script; see the protocol."""
        check_enqueue(message, now)
        at = _lua_time(now, "now")
        created = _lua_time(message.created_at, "created_at")
        state = initial_state(message, at)
        args = [
            message.id,
            message.channel,
            message.kind,
            message.to,
            message.language,
            message.payload,
            message.account_id or "",
            str(created),
            state.status,
            str(at),
        ]
        base = self._base()
        return bool(_run(lambda: self._enqueue(keys=[base], args=args)) == 1)

    def claim(self, *, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        """Lease up to ``limit`` due pending entries in one script; see the protocol."""
        _, length, count = check_claim(now, lease, limit)
        at = _lua_time(now, "now")
        if at + length >= _LUA_EXACT:
            raise ValueError("lease must end before the year 2255 for Redis storage")
        base = self._base()
        raw = _run(lambda: self._claim(keys=[base], args=[str(at), str(length), str(count)]))
        return [e for e in map(_decode_outbox_entry, raw) if e is not None]

    def _settle_one(self, *args: str) -> bool:
        base = self._base()
        return bool(_run(lambda: self._settle(keys=[base], args=list(args))) == 1)

    def complete(self, message_id: str, *, attempt: int, now: datetime) -> bool:
        """Mark the entry sent if ``attempt`` is its latest claim; see the protocol."""
        key, count, _, _ = check_settle(message_id, attempt, now)
        at = _lua_time(now, "now")
        return self._settle_one("complete", key, str(count), str(at), "", "")

    def fail(
        self,
        message_id: str,
        *,
        attempt: int,
        now: datetime,
        retry_at: datetime | None,
        error: str,
    ) -> bool:
        """Record a failed attempt in one script; see the protocol."""
        key, count, _, label = check_settle(message_id, attempt, now, error)
        at = _lua_time(now, "now")
        again = "" if retry_at is None else str(_lua_time(retry_at, "retry_at"))
        return self._settle_one("fail", key, str(count), str(at), again, label or "")

    def get(self, message_id: str) -> OutboxEntry | None:
        """Return the entry with this id, or ``None``."""
        key = check_message_id(message_id)
        base = self._base()
        return _decode_outbox_entry(_run(lambda: self._get(keys=[base], args=[key])))

    def list(self, *, status: OutboxStatus | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Up to ``limit`` entries of ``status`` (or all), oldest first."""
        wanted, count = check_list(status, limit)
        base = self._base()
        raw = _run(lambda: self._list(keys=[base], args=[wanted or "", str(count)]))
        return [e for e in map(_decode_outbox_entry, raw) if e is not None]

    def retry(self, message_id: str, *, now: datetime) -> bool:
        """Make a dead entry pending again; see the protocol."""
        key = check_message_id(message_id)
        return self._settle_one("retry", key, "0", str(_lua_time(now, "now")), "", "")

    def purge(
        self, *, before: datetime, statuses: tuple[OutboxStatus, ...] = ("sent", "void")
    ) -> int:
        """Delete settled entries last changed before ``before``; see the protocol."""
        _, chosen = check_purge(before, statuses)
        at = _lua_time(before, "before")
        base = self._base()
        return int(_run(lambda: self._purge(keys=[base], args=[str(at), *chosen])))


def _check_pool_settings(url: object, max_connections: object, pool_timeout: object) -> None:
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise TypeError(f"max_connections must be int, not {type(max_connections).__name__}")
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    if isinstance(pool_timeout, bool) or not isinstance(pool_timeout, (int, float)):
        raise TypeError(f"pool_timeout must be a number, not {type(pool_timeout).__name__}")
    if not (math.isfinite(pool_timeout) and pool_timeout > 0):
        raise ValueError("pool_timeout must be a positive, finite number of seconds")


def redis_client(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
) -> redis.Redis:
    """Open a ``redis.Redis`` for ``url`` whose calls wait for a free connection.

    The client's pool is a :class:`redis.BlockingConnectionPool` of at most
    ``max_connections``: a call made while every connection is busy waits up to
    ``pool_timeout`` seconds for one, and only then fails -- with
    :class:`~kaspi_identity.StorageError` when it came through a store. (redis-py's default
    pool refuses such a call at once.) Nothing connects until the first call;
    ``client.close()`` disconnects the pool. Options in the URL's query string
    (``?socket_timeout=5``) apply too.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: the URL is malformed, ``max_connections`` is below 1, or
            ``pool_timeout`` is not a positive finite number of seconds.

    """
    _check_pool_settings(url, max_connections, pool_timeout)
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout, queue_class=_WaitQueue
    )
    return redis.Redis.from_pool(pool)  # the client closes the pool with itself


def async_redis_client(
    url: str,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
) -> redis.asyncio.Redis:
    """:func:`redis_client` for the async face: a ``redis.asyncio.Redis`` on a bounded pool.

    A command issued while all ``max_connections`` are busy waits (without blocking the
    event loop) up to ``pool_timeout`` seconds for one; a wait that runs out is a
    :class:`~kaspi_identity.StorageError` through a store, told apart from a refused
    connection. Nothing connects until the first command; ``await client.aclose()``
    disconnects the pool. Arguments and errors as for :func:`redis_client`.
    """
    _check_pool_settings(url, max_connections, pool_timeout)
    pool = _AsyncWaitPool.from_url(url, max_connections=max_connections, timeout=pool_timeout)
    return redis.asyncio.Redis.from_pool(pool)


def _open_or_given(
    url_or_client: object,
    kinds: tuple[type[Any], ...],
    open_client: Callable[..., _T],
    max_connections: int | None,
    pool_timeout: float | None,
) -> tuple[Any, bool]:
    """The client for ``url_or_client`` and whether the bundle owns it (opened it)."""
    if isinstance(url_or_client, str):
        client = open_client(
            url_or_client,
            max_connections=DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections,
            pool_timeout=DEFAULT_POOL_TIMEOUT if pool_timeout is None else pool_timeout,
        )
        return client, True
    if isinstance(url_or_client, kinds):
        if max_connections is not None or pool_timeout is not None:
            raise ValueError(
                "max_connections and pool_timeout size the pool of a client opened from a URL;"
                " configure your own client's pool instead"
            )
        return url_or_client, False
    names = " or a ".join(f"{kind.__module__}.{kind.__qualname__}" for kind in kinds)
    names = names.replace("redis.client.", "redis.").replace(
        "redis.asyncio.client.", "redis.asyncio."
    )
    raise TypeError(f"url_or_client must be a URL or a {names}, not {type(url_or_client).__name__}")


def _stores(
    client: _SyncClient | _PipeliningClient, prefix: str, owned: bool
) -> tuple[RedisPasswordHistoryStore, RedisTokenLedger, RedisOneTimeCodeStore, RedisRateLimiter]:
    stores = (
        RedisPasswordHistoryStore(client, prefix=prefix),
        RedisTokenLedger(client, prefix=prefix),
        RedisOneTimeCodeStore(client, prefix=prefix),
        RedisRateLimiter(client, prefix=prefix),
    )
    for store in stores:
        store._owns_client = owned
    return stores


def redis_storage(
    url_or_client: str | redis.Redis | redis.cluster.RedisCluster,
    *,
    accounts: AccountStore,
    prefix: str = DEFAULT_PREFIX,
    max_connections: int | None = None,
    pool_timeout: float | None = None,
    outbox: bool = False,
    pipelining: bool = False,
) -> Storage:
    """Return a :class:`~kaspi_identity.storage.Storage` of ``accounts`` and the Redis stores.

    ``url_or_client`` is a ``redis://`` / ``rediss://`` / ``unix://`` URL (a client is
    opened for it with :func:`redis_client`, and ``storage.close()`` disconnects it) or a
    ``redis.Redis`` or ``redis.cluster.RedisCluster`` you manage (left open). Every
    operation is one command or script on one key, so a cluster client sends each to the
    master of that key's slot. Nothing connects until the first call.
    ``accounts`` is your own :class:`~kaspi_identity.storage.AccountStore` or a
    SQLite/SQLAlchemy one: Redis keeps no accounts.

    For a URL, the pool holds at most ``max_connections`` (default
    :data:`DEFAULT_MAX_CONNECTIONS`) and a call waits up to ``pool_timeout`` seconds (default
    :data:`DEFAULT_POOL_TIMEOUT`) for a free one before it raises
    :class:`~kaspi_identity.StorageError`. A client of your own keeps its own pool.

    With ``outbox=True`` the bundle has a :class:`RedisOutboxStore` too (letters and SMS
    are queued for a worker). Redis keeps no accounts, so there is no unit of work: the
    services enqueue a letter right after the change it tells of (docs/delivery.md).

    ``pipelining=True`` (one server only) sends the commands that threads issue at the same
    time together, in one write on one connection, each with its own reply: under many
    threads the operations share round trips, so a process gets far more of the server's
    rate; a lost connection then fails the calls of its batch, without the retry redis-py
    would make (see docs/storage.md, "Pipelining").

    Raises:
        TypeError: ``url_or_client`` is not a ``str``, a ``redis.Redis`` or a
            ``redis.cluster.RedisCluster``, or a pool
            setting has the wrong type.
        ValueError: the URL is malformed, the client decodes responses, ``prefix`` is
            empty, a pool setting is out of range, pool settings come with a client, or
            ``pipelining`` comes with a cluster client.

    """
    client, owned = _open_or_given(
        url_or_client,
        (redis.Redis, redis.cluster.RedisCluster),
        redis_client,
        max_connections,
        pool_timeout,
    )
    try:
        if not isinstance(outbox, bool):
            raise TypeError(f"outbox must be bool, not {type(outbox).__name__}")
        if not isinstance(pipelining, bool):
            raise TypeError("pipelining must be a bool")
        if pipelining and not isinstance(client, redis.Redis):
            raise ValueError("pipelining is for a client of one server, not a cluster")
        face = _PipeliningClient(client) if pipelining else client
        history, tokens, codes, rate_limits = _stores(face, prefix, owned)
        # The outbox's scripts go straight to the client: a worker's claims are not the
        # request-path traffic pipelining batches.
        queue = RedisOutboxStore(client, prefix=prefix) if outbox else None
    except BaseException:
        if owned:
            client.close()
        raise
    return Storage(
        accounts=accounts,
        history=history,
        ledger=tokens,
        codes=codes,
        rate_limits=rate_limits,
        outbox=queue,
    )


def async_redis_storage(
    url_or_client: str | redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
    *,
    accounts: AsyncAccountStore,
    prefix: str = DEFAULT_PREFIX,
    max_connections: int | None = None,
    pool_timeout: float | None = None,
    outbox: bool = False,
) -> AsyncStorage:
    """:func:`redis_storage` for the async face: an :class:`~kaspi_identity.storage.AsyncStorage`.

    ``url_or_client`` is a URL (a client is opened for it with :func:`async_redis_client`,
    and ``await storage.aclose()`` disconnects it) or a ``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster`` you manage (left open). ``accounts`` is an
    asynchronous account store -- your own, or the accounts of another async bundle: Redis
    keeps no accounts, so ``with_history`` is ``None``.
    Prefix, pool settings, keys, scripts, answers and errors are those of
    :func:`redis_storage`: each store call runs the synchronous store's own code in a
    greenlet, with every Redis command awaited on the event loop. Use the bundle on one
    event loop, as ``redis.asyncio`` requires; a cancelled call raises ``CancelledError``.

    Raises:
        TypeError, ValueError: as :func:`redis_storage`, with the ``redis.asyncio`` clients
            for the synchronous ones.

    """
    from kaspi_identity._bridge import Coroutining, run_flow

    client, owned = _open_or_given(
        url_or_client,
        (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster),
        async_redis_client,
        max_connections,
        pool_timeout,
    )
    # Nothing has connected yet, so if a store refuses the client (decode_responses in the
    # URL) there is nothing of an owned one to close. The face answers every call the
    # stores make on a redis.Redis (see _AwaitedClient).
    if not isinstance(outbox, bool):
        raise TypeError(f"outbox must be bool, not {type(outbox).__name__}")
    awaited = cast(redis.Redis, _AwaitedClient(client))
    stores = _stores(awaited, prefix, owned)
    history, tokens, codes, rate_limits = (Coroutining(store, run_flow) for store in stores)
    queue = None
    if outbox:
        queue = RedisOutboxStore(awaited, prefix=prefix)
        queue._owns_client = False  # the other stores close the client once
    return AsyncStorage(
        accounts=accounts,
        history=cast(AsyncPasswordHistoryStore, history),
        ledger=cast(AsyncTokenLedger, tokens),
        codes=cast(AsyncOneTimeCodeStore, codes),
        rate_limits=cast(AsyncRateLimiter, rate_limits),
        outbox=None if queue is None else cast(AsyncOutboxStore, Coroutining(queue, run_flow)),
    )
