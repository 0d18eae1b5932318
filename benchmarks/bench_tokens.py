"""Reset tokens and import time: kaspi-identity next to Django and its own dependencies.

1. **Issue + verify one reset token**: ``TokenService.issue`` + ``verify`` + ``check_state``
   (HMAC-SHA-256, a 128-bit random id for the single-use ledger, bound to the security
   stamp) next to Django's ``PasswordResetTokenGenerator.make_token`` + ``check_token``
   (HMAC-SHA-256 over the user's state, reusable until that state changes). The two are
   timed in alternating batches, so both see the same machine load; the ratio is the
   median of the per-round ratios.
2. **Token length** in characters: ours for the account ids of the built-in stores (32 hex
   digits), a UUID and a number; Django's token plus the ``uidb64`` its links also carry.
3. **Import time** in fresh interpreters with compiled bytecode (written once to a
   temporary ``PYTHONPYCACHEPREFIX``, so nothing lands in the source tree): ``import
   kaspi_identity`` next to ``import argon2, itsdangerous`` (the dependencies a token and
   hashing library of this kind imports), each timed in alternation; then what the first
   uses cost (``PasswordPolicy``, ``IdentityService``) and the heavy modules present after
   the import (none expected: smtplib, ssl, email, sqlite3, zxcvbn, phonenumbers, redis,
   sqlalchemy).

Run: ``python benchmarks/bench_tokens.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, cast

from kaspi_identity.tokens import TokenService

_KEY = b"k" * 32
_HEX_ID = "3f2a9c0d5e8b47a1b6c3d2e1f0a9b8c7"
_STAMP = "d2c1e0f9a8b7c6d5e4f3a2b1c0d9e8f7"
_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)
HEAVY = ("smtplib", "ssl", "email", "sqlite3", "zxcvbn", "phonenumbers", "redis", "sqlalchemy")


def _batch_us(fn: Callable[[], object], batch: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(batch):
        fn()
    return (time.perf_counter_ns() - start) / batch / 1000


def interleaved_us(
    first: Callable[[], object], second: Callable[[], object], *, batch: int, rounds: int
) -> tuple[float, float, float]:
    """Median µs per call of each, and the median of their per-round ratios."""
    first(), second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(_batch_us(first, batch))
        b.append(_batch_us(second, batch))
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


def ours() -> Callable[[], object]:
    """Issue, verify and check the state of one reset token."""
    service = TokenService([_KEY])
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def run() -> object:
        token = service.issue("reset", _HEX_ID, state=_STAMP, now=now)
        claims = service.verify(token, "reset", now=now)
        service.check_state(claims, _STAMP)
        return claims

    return run


def _django_user() -> Any:
    class User:
        pk = 12345
        password = _HASH
        last_login: datetime | None = None
        email = "aigerim@example.kz"

        def get_email_field_name(self) -> str:
            return "email"

    return User()


def django_generator() -> tuple[Callable[[], object], int] | None:
    """Django's make_token + check_token and its link's token length, or None without Django."""
    try:
        import django
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured:
        settings.configure(SECRET_KEY="k" * 50, USE_TZ=True, PASSWORD_RESET_TIMEOUT=3600)
        django.setup()
    from django.contrib.auth.tokens import PasswordResetTokenGenerator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    generator: Any = PasswordResetTokenGenerator()
    user = _django_user()

    def run() -> object:
        token = generator.make_token(cast(Any, user))  # a duck-typed stand-in
        assert generator.check_token(cast(Any, user), token)
        return token

    uid = urlsafe_base64_encode(force_bytes(uuid.UUID(_HEX_ID)))
    return run, len(generator.make_token(user)) + 1 + len(uid)


def _clean_env(prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = prefix
    return env


def import_ms(statement: str, env: dict[str, str]) -> float:
    """Milliseconds a fresh interpreter spends running ``statement``."""
    code = (
        "import time\nt = time.perf_counter()\n"
        f"{statement}\nprint((time.perf_counter() - t) * 1000)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    return float(out.strip())


def heavy_after(statement: str, env: dict[str, str]) -> list[str]:
    """Which of :data:`HEAVY` a fresh interpreter has loaded after ``statement``."""
    code = f"import sys\n{statement}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    return out.split(",") if out else []


def main(argv: Sequence[str] | None = None) -> int:
    """Print the three tables; the exit status is 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    batch, rounds = (500, 9) if args.quick else (2000, 21)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load {load:.2f}")

    print("\n1. reset token issue + verify + state check (µs per pair, median, interleaved)")
    peer = django_generator()
    mine = ours()
    if peer is None:
        alone = _batch_us(mine, batch)
        print(f"   kaspi-identity {alone:8.1f}   Django: n/a (pip install -e '.[bench]')")
    else:
        a, b, ratio = interleaved_us(mine, peer[0], batch=batch, rounds=rounds)
        print(f"   kaspi-identity {a:8.1f}   Django {b:8.1f}   ratio {ratio:.2f}x  (goal <= 1.0x)")

    print("\n2. token length (characters; goal <= 100)")
    service = TokenService([_KEY])
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for label, account in (
        ("32 hex digits (built-in stores)", _HEX_ID),
        ("UUID", str(uuid.UUID(_HEX_ID))),
        ("number 1234567", "1234567"),
        ("text of 29 bytes", "a" * 29),
    ):
        print(f"   {label:<34} {len(service.issue('reset', account, state=_STAMP, now=now)):4d}")
    if peer is not None:
        print(f"   {'Django token + uidb64 (UUID pk)':<34} {peer[1]:4d}")

    print("\n3. import time, fresh interpreter, compiled bytecode (ms, median, interleaved)")
    runs = 7 if args.quick else 15
    with tempfile.TemporaryDirectory() as cache:
        env = _clean_env(cache)
        statements = {
            "argon2, itsdangerous": "import argon2, itsdangerous",
            "kaspi_identity": "import kaspi_identity",
            "PasswordPolicy, PasswordHasher": (
                "from kaspi_identity import PasswordPolicy, PasswordHasher"
            ),
            "services.IdentityService": "from kaspi_identity.services import IdentityService",
        }
        try:
            for statement in statements.values():
                import_ms(statement, env)  # writes the bytecode
        except subprocess.CalledProcessError:
            print("   n/a: itsdangerous is not installed (pip install itsdangerous)")
            return 0
        samples: dict[str, list[float]] = {name: [] for name in statements}
        for _ in range(runs):
            for name, statement in statements.items():
                samples[name].append(import_ms(statement, env))
        base = statistics.median(samples["argon2, itsdangerous"])
        for name in statements:
            value = statistics.median(samples[name])
            goal = "  (goal <= 1.3x)" if name == "kaspi_identity" else ""
            print(f"   import {name:<32} {value:7.1f}   {value / base:5.2f}x{goal}")
        loaded = heavy_after("import kaspi_identity", env)
        print(f"   heavy modules after `import kaspi_identity`: {', '.join(loaded) or 'none'}")
        loaded = heavy_after("from kaspi_identity.services import IdentityService", env)
        print(f"   ... after importing IdentityService: {', '.join(loaded) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
