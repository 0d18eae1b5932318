"""The ``kaspi-identity`` command: demo, portal, check, describe, compliance, hash, calibrate.

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from kaspi_identity._errors import KaspiIdentityError, PolicyConfigError, StorageError
from kaspi_identity.hashing import PROFILES, HashProfile, PasswordHasher, _time_one_hash, calibrate
from kaspi_identity.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES, render
from kaspi_identity.policy import (
    DEVIATION_STANDARDS,
    PRESET_NAMES,
    Deviation,
    PasswordPolicy,
    UserInfo,
)

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
    return parser


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
