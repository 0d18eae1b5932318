"""Reset tokens and import time: kaspi-identity next to Django, side by side.

1. Issue + verify one reset token: ``TokenService.issue`` + ``verify`` + ``check_state``
   (itsdangerous, HMAC-SHA256, 128-bit random id, state binding) next to Django's
   ``PasswordResetTokenGenerator.make_token`` + ``check_token`` (HMAC-SHA256 over the user's
   state). Both bind the token to the password hash and e-mail; ours also carries a random
   id for the single-use ledger, which Django does not have (its tokens are reusable until
   the password changes).
2. ``import kaspi_identity`` in a fresh interpreter, next to ``import django.contrib.auth``
   after ``django.setup()`` would be unfair (Django does far more); the baseline is the bare
   interpreter start, and the ratio is ours / ``import argon2`` (our heaviest dependency).

Run: ``python benchmarks/bench_tokens.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

from kaspi_identity.tokens import TokenService

_KEY = b"k" * 32
_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)


def per_call_us(fn: Callable[[], object], *, batch: int, repeats: int) -> float:
    """Median microseconds per call over ``repeats`` batches of ``batch`` calls."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / batch / 1000)
    return statistics.median(samples)


def ours() -> Callable[[], object]:
    """Issue, verify and check the state of one reset token."""
    service = TokenService([_KEY])
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    state = f"{_HASH}\x00aigerim@example.kz"

    def run() -> object:
        token = service.issue("reset", "12345", state=state, now=now)
        claims = service.verify(token, "reset", now=now)
        service.check_state(claims, state)
        return claims

    return run


def django_generator() -> Callable[[], object] | None:
    """Django's make_token + check_token, or None when Django is not installed."""
    try:
        import django
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured:
        settings.configure(SECRET_KEY="k" * 50, USE_TZ=True, PASSWORD_RESET_TIMEOUT=3600)
        django.setup()
    from django.contrib.auth.tokens import PasswordResetTokenGenerator

    @dataclass
    class User:
        pk: int = 12345
        password: str = _HASH
        last_login: datetime | None = None
        email: str = "aigerim@example.kz"

        def get_email_field_name(self) -> str:
            return "email"

    generator = PasswordResetTokenGenerator()
    user = User()

    def run() -> object:
        token = generator.make_token(cast(Any, user))  # a duck-typed stand-in
        assert generator.check_token(cast(Any, user), token)
        return token

    return run


def import_ms(statement: str, *, repeats: int) -> float:
    """Median milliseconds a fresh interpreter spends running ``statement``."""
    code = (
        "import time\n"
        "t = time.perf_counter()\n"
        f"{statement}\n"
        "print((time.perf_counter() - t) * 1000)\n"
    )
    samples = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        samples.append(float(out.strip()))
    return statistics.median(samples)


def main(argv: Sequence[str] | None = None) -> int:
    """Print both tables; the exit status is 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    batch, repeats = (300, 5) if args.quick else (2000, 9)

    print("1. reset token issue + verify (µs per pair, median)")
    mine = per_call_us(ours(), batch=batch, repeats=repeats)
    peer = django_generator()
    if peer is None:
        print(f"   kaspi-identity {mine:8.1f}   Django: n/a (pip install -e '.[bench]')")
    else:
        theirs = per_call_us(peer, batch=batch, repeats=repeats)
        print(f"   kaspi-identity {mine:8.1f}   Django {theirs:8.1f}   ratio {mine / theirs:.2f}x")

    print("\n2. import time in a fresh interpreter (ms, median)")
    runs = 3 if args.quick else 7
    bare = import_ms("pass", repeats=runs)
    argon = import_ms("import argon2", repeats=runs)
    kaspi = import_ms("import kaspi_identity", repeats=runs)
    print(f"   import argon2          {argon:7.1f}")
    print(f"   import kaspi_identity  {kaspi:7.1f}   ratio to argon2 {kaspi / argon:.2f}x")
    print(f"   (empty statement       {bare:7.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
