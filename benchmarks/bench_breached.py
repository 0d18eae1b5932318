"""Benchmark the breached-password filter next to a Bloom filter (rbloom) at the same error.

Run ``python benchmarks/bench_breached.py [--lines N]`` (default 10,000,000; needs the
``breached`` and ``bench`` extras: numpy, rbloom). It writes a synthetic Have I Been Pwned
file (``SHA1HEX:COUNT`` lines, CRLF): the 30,000 real passwords of zxcvbn's list, the rest
random hashes, counts from 1 to 9,999. Then, side by side:

* **build**: ``build_breached_filter`` (ours, numpy) and an ``rbloom.Bloom`` sized for the
  same entries at the same false-positive rate (1.5e-5), fed by the straightforward Python
  loop over the same file, then saved. Each build runs in a child process, so its peak
  memory (``VmHWM``, Linux) is its own. Lines a second of wall time and of CPU time (the
  latter steadier when other work shares the cores);
* **size**: bytes a distinct entry of each file;
* **false positives**: over 1,000,000 random non-member keys (and that every real password
  is found);
* **look-ups a second** on one core (CPU time of this process): a 64-bit key
  (``contains_key``), and a password (``password in filter``, SHA-1 included), against
  ``key in bloom``;
* **open**: ``BreachedFilter(path)`` (mmap, header and table) against ``Bloom.load`` (reads
  the whole file). Median of repeats, from the page cache.

The goals of issue 16: at most 2.5 bytes an entry, at most 2e-5 false positives, at least
200,000 look-ups a second, at least 1,000,000 lines a second to build, at most 5 ms to open.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

FALSE_POSITIVE_RATE = 1.5e-5  # 2**-16, the filter's design rate: the Bloom filter is sized to it
REAL = 30_000


def real_passwords() -> list[str]:
    """The real passwords mixed into the synthetic corpus: zxcvbn's frequency list."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words: list[str] = list(FREQUENCY_LISTS["passwords"])[:REAL]
    return words


def write_corpus(path: Path, lines: int, *, seed: int = 16) -> list[str]:
    """Write ``lines`` HIBP-format lines to ``path``; return the real passwords in it."""
    import hashlib

    import numpy as np

    rng = np.random.default_rng(seed)
    real = real_passwords()[: min(REAL, lines)]
    hexes = b"0123456789ABCDEF"
    lut = np.frombuffer(hexes, dtype=np.uint8)
    with open(path, "wb") as f:
        head = [
            hashlib.sha1(p.encode("utf-8"), usedforsecurity=False).hexdigest().upper() for p in real
        ]
        f.write("".join(f"{h}:{i % 9999 + 1}\r\n" for i, h in enumerate(head)).encode())
        left = lines - len(real)
        while left > 0:
            n = min(left, 500_000)
            raw = rng.integers(0, 256, (n, 20), dtype=np.uint8)
            text = np.empty((n, 40), dtype=np.uint8)
            text[:, 0::2] = lut[raw >> 4]
            text[:, 1::2] = lut[raw & 15]
            counts = rng.integers(1, 10_000, n)
            rows = text.tobytes()
            f.write(b"".join(rows[40 * i : 40 * i + 40] + b":%d\r\n" % counts[i] for i in range(n)))
            left -= n
    return real


def median_seconds(action: Callable[[], object], runs: int, *, batch: int = 1) -> float:
    """Median CPU seconds of ``action`` (this process's time on a core: steadier than the wall
    clock on a shared machine, and what "on one core" means)."""
    samples = []
    for _ in range(runs):
        start = time.process_time()
        for _ in range(batch):
            action()
        samples.append((time.process_time() - start) / batch)
    return statistics.median(samples)


_CHILD_OURS = """
import json, re, sys, time
from kaspi_identity.policy import build_breached_filter
start, cpu = time.perf_counter(), time.process_time()
built = build_breached_filter([sys.argv[1]], sys.argv[2])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
status = open("/proc/self/status").read()
print(json.dumps({"seconds": seconds, "cpu": cpu, "entries": built.entries, "lines": built.lines,
    "rss": int(re.search(r"VmHWM:\\s+(\\d+)", status)[1])}))
"""

_CHILD_BLOOM = """
import json, re, sys, time
import rbloom
def key(b): return int.from_bytes(b, "big", signed=True)
start, cpu = time.perf_counter(), time.process_time()
bloom = rbloom.Bloom(int(sys.argv[3]), float(sys.argv[4]), key)
lines = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        bloom.add(bytes.fromhex(line[:32].decode()))
        lines += 1
bloom.save(sys.argv[2])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
status = open("/proc/self/status").read()
print(json.dumps({"seconds": seconds, "cpu": cpu, "lines": lines,
    "rss": int(re.search(r"VmHWM:\\s+(\\d+)", status)[1])}))
"""


