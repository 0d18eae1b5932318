"""Clients of the k-anonymity range API of breached passwords (Have I Been Pwned's protocol).

The protocol: ``GET {url}{first 5 hex digits of the SHA-1}`` answers with one
``SUFFIX:COUNT`` line for each known hash that starts with that prefix (the 35 remaining
hex digits and how many times it was seen). With the ``Add-Padding: true`` header the
answer also holds random lines of count 0, so its size does not tell the prefix either.
Only the 5-digit prefix leaves the machine; the comparison of the suffix happens here.
Self-hosted mirrors of the corpus speak the same protocol: point ``url`` at one.

:class:`RangeClient` is the blocking face (httpx), :class:`AsyncRangeClient` the coroutine
face; both share the parsing, the cache and the errors below, so only the request itself is
written twice. The policy key ``breached = {online = ...}`` builds them;
:class:`~kaspi_identity.services.AsyncIdentityService` makes its flows await the
asynchronous one. Nothing is logged but the prefix asked for. Needs the ``online`` extra:
``pip install 'kaspi-identity[online]'``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

try:
    import httpx
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "the online breached-password check needs httpx: pip install 'kaspi-identity[online]'"
    ) from exc

from kaspi_identity._errors import BreachCheckUnavailableError

__all__ = ["DEFAULT_RANGE_URL", "AsyncRangeClient", "RangeClient", "range_query"]

#: Have I Been Pwned's range endpoint; the prefix is appended to it.
DEFAULT_RANGE_URL: Final = "https://api.pwnedpasswords.com/range/"

_log = logging.getLogger("kaspi_identity.hibp")
_PREFIX: Final = re.compile(r"[0-9A-F]{5}")
_LINE: Final = re.compile(r"([0-9A-Fa-f]{35}):(\d{1,18})")
_HEADERS: Final = {"Add-Padding": "true", "User-Agent": "kaspi-identity"}
_MAX_BODY: Final = 1 << 22  # a padded answer is under 40 kB; anything near this is not one


def range_query(password: str) -> tuple[str, str]:
    """``(prefix, suffix)`` of ``password``'s SHA-1 in upper-case hex: 5 and 35 digits."""
    digest = hashlib.sha1(
        password.encode("utf-8", "surrogatepass"), usedforsecurity=False
    ).hexdigest()
    upper = digest.upper()
    return upper[:5], upper[5:]


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError("a range prefix is 5 upper-case hex digits")
    return prefix


