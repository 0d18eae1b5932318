"""The offline filter of breached passwords: a memory-mapped binary fuse filter.

A filter file holds one binary fuse filter (3-wise, 16-bit fingerprints: about 2.25 bytes an
entry and a false-positive rate of about 1/65536) for each *shard* of the SHA-1 hashes it was
built from; the top ``shard_bits`` bits of a hash pick its shard. Sharding keeps the build's
memory bounded (one shard at a time) and the format flat: opening a file maps it and reads its
64-byte header and its table of shards, nothing else, whatever its size.

The key of a password is the first 64 bits of its SHA-1 (big-endian), the form Have I Been
Pwned publishes. The layout (every number little-endian)::

    header   64 bytes   magic "KIBREACH", version, sizes, counts, CRC-32s (_HEADER)
    table    32 bytes a shard, 2**shard_bits shards: seed, offset, lengths (_SHARD)
    payload  the uint16 fingerprints of every shard, one after another

``table_crc`` covers the header (with that field zero) and the table and is checked on
opening; ``payload_crc`` covers the payload and is checked by :meth:`BreachedFilter.verify`
(reading the whole file, so not on opening). This module has no numpy at import time; only
:meth:`BreachedFilter.contains_keys` (bulk look-ups) and the builder need it.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import sys
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from kaspi_identity._errors import BreachCheckUnavailableError, BreachedFilterError
from kaspi_identity.policy._text import CYRILLIC, from_russian_layout

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "FILTER_VERSION",
    "BreachCheck",
    "BreachSources",
    "BreachedFilter",
    "RangeSource",
    "open_filter",
    "password_key",
]

#: The version of the file format this library writes and reads.
FILTER_VERSION: Final = 1
MAGIC: Final = b"KIBREACH"
ALGORITHM_BINARY_FUSE_3: Final = 1
FINGERPRINT_BITS: Final = 16
MAX_SHARD_BITS: Final = 20
# magic, version, header size, entries, lines, kept, min_count, shard_bits, fingerprint bits,
# algorithm, payload size, payload CRC-32, table CRC-32, reserved.
HEADER: Final = struct.Struct("<8sHHQQQIBBHQIII")
# seed, byte offset of the fingerprints, array length, segment length, segment count length.
SHARD: Final = struct.Struct("<QQIII4x")
_TABLE_CRC_AT: Final = HEADER.size - 8  # the table CRC-32 is the last field but one
_M64: Final = (1 << 64) - 1


def mix64(h: int) -> int:
    """The murmur3 finaliser binary fuse filters hash a key with (64-bit, on Python ints)."""
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


def password_key(password: str) -> int:
    """The 64-bit key of ``password``: the first 8 bytes of its UTF-8 SHA-1, big-endian.

    A lone surrogate (which no breach corpus holds) is hashed as its surrogate-escaped bytes
    rather than refused, so any ``str`` has a key.
    """
    digest = hashlib.sha1(password.encode("utf-8", "surrogatepass"), usedforsecurity=False)
    return int.from_bytes(digest.digest()[:8], "big")


class BreachedFilter:
    """An opened filter file of breached passwords: ``password in filter``.

    Opening maps the file and checks its header and shard table (magic, version, sizes,
    checksum); it reads nothing else, so it costs well under a millisecond whatever the
    size. Look-ups read three 16-bit words of the mapped file. A password that was in the
    build's sources is always found; one that was not is found with a probability of about
    1.5e-5 (a false positive).

    Args:
        path: a file written by ``kaspi-identity breached build``
            (:func:`~kaspi_identity.policy.build_breached_filter`).

    Attributes:
        path: the file, as given.
        entries: distinct hashes in the filter.
        lines: lines read from the sources when it was built.
        min_count: the build's ``--min-count``: hashes seen fewer times were left out.
        shard_bits: the hash bits that choose a shard (``2**shard_bits`` shards).
        size: the file's size in bytes.

    Raises:
        BreachedFilterError: the file is missing, unreadable, not a filter, of another
            version, truncated or corrupt; ``path`` and ``reason`` say which.
    """

    __slots__ = (
        "_closed",
        "_file",
        "_map",
        "_shards",
        "_shift",
        "_view",
        "entries",
        "lines",
        "min_count",
        "path",
        "shard_bits",
        "size",
    )
    entries: int
    lines: int
    min_count: int
    shard_bits: int
    size: int
    _shards: tuple[tuple[int, int, int, int, int], ...]
    _shift: int

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._closed = False
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed once mapped
        except FileNotFoundError:
            raise BreachedFilterError(self.path, "file not found") from None
        except IsADirectoryError:
            raise BreachedFilterError(self.path, "is a directory, not a filter file") from None
        except OSError as exc:
            raise BreachedFilterError(self.path, f"cannot read file ({exc.strerror})") from None
        try:
            self._open()
        finally:
            # The map holds a descriptor of its own: no file object stays open (nor warns).
            self._file.close()

    def _open(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        self.size = size
        if size < HEADER.size:
            start = self._file.read(len(MAGIC))
            if start and not MAGIC.startswith(start[: len(MAGIC)]):
                self._bad("not a breached-password filter (no KIBREACH header)")
            self._bad(f"truncated ({size} bytes; a filter has a {HEADER.size}-byte header)")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        head = self._map[: HEADER.size]
        (
            magic,
            version,
            header_size,
            self.entries,
            self.lines,
            _kept,
            self.min_count,
            shard_bits,
            fingerprint_bits,
            algorithm,
            payload_size,
            _payload_crc,
            table_crc,
            _reserved,
        ) = HEADER.unpack(head)
        if magic != MAGIC:
            self._bad("not a breached-password filter (no KIBREACH header)")
        if version != FILTER_VERSION:
            self._bad(
                f"format version {version}; this kaspi-identity reads version"
                f" {FILTER_VERSION}: rebuild it with `kaspi-identity breached build`"
            )
        if (
            header_size != HEADER.size
            or algorithm != ALGORITHM_BINARY_FUSE_3
            or fingerprint_bits != FINGERPRINT_BITS
            or shard_bits > MAX_SHARD_BITS
        ):
            self._bad("corrupt (the header's layout fields are wrong)")
        self.shard_bits = shard_bits
        self._shift = 64 - shard_bits  # key >> 64 is 0: one shard
        table_end = HEADER.size + SHARD.size * (1 << shard_bits)
        expected = table_end + payload_size
        if size < expected:
            self._bad(f"truncated ({size} bytes, the header says {expected})")
        if size > expected:
            self._bad(f"corrupt ({size} bytes, the header says {expected})")
        table = self._map[HEADER.size : table_end]
        zeroed = head[:_TABLE_CRC_AT] + b"\0\0\0\0" + head[_TABLE_CRC_AT + 4 :]
        if zlib.crc32(table, zlib.crc32(zeroed)) != table_crc:
            self._bad("corrupt (the checksum of its header and shard table does not match)")
        shards: list[tuple[int, int, int, int, int]] = []
        total = 0
        for seed, offset, length, segment, count_length in SHARD.iter_unpack(table):
            if length == 0:
                shards.append((0, 0, 0, 0, 0))
                continue
            base, odd = divmod(offset - table_end, 2)
            if (
                odd
                or base < 0
                or offset + 2 * length > size
                or segment & (segment - 1)
                or count_length + 2 * segment != length
            ):
                self._bad("corrupt (a shard of its table is out of bounds)")
            # (seed, first fingerprint index, segment length, its mask, segment count length)
            shards.append((seed, base, segment, segment - 1, count_length))
            total += 2 * length
        if total != payload_size:
            self._bad("corrupt (its shards do not add up to its payload)")
        self._shards = tuple(shards)
        payload = memoryview(self._map)[table_end:]
        self._view: Any = payload.cast("H") if sys.byteorder == "little" else None
        if self._view is None:  # pragma: no cover - big-endian hosts
            self._view = _BigEndianWords(payload)

    def _bad(self, reason: str) -> None:
        raise BreachedFilterError(self.path, reason)

    def __repr__(self) -> str:
        return f"<BreachedFilter {self.path!r} entries={self.entries} min_count={self.min_count}>"

    def __len__(self) -> int:
        return self.entries

    def __contains__(self, password: object) -> bool:
        """Whether ``password`` (a ``str``, taken exactly as it is) is in the filter."""
        if not isinstance(password, str):
            raise TypeError(f"password must be str, not {type(password).__name__}")
        return self.contains_key(password_key(password))

    def contains_hash(self, sha1: str | bytes) -> bool:
        """Whether the SHA-1 ``sha1`` (40 hex digits, or 20 raw bytes) is in the filter.

        Raises:
            ValueError: ``sha1`` is neither.
        """
        if isinstance(sha1, str):
            if len(sha1) != 40:
                raise ValueError("a SHA-1 is 40 hex digits")
            try:
                raw = bytes.fromhex(sha1)
            except ValueError:
                raise ValueError("a SHA-1 is 40 hex digits") from None
        elif isinstance(sha1, bytes) and len(sha1) == 20:
            raw = sha1
        else:
            raise ValueError("a SHA-1 is 40 hex digits or 20 bytes")
        return self.contains_key(int.from_bytes(raw[:8], "big"))

    def contains_key(self, key: int) -> bool:
        """Whether the 64-bit ``key`` (the first 8 bytes of a SHA-1, big-endian) is in it."""
        # mix64 and the slots written out: a call per look-up is a sixth of its cost.
        seed, base, segment, mask, count_length = self._shards[key >> self._shift]
        if not segment:
            return False
        h = (key + seed) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 33
        h = (h * 0xC4CEB9FE1A85EC53) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 33
        h0 = (h * count_length) >> 64
        view = self._view
        found: int = (
            view[base + h0]
            ^ view[base + ((h0 + segment) ^ ((h >> 18) & mask))]
            ^ view[base + ((h0 + 2 * segment) ^ (h & mask))]
        )
        return ((h ^ (h >> 32)) & 0xFFFF) == found

    def contains_keys(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Bulk look-up (numpy): which of the 64-bit ``keys`` are in the filter.

        Raises:
            ModuleNotFoundError: numpy is not installed (``pip install
                'kaspi-identity[breached]'``).
        """
        import numpy as np

        keys = np.asarray(keys, dtype=np.uint64)
        if self.size == HEADER.size + SHARD.size * len(self._shards):  # no fingerprints at all
            self._view[0:0]  # a closed filter raises, as for a single look-up
            return np.zeros(keys.shape, dtype=np.bool_)
        table = np.array(self._shards, dtype=np.uint64).reshape(-1, 5)
        bits = self.shard_bits
        index = (
            (keys >> np.uint64(64 - bits)).astype(np.intp)
            if bits
            else np.zeros(keys.shape, dtype=np.intp)
        )
        seed, base, segment, mask, count_length = (table[index, i] for i in range(5))
        h = mix64_array(keys + seed)
        h0 = mulhi_array(h, count_length)
        h1 = (h0 + segment) ^ ((h >> np.uint64(18)) & mask)
        h2 = (h0 + np.uint64(2) * segment) ^ (h & mask)
        words = np.frombuffer(self._map, dtype="<u2", offset=HEADER.size + SHARD.size * len(table))
        empty = segment == 0
        at = [np.where(empty, 0, base + x).astype(np.intp) for x in (h0, h1, h2)]
        found = ((h ^ (h >> np.uint64(32))) & np.uint64(0xFFFF)).astype(np.uint16) == (
            words[at[0]] ^ words[at[1]] ^ words[at[2]]
        )
        result: npt.NDArray[np.bool_] = found & ~empty
        return result

    def verify(self) -> None:
        """Read the whole file and check its payload's CRC-32 (opening checks only the table).

        Raises:
            BreachedFilterError: a fingerprint was changed since the build.
        """
        head = HEADER.unpack(self._map[: HEADER.size])
        table_end = HEADER.size + SHARD.size * (1 << self.shard_bits)
        crc = 0
        step = 1 << 24
        for start in range(table_end, self.size, step):
            crc = zlib.crc32(self._map[start : min(start + step, self.size)], crc)
        if crc != head[11]:
            self._bad("corrupt (the checksum of its fingerprints does not match)")

    def close(self) -> None:
        """Unmap the file; look-ups afterwards raise ``ValueError``."""
        if self._closed:
            return
        self._closed = True
        view = self._view
        if isinstance(view, memoryview):
            view.release()
        self._view = _Closed()
        self._map.close()

    def __enter__(self) -> BreachedFilter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _BigEndianWords:  # pragma: no cover - big-endian hosts
    """Little-endian uint16 words of a buffer, on a host whose ``memoryview.cast`` is big."""

    def __init__(self, buffer: memoryview) -> None:
        self._buffer = buffer

    def __getitem__(self, index: int) -> int:
        return int.from_bytes(self._buffer[2 * index : 2 * index + 2], "little")

    def release(self) -> None:
        self._buffer.release()


