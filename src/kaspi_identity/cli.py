"""The ``kaspi-identity`` command: demo, portal, check, describe, hash, breached, outbox, ….

Exit status: 0 success (password accepted), 1 password rejected or mismatch, 2 usage or
configuration error, or input that ended or was interrupted (Ctrl-D, Ctrl-C) — said on
standard error. Passwords are read from a prompt without echo, or from standard input
when it is not a terminal (one password per line); they are never taken as arguments, which
would leave them in shell history and the process list. Prompts and what the user is told
follow ``--lang``; see docs/cli.md.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from kaspi_identity._errors import KaspiIdentityError, PolicyConfigError, StorageError
from kaspi_identity.hashing import PROFILES, HashProfile, PasswordHasher, _time_one_hash, calibrate
from kaspi_identity.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES, render
from kaspi_identity.policy import (
    DEVIATION_STANDARDS,
    PRESET_NAMES,
    BreachedFilter,
    BuildProgress,
    Deviation,
    PasswordPolicy,
    UserInfo,
    build_breached_filter,
)
from kaspi_identity.storage._outbox import OUTBOX_STATUSES

__all__ = ["main"]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2

# Each calibration candidate is timed this many times (the median counts); the progress
# lines say "run 2/3".
_CALIBRATE_RUNS = 3
_DISTRIBUTION = "kaspi-identity"


class _UsageError(Exception):
    """A problem with the command line or its input (exit status 2)."""


class _VersionRequested(Exception):
    """``--version`` was given: print the version instead of running a command."""


class _VersionAction(argparse.Action):
    """``--version``: stops parsing (no command needed) so ``main`` prints to its stdout."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help")
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        raise _VersionRequested


def _version() -> str:
    """The installed distribution's version; the source tree's when it is not installed."""
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        from kaspi_identity import __version__

        return __version__