def _parse(body: bytes) -> Mapping[str, int]:
    """The suffixes an answer lists with a count above zero (padding lines have zero)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BreachCheckUnavailableError("the range API's answer is not ASCII") from None
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if not line:
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None:
            raise BreachCheckUnavailableError("the range API's answer is malformed")
        count = int(match[2])
        if count:
            counts[match[1].upper()] = count
    return MappingProxyType(counts)


def _answer(status: int, body: bytes) -> Mapping[str, int]:
    if status != 200:
        raise BreachCheckUnavailableError(f"the range API answered HTTP {status}")
    if len(body) > _MAX_BODY:
        raise BreachCheckUnavailableError("the range API's answer is too large")
    return _parse(body)


class _Cache:
    """Recent answers by prefix, for ``seconds``; at most ``size`` of them (LRU)."""

    def __init__(self, seconds: float, size: int, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, Mapping[str, int]]] = OrderedDict()
        self._lock = threading.Lock()  # held for the dictionary only, never across a request

    def get(self, prefix: str) -> Mapping[str, int] | None:
        if self.seconds <= 0:
            return None
        with self._lock:
            item = self._items.get(prefix)
            if item is None:
                return None
            if item[0] <= self.clock():
                del self._items[prefix]
                return None
            self._items.move_to_end(prefix)
            return item[1]

    def put(self, prefix: str, counts: Mapping[str, int]) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            self._items[prefix] = (self.clock() + self.seconds, counts)
            self._items.move_to_end(prefix)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class _RangeBase:
    def __init__(
        self,
        url: str,
        timeout: float,
        cache_seconds: float,
        cache_size: int,
        clock: Callable[[], float],
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError("url must be an http(s) URL")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if isinstance(cache_seconds, bool) or not isinstance(cache_seconds, int | float):
            raise ValueError("cache_seconds must be a number")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError("cache_size must be a positive integer")
        self.url = url
        self.timeout = float(timeout)
        self._cache = _Cache(float(cache_seconds), cache_size, clock)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r} timeout={self.timeout}>"

    def _failed(self, prefix: str, exc: Exception) -> BreachCheckUnavailableError:
        if isinstance(exc, BreachCheckUnavailableError):
            error = exc
        elif isinstance(exc, httpx.TimeoutException):
            error = BreachCheckUnavailableError(f"the range API did not answer in {self.timeout} s")
        else:
            error = BreachCheckUnavailableError(
                f"the range API could not be reached ({type(exc).__name__})"
            )
        _log.warning("breached-password range API unavailable for prefix %s: %s", prefix, error)
        return error


class RangeClient(_RangeBase):
    """The blocking client of the range API: ``range(prefix)`` and ``count(password)``.

    Thread-safe; one connection pool for the client's life (:meth:`close` ends it).

    Args:
        url: the endpoint the prefix is appended to (default Have I Been Pwned's).
        timeout: seconds each step of a request may take (connect, send, read).
        cache_seconds: how long an answer is reused for the same prefix (0: never).
        cache_size: the most prefixes kept.
        transport: an httpx transport (tests; a proxy), else httpx's default.
        clock: monotonic seconds, for the cache.

    Raises:
        ValueError: a malformed argument.
    """

    def __init__(
        self,
        url: str = DEFAULT_RANGE_URL,
        *,
        timeout: float = 2.0,
        cache_seconds: float = 300.0,
        cache_size: int = 4096,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(url, timeout, cache_seconds, cache_size, clock)
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout, headers=_HEADERS, transport=self._transport
                )
            return self._client

    def range(self, prefix: str) -> Mapping[str, int]:
        """The suffixes (35 upper-case hex digits) known under ``prefix``, with their counts.

        Raises:
            ValueError: ``prefix`` is not 5 upper-case hex digits.
            BreachCheckUnavailableError: no usable answer in time.
        """
        prefix = _check_prefix(prefix)
        cached = self._cache.get(prefix)
        if cached is not None:
            return cached
        _log.debug("breached-password range request for prefix %s", prefix)
        try:
            response = self._http().get(self.url + prefix)
            counts = _answer(response.status_code, response.content)
        except (httpx.HTTPError, BreachCheckUnavailableError) as exc:
            raise self._failed(prefix, exc) from None
        self._cache.put(prefix, counts)
        return counts

    def count(self, password: str) -> int:
        """How many times ``password`` (exactly as given) was seen in breaches; 0 if never.

        Raises:
            TypeError: ``password`` is not a ``str``.
            BreachCheckUnavailableError: no usable answer in time.
        """
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        prefix, suffix = range_query(password)
        return self.range(prefix).get(suffix, 0)

    def close(self) -> None:
        """Close the connection pool (a later request opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class AsyncRangeClient(_RangeBase):
    """:class:`RangeClient` for ``async`` code: ``range`` and ``count`` are coroutines.

    Each request has a connection of its own, so one client serves any event loop. Takes
    the arguments of :class:`RangeClient` (``transport`` an ``httpx.AsyncBaseTransport``).
    """

    def __init__(
        self,
        url: str = DEFAULT_RANGE_URL,
        *,
        timeout: float = 2.0,
        cache_seconds: float = 300.0,
        cache_size: int = 4096,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(url, timeout, cache_seconds, cache_size, clock)
        self._transport = transport

    async def range(self, prefix: str) -> Mapping[str, int]:
        """As :meth:`RangeClient.range`."""
        prefix = _check_prefix(prefix)
        cached = self._cache.get(prefix)
        if cached is not None:
            return cached
        _log.debug("breached-password range request for prefix %s", prefix)
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, headers=_HEADERS, transport=self._transport
            ) as client:
                response = await client.get(self.url + prefix)
            counts = _answer(response.status_code, response.content)
        except (httpx.HTTPError, BreachCheckUnavailableError) as exc:
            raise self._failed(prefix, exc) from None
        self._cache.put(prefix, counts)
        return counts

    async def count(self, password: str) -> int:
        """As :meth:`RangeClient.count`."""
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        prefix, suffix = range_query(password)
        return (await self.range(prefix)).get(suffix, 0)