class _Closed:
    def __getitem__(self, index: object) -> int:
        raise ValueError("the breached-password filter is closed")


def mix64_array(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """:func:`mix64` on a numpy array (wrapping uint64 arithmetic)."""
    import numpy as np

    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    result: npt.NDArray[np.uint64] = h ^ (h >> np.uint64(33))
    return result


def mulhi_array(
    h: npt.NDArray[np.uint64], factor: npt.NDArray[np.uint64] | int
) -> npt.NDArray[np.uint64]:
    """``(h * factor) >> 64`` for a ``factor`` below 2**32, without 128-bit integers."""
    import numpy as np

    factor = np.asarray(factor, dtype=np.uint64)
    low = h & np.uint64(0xFFFFFFFF)
    high = h >> np.uint64(32)
    # high*factor < 2**64 - 2**33 and (low*factor) >> 32 < 2**32: the sum cannot wrap.
    result: npt.NDArray[np.uint64] = (high * factor + ((low * factor) >> np.uint64(32))) >> (
        np.uint64(32)
    )
    return result


_lock = threading.Lock()
_opened: dict[tuple[str, int, int, int], BreachedFilter] = {}


def open_filter(path: str | os.PathLike[str]) -> BreachedFilter:
    """The opened filter at ``path``, shared by every policy naming the same unchanged file.

    Keyed by the resolved path, inode, size and modification time, so a rebuilt file is
    opened anew (the old mapping stays valid for whoever still uses it).

    Raises:
        BreachedFilterError: as :class:`BreachedFilter`.
    """
    p = Path(path)
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return BreachedFilter(path)  # raises the precise error
    with _lock:
        cached = _opened.get(key)
        if cached is None or cached._closed:
            cached = _opened[key] = BreachedFilter(path)
        return cached


class RangeSource(Protocol):
    """What the policy asks an online source: the suffixes known under a 5-hex prefix.

    :class:`kaspi_identity.hibp.RangeClient` is one; on the async face the flows get a
    synchronous face of :class:`kaspi_identity.hibp.AsyncRangeClient` that awaits it.
    """

    def range(self, prefix: str) -> Mapping[str, int]:
        """Suffix (35 upper-case hex digits) to count; raises BreachCheckUnavailableError."""
        ...


@dataclass(frozen=True, slots=True)
class BreachCheck:
    """The answer to "is this password known from a data breach?".

    Truthy when it is. :attr:`refuse` applies the policy's ``fail`` setting to an online
    source that did not answer.

    Attributes:
        breached: the password (its NFKC form, or its QWERTY reading when typed in the
            Russian layout) is in the offline filter or the online range API.
        source: ``"filter"`` or ``"online"``, whichever found it; ``None`` when not found.
        count: how many times the online API saw it (``None`` for the filter, which keeps
            no counts, and when not found).
        unavailable: the online source was asked and gave no usable answer (time-out,
            error), so ``breached`` is only what the filter says.
        fail_closed: the policy's ``fail = "closed"``: an unavailable check refuses.
        checked: whether the policy has any breached-password source at all.
    """

    breached: bool
    source: str | None = None
    count: int | None = None
    unavailable: bool = False
    fail_closed: bool = False
    checked: bool = True

    def __bool__(self) -> bool:
        return self.breached

    @property
    def refuse(self) -> bool:
        """Whether to refuse the password: breached, or unchecked when failing closed."""
        return self.breached or (self.unavailable and self.fail_closed)


@dataclass(frozen=True, slots=True)
class BreachSources:
    """The configured sources and how their answers count; the ``breached`` rule's core."""

    filter: BreachedFilter | None
    online: RangeSource | None
    min_count: int
    fail_closed: bool

    def lookup(self, password: str) -> BreachCheck:
        """Check the (already NFKC-normalised) ``password`` and its QWERTY reading."""
        forms = [password]
        if CYRILLIC.search(password):
            qwerty = from_russian_layout(password)
            if qwerty != password:
                forms.append(qwerty)
        unavailable = False
        digests = [
            hashlib.sha1(form.encode("utf-8", "surrogatepass"), usedforsecurity=False).digest()
            for form in forms
        ]
        if self.filter is not None:
            for digest in digests:
                if self.filter.contains_key(int.from_bytes(digest[:8], "big")):
                    return BreachCheck(True, "filter", fail_closed=self.fail_closed)
        if self.online is not None:
            for digest in digests:
                hexed = digest.hex().upper()
                try:
                    counts = self.online.range(hexed[:5])
                except BreachCheckUnavailableError:
                    unavailable = True
                    continue
                count = counts.get(hexed[5:], 0)
                if count >= self.min_count:
                    return BreachCheck(True, "online", count, fail_closed=self.fail_closed)
        return BreachCheck(False, unavailable=unavailable, fail_closed=self.fail_closed)
