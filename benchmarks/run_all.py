"""Every benchmark in one run: ``python benchmarks/run_all.py [--quick]``.

Runs each script in its own interpreter, one after the other (so they do not disturb each
other), and prints their tables in order: policy check vs Django and password_strength and
the worst case; history N=6 vs the one-hash lower bound; hashing and the memory bound of
concurrent hashes; token issue+verify vs Django, token length and import time; storage
operations per second and round trips per operation (when the servers, the Redis Cluster
included, are configured); flows per second on SQLite, Redis and PostgreSQL, both faces;
Welch's t between known and unknown identifiers
in the account flows (timing enumeration); huge inputs at every text entry point and the
strength rule's worst case at every length; the breached-password filter vs a Bloom filter.
Results from an idle machine are recorded in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS: tuple[tuple[str, list[str], list[str]], ...] = (
    ("bench_policy.py", ["--quick"], []),
    ("bench_history.py", ["--runs", "3"], []),
    ("bench_hashing.py", ["--runs", "1"], []),
    ("bench_tokens.py", ["--quick"], []),
    ("bench_storage.py", ["--quick"], []),
    ("bench_flows.py", ["--quick"], []),
    ("bench_enumeration.py", ["--quick"], []),
    ("bench_inputs.py", ["--quick"], []),
    ("bench_breached.py", ["--lines", "1000000"], []),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every script; the exit status is the number of scripts that failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="the short variant of each")
    args = parser.parse_args(argv)
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor() or "unknown CPU",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    failed = 0
    for name, quick, full in SCRIPTS:
        path = HERE / name
        if not path.exists():
            continue
        print(f"\n{'=' * 78}\n{name}\n{'=' * 78}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(
            [sys.executable, str(path), *(quick if args.quick else full)]
        ).returncode
        print(f"({name}: {time.perf_counter() - start:.0f} s, exit {code})", flush=True)
        failed += code != 0
    return failed


if __name__ == "__main__":
    sys.exit(main())
