"""Account enumeration by timing: dudect-style Welch t-tests on the account flows.

Run ``python benchmarks/bench_enumeration.py [--n N] [--quick] [--check]``. For each flow of
:class:`~kaspi_identity.services.IdentityService` that takes an identifier, on the memory
and the SQLite adapter, it times calls with a **known** identifier (an account has it) and
an **unknown** one (no account has it) and reports Welch's t statistic between the two
classes, as dudect does (Reparaz, Balasch, Verbauwhede, "Dude, is my code constant time?",
DATE 2017):

* ``reset`` -- ``request_password_reset(email, client_key=...)``, a registered e-mail vs an
  unregistered one;
* ``sms`` -- ``request_sms_reset(phone, client_key=...)``, a registered Kazakh mobile
  (+7701...) vs an unregistered one (+7747...);
* ``login`` -- ``authenticate(email, wrong_password, client_key=...)`` with the default
  argon2 profile (``PasswordHasher()``, OWASP_MINIMUM): a registered e-mail with a wrong
  password vs an unregistered e-mail. Each call costs one argon2 verification (~30 ms), so
  this flow takes most of the run.

Method. One warm-up phase (both classes, discarded), then n samples of each class in an
order shuffled with ``random.Random(seed)`` (the seed is printed; ``--seed`` repeats it).
Only the call is timed, with ``time.perf_counter_ns``. Between samples, outside the timed
region and identically for both classes, the ``ManualClock`` is advanced by one second, the
outbox is emptied, the result is checked (a refusal is not the path under test), and for the
log-in flow the known account's failure count is cleared (``clear_login_failures``, called
before every sample whatever its class), so back-off and lockout never start. Every rate
limit is set huge and the SMS cooldown to 1 µs for the same reason. Both classes share one
client key, and the two identifiers have the same length.

The t statistic is reported on all samples and on the samples below the 90th percentile of
the pooled timings (``--crop``), as dudect crops the slow tail that scheduling and I/O
noise add. dudect reads |t| > 4.5 as evidence of a leak; the verdict column says ``LEAK``
at |t| >= 4.5. The exit status is 0 (a measurement, not a test) unless ``--check`` is given,
then 1 if any |t| >= 4.5.

``--breakdown`` also times each collaborator the service calls (storage methods, token
signing, rendering, delivery, hashing, audit) per sample through thin proxies, and prints
per flow the mean µs of each piece per class and its own t, to find where a difference
comes from. The proxies add their own overhead: use it to attribute, not to quote.

The SQLite adapter runs on a temporary file with its default settings
(``synchronous=FULL``). Both adapters hold ``--population`` other accounts besides the
known one, so the look-ups run against a non-trivial table.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import kaspi_identity.services._service as service_module
from kaspi_identity.delivery import Outbox
from kaspi_identity.hashing import PasswordHasher
from kaspi_identity.services import (
    AuditEvent,
    IdentityService,
    IdentitySettings,
    LoginResult,
    ManualClock,
    RateLimit,
    ResetRequestResult,
)
from kaspi_identity.storage import (
    AccountStore,
    NewAccount,
    OneTimeCodeStore,
    RateLimiter,
    Storage,
    TokenLedger,
)
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage
from kaspi_identity.tokens import TokenService

THRESHOLD = 4.5
FLOWS = ("reset", "sms", "login")
ADAPTERS = ("memory", "sqlite")
DEFAULT_N = 1000
QUICK_N = 100
KEY = hashlib.sha256(b"kaspi-identity benchmarks: enumeration key").digest()
CLIENT = "203.0.113.7"
PASSWORD = "Tr0ub4dor&3x"
WRONG_PASSWORD = "Tr0ub4dor&3y"
KNOWN_EMAIL = "aliya@example.kz"
UNKNOWN_EMAIL = "bolat@example.kz"
KNOWN_PHONE = "+77011234567"
UNKNOWN_PHONE = "+77471234567"
HUGE = RateLimit(10**9, timedelta(hours=1))
KNOWN, UNKNOWN = "known", "unknown"


def settings() -> IdentitySettings:
    """Settings under which no sample is ever refused by a limit."""
    return IdentitySettings(
        secret_keys=(KEY,),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        reset_per_identifier=HUGE,
        reset_per_client=HUGE,
        login_per_client=HUGE,
        login_per_identifier=HUGE,
        register_per_client=HUGE,
        register_per_identifier=HUGE,
        sms_per_phone_daily=10**9,
        sms_per_client_daily=10**9,
        sms_cooldown=timedelta(microseconds=1),
    )


# -- per-piece timing (--breakdown) -----------------------------------------------------------


class Recorder:
    """Adds up the time spent in each probed piece during the current sample."""

    def __init__(self) -> None:
        self.current: dict[str, int] = defaultdict(int)

    def reset(self) -> dict[str, int]:
        """Return the pieces of the sample that just ended and start a new one."""
        done, self.current = self.current, defaultdict(int)
        return done

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, with its time added to ``name``."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                self.current[name] += time.perf_counter_ns() - start

        return wrapper


class Probe:
    """Stands in for an object; each method call is timed under ``label.method``."""

    def __init__(self, target: object, label: str, recorder: Recorder) -> None:
        self._target = target
        self._label = label
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not name.startswith("__"):
            return self._recorder.timed(f"{self._label}.{name}", value)
        return value


class NullAudit:
    """An audit sink that drops every event (the service's default does the same)."""

    def emit(self, event: AuditEvent) -> None:
        pass


@contextmanager
def probed_renderers(recorder: Recorder | None) -> Iterator[None]:
    """Time the service's ``render_email`` and ``render_sms`` (module globals) while open."""
    if recorder is None:
        yield
        return
    names = ("render_email", "render_sms")
    originals = {name: getattr(service_module, name) for name in names}
    try:
        for name, original in originals.items():
            setattr(service_module, name, recorder.timed(name, original))
        yield
    finally:
        for name, original in originals.items():
            setattr(service_module, name, original)


# -- the services under test ------------------------------------------------------------------


@dataclass
class Bench:
    """One service on fresh storage, with its known account."""

    service: IdentityService
    storage: Storage
    outbox: Outbox
    clock: ManualClock
    account_id: str
    recorder: Recorder | None


def build(adapter: str, directory: Path, population: int, recorder: Recorder | None) -> Bench:
    """A service on fresh ``adapter`` storage with the known account and ``population`` more."""
    if adapter == "sqlite":
        base = sqlite_storage(directory / f"enumeration-{secrets.token_hex(4)}.sqlite3")
    else:
        base = memory_storage()
    hasher = PasswordHasher()
    clock = ManualClock()
    known = base.accounts.create(
        NewAccount(
            email=KNOWN_EMAIL,
            phone=KNOWN_PHONE,
            password_hash=hasher.hash(PASSWORD),
            email_confirmed=True,
        ),
        now=clock.now(),
    )
    filler = hasher.hash(secrets.token_urlsafe(16))
    for index in range(population):
        base.accounts.create(
            NewAccount(
                email=f"user{index:05d}@example.kz",
                phone=f"+7702{index:07d}",
                password_hash=filler,
                email_confirmed=True,
            ),
            now=clock.now(),
        )
    outbox = Outbox()
    storage = base
    email_sender: Outbox = outbox
    audit: object = NullAudit()
    if recorder is not None:
        storage = Storage(
            accounts=cast(AccountStore, Probe(base.accounts, "accounts", recorder)),
            history=base.history,
            ledger=cast(TokenLedger, Probe(base.ledger, "ledger", recorder)),
            codes=cast(OneTimeCodeStore, Probe(base.codes, "codes", recorder)),
            rate_limits=cast(RateLimiter, Probe(base.rate_limits, "rate_limits", recorder)),
        )
        email_sender = cast(Outbox, Probe(outbox, "sender", recorder))
        audit = Probe(NullAudit(), "audit", recorder)
    service = IdentityService(
        storage,
        settings(),
        email_sender=email_sender,
        sms_sender=email_sender,
        hasher=hasher
        if recorder is None
        else cast(PasswordHasher, Probe(hasher, "hasher", recorder)),
        clock=clock,
        audit=cast(NullAudit, audit),
    )
    if recorder is not None:
        service.tokens = cast(TokenService, Probe(service.tokens, "tokens", recorder))
    return Bench(service, base, outbox, clock, known.id, recorder)


def flow_call(flow: str, bench: Bench) -> tuple[Callable[[str], object], str, str]:
    """The call under test for ``flow``, its known identifier and its unknown one."""
    service = bench.service
    if flow == "reset":
        return (
            lambda identifier: service.request_password_reset(identifier, client_key=CLIENT),
            KNOWN_EMAIL,
            UNKNOWN_EMAIL,
        )
    if flow == "sms":
        return (
            lambda phone: service.request_sms_reset(phone, client_key=CLIENT),
            KNOWN_PHONE,
            UNKNOWN_PHONE,
        )
    if flow == "login":
        return (
            lambda identifier: service.authenticate(identifier, WRONG_PASSWORD, client_key=CLIENT),
            KNOWN_EMAIL,
            UNKNOWN_EMAIL,
        )
    raise ValueError(f"unknown flow {flow!r}")


def check_result(flow: str, result: object) -> None:
    """Fail loudly when a sample was refused: a refusal is not the path under test."""
    if flow == "login":
        if not isinstance(result, LoginResult) or result.reason != "invalid":
            raise RuntimeError(f"log-in sample answered {result!r}, not 'invalid'")
    elif not isinstance(result, ResetRequestResult) or not result.accepted:
        raise RuntimeError(f"{flow} sample answered {result!r}, not accepted")


def between(flow: str, bench: Bench) -> None:
    """The untimed bookkeeping after every sample, the same whatever its class."""
    bench.clock.advance(seconds=1)
    bench.outbox.clear()
    if flow == "login":
        bench.storage.accounts.clear_login_failures(bench.account_id)  # not through a probe


# -- measurement and statistics ---------------------------------------------------------------


@dataclass
class Samples:
    """The timings (ns) of each class, and the probed pieces of each sample if asked."""

    known: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    pieces: dict[str, list[dict[str, int]]] = field(
        default_factory=lambda: {KNOWN: [], UNKNOWN: []}
    )


def measure(flow: str, bench: Bench, n: int, warmup: int, rng: random.Random) -> Samples:
    """Warm up, then time ``n`` calls of each class in shuffled order."""
    call, known, unknown = flow_call(flow, bench)
    recorder = bench.recorder
    for index in range(2 * warmup):
        check_result(flow, call(known if index % 2 == 0 else unknown))
        between(flow, bench)
    if recorder is not None:
        recorder.reset()
    labels = [KNOWN] * n + [UNKNOWN] * n
    rng.shuffle(labels)
    samples = Samples()
    clock = time.perf_counter_ns
    for label in labels:
        identifier = known if label == KNOWN else unknown
        if recorder is not None:
            recorder.reset()
        start = clock()
        result = call(identifier)
        elapsed = clock() - start
        (samples.known if label == KNOWN else samples.unknown).append(elapsed)
        if recorder is not None:
            samples.pieces[label].append(recorder.reset())
        check_result(flow, result)
        between(flow, bench)
    return samples


def welch_t(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's t statistic of ``mean(a) - mean(b)`` (positive: ``a`` is slower)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    spread = statistics.variance(a) / len(a) + statistics.variance(b) / len(b)
    difference = statistics.fmean(a) - statistics.fmean(b)
    if spread == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / math.sqrt(spread)


def percentile(values: Sequence[int], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (linear interpolation)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cropped(samples: Samples, fraction: float) -> tuple[list[int], list[int], float]:
    """Both classes below the ``fraction`` quantile of the pooled timings, and that cut."""
    cut = percentile([*samples.known, *samples.unknown], fraction)
    return (
        [value for value in samples.known if value < cut],
        [value for value in samples.unknown if value < cut],
        cut,
    )


@dataclass(frozen=True)
class Row:
    """One line of the final table."""

    flow: str
    adapter: str
    n: int
    known_us: float
    unknown_us: float
    t_all: float
    t_cropped: float
    kept: tuple[int, int]
    seconds: float

    @property
    def worst(self) -> float:
        """The larger |t| of the two."""
        return max(abs(self.t_all), abs(self.t_cropped))

    @property
    def verdict(self) -> str:
        """``ok`` under the threshold, else ``LEAK``."""
        return f"ok (|t| < {THRESHOLD})" if self.worst < THRESHOLD else "LEAK"


def summarise(flow: str, adapter: str, samples: Samples, crop: float, seconds: float) -> Row:
    """The table row of one measurement."""
    known, unknown, _ = cropped(samples, crop)
    return Row(
        flow=flow,
        adapter=adapter,
        n=len(samples.known),
        known_us=statistics.fmean(samples.known) / 1000,
        unknown_us=statistics.fmean(samples.unknown) / 1000,
        t_all=welch_t(samples.known, samples.unknown),
        t_cropped=welch_t(known, unknown),
        kept=(len(known), len(unknown)),
        seconds=seconds,
    )


def format_table(rows: Sequence[Row], crop: float) -> str:
    """The final table, plain text."""
    header = (
        "flow",
        "adapter",
        "n",
        "mean known µs",
        "mean unknown µs",
        "t (all)",
        f"t (<p{crop * 100:.0f})",
        "verdict",
    )
    body = [
        (
            row.flow,
            row.adapter,
            str(row.n),
            f"{row.known_us:.1f}",
            f"{row.unknown_us:.1f}",
            f"{row.t_all:+.2f}",
            f"{row.t_cropped:+.2f}",
            row.verdict,
        )
        for row in rows
    ]
    return _table(header, body, frozenset({0, 1, len(header) - 1}))


def format_breakdown(samples: Samples) -> str:
    """Mean µs per sample of each probed piece, per class, with its own t."""
    names = sorted({name for group in samples.pieces.values() for piece in group for name in piece})
    header = ("piece", "known µs", "unknown µs", "known - unknown", "t")
    body = []
    for name in [*names, "(rest of the call)"]:
        known = [
            _piece(sample, name, total)
            for sample, total in zip(samples.pieces[KNOWN], samples.known, strict=True)
        ]
        unknown = [
            _piece(sample, name, total)
            for sample, total in zip(samples.pieces[UNKNOWN], samples.unknown, strict=True)
        ]
        k, u = statistics.fmean(known), statistics.fmean(unknown)
        body.append(
            (name, f"{k:.1f}", f"{u:.1f}", f"{k - u:+.1f}", f"{welch_t(known, unknown):+.2f}")
        )
    return _table(header, body)


def _piece(sample: dict[str, int], name: str, total: int) -> float:
    if name == "(rest of the call)":
        return (total - sum(sample.values())) / 1000
    return sample.get(name, 0) / 1000


def _table(
    header: Sequence[str], body: Sequence[Sequence[str]], left: frozenset[int] = frozenset({0})
) -> str:
    """Columns in ``left`` are aligned left, the others right."""
    rows = [header, *body]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if column in left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def machine_line(when: str) -> str:
    """The load average and CPU count, for the record."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{when}: load average {load} (1, 5, 15 min), {os.cpu_count()} CPUs"


def run(
    flows: Sequence[str],
    adapters: Sequence[str],
    *,
    n: int,
    warmup: int,
    seed: int,
    crop: float,
    population: int,
    breakdown: bool,
) -> list[Row]:
    """Measure every flow on every adapter; print each result as it comes."""
    rng = random.Random(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kaspi-enumeration-") as directory:
        for flow in flows:
            for adapter in adapters:
                recorder = Recorder() if breakdown else None
                bench = build(adapter, Path(directory), population, recorder)
                try:
                    with probed_renderers(recorder):
                        start = time.perf_counter()
                        samples = measure(flow, bench, n, warmup, rng)
                        seconds = time.perf_counter() - start
                finally:
                    bench.storage.close()
                row = summarise(flow, adapter, samples, crop, seconds)
                rows.append(row)
                print(
                    f"{flow:<5} {adapter:<6} n={row.n}: known {row.known_us:.1f} µs, "
                    f"unknown {row.unknown_us:.1f} µs, t={row.t_all:+.2f} all, "
                    f"t={row.t_cropped:+.2f} below p{crop * 100:.0f} "
                    f"(kept {row.kept[0]}/{row.kept[1]}) -> {row.verdict} "
                    f"[{seconds:.0f} s]",
                    flush=True,
                )
                if breakdown:
                    print(format_breakdown(samples), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement and print the table; see the module docstring for the status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=None, help=f"samples per class ({DEFAULT_N})")
    parser.add_argument("--quick", action="store_true", help=f"n = {QUICK_N}")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per class")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffle")
    parser.add_argument("--crop", type=float, default=0.9, help="pooled quantile to crop at")
    parser.add_argument("--population", type=int, default=200, help="other accounts stored")
    parser.add_argument("--flows", default=",".join(FLOWS), help="comma-separated subset")
    parser.add_argument("--adapters", default=",".join(ADAPTERS), help="comma-separated subset")
    parser.add_argument("--breakdown", action="store_true", help="time the pieces of each call")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if any |t| >= {THRESHOLD}")
    args = parser.parse_args(argv)
    n = args.n if args.n is not None else QUICK_N if args.quick else DEFAULT_N
    flows = [name.strip() for name in args.flows.split(",") if name.strip()]
    adapters = [name.strip() for name in args.adapters.split(",") if name.strip()]
    if n < 2 or not 0 < args.crop < 1:
        parser.error("--n must be at least 2 and --crop between 0 and 1")
    if unknown := sorted(set(flows) - set(FLOWS)) + sorted(set(adapters) - set(ADAPTERS)):
        parser.error(f"unknown flow or adapter: {', '.join(unknown)}")
    warmup = args.warmup if args.warmup is not None else max(10, n // 10)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(machine_line("start"))
    print(
        f"n={n} per class, warm-up {warmup} per class, seed {seed}, "
        f"population {args.population}, Python {sys.version.split()[0]}",
        flush=True,
    )
    rows = run(
        flows,
        adapters,
        n=n,
        warmup=warmup,
        seed=seed,
        crop=args.crop,
        population=args.population,
        breakdown=args.breakdown,
    )
    print(machine_line("end"))
    print(f"\nWelch's t, known - unknown (positive: known is slower); |t| >= {THRESHOLD} is a leak")
    print(format_table(rows, args.crop))
    leaks = [row for row in rows if row.worst >= THRESHOLD]
    return 1 if args.check and leaks else 0


if __name__ == "__main__":
    sys.exit(main())
