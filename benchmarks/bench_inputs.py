"""No input makes a call slow: huge inputs into every text entry point, and the strength worst case.

Run ``python benchmarks/bench_inputs.py [--quick]``. It prints, in one run:

1. **Huge inputs** — 1 MB, 100 MB and 1M × U+FDFA (which NFKC would expand 18×, to 18M code
   points) fed into every entry point of the policy, the hasher and the history that takes
   text: ``PasswordPolicy.check`` (password, confirmation, with and without ``max_length``),
   ``UserInfo`` (each field), ``PasswordHasher.hash`` / ``verify`` / ``verify_and_update`` /
   ``verify_any`` / ``needs_rehash``, ``is_similar``, ``PasswordHistory.fingerprint`` /
   ``record`` / ``validate`` (new and current password, account id). For each: what it
   answered (a violation or the typed error), the slowest of a few calls in ms, and the peak
   memory the call allocated (``tracemalloc``, measured in a separate call so tracing does not
   slow the timed ones). Building the input itself is not counted. The hasher uses the
   ``TESTS_ONLY`` profile, so what is measured is the input handling, not argon2.
2. **Strength worst case at every length** — ``PasswordPolicy(min_strength=3,
   max_length=4096).check(pw, user=...)`` on crafted inputs from 33 to 4096 characters
   (repeats, one character, digits, dates, l33t characters, keyboard walks, sequences, a
   square-free text, passphrases, random text) and the slowest input of a short random search
   at 256 characters, the longest the strength rule's bound runs on. (bench_policy.py measures
   the same rule up to 128 characters against raw zxcvbn.)

Each table ends with the slowest entry. Numbers depend on the machine and its load; the first
line prints the load average.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import string
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from kaspi_identity import KaspiIdentityError, PasswordPolicy, PolicyResult, UserInfo
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.history import PasswordHistory, is_similar
from kaspi_identity.storage.memory import memory_storage

#: The huge inputs: (label, how to build it). Built once per row, outside the timing.
HUGE: tuple[tuple[str, Callable[[], str]], ...] = (
    ("1 MB", lambda: "x" * 1_000_000),
    ("100 MB", lambda: "x" * 100_000_000),
    ("1M x U+FDFA", lambda: "\ufdfa" * 1_000_000),
)

USER = UserInfo(
    username="aigerim.nurlanova",
    email="aigerim.n@example.kz",
    phone="+7 701 234 5678",
    names=("Айгерим", "Нурланова"),
)
HASHER = PasswordHasher(TESTS_ONLY)
GOOD = "Kx9#mPq2Lz-vault"
STORED = HASHER.hash(GOOD)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEY = b"k" * 32


@dataclass(frozen=True)
class Cost:
    """What calls cost: the slowest wall and CPU time of a few (ms), and a traced peak (MiB)."""

    wall_ms: float
    cpu_ms: float
    peak_mib: float


@dataclass(frozen=True)
class Row:
    """One measurement: an entry point fed one input."""

    entry: str
    text: str
    answer: str
    cost: Cost


def answer_of(action: Callable[[], object]) -> str:
    """What ``action`` answered: a result's codes, a value, or the exception type."""
    try:
        value = action()
    except (KaspiIdentityError, ValueError, TypeError) as exc:
        return type(exc).__name__
    if isinstance(value, PolicyResult):
        return ",".join(value.codes) or "ok"
    return repr(value) if value is None or isinstance(value, bool | tuple) else type(value).__name__


def measure(action: Callable[[], object], *, repeats: int, peak: bool = True) -> Cost:
    """The slowest of ``repeats`` calls, wall and CPU, and the traced peak of one more call.

    CPU time is the cost on a busy machine: other processes do not count in it.
    """
    wall = cpu = 0.0
    gc.collect()  # no collection left over from the row before
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        answer_of(action)
        cpu = max(cpu, (time.process_time() - start_cpu) * 1000)
        wall = max(wall, (time.perf_counter() - start) * 1000)
    traced = 0
    if peak:
        gc.collect()
        tracemalloc.start()
        try:
            answer_of(action)
            traced = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return Cost(wall, cpu, traced / 2**20)


