"""Building a breached-password filter from Have I Been Pwned's downloadable files (numpy).

Two passes with bounded memory, whatever the size of the corpus:

1. every source is read in blocks of a few megabytes and parsed with numpy (``SHA1HEX:COUNT``
   lines, or a range file's ``SUFFIX:COUNT`` lines under its 5-hex file name); the 64-bit keys
   of the hashes seen at least ``min_count`` times go to 256 temporary files by their top byte;
2. the temporary files are read back a few at a time, their keys sorted and made unique, split
   into shards of about a million keys, and each shard's binary fuse filter is built (peeling
   in vectorised rounds) and appended to the output.

The output is written under a temporary name beside it and renamed into place when complete,
so a reader never sees half a filter. The format is described in ``_breached``.
"""

from __future__ import annotations

import binascii
import gzip
import importlib.util
import math
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from kaspi_identity._errors import BreachedSourceError
from kaspi_identity.policy._breached import (
    ALGORITHM_BINARY_FUSE_3,
    FILTER_VERSION,
    FINGERPRINT_BITS,
    HEADER,
    MAGIC,
    MAX_SHARD_BITS,
    SHARD,
    mix64_array,
    mulhi_array,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["BreachedBuild", "BuildProgress", "build_breached_filter"]

_BLOCK: Final = 1 << 22  # bytes read and parsed at a time
_SHARD_TARGET: Final = 1 << 20  # keys a shard aims at: big enough for the 1.125 size factor
_BUCKET_BITS: Final = 8
_MAX_ATTEMPTS: Final = 64
_PROGRESS_EVERY: Final = 0.25  # seconds between progress reports
_MAX_COUNT_DIGITS: Final = 18
_PAD: Final = 48  # zero bytes after a block: a window of this many bytes fits at any line


@dataclass(frozen=True, slots=True)
class BuildProgress:
    """How far a build is, passed to its ``progress`` callback a few times a second.

    Attributes:
        phase: ``"reading"`` (the sources) or ``"building"`` (the shards' filters).
        lines: lines read so far.
        bytes_read: bytes of the sources read so far (compressed bytes for gzip).
        bytes_total: bytes of all the sources.
        shards_done: shards built so far (building phase).
        shards_total: shards to build (known once reading is done, else 0).
        elapsed: seconds since the build started.
    """

    phase: str
    lines: int
    bytes_read: int
    bytes_total: int
    shards_done: int
    shards_total: int
    elapsed: float

    @property
    def fraction(self) -> float:
        """The part of the whole build done, from 0 to 1 (reading counts for two thirds)."""
        read = self.bytes_read / self.bytes_total if self.bytes_total else 1.0
        if self.phase == "reading":
            return 2 / 3 * min(read, 1.0)
        built = self.shards_done / self.shards_total if self.shards_total else 1.0
        return 2 / 3 + built / 3

    @property
    def eta(self) -> float | None:
        """Seconds the build probably still needs, or ``None`` before there is a rate."""
        done = self.fraction
        if done <= 0 or self.elapsed <= 0:
            return None
        return self.elapsed * (1 - done) / done


@dataclass(frozen=True, slots=True)
class BreachedBuild:
    """What :func:`build_breached_filter` wrote.

    Attributes:
        path: the filter file.
        lines: lines read from the sources (blank lines not counted).
        kept: lines seen at least ``min_count`` times.
        entries: distinct hashes in the filter.
        min_count: the threshold used.
        size: the file's size in bytes.
        seconds: how long the build took.
    """

    path: str
    lines: int
    kept: int
    entries: int
    min_count: int
    size: int
    seconds: float

    @property
    def bytes_per_entry(self) -> float:
        """The file's size divided by its entries."""
        return self.size / self.entries if self.entries else 0.0


def build_breached_filter(
    sources: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    min_count: int = 1,
    progress: Callable[[BuildProgress], None] | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
) -> BreachedBuild:
    """Build a filter file from Have I Been Pwned's downloadable SHA-1 files.

    Args:
        sources: files (plain or gzip) of ``SHA1HEX:COUNT`` lines — one big file, or range
            files of ``SUFFIX:COUNT`` lines named by their 5-hex prefix (``0A1B2.txt``) —
            and directories, whose files are all read (in name order).
        output: the filter file to write (replaced once the new one is complete).
        min_count: leave out hashes seen fewer times than this.
        progress: called with a :class:`BuildProgress` a few times a second.
        tmp_dir: where the temporary files (8 bytes a line) go; default: beside ``output``.

    Returns:
        What was written.

    Raises:
        BreachedSourceError: a source is missing, unreadable or has a line that is not in
            the format (its line number is given, never its text).
        ValueError: ``min_count`` is not a positive integer, or no source is given.
        ModuleNotFoundError: numpy is missing (``pip install 'kaspi-identity[breached]'``).
    """
    if importlib.util.find_spec("numpy") is None:  # pragma: no cover - in the test extra
        raise ModuleNotFoundError(
            "building a breached-password filter needs numpy:"
            " pip install 'kaspi-identity[breached]'"
        )
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, not {min_count!r}")
    files = _expand(sources)
    out = Path(output)
    started = time.perf_counter()
    total = sum(size for _, size in files)
    reporter = _Reporter(progress, total, started)
    work = Path(tmp_dir) if tmp_dir is not None else (out.parent if str(out.parent) else Path())
    with tempfile.TemporaryDirectory(prefix=".kaspi-breached-", dir=work) as scratch:
        buckets = [
            open(Path(scratch, f"{i:02x}.keys"), "wb", buffering=1 << 16)  # noqa: SIM115
            for i in range(1 << _BUCKET_BITS)
        ]
        lines = kept = 0
        try:
            for path, _size in files:
                for keys, counts, n in _read_source(path, reporter, counts=min_count > 1):
                    lines += n
                    if min_count > 1:
                        keys = keys[counts >= min_count]
                    kept += int(keys.size)
                    _scatter(keys, buckets)
                    reporter.reading(lines)
        finally:
            for f in buckets:
                f.close()
        shard_bits = _shard_bits(kept)
        fd, partial = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                entries = _write_filter(f, scratch, shard_bits, lines, kept, min_count, reporter)
            os.replace(partial, out)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return BreachedBuild(
        path=str(out),
        lines=lines,
        kept=kept,
        entries=entries,
        min_count=min_count,
        size=out.stat().st_size,
        seconds=time.perf_counter() - started,
    )


class _Reporter:
    """Calls the progress callback at most every quarter of a second (and at the end)."""

    def __init__(
        self, callback: Callable[[BuildProgress], None] | None, total: int, started: float
    ) -> None:
        self.callback = callback
        self.total = total
        self.started = started
        self.read_before = 0  # bytes of the sources finished
        self.position = 0  # bytes of the current source
        self.lines = 0
        self.last = 0.0

    def reading(self, lines: int, *, force: bool = False) -> None:
        self.lines = lines
        self._report("reading", 0, 0, force)

    def building(self, done: int, total: int) -> None:
        self._report("building", done, total, done == total)

    def _report(self, phase: str, done: int, total: int, force: bool) -> None:
        if self.callback is None:
            return
        now = time.perf_counter()
        if not force and now - self.last < _PROGRESS_EVERY:
            return
        self.last = now
        self.callback(
            BuildProgress(
                phase=phase,
                lines=self.lines,
                bytes_read=self.read_before + self.position,
                bytes_total=self.total,
                shards_done=done,
                shards_total=total,
                elapsed=now - self.started,
            )
        )


def _expand(sources: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, int]]:
    """Every source file with its size; directories give their files, in name order."""
    if isinstance(sources, str | bytes | os.PathLike):
        raise TypeError("sources must be a list of paths")
    files: list[tuple[Path, int]] = []
    for source in sources:
        p = Path(source)
        try:
            if p.is_dir():
                for entry in sorted(os.scandir(p), key=lambda e: e.name):
                    if entry.is_file():
                        files.append((Path(entry.path), entry.stat().st_size))
            else:
                files.append((p, p.stat().st_size))
        except FileNotFoundError:
            raise BreachedSourceError(str(p), None, "file not found") from None
        except OSError as exc:
            raise BreachedSourceError(str(p), None, f"cannot read ({exc.strerror})") from None
    if not files:
        raise ValueError("no source file to build the filter from")
    return files