def run_child(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def bloom_key(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=10_000_000, help="lines of the corpus")
    parser.add_argument("--non-members", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000, help="timed look-ups")
    parser.add_argument("--dir", help="where the files go (default: a temporary directory)")
    parser.add_argument("--no-bloom", action="store_true", help="leave the peer out")
    args = parser.parse_args(argv)

    import numpy as np

    from kaspi_identity.policy import BreachedFilter

    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        corpus = Path(work, "pwned.txt")
        started = time.perf_counter()
        real = write_corpus(corpus, args.lines)
        print(
            f"corpus: {args.lines:,} lines ({corpus.stat().st_size / 1e6:,.0f} MB) written"
            f" in {time.perf_counter() - started:.1f} s; host load {os.getloadavg()[0]:.1f}"
            f" on {os.cpu_count()} cores"
        )
        ours_path = Path(work, "pwned.kib")
        ours = run_child(_CHILD_OURS, str(corpus), str(ours_path))
        rng = np.random.default_rng(2026)
        strangers = rng.integers(0, 2**64, args.non_members, dtype=np.uint64, endpoint=False)
        sample = [int(k) for k in strangers[: args.lookups]]
        words = (real * (args.lookups // len(real) + 1))[: args.lookups]
        with BreachedFilter(ours_path) as f:
            assert all(w in f for w in real), "a real password is missing"
            fp = int(f.contains_keys(strangers).sum()) / args.non_members
            contains_key = f.contains_key
            key_rate = args.lookups / median_seconds(lambda: [contains_key(k) for k in sample], 3)
            word_rate = args.lookups / median_seconds(lambda: [w in f for w in words], 3)
            per_entry = f.size / f.entries
        open_ms = 1000 * median_seconds(lambda: BreachedFilter(ours_path).close(), 21)
        rows: list[tuple[str, str, str, str]] = []

        def row(name: str, mine: float, peer: float | None, fmt: str, goal: str) -> None:
            theirs = "-" if peer is None else format(peer, fmt)
            ratio = "-" if peer is None or peer == 0 else f"{mine / peer:.2f}"
            rows.append((name, format(mine, fmt), theirs, f"{ratio}   {goal}"))

        bloom: dict[str, float] | None = None
        if not args.no_bloom:
            import rbloom

            bloom_path = Path(work, "pwned.bloom")
            bloom = run_child(
                _CHILD_BLOOM,
                str(corpus),
                str(bloom_path),
                str(int(ours["entries"])),
                str(FALSE_POSITIVE_RATE),
            )
            loaded = rbloom.Bloom.load(str(bloom_path), bloom_key)
            noise = rng.bytes(16 * args.non_members)  # the Bloom filter's keys are 16 bytes
            blobs = [noise[16 * i : 16 * i + 16] for i in range(args.non_members)]
            bloom["fp"] = sum(b in loaded for b in blobs) / args.non_members
            few = blobs[: args.lookups]
            bloom["rate"] = args.lookups / median_seconds(lambda: [b in loaded for b in few], 3)
            bloom["size"] = bloom_path.stat().st_size / ours["entries"]
            bloom["open"] = 1000 * median_seconds(
                lambda: rbloom.Bloom.load(str(bloom_path), bloom_key), 5
            )
            del loaded
        b = bloom or {}
        row("bytes an entry", per_entry, b.get("size"), ".3f", "<= 2.5")
        row("false positives (1M random keys)", fp, b.get("fp"), ".2e", "<= 2e-5")
        row("look-ups/s, 64-bit key", key_rate, b.get("rate"), ",.0f", ">= 200,000")
        row("look-ups/s, password (SHA-1 incl.)", word_rate, None, ",.0f", "")
        row(
            "build, lines/s",
            ours["lines"] / ours["seconds"],
            None if bloom is None else bloom["lines"] / bloom["seconds"],
            ",.0f",
            ">= 1,000,000",
        )
        row(
            "build, lines/CPU-s",
            ours["lines"] / ours["cpu"],
            None if bloom is None else bloom["lines"] / bloom["cpu"],
            ",.0f",
            ">= 1,000,000",
        )
        row(
            "build, peak memory MB",
            ours["rss"] / 1024,
            None if bloom is None else bloom["rss"] / 1024,
            ",.0f",
            "bounded",
        )
        row("open, ms", open_ms, b.get("open"), ".3f", "<= 5")
        print(f"{int(ours['entries']):,} entries; build {ours['seconds']:.1f} s")
        print(f"{'':36} {'ours':>12} {'rbloom':>12}   ours/rbloom  goal")
        for name, mine_s, theirs_s, rest in rows:
            print(f"{name:36} {mine_s:>12} {theirs_s:>12}   {rest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