def entry_points(text: str) -> list[tuple[str, Callable[[], object]]]:
    """Every text entry point of the policy, the hasher and the history, fed ``text``."""
    default = PasswordPolicy()
    unbounded = PasswordPolicy(max_length=None, min_strength=3, history=6, history_similar=True)
    store = memory_storage().history
    history = PasswordHistory(store, secret_keys=[KEY], hasher=HASHER)
    history.record("acct", GOOD, STORED, keep=6, now=NOW)
    fake_hash = "$argon2id$v=19$m=8,t=1,p=1$" + text
    retyped = (text + "x")[:-1]  # equal, but another object: compared, not short-cut
    return [
        ("policy.check(password)", lambda: default.check(text, user=USER)),
        ("policy.check(password), max_length=None", lambda: unbounded.check(text, user=USER)),
        ("policy.check(good, confirmation=)", lambda: default.check(GOOD, confirmation=text)),
        (
            "policy.check(password, confirmation=retyped)",
            lambda: default.check(text, confirmation=retyped),
        ),
        ("UserInfo(username=)", lambda: UserInfo(username=text)),
        ("UserInfo(email=)", lambda: UserInfo(email=text)),
        ("UserInfo(phone=)", lambda: UserInfo(phone=text)),
        ("UserInfo(names=(...,))", lambda: UserInfo(names=("Айгерим", text))),
        ("PasswordHasher.hash", lambda: HASHER.hash(text)),
        ("PasswordHasher.verify", lambda: HASHER.verify(STORED, text)),
        ("PasswordHasher.verify_and_update", lambda: HASHER.verify_and_update(STORED, text)),
        ("PasswordHasher.verify_any", lambda: HASHER.verify_any(text, [STORED] * 6)),
        ("PasswordHasher.verify(hash=)", lambda: HASHER.verify(fake_hash, GOOD)),
        ("PasswordHasher.needs_rehash(hash=)", lambda: HASHER.needs_rehash(fake_hash)),
        ("is_similar(new, old)", lambda: is_similar(text, GOOD)),
        ("is_similar(old=)", lambda: is_similar(GOOD, text)),
        ("history.fingerprint", lambda: history.fingerprint(text, account_id="acct")),
        ("history.record", lambda: history.record("acct", text, STORED, keep=6, now=NOW)),
        ("history.validate(password)", lambda: history.validate(unbounded, "acct", text)),
        (
            "history.validate(current_password=)",
            lambda: history.validate(unbounded, "acct", GOOD, current_password=text),
        ),
        ("history.validate(account_id=)", lambda: history.validate(unbounded, text, GOOD)),
    ]


def section_huge(repeats: int) -> str:
    """Section 1: every entry point, every huge input."""
    rows: list[Row] = []
    for label, build in HUGE:
        text = build()
        for entry, action in entry_points(text):
            rows.append(Row(entry, label, answer_of(action), measure(action, repeats=repeats)))
        del text
        gc.collect()
    lines = [
        f"1. Huge inputs at every text entry point (slowest of {repeats} calls, wall and CPU; "
        "peak = memory the call allocated, tracemalloc)",
        f"   {'entry point':46} {'input':12} {'answer':22} {'wall ms':>8} {'CPU ms':>8} "
        f"{'peak MiB':>9}",
    ]
    for r in rows:
        lines.append(
            f"   {r.entry:46} {r.text:12} {r.answer[:22]:22} {r.cost.wall_ms:8.3f} "
            f"{r.cost.cpu_ms:8.3f} {r.cost.peak_mib:9.3f}"
        )
    slow = max(rows, key=lambda r: r.cost.cpu_ms)
    big = max(rows, key=lambda r: r.cost.peak_mib)
    lines.append(
        f"   slowest: {slow.cost.cpu_ms:.2f} ms CPU, {slow.cost.wall_ms:.2f} ms wall "
        f"({slow.entry}, {slow.text})"
    )
    lines.append(f"   largest peak: {big.cost.peak_mib:.3f} MiB ({big.entry}, {big.text})")
    return "\n".join(lines)


def _square_free(length: int) -> str:
    """A text over a, b, c with no square (ww) anywhere: zxcvbn's repeat search's worst case."""
    thue = [bin(i).count("1") % 2 for i in range(length + 1)]
    return "".join("abc"[thue[i + 1] - thue[i] + 1] for i in range(length))


