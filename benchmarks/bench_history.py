"""Benchmark kaspi_identity.history: what a password-history check costs on this host.

Run ``python benchmarks/bench_history.py``. With the default hashing profile (OWASP_MINIMUM)
and N = 6 recorded passwords in the in-memory store, it reports side by side:

* one argon2id hash, and the lower bound ``hash time * ceil(N / cores)`` for verifying a
  password against N hashes on this machine;
* ``PasswordHistory.validate`` for a new password that matches nothing (the worst case for
  reuse: all N hashes are verified), with ``history_similar`` off and on, each as a ratio to
  the lower bound; and what the similarity check adds (measured as paired differences, so
  machine noise mostly cancels out);
* the same with the current password passed (the change-password flow's direct comparison);
* what the similarity check costs isolated from argon2 (the same comparison with the
  TESTS_ONLY profile, whose verifications are nearly free);
* the parts on their own: the stateless policy check and one fingerprint computation.

Every figure is the median of several repeats. The helpers are importable.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from kaspi_identity.hashing import OWASP_MINIMUM, TESTS_ONLY, HashProfile, PasswordHasher
from kaspi_identity.history import PasswordHistory
from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.storage.memory import memory_storage

ACCOUNT = "bench-account"
#: A new password similar to none of the recorded ones and equal to none.
PROBE = "Zebra-Quilt-7490"
#: What the user types as the current password in the change-password flow.
CURRENT = "Harbor#Lantern#2024"
KEY = bytes(range(32))
_WORDS = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel")


def median_seconds(action: Callable[[], object], runs: int, *, batch: int = 1) -> float:
    """Return the median wall-clock seconds of one call of ``action``.

    Each of the ``runs`` samples times ``batch`` calls in a row and divides, so actions of a
    few microseconds are timed above the clock's resolution.
    """
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(batch):
            action()
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples)


def recorded_passwords(count: int) -> list[str]:
    """``count`` distinct passwords, none similar to another, to PROBE or to CURRENT."""
    return [
        f"{_WORDS[i % len(_WORDS)]}{i}!Recorded" + "xyzw"[: i // len(_WORDS)] for i in range(count)
    ]


def make_history(
    count: int, profile: HashProfile = OWASP_MINIMUM
) -> tuple[PasswordHistory, PasswordHasher]:
    """A PasswordHistory on a fresh memory store holding ``count`` recorded passwords."""
    hasher = PasswordHasher(profile)
    history = PasswordHistory(memory_storage().history, secret_keys=[KEY], hasher=hasher)
    now = datetime.now(timezone.utc)
    for password in recorded_passwords(count):
        history.record(ACCOUNT, password, hasher.hash(password), keep=count, now=now)
    return history, hasher


@dataclasses.dataclass(frozen=True)
class Results:
    """Everything one benchmark run measured, in seconds."""

    cores: int
    concurrency: int
    count: int
    hash_seconds: float
    exact_seconds: float
    similar_seconds: float
    similar_added_seconds: float
    current_seconds: float
    similarity_only_seconds: float
    policy_seconds: float
    fingerprint_seconds: float

    @property
    def lower_bound_seconds(self) -> float:
        """One hash time times the rounds the cores need for ``count`` verifications."""
        return self.hash_seconds * math.ceil(self.count / self.cores)


def _check_probe(history: PasswordHistory, policies: Sequence[PasswordPolicy]) -> None:
    """Raise RuntimeError unless the probe passes every policy (so nothing short-circuits)."""
    for policy in policies:
        # Also starts the verification threads, outside the timings.
        result = history.validate(policy, ACCOUNT, PROBE, current_password=CURRENT)
        if not result.ok:
            raise RuntimeError(f"the probe password was rejected: {result.codes}")


def similarity_cost(count: int = 6, runs: int = 7, batch: int = 200) -> float:
    """Return the seconds the similarity check adds to ``validate``, isolated from argon2.

    Both sides run with the TESTS_ONLY profile (8 KiB, one pass), whose verifications cost
    almost nothing, so the difference is the fingerprint and tag comparisons alone.
    """
    history, _ = make_history(count, TESTS_ONLY)
    exact = PasswordPolicy(history=count)
    similar = PasswordPolicy(history=count, history_similar=True)
    _check_probe(history, (exact, similar))
    differences = []
    for _ in range(runs):
        with_similar = median_seconds(
            lambda: history.validate(similar, ACCOUNT, PROBE), 1, batch=batch
        )
        without = median_seconds(lambda: history.validate(exact, ACCOUNT, PROBE), 1, batch=batch)
        differences.append(with_similar - without)
    return statistics.median(differences)


def run(profile: HashProfile = OWASP_MINIMUM, count: int = 6, runs: int = 7) -> Results:
    """Take every measurement and return them together.

    One hash, the exact check and the exact + similar check are timed in turn within each
    repeat, so a burst of load from elsewhere lands on all of them rather than on one; the
    similarity's share is the median of the paired differences.

    Raises:
        RuntimeError: the probe password is reported as reused or similar (a broken setup).
    """
    history, hasher = make_history(count, profile)
    exact = PasswordPolicy(history=count)
    similar = PasswordPolicy(history=count, history_similar=True)
    _check_probe(history, (exact, similar))
    hashes: list[float] = []
    exacts: list[float] = []
    similars: list[float] = []
    currents: list[float] = []
    for _ in range(runs):
        hashes.append(median_seconds(lambda: hasher.hash(PROBE), 1))
        exacts.append(median_seconds(lambda: history.validate(exact, ACCOUNT, PROBE), 1))
        similars.append(median_seconds(lambda: history.validate(similar, ACCOUNT, PROBE), 1))
        currents.append(
            median_seconds(
                lambda: history.validate(similar, ACCOUNT, PROBE, current_password=CURRENT), 1
            )
        )
    return Results(
        cores=os.cpu_count() or 1,
        concurrency=hasher._max_concurrency,
        count=count,
        hash_seconds=statistics.median(hashes),
        exact_seconds=statistics.median(exacts),
        similar_seconds=statistics.median(similars),
        similar_added_seconds=statistics.median(
            s - e for s, e in zip(similars, exacts, strict=True)
        ),
        current_seconds=statistics.median(currents),
        similarity_only_seconds=similarity_cost(count, runs),
        policy_seconds=median_seconds(lambda: similar.check(PROBE), runs, batch=200),
        fingerprint_seconds=median_seconds(
            lambda: history.fingerprint(PROBE, account_id="bench"), runs, batch=2000
        ),
    )


def format_table(results: Results, profile: HashProfile = OWASP_MINIMUM) -> str:
    """Render ``results`` as a short plain-text table."""
    bound = results.lower_bound_seconds
    n = results.count
    exact = results.exact_seconds

    def ratio(seconds: float) -> str:
        return f"{seconds / bound:.2f}x bound"

    added, alone = results.similar_added_seconds, results.similarity_only_seconds
    rows = [
        ("measurement", "value", "ratio"),
        (f"hash, m={profile.memory_cost} t={profile.time_cost}", _ms(results.hash_seconds), ""),
        (f"lower bound: hash x ceil({n}/{results.cores} cores)", _ms(bound), "1.00x"),
        (f"validate N={n}, exact only (reuse)", _ms(exact), ratio(exact)),
        (
            f"validate N={n}, exact + similar",
            _ms(results.similar_seconds),
            ratio(results.similar_seconds),
        ),
        ("  similar adds, end to end (paired median)", _ms(added), f"{added / exact:.1%} of exact"),
        (
            f"  similar adds, isolated (N={n}, no argon2)",
            _us(alone),
            f"{alone / exact:.3%} of exact",
        ),
        (
            f"validate N={n}, exact + similar + current",
            _ms(results.current_seconds),
            ratio(results.current_seconds),
        ),
        ("policy check alone", _us(results.policy_seconds), ""),
        ("fingerprint alone (2 HMAC-SHA256 tags)", _us(results.fingerprint_seconds), ""),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        f"{label:<{widths[0]}}  {value:>{widths[1]}}  {note:<{widths[2]}}".rstrip()
        for label, value, note in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; the exit status is 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="timings per measurement")
    parser.add_argument("--count", type=int, default=6, help="recorded passwords (N)")
    args = parser.parse_args(argv)
    results = run(count=args.count, runs=args.runs)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"kaspi_identity.history on {results.cores} cores (load average {load}), "
        f"verify_any max_concurrency={results.concurrency}, memory store"
    )
    print(f"profile {OWASP_MINIMUM}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