def _add_lang_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lang",
        default=DEFAULT_LANGUAGE,
        choices=SUPPORTED_LANGUAGES,
        help="language of prompts and messages (default: %(default)s)",
    )


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=PRESET_NAMES, help="a named policy")
    group.add_argument("--policy", metavar="FILE", help="a TOML policy file ([password] table)")
    _add_lang_option(parser)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaspi-identity",
        description="Password policy, hashing and recovery toolkit.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the package version and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check", help="check a password against a policy (read from a prompt or stdin)"
    )
    _add_policy_options(check)
    check.add_argument("--username", help="the user's login name (personal-info rule)")
    check.add_argument("--email", help="the user's e-mail address (personal-info rule)")
    check.add_argument("--phone", help="the user's phone number (personal-info rule)")
    check.add_argument(
        "--name", action="append", default=[], help="a name of the user (repeatable)"
    )

    describe = commands.add_parser("describe", help="print a policy's requirements")
    _add_policy_options(describe)
    describe.add_argument(
        "--deviations",
        action="store_true",
        help="also print where the policy departs from NIST SP 800-63B-4 and OWASP ASVS 5.0"
        " (in English)",
    )
    describe.add_argument(
        "--json",
        action="store_true",
        help="print the policy document (policy.document()) as JSON instead of the lines",
    )
    describe.add_argument(
        "--multi-factor",
        action="store_true",
        help="with --deviations: the password is used only with a second factor (NIST then"
        " asks at least 8 characters, not 15)",
    )

    hash_ = commands.add_parser("hash", help="hash a password with argon2id")
    hash_.add_argument(
        "--profile",
        default="owasp-minimum",
        choices=sorted(PROFILES),
        help="argon2id parameter profile (default: owasp-minimum)",
    )
    _add_lang_option(hash_)

    demo = commands.add_parser(
        "demo", help="run the whole account lifecycle on a SQLite file, narrated"
    )
    _add_policy_options(demo)
    demo.add_argument(
        "--db", metavar="PATH", help="SQLite file to use (default: a temporary one, removed after)"
    )

    portal = commands.add_parser(
        "portal",
        help="serve the example portal's pages on SQLite with a dev mailbox (needs [portal] extra)",
    )
    group = portal.add_mutually_exclusive_group()
    group.add_argument(
        "--preset", choices=PRESET_NAMES, help="a named policy (default: kz-procurement)"
    )
    group.add_argument("--policy", metavar="FILE", help="a TOML policy file ([password] table)")
    portal.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    portal.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    portal.add_argument("--db", metavar="PATH", help="SQLite file (default: a temporary one)")

    compliance = commands.add_parser(
        "compliance",
        help="prove a policy with property checks and print a report (needs [test] extra)",
    )
    group = compliance.add_mutually_exclusive_group(required=True)
    group.add_argument("--preset", choices=PRESET_NAMES, help="a named policy")
    group.add_argument("--policy", metavar="FILE", help="a TOML policy file ([password] table)")
    compliance.add_argument(
        "--examples", type=int, default=200, help="examples per property (default 200)"
    )
    compliance.add_argument(
        "--seed", type=int, default=0, help="random seed, for a reproducible report (default 0)"
    )
    compliance.add_argument(
        "--multi-factor",
        action="store_true",
        help="the password is used only with a second factor (for the deviation notes)",
    )

    cal = commands.add_parser("calibrate", help="pick argon2id parameters for a target time")
    cal.add_argument(
        "--target-ms",
        type=float,
        default=500.0,
        help="target hash time in milliseconds (default: %(default)g)",
    )
    cal.add_argument(
        "--memory-kib", type=int, default=19456, help="memory per hash in KiB (default 19456)"
    )
    cal.add_argument("--parallelism", type=int, default=1, help="argon2 lanes (default 1)")
    _add_lang_option(cal)

    breached = commands.add_parser(
        "breached", help="build or verify a filter of breached passwords (needs [breached] extra)"
    )
    steps = breached.add_subparsers(dest="step", required=True, metavar="STEP")
    build = steps.add_parser(
        "build", help="build a filter file from Have I Been Pwned's SHA1HEX:COUNT files"
    )
    build.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="files (plain or gzip) or directories of range files",
    )
    build.add_argument("-o", "--output", required=True, metavar="FILE", help="the filter file")
    build.add_argument(
        "--min-count",
        type=int,
        default=1,
        metavar="N",
        help="leave out hashes seen fewer than N times (default 1)",
    )
    build.add_argument(
        "--tmp-dir", metavar="DIR", help="temporary files, 8 bytes a line (default: beside FILE)"
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    verify = steps.add_parser("verify", help="check a filter file's checksums and describe it")
    verify.add_argument("filter", metavar="FILE", help="the filter file")
    outbox = commands.add_parser(
        "outbox", help="list, retry or purge the queued letters and SMS (the durable outbox)"
    )
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list queued messages, oldest first")
    _add_queue_options(listing)
    listing.add_argument(
        "--status", choices=OUTBOX_STATUSES, help="only messages of this status (default: all)"
    )
    listing.add_argument(
        "--limit", type=int, default=100, help="at most this many (1-1000, default 100)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    retry = actions.add_parser("retry", help="make dead messages pending again")
    _add_queue_options(retry)
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", default=[], metavar="ID", help="message ids")
    which.add_argument("--all-dead", action="store_true", help="every dead message")
    purge = actions.add_parser("purge", help="delete sent and void messages (and dead ones)")
    _add_queue_options(purge)
    purge.add_argument(
        "--older-than-days",
        type=float,
        default=7.0,
        help="only messages last changed this many days ago or more (default 7)",
    )
    purge.add_argument("--dead", action="store_true", help="delete dead messages too")

    worker = commands.add_parser(
        "worker", help="deliver the queued letters and SMS of a service (runs until stopped)"
    )
    worker.add_argument(
        "--app",
        required=True,
        metavar="MODULE:NAME",
        help="the IdentityService to work for (an object, or a function that returns one)",
    )
    worker.add_argument(
        "--once", action="store_true", help="deliver what is due now, print a summary and exit"
    )
    worker.add_argument(
        "--poll", type=float, default=1.0, help="seconds to wait when idle (default 1)"
    )
    worker.add_argument("--batch", type=int, default=20, help="messages per claim (default 20)")
    return parser


def _add_queue_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", metavar="PATH", help="the SQLite file of the embedded default")
    where.add_argument(
        "--app", metavar="MODULE:NAME", help="an IdentityService (or a function returning one)"
    )


def _load_app(spec: str) -> Any:
    """The :class:`IdentityService` ``MODULE:NAME`` names (called if it is a function)."""
    from kaspi_identity.services import IdentityService

    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise _UsageError(f"--app {spec}: expected MODULE:NAME, e.g. myportal.identity:service")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"--app {spec}: cannot import {module_name} ({exc})") from None
    found = getattr(module, name, None)
    if found is None:
        raise _UsageError(f"--app {spec}: {module_name} has no {name}")
    service = found() if callable(found) and not isinstance(found, IdentityService) else found
    if not isinstance(service, IdentityService):
        raise _UsageError(f"--app {spec}: not an IdentityService ({type(service).__name__})")
    return service


def _open_queue(args: argparse.Namespace) -> tuple[Any, Any]:
    """The outbox store the command works on, and what to close afterwards."""
    if args.app is not None:
        service = _load_app(args.app)
        if service.storage.outbox is None:
            raise _UsageError(f"--app {args.app}: its storage has no outbox (outbox=True)")
        return service.storage.outbox, None
    _check_database(args.db)
    from kaspi_identity.storage.sqlite import sqlite_storage

    storage = sqlite_storage(args.db, outbox=True)
    return storage.outbox, storage


def _cmd_outbox(args: argparse.Namespace, out: TextIO) -> int:
    from datetime import datetime, timedelta, timezone

    queue, owned = _open_queue(args)
    try:
        now = datetime.now(timezone.utc)
        if args.action == "list":
            if not 1 <= args.limit <= 1000:
                raise _UsageError("--limit must be between 1 and 1000")
            for entry in queue.list(status=args.status, limit=args.limit):
                row = {
                    "id": entry.id,
                    "status": entry.status,
                    "channel": entry.message.channel,
                    "kind": entry.message.kind,
                    "attempts": entry.attempts,
                    "created_at": entry.message.created_at.isoformat(),
                    "next_attempt_at": entry.next_attempt_at.isoformat(),
                    "last_error": entry.last_error,
                    "account_id": entry.message.account_id,
                }
                if args.json:
                    print(json.dumps(row, ensure_ascii=False), file=out)
                else:
                    print(
                        f"{row['id']}  {row['status']:<7}  {row['channel']:<5}  {row['kind']:<24}"
                        f"  attempts={row['attempts']}  next={row['next_attempt_at']}"
                        f"  error={row['last_error'] or '-'}",
                        file=out,
                    )
            return EXIT_OK
        if args.action == "retry":
            ids = list(args.ids)
            if args.all_dead:
                ids = [e.id for e in queue.list(status="dead", limit=1000)]
            retried = 0
            for message_id in ids:
                try:
                    retried += bool(queue.retry(message_id, now=now))
                except ValueError as exc:
                    raise _UsageError(f"{message_id}: {exc}") from None
            print(f"retried {retried} of {len(ids)}", file=out)
            return EXIT_OK if retried == len(ids) else EXIT_REJECTED
        if not 0 <= args.older_than_days <= 36500:
            raise _UsageError("--older-than-days must be between 0 and 36500")
        statuses = ("sent", "void", "dead") if args.dead else ("sent", "void")
        before = now - timedelta(days=args.older_than_days)
        print(f"purged {queue.purge(before=before, statuses=statuses)}", file=out)
        return EXIT_OK
    finally:
        if owned is not None:
            owned.close()


def _cmd_worker(args: argparse.Namespace, out: TextIO) -> int:
    from kaspi_identity.services import OutboxWorker

    service = _load_app(args.app)
    try:
        worker = OutboxWorker(service, batch=args.batch)
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from None
    if args.once:
        run = worker.run_until_idle()
        print(
            f"claimed {run.claimed}, sent {run.sent}, retried {run.retried}, dead {run.dead}",
            file=out,
        )
        return EXIT_OK
    print(f"kaspi-identity worker: delivering for {service!r} (Ctrl-C to stop)", file=out)
    try:
        worker.run(poll=args.poll)
    except KeyboardInterrupt:
        worker.stop()
    return EXIT_OK


def _load_policy(args: argparse.Namespace) -> PasswordPolicy:
    if args.policy:
        return PasswordPolicy.from_toml(args.policy)
    if args.preset:
        return PasswordPolicy.preset(args.preset)
    return PasswordPolicy()


def _read_secret(key: str, lang: str, stdin: TextIO) -> str:
    """One password: from a no-echo prompt on a terminal, else one line of ``stdin``.

    ``key`` is the prompt's message key. Ctrl-C is ``KeyboardInterrupt``; Ctrl-D, or a
    standard input with no line left, is ``EOFError``: ``main`` says which and exits 2.
    """
    if stdin.isatty():
        return getpass.getpass(render(key, lang) + " ")
    line = stdin.readline()
    if not line:
        raise EOFError
    return line[:-1] if line.endswith("\n") else line


def _cmd_check(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    policy = _load_policy(args)
    user = UserInfo(
        username=args.username, email=args.email, phone=args.phone, names=tuple(args.name)
    )
    password = _read_secret("cli.prompt_password", args.lang, stdin)
    result = policy.check(password, user=user)
    if result:
        print(render("cli.accepted", args.lang), file=out)
        return EXIT_OK
    print(render("cli.rejected", args.lang), file=out)
    for message in result.messages(args.lang):
        print(f"  - {message}", file=out)
    return EXIT_REJECTED


def _cmd_describe(args: argparse.Namespace, out: TextIO) -> int:
    if args.multi_factor and not args.deviations:
        raise _UsageError("--multi-factor needs --deviations")
    if args.json and args.deviations:
        raise _UsageError("--json and --deviations cannot be combined")
    policy = _load_policy(args)
    if args.json:
        json.dump(policy.document(args.lang), out, ensure_ascii=False, indent=2)
        print(file=out)
        return EXIT_OK
    print(render("cli.requirements", args.lang), file=out)
    for line in policy.describe(args.lang):
        print(f"  - {line}", file=out)
    if args.deviations:
        _print_deviations(policy.deviations(multi_factor=args.multi_factor), out)
    return EXIT_OK


def _print_deviations(deviations: Sequence[Deviation], out: TextIO) -> None:
    """The deviations, one block each, in English (they quote the standards)."""
    standards = " and ".join(DEVIATION_STANDARDS)
    if not deviations:
        print(f"No deviations from {standards}.", file=out)
        return
    print(f"Deviations from {standards}:", file=out)
    for deviation in deviations:
        print(f"  - {deviation.rule}: {deviation.standard} {deviation.clause}", file=out)
        print(f"    the standard: {deviation.standard_says}", file=out)
        print(f"    this policy:  {deviation.policy_does}", file=out)


def _cmd_hash(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    hasher = PasswordHasher(PROFILES[args.profile])
    password = _read_secret("cli.prompt_password", args.lang, stdin)
    if stdin.isatty() and _read_secret("cli.prompt_repeat", args.lang, stdin) != password:
        print(f"kaspi-identity: {render('cli.mismatch', args.lang)}", file=err)
        return EXIT_REJECTED
    print(hasher.hash(password), file=out)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from kaspi_identity._demo import run_demo

    policy = _load_policy(args)
    name = args.preset or args.policy or "kz-procurement"
    if not args.preset and not args.policy:
        policy = PasswordPolicy.preset("kz-procurement")
    if args.db is not None:
        _check_database(args.db)
    return run_demo(policy=policy, policy_name=name, lang=args.lang, out=out, db=args.db)


def _check_database(db: str) -> None:
    """Refuse a ``--db`` that cannot be opened, before any step runs (a usage error)."""
    path = Path(db)
    if path.is_dir():
        raise _UsageError(f"--db {db}: it is a directory, not a file")
    if not path.parent.exists():
        raise _UsageError(f"--db {db}: the directory {path.parent} does not exist")
    if not path.parent.is_dir():
        raise _UsageError(f"--db {db}: {path.parent} is not a directory")
    from kaspi_identity.storage.sqlite import sqlite_storage

    # Opening creates the file (the demo would) and reads its schema: an unreadable or
    # non-SQLite file, or one of a newer schema, is refused here with SQLite's reason.
    try:
        sqlite_storage(path).close()
    except StorageError as exc:
        raise _UsageError(f"--db {db}: {exc}") from None


def _portal_module() -> Any:
    """``kaspi_portal`` (examples/portal): installed, or found beside this source tree."""
    try:
        import kaspi_portal
    except ImportError as exc:
        if exc.name != "kaspi_portal":
            raise _UsageError(
                f"the portal needs {exc.name}: pip install 'kaspi-identity[portal]'"
            ) from None
        checkout = Path(__file__).resolve().parents[2] / "examples" / "portal"
        if not (checkout / "kaspi_portal" / "__init__.py").is_file():
            raise _UsageError(
                "the portal is the example examples/portal of the source repository:"
                " run this command from a checkout (pip install -e '.[portal]')"
            ) from None
        sys.path.insert(0, str(checkout))
        try:
            import kaspi_portal
        except ImportError as missing:
            raise _UsageError(
                f"the portal needs {missing.name}: pip install 'kaspi-identity[portal]'"
            ) from None
    return kaspi_portal


def _cmd_portal(args: argparse.Namespace, out: TextIO) -> int:
    portal = _portal_module()
    if args.db is not None:
        _check_database(args.db)
    return int(portal.serve(args, out))


def _cmd_compliance(args: argparse.Namespace, out: TextIO) -> int:
    if args.examples < 1:
        raise _UsageError("--examples must be at least 1")
    policy = _load_policy(args)
    # Hypothesis caches what it learns in ./.hypothesis; a report run by hand or in a
    # deployment's CI should leave no such folder behind.
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="kaspi-hyp-"))
    try:
        from kaspi_identity.testing import run_compliance
    except ImportError as exc:  # Hypothesis is a test dependency, not a core one
        raise _UsageError(
            f"the compliance report needs Hypothesis: pip install 'kaspi-identity[test]' ({exc})"
        ) from None
    return int(
        run_compliance(
            policy,
            out=out,
            examples=args.examples,
            seed=args.seed,
            multi_factor=args.multi_factor,
        )
    )


def _cmd_calibrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.target_ms <= 0:
        raise _UsageError("--target-ms must be positive")
    lang = args.lang
    runs: dict[int, int] = {}

    def timed(profile: HashProfile) -> float:
        """Time one hash as calibrate() would, and report it: the search takes seconds."""
        seconds = _time_one_hash(profile)
        runs[profile.time_cost] = run = runs.get(profile.time_cost, 0) + 1
        line = render(
            "cli.calibrate_probe",
            lang,
            time_cost=profile.time_cost,
            run=run,
            runs=_CALIBRATE_RUNS,
            ms=f"{seconds * 1000:.0f}",
        )
        print(f"  {line}", file=err, flush=True)
        return seconds

    print(
        render(
            "cli.calibrating",
            lang,
            target_ms=f"{args.target_ms:g}",
            memory_kib=args.memory_kib,
            parallelism=args.parallelism,
        ),
        file=err,
        flush=True,
    )
    try:
        profile = calibrate(
            args.target_ms / 1000,
            memory_cost=args.memory_kib,
            parallelism=args.parallelism,
            runs=_CALIBRATE_RUNS,
            hasher_timer=timed,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    print(
        f"time_cost={profile.time_cost} memory_cost={profile.memory_cost} "
        f"parallelism={profile.parallelism}",
        file=out,
    )
    return EXIT_OK


def _millions(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n:,.0f}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class _ProgressBar:
    """The build's progress on standard error.

    Redrawn in place on a terminal, else a line every few seconds.
    """

    WIDTH = 24

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.printed = 0.0
        self.drawn = False

    def __call__(self, p: BuildProgress) -> None:
        done = int(p.fraction * self.WIDTH)
        rate = p.lines / p.elapsed if p.elapsed > 0 else 0.0
        stage = (
            f"{_millions(p.lines)} lines, {_millions(rate)} lines/s"
            if p.phase == "reading"
            else f"shard {p.shards_done}/{p.shards_total}"
        )
        line = (
            f"[{'#' * done}{'.' * (self.WIDTH - done)}] {p.fraction:4.0%} {p.phase}: {stage},"
            f" ETA {_clock(p.eta)}"
        )
        if self.tty:
            print(f"\r{line}\033[K", end="", file=self.err, flush=True)
            self.drawn = True
        elif time.monotonic() - self.printed >= 5 or p.fraction >= 1:
            self.printed = time.monotonic()
            print(line, file=self.err, flush=True)

    def end(self) -> None:
        if self.drawn:
            print("", file=self.err, flush=True)


def _cmd_breached(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.step == "verify":
        try:
            with BreachedFilter(args.filter) as opened:
                opened.verify()
                print(
                    f"{args.filter}: ok, {opened.entries:,} entries from {opened.lines:,} lines"
                    f" (min count {opened.min_count}), {opened.size:,} bytes,"
                    f" {opened.size / max(opened.entries, 1):.2f} bytes an entry,"
                    f" {1 << opened.shard_bits} shards",
                    file=out,
                )
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        return EXIT_OK
    if args.min_count < 1:
        raise _UsageError("--min-count must be at least 1")
    bar = None if args.quiet else _ProgressBar(err)
    try:
        built = build_breached_filter(
            args.sources,
            args.output,
            min_count=args.min_count,
            progress=bar,
            tmp_dir=args.tmp_dir,
        )
    except (ValueError, ModuleNotFoundError) as exc:
        raise _UsageError(str(exc)) from None
    except OSError as exc:
        raise _UsageError(f"cannot write {args.output} ({exc.strerror})") from None
    finally:
        if bar is not None:
            bar.end()
    print(
        f"{built.path}: {built.entries:,} entries from {built.lines:,} lines"
        f" (min count {built.min_count}), {built.size:,} bytes,"
        f" {built.bytes_per_entry:.2f} bytes an entry, {built.seconds:.1f} s",
        file=out,
    )
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit status (0 ok, 1 rejected, 2 usage error).

    ``stdin``/``stdout``/``stderr`` default to the process's streams (tests pass their own).
    """
    stdin = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except _VersionRequested:
        print(f"kaspi-identity {_version()}", file=out)
        return EXIT_OK
    lang: str = getattr(args, "lang", DEFAULT_LANGUAGE)
    try:
        if args.command == "check":
            return _cmd_check(args, stdin, out)
        if args.command == "describe":
            return _cmd_describe(args, out)
        if args.command == "hash":
            return _cmd_hash(args, stdin, out, err)
        if args.command == "demo":
            return _cmd_demo(args, out)
        if args.command == "compliance":
            return _cmd_compliance(args, out)
        if args.command == "breached":
            return _cmd_breached(args, out, err)
        if args.command == "outbox":
            return _cmd_outbox(args, out)
        if args.command == "worker":
            return _cmd_worker(args, out)
        if args.command == "portal":
            return _cmd_portal(args, out)
        return _cmd_calibrate(args, out, err)
    except (PolicyConfigError, _UsageError) as exc:
        print(f"kaspi-identity: {exc}", file=err)
        return EXIT_USAGE
    except KaspiIdentityError as exc:
        print(f"kaspi-identity: {exc}", file=err)
        return EXIT_REJECTED
    except UnicodeDecodeError:
        print("kaspi-identity: standard input is not valid UTF-8", file=err)
        return EXIT_USAGE
    except (EOFError, KeyboardInterrupt) as exc:
        # getpass ends its prompt line only when a password was typed: end it here.
        if stdin.isatty() and err.isatty():
            print("", file=err)
        key = "cli.interrupted" if isinstance(exc, KeyboardInterrupt) else "cli.no_input"
        print(f"kaspi-identity: {render(key, lang)}", file=err)
        return EXIT_USAGE