def strength_inputs(seed: int = 3) -> list[tuple[str, str]]:
    """Crafted inputs for the strength rule, 33 to 4096 characters: (label, password)."""
    rng = random.Random(seed)
    l33t = "!$%(+0123456789<@[{|"
    printable = string.ascii_letters + string.digits + string.punctuation
    words = ["granite", "pine", "heron", "jetty", "lake", "cloud", "steppe", "kite", "tea"]
    out: list[tuple[str, str]] = []
    for n in (33, 64, 96, 97, 128, 192, 256, 257, 1024, 4096):
        out += [
            (f"'Tr0ub4dour&3' repeated [{n}]", ("Tr0ub4dour&3" * n)[:n]),
            (f"'a' * n [{n}]", "a" * n),
            (f"digits 0-9 repeated [{n}]", ("0123456789" * n)[:n]),
            (f"dates 01.01.1990 repeated [{n}]", ("01.01.1990" * n)[:n]),
            (f"20 l33t chars repeated [{n}]", (l33t * n)[:n]),
            (f"random l33t chars [{n}]", "".join(rng.choice(l33t) for _ in range(n))),
            (f"keyboard walk [{n}]", ("qwertyuiop[]asdfghjkl;'zxcvbnm,./" * n)[:n]),
            (f"sequence [{n}]", ("abcdefghijklmnopqrstuvwxyz" * n)[:n]),
            (f"square-free abc [{n}]", _square_free(n)),
            (f"passphrase [{n}]", " ".join(f"{w}{i}" for i, w in enumerate(words * n))[:n]),
            (f"random printable [{n}]", "".join(rng.choice(printable) for _ in range(n))),
        ]
    return out


def search_slowest(
    check: Callable[[str], object], *, length: int, budget_s: float, seed: int = 5
) -> tuple[str, float]:
    """The slowest input of ``check`` a random search over patterned text finds."""
    rng = random.Random(seed)
    pools = ("!$%(+0123456789<@[{|aeiolstbgxz", string.digits + "./-", "abcdefghij", "qwerty")
    end = time.perf_counter() + budget_s
    best_text, best_ms = "", 0.0
    while time.perf_counter() < end:
        pool = rng.choice(pools)
        period = rng.choice((2, 3, 5, 8, 13, 40, length))
        body = "".join(rng.choice(pool) for _ in range(period))
        text = (body * (length // period + 1))[:length]
        start = time.perf_counter()
        check(text)
        ms = (time.perf_counter() - start) * 1000
        if ms > best_ms:
            best_text, best_ms = text, ms
    return best_text, best_ms


def section_strength(repeats: int, search_s: float) -> str:
    """Section 2: the strength rule's worst case at every length."""
    policy = PasswordPolicy(min_strength=3, max_length=4096)
    policy.check("x" * 200, user=USER)  # load the bound's dictionary index first
    inputs = strength_inputs()
    text, _ = search_slowest(lambda p: policy.check(p, user=USER), length=256, budget_s=search_s)
    inputs.append((f"slowest of a search [256]: {text[:20]!r}...", text))
    rows: list[tuple[str, str, Cost]] = []
    for label, password in inputs:

        def action(password: str = password) -> object:
            return policy.check(password, user=USER)

        rows.append((label, answer_of(action), measure(action, repeats=repeats, peak=False)))
    lines = [
        "2. Strength rule: PasswordPolicy(min_strength=3, max_length=4096).check(pw, user=...), "
        f"slowest of {repeats} calls",
        f"   {'input':56} {'answer':14} {'wall ms':>8} {'CPU ms':>8}",
    ]
    lines += [
        f"   {label[:56]:56} {answer[:14]:14} {c.wall_ms:8.2f} {c.cpu_ms:8.2f}"
        for label, answer, c in rows
    ]
    worst = max(rows, key=lambda r: r[2].cpu_ms)
    verdict = f"   worst: {worst[2].cpu_ms:.1f} ms CPU, {worst[2].wall_ms:.1f} ms wall ({worst[0]})"
    if worst[2].cpu_ms > 50:
        verdict += "  <-- ABOVE 50 ms: not 'tens of milliseconds'"
    lines.append(verdict)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print both sections; the exit status is 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls, a shorter search")
    args = parser.parse_args(argv)
    repeats, search_s = (2, 2.0) if args.quick else (5, 15.0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(section_huge(repeats))
    print()
    print(section_strength(repeats, search_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