def _range_prefix(path: Path) -> int | None:
    """The 20-bit prefix a range file's name gives (``0A1B2.txt`` -> 0x0A1B2), or None."""
    stem = path.name.split(".", 1)[0]
    if len(stem) != 5:
        return None
    try:
        return int(stem, 16)
    except ValueError:
        return None


def _read_source(
    path: Path, reporter: _Reporter, *, counts: bool
) -> Iterator[tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], int]]:
    """``(keys, counts, lines)`` of each block of ``path``."""
    name = str(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BreachedSourceError(name, None, f"cannot read ({exc.strerror})") from None
    with raw:
        stream: IO[bytes] | gzip.GzipFile = raw
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        else:
            raw.seek(0)
        parser = _Parser(name, _range_prefix(path), counts=counts)
        rest = b""
        try:
            while True:
                block = stream.read(_BLOCK)
                reporter.position = raw.tell()
                if not block:
                    break
                data = rest + block
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut:
                    yield parser.parse(data[:cut])
            if rest:
                yield parser.parse(rest + b"\n")
        except (OSError, EOFError, zlib.error) as exc:
            raise BreachedSourceError(name, None, f"cannot read ({exc})") from None
    reporter.read_before += reporter.position
    reporter.position = 0


class _Parser:
    """Vectorised parsing of ``HEX:COUNT`` lines, one file's blocks in turn."""

    def __init__(self, name: str, prefix: int | None, *, counts: bool) -> None:

        self.counts = counts
        self.name = name
        self.prefix = prefix
        self.width: int | None = None  # 40 (full hashes) or 35 (range suffixes)
        self.line = 0  # lines of the file before this block

    def _fail(self, index: int, reason: str) -> BreachedSourceError:
        return BreachedSourceError(self.name, self.line + index + 1, reason)

    def parse(self, data: bytes) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], int]:
        """``(keys, counts, lines)`` of a block of whole lines (``counts`` empty unless asked).

        Each line's hash and count are copied out through sliding windows (one index a line,
        not one a byte); ``binascii.unhexlify`` then decodes and validates the hashes in C.
        """
        import numpy as np

        a = np.frombuffer(data + bytes(_PAD), dtype=np.uint8)
        size = len(data)
        ends = np.flatnonzero(a[:size] == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        crlf = (ends > starts) & (a[np.maximum(ends - 1, 0)] == 13)
        ends = ends - crlf
        in_file = ends.size
        nonblank = ends > starts
        starts, ends = starts[nonblank], ends[nonblank]
        numbers = np.flatnonzero(nonblank)  # each line's index in the block
        if not starts.size:
            self.line += in_file
            return np.empty(0, np.uint64), np.empty(0, np.int64), 0
        if self.width is None:
            self.width = self._width(a, int(starts[0]), int(ends[0]))
        width = self.width
        colon = starts + width
        widths = ends - colon - 1  # of the counts
        shape = (widths > 0) & (a[colon] == 58)
        if not shape.all():
            bad = int(numbers[np.argmin(shape)])
            raise self._fail(bad, f"not a {width}-hex-digit hash, a colon and a count")
        if int(widths.max()) > _MAX_COUNT_DIGITS:
            raise self._fail(int(numbers[np.argmax(widths)]), "the count is too long")
        windows = np.lib.stride_tricks.sliding_window_view(a, _PAD)
        most = int(widths.max())
        digits = windows[colon + 1, :most] - np.uint8(48)  # wraps: a byte below "0" is > 9
        outside = np.arange(most, dtype=np.int64) >= widths[:, None]
        count_ok = ((digits <= 9) | outside).all(axis=1)
        if not count_ok.all():
            raise self._fail(int(numbers[np.argmin(count_ok)]), "the count is not a number")
        counts = np.empty(0, dtype=np.int64)
        if self.counts:
            counts = np.zeros(starts.size, dtype=np.int64)
            for j in range(most):
                counts = np.where(outside[:, j], counts, counts * 10 + digits[:, j])
        # A range line's 35 digits get a leading "0" so that they decode to whole bytes.
        hexes = np.empty((starts.size, 40 if width == 40 else 36), dtype=np.uint8)
        hexes[:, -width:] = windows[starts, :width]
        if width == 35:
            hexes[:, 0] = 48
        try:
            raw = np.frombuffer(binascii.unhexlify(hexes.tobytes()), dtype=np.uint8)
        except binascii.Error:
            bad = next(i for i, row in enumerate(hexes) if not _is_hex(row.tobytes()))
            raise self._fail(int(numbers[bad]), "the hash is not hexadecimal") from None
        raw = raw.reshape(starts.size, -1)
        if width == 40:
            keys = np.ascontiguousarray(raw[:, :8]).view(">u8").ravel().astype(np.uint64)
        else:
            assert self.prefix is not None  # _width made sure
            eight = np.zeros((starts.size, 8), dtype=np.uint8)
            eight[:, 2:] = raw[:, :6]  # "0" and the suffix's first 11 digits: 44 bits
            tail = eight.view(">u8").ravel().astype(np.uint64)
            keys = tail | np.uint64(self.prefix << 44)
        self.line += in_file
        return keys, counts, int(starts.size)

    def _width(self, a: npt.NDArray[np.uint8], start: int, end: int) -> int:
        colon = bytes(a[start:end]).find(b":")
        if colon == 40:
            return 40
        if colon == 35:
            if self.prefix is None:
                raise BreachedSourceError(
                    self.name,
                    None,
                    "range-file lines (35 hex digits) need the file named by its 5-hex"
                    " prefix, e.g. 0A1B2.txt",
                )
            return 35
        if colon == 32:
            raise BreachedSourceError(
                self.name, None, "NTLM hashes (32 hex digits): use the SHA-1 files"
            )
        raise BreachedSourceError(self.name, self.line + 1, "not a SHA1HEX:COUNT line")


def _is_hex(text: bytes) -> bool:
    try:
        binascii.unhexlify(text)
    except binascii.Error:
        return False
    return True


def _scatter(keys: npt.NDArray[np.uint64], buckets: Sequence[IO[bytes]]) -> None:
    """Append each key to the temporary file of its top byte."""
    import numpy as np

    if not keys.size:
        return
    keys = np.sort(keys)
    tops = np.arange((1 << _BUCKET_BITS) + 1, dtype=np.uint64) << np.uint64(64 - _BUCKET_BITS)
    bounds = [*np.searchsorted(keys, tops[:-1]).tolist(), keys.size]
    data = keys.astype("<u8", copy=False)
    for i in range(1 << _BUCKET_BITS):
        if bounds[i] < bounds[i + 1]:
            buckets[i].write(data[bounds[i] : bounds[i + 1]].tobytes())


def _shard_bits(kept: int) -> int:
    """Shards of about a million keys (one shard below 1.5 million)."""
    if kept < 3 * _SHARD_TARGET // 2:
        return 0
    return min(MAX_SHARD_BITS, round(math.log2(kept / _SHARD_TARGET)))


def _write_filter(
    f: IO[bytes],
    scratch: str,
    shard_bits: int,
    lines: int,
    kept: int,
    min_count: int,
    reporter: _Reporter,
) -> int:
    """Build every shard from the temporary files into ``f``; return the distinct keys."""
    import numpy as np

    shards = 1 << shard_bits
    table_end = HEADER.size + SHARD.size * shards
    f.write(b"\0" * table_end)
    table: list[bytes] = []
    offset = table_end
    entries = 0
    payload_crc = 0
    # Buckets (top 8 bits) read together per shard, or shards split out of one bucket.
    per_group = max(1, (1 << _BUCKET_BITS) >> shard_bits)
    built = 0
    reporter.building(0, shards)
    for group in range(0, 1 << _BUCKET_BITS, per_group):
        keys = np.concatenate(
            [
                np.fromfile(Path(scratch, f"{b:02x}.keys"), dtype="<u8").astype(np.uint64)
                for b in range(group, group + per_group)
            ]
        )
        keys.sort()
        if keys.size:  # unique, sorted (np.unique hashes, and is far slower on 64-bit keys)
            keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
        entries += int(keys.size)
        if shard_bits:
            index = keys >> np.uint64(64 - shard_bits)
            first = group * shards >> _BUCKET_BITS
            last = first + max(1, shards >> _BUCKET_BITS)
            bounds = np.searchsorted(index, np.arange(first, last + 1, dtype=np.uint64))
        else:
            first, bounds = 0, np.array([0, keys.size])
        for i in range(bounds.size - 1):
            shard = first + i
            seed, fingerprints, segment, count_length = build_shard(
                keys[bounds[i] : bounds[i + 1]], shard
            )
            data = fingerprints.astype("<u2").tobytes()
            f.write(data)
            payload_crc = zlib.crc32(data, payload_crc)
            length = int(fingerprints.size)
            table.append(SHARD.pack(seed, offset if length else 0, length, segment, count_length))
            offset += len(data)
            built += 1
            reporter.building(built, shards)
        del keys
    head = HEADER.pack(
        MAGIC,
        FILTER_VERSION,
        HEADER.size,
        entries,
        lines,
        kept,
        min_count,
        shard_bits,
        FINGERPRINT_BITS,
        ALGORITHM_BINARY_FUSE_3,
        offset - table_end,
        payload_crc,
        0,
        0,
    )
    body = b"".join(table)
    table_crc = zlib.crc32(body, zlib.crc32(head))
    f.seek(0)
    f.write(head[: HEADER.size - 8] + struct.pack("<I", table_crc) + head[HEADER.size - 4 :])
    f.write(body)
    return entries


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def fuse_geometry(n: int) -> tuple[int, int, int]:
    """``(segment length, segment count length, array length)`` of a 3-wise fuse for ``n``.

    The sizing of Graf and Lemire's binary fuse filters: segments of a power-of-two length
    growing with ``n``, and about 1.125 slots a key for a million keys and more.
    """
    if n == 0:
        return 0, 0, 0
    segment = 4 if n == 1 else 1 << math.floor(math.log(n) / math.log(3.33) + 2.25)
    segment = min(segment, 1 << 18)
    factor = 0.0 if n == 1 else max(1.125, 0.875 + 0.25 * math.log(1e6) / math.log(n))
    capacity = round(n * factor)
    segments = max(1, -(-capacity // segment) - 2)
    return segment, segments * segment, (segments + 2) * segment


def build_shard(
    keys: npt.NDArray[np.uint64], shard: int
) -> tuple[int, npt.NDArray[np.uint16], int, int]:
    """``(seed, fingerprints, segment length, segment count length)`` for unique ``keys``.

    Peeling runs in rounds, each removing at once every key that is alone in one of its
    slots; the fingerprints are then assigned round by round in reverse. A key peeled in a
    round owns a slot no key of that round or a later one touches, which is what makes a
    whole round assignable in one vectorised step.
    """
    import numpy as np

    n = int(keys.size)
    segment, count_length, length = fuse_geometry(n)
    if n == 0:
        return 0, np.zeros(0, dtype=np.uint16), 0, 0
    mask = np.uint64(segment - 1)
    index = np.arange(n, dtype=np.int64)
    for attempt in range(_MAX_ATTEMPTS):
        seed = _splitmix64((shard << 8) + attempt)
        h = mix64_array(keys + np.uint64(seed))
        first = mulhi_array(h, count_length)
        # Slots are below 2**32, so the int64 views of the uint64 results are the same numbers.
        h0 = first.view(np.int64)
        h1 = ((first + np.uint64(segment)) ^ ((h >> np.uint64(18)) & mask)).view(np.int64)
        h2 = ((first + np.uint64(2 * segment)) ^ (h & mask)).view(np.int64)
        rounds = _peel(n, length, h0, h1, h2, index)
        if rounds is None:
            continue
        own = ((h ^ (h >> np.uint64(32))) & np.uint64(0xFFFF)).astype(np.uint16)
        fingerprints = np.zeros(length, dtype=np.uint16)
        for k, slot in reversed(rounds):
            # fingerprints[slot] is still 0 here, so xor-ing it in changes nothing.
            fingerprints[slot] = (
                own[k] ^ fingerprints[h0[k]] ^ fingerprints[h1[k]] ^ (fingerprints[h2[k]])
            )
        return seed, fingerprints, segment, count_length
    raise RuntimeError(f"shard {shard}: no seed out of {_MAX_ATTEMPTS} peeled")  # pragma: no cover


def _peel(
    n: int,
    length: int,
    h0: npt.NDArray[np.int64],
    h1: npt.NDArray[np.int64],
    h2: npt.NDArray[np.int64],
    index: npt.NDArray[np.int64],
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] | None:
    """The rounds of (keys, their slots) that peel the hypergraph, or ``None`` if it sticks."""
    import numpy as np

    count = np.bincount(h0, minlength=length)
    count += np.bincount(h1, minlength=length)
    count += np.bincount(h2, minlength=length)
    # The sum of the keys' indices in each slot: a slot holding one key holds its index.
    sums = np.zeros(length, dtype=np.int64)
    for slots in (h0, h1, h2):
        np.add.at(sums, slots, index)
    stamp = np.zeros(n, dtype=np.int64)
    frontier = np.flatnonzero(count == 1)
    rounds = []
    peeled = 0
    while frontier.size:
        alone = frontier[count[frontier] == 1]
        if not alone.size:
            break
        k = sums[alone]
        order = np.arange(k.size)
        stamp[k] = order  # a key alone in two slots keeps one of them
        keep = stamp[k] == order
        k, alone = k[keep], alone[keep]
        rounds.append((k, alone))
        peeled += int(k.size)
        touched = np.concatenate((h0[k], h1[k], h2[k]))
        np.subtract.at(count, touched, np.ones(touched.size, dtype=np.int64))
        np.subtract.at(sums, touched, np.concatenate((k, k, k)))
        frontier = touched
    return rounds if peeled == n else None
