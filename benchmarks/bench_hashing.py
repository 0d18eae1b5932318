"""Benchmark kaspi_identity.hashing on this host.

Run ``python benchmarks/bench_hashing.py``. It reports, side by side:

* one argon2id hash with OWASP_MINIMUM;
* ``verify_any`` over N non-matching hashes, sequential (max_concurrency=1) and parallel
  (the default), each as a ratio to the lower bound ``hash time * ceil(N / cores)``;
* the peak RSS growth of 8 verifications run by ``verify_any`` with max_concurrency=8 and
  with 2. argon2 allocates in C, which tracemalloc cannot see, so each measurement runs in
  a fresh subprocess that reads VmHWM from /proc/self/status (Linux only).

The helpers are importable, so other scripts can call them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import kaspi_identity
from kaspi_identity.hashing import OWASP_MINIMUM, HashProfile, PasswordHasher

PROBE = "benchmark-password"


def median_seconds(action: Callable[[], object], runs: int) -> float:
    """Return the median wall-clock seconds of ``runs`` calls of ``action``."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def other_hashes(count: int, profile: HashProfile = OWASP_MINIMUM) -> list[str]:
    """Return ``count`` hashes of passwords that are not PROBE."""
    hasher = PasswordHasher(profile)
    return [hasher.hash(f"someone-else-{index}") for index in range(count)]


def time_hash(profile: HashProfile = OWASP_MINIMUM, runs: int = 5) -> float:
    """Return the median seconds of one hash with ``profile``."""
    hasher = PasswordHasher(profile)
    return median_seconds(lambda: hasher.hash(PROBE), runs)


def time_verify_any(
    hashes: Sequence[str],
    max_concurrency: int | None,
    profile: HashProfile = OWASP_MINIMUM,
    runs: int = 3,
) -> float:
    """Return the median seconds of ``verify_any`` over ``hashes`` (none should match)."""
    hasher = PasswordHasher(profile, max_concurrency=max_concurrency)
    hasher.verify_any(PROBE, hashes[:1])  # start the worker threads outside the timing
    return median_seconds(lambda: hasher.verify_any(PROBE, hashes), runs)


def _vm_hwm_kib() -> int:
    """Return this process's peak resident set size in KiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("VmHWM not found in /proc/self/status")


def _rss_child(max_concurrency: int, profile: HashProfile) -> None:
    """In a fresh process: read hashes from stdin, print the VmHWM growth of verify_any."""
    hashes = json.load(sys.stdin)
    hasher = PasswordHasher(profile, max_concurrency=max_concurrency)
    before = _vm_hwm_kib()
    hasher.verify_any(PROBE, hashes)
    print(_vm_hwm_kib() - before)


def peak_rss_growth_kib(
    hashes: Sequence[str], max_concurrency: int, profile: HashProfile = OWASP_MINIMUM
) -> int:
    """Return how far peak RSS grows, in KiB, while verify_any checks ``hashes``.

    Runs in a subprocess so that earlier allocations in this process do not mask the peak.
    """
    source = Path(kaspi_identity.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), *sys.path])}
    profile_args = [
        str(profile.time_cost),
        str(profile.memory_cost),
        str(profile.parallelism),
        str(profile.hash_len),
        str(profile.salt_len),
    ]
    result = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(max_concurrency), *profile_args],
        input=json.dumps(list(hashes)),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return int(result.stdout.strip())


@dataclasses.dataclass(frozen=True)
class Results:
    """Everything one benchmark run measured."""

    cores: int
    default_concurrency: int
    hash_seconds: float
    verify_count: int
    sequential_seconds: float
    parallel_seconds: float
    rss_count: int
    rss_wide_kib: int
    rss_narrow_kib: int
    rss_wide_concurrency: int
    rss_narrow_concurrency: int

    @property
    def lower_bound_seconds(self) -> float:
        """One hash time times the number of rounds the cores need for all verifications."""
        return self.hash_seconds * math.ceil(self.verify_count / self.cores)


def run(
    profile: HashProfile = OWASP_MINIMUM,
    verify_count: int = 6,
    rss_count: int = 8,
    rss_concurrency: tuple[int, int] = (8, 2),
    runs: int = 3,
) -> Results:
    """Take every measurement and return them together."""
    cores = os.cpu_count() or 1
    hashes = other_hashes(max(verify_count, rss_count), profile)
    hash_seconds = time_hash(profile, runs=max(runs, 5))
    sequential = time_verify_any(hashes[:verify_count], 1, profile, runs)
    parallel = time_verify_any(hashes[:verify_count], None, profile, runs)
    wide, narrow = rss_concurrency
    return Results(
        cores=cores,
        default_concurrency=PasswordHasher(profile)._max_concurrency,
        hash_seconds=hash_seconds,
        verify_count=verify_count,
        sequential_seconds=sequential,
        parallel_seconds=parallel,
        rss_count=rss_count,
        rss_wide_kib=peak_rss_growth_kib(hashes[:rss_count], wide, profile),
        rss_narrow_kib=peak_rss_growth_kib(hashes[:rss_count], narrow, profile),
        rss_wide_concurrency=wide,
        rss_narrow_concurrency=narrow,
    )


def format_table(results: Results, profile: HashProfile = OWASP_MINIMUM) -> str:
    """Render ``results`` as a short plain-text table."""
    bound = results.lower_bound_seconds
    n = results.verify_count
    rows = [
        ("measurement", "value", "ratio"),
        (f"hash, m={profile.memory_cost} t={profile.time_cost}", _ms(results.hash_seconds), ""),
        (
            f"lower bound: hash x ceil({n}/{results.cores} cores)",
            _ms(bound),
            "1.00x",
        ),
        (
            f"verify_any N={n}, sequential (max_concurrency=1)",
            _ms(results.sequential_seconds),
            f"{results.sequential_seconds / bound:.2f}x bound",
        ),
        (
            f"verify_any N={n}, parallel (default={results.default_concurrency})",
            _ms(results.parallel_seconds),
            f"{results.parallel_seconds / bound:.2f}x bound",
        ),
        (
            f"peak RSS growth, {results.rss_count} verifies, "
            f"max_concurrency={results.rss_wide_concurrency}",
            _mib(results.rss_wide_kib),
            f"{results.rss_wide_kib / profile.memory_cost:.1f}x m",
        ),
        (
            f"peak RSS growth, {results.rss_count} verifies, "
            f"max_concurrency={results.rss_narrow_concurrency}",
            _mib(results.rss_narrow_kib),
            f"{results.rss_narrow_kib / profile.memory_cost:.1f}x m",
        ),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        f"{label:<{widths[0]}}  {value:>{widths[1]}}  {ratio:<{widths[2]}}".rstrip()
        for label, value, ratio in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; the exit status is 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timings per measurement")
    parser.add_argument("--rss-child", nargs=6, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        concurrency, *fields = args.rss_child
        _rss_child(concurrency, HashProfile(*fields))
        return 0
    results = run(runs=args.runs)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"kaspi_identity.hashing on {results.cores} cores (load average {load})")
    print(f"profile {OWASP_MINIMUM}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
