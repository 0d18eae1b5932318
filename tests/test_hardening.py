"""Issue 10 ("Hardening I"): the account and recovery promises hold against an attacker.

Each class is one item of the issue: the attack as the issue reproduced it, against the
public API, on the memory and SQLite adapters (threads), and on SQLite across processes
where state is shared. The Redis and SQLAlchemy adapters prove the storage half of the same
promises through the contract suite (tests/test_storage_*.py).
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _faces import FACES, Face, make_service
from kaspi_identity import PasswordHasher, PasswordPolicy
from kaspi_identity._errors import InvalidTokenError
from kaspi_identity.delivery import Outbox, extract_code, extract_link
from kaspi_identity.hashing import TESTS_ONLY
from kaspi_identity.services import (
    IdentityService,
    IdentitySettings,
    InvalidCodeError,
    LoginResult,
    ManualClock,
    RateLimit,
    ResetRequestResult,
)
from kaspi_identity.services._identifiers import limit_value, resolve
from kaspi_identity.storage import Storage
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage
from kaspi_identity.testing import mark_phone_verified

KEY = hashlib.sha256(b"kaspi-identity tests: hardening key").digest()
NEW_KEY = hashlib.sha256(b"kaspi-identity tests: hardening key, rotated in").digest()
EMAIL = "aliya@example.kz"
PHONE = "+77011234567"
PW = "Tr0ub4dor&3x"
WRONG = "Saxaul-Steppe-1991"
NEW = "Velvet#Quartz-9182"
HOUR = timedelta(hours=1)
UNLIMITED = RateLimit(1_000_000, HOUR)
_clients = itertools.count(1)


def _client() -> str:
    return f"192.0.2.{next(_clients)}"


class CountingHasher(PasswordHasher):
    """TESTS_ONLY argon2 that counts verifications against each stored hash (thread-safe)."""

    def __init__(self) -> None:
        super().__init__(TESTS_ONLY)
        self.verified: list[str] = []
        self._lock = threading.Lock()

    def verify(self, hash: str, password: str) -> None:
        with self._lock:
            self.verified.append(hash)
        super().verify(hash, password)

    def count(self, stored_hash: str | None) -> int:
        with self._lock:
            return self.verified.count(stored_hash or "")


@dataclass
class Env:
    storage: Storage
    service: IdentityService
    outbox: Outbox
    clock: ManualClock
    hasher: CountingHasher
    path: Path | None
    face: Face = "sync"

    def rebuild(self, **changes: Any) -> IdentityService:
        """Another service on the same face over the same stores and clock, new settings."""
        return make_service(
            self.face,
            self.storage,
            replace(self.service.settings, **changes),
            email_sender=self.outbox,
            sms_sender=self.outbox,
            policy=self.service.policy,
            hasher=self.hasher,
            clock=self.clock,
        )

    def register(self, email: str = EMAIL, phone: str | None = PHONE, **more: Any) -> str:
        result = self.service.register(
            email=email, phone=phone, password=PW, confirmation=PW, client_key=_client(), **more
        )
        assert result.ok, result
        account = self.storage.accounts.find_by_login("email", email)
        assert account is not None
        if account.phone is not None:  # only a proven number receives reset codes
            mark_phone_verified(self.storage.accounts, account.id)
        return account.id

    def hash_of(self, account_id: str) -> str | None:
        account = self.storage.accounts.get(account_id)
        assert account is not None
        return account.password_hash


def _settings(**changes: Any) -> IdentitySettings:
    base: dict[str, Any] = {
        "secret_keys": (KEY,),
        "confirm_url": "https://portal.example.kz/confirm",
        "reset_url": "https://portal.example.kz/reset",
        "site_name": "portal.example.kz",
        "backoff_after": 3,
        "lockout_after": 10,
        "login_per_client": UNLIMITED,
        "login_per_identifier": UNLIMITED,
    }
    base.update(changes)
    return IdentitySettings(**base)


def _make(kind: str, tmp_path: Path, face: Face = "sync", **changes: Any) -> Env:
    path = tmp_path / "identity.sqlite3" if kind == "sqlite" else None
    storage = sqlite_storage(path) if path is not None else memory_storage()
    outbox, clock, hasher = Outbox(), ManualClock(), CountingHasher()
    service = make_service(
        face,
        storage,
        _settings(**changes),
        email_sender=outbox,
        sms_sender=outbox,
        policy=PasswordPolicy(history=6, history_similar=True),
        hasher=hasher,
        clock=clock,
    )
    return Env(storage, service, outbox, clock, hasher, path, face)


@pytest.fixture(params=[(k, f) for k in ("memory", "sqlite") for f in FACES], ids="-".join)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    kind, face = request.param
    made = _make(kind, tmp_path, face)
    try:
        yield made
    finally:
        made.storage.close()


def _race(count: int, call: Any) -> list[Any]:
    """Run ``call(i)`` in ``count`` threads released together; return the results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = call(index)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def _token(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


# -- 1. lockout is reserved before the verification ------------------------------------


class TestReservedAttempts:
    def test_burst_of_wrong_passwords_verifies_at_most_backoff_after(self, env: Env) -> None:
        """64 parallel wrong guesses at one instant: only ``backoff_after`` are verified."""
        account_id = env.register()
        stored = env.hash_of(account_id)
        results = _race(64, lambda _: env.service.authenticate(EMAIL, WRONG, client_key=_client()))
        verified = env.hasher.count(stored)
        assert verified == env.service.settings.backoff_after
        reasons = sorted(r.reason for r in results)
        assert reasons.count("invalid") == verified
        assert reasons.count("throttled") == 64 - verified
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert account.failed_logins == verified

    def test_right_guess_after_the_burst_is_refused(self, env: Env) -> None:
        """Issue 10: the right guess, arriving after 57 wrong ones, logged in and reset the
        counter. Now it waits out the back-off like any attempt, and is never verified."""
        account_id = env.register()
        stored = env.hash_of(account_id)
        _race(57, lambda _: env.service.authenticate(EMAIL, WRONG, client_key=_client()))
        right = env.service.authenticate(EMAIL, PW, client_key=_client())
        assert right.reason == "throttled"
        assert right.retry_after is not None
        assert env.hasher.count(stored) == env.service.settings.backoff_after
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert account.failed_logins == env.service.settings.backoff_after
        env.clock.advance(right.retry_after)
        assert env.service.authenticate(EMAIL, PW, client_key=_client()).ok

    def test_mixed_burst_never_exceeds_the_bound(self, env: Env) -> None:
        """The right password inside the burst: between two successes, at most
        ``backoff_after`` verifications; so at most twice that with one success."""
        account_id = env.register()
        stored = env.hash_of(account_id)

        def guess(index: int) -> LoginResult:
            password = PW if index == 31 else WRONG
            return env.service.authenticate(EMAIL, password, client_key=_client())

        results = _race(64, guess)
        successes = sum(1 for r in results if r.ok)
        assert successes <= 1
        bound = env.service.settings.backoff_after * (1 + successes)
        assert env.hasher.count(stored) <= bound

    def test_at_most_lockout_after_verifications_between_successes(self, env: Env) -> None:
        """Bursts waited out one by one: verifications stop at ``lockout_after``; then
        even the right password is refused without being verified."""
        account_id = env.register()
        stored = env.hash_of(account_id)
        s = env.service.settings
        for _ in range(12):
            _race(16, lambda _: env.service.authenticate(EMAIL, WRONG, client_key=_client()))
            env.clock.advance(s.backoff_max)
        assert env.hasher.count(stored) == s.lockout_after
        before = env.hasher.count(stored)
        assert env.service.authenticate(EMAIL, PW, client_key=_client()).reason == "locked"
        assert env.hasher.count(stored) == before

    def test_a_success_resets_the_count(self, env: Env) -> None:
        env.register()
        for _ in range(2):
            assert not env.service.authenticate(EMAIL, WRONG, client_key=_client()).ok
        assert env.service.authenticate(EMAIL, PW, client_key=_client()).ok
        account = env.storage.accounts.find_by_login("email", EMAIL)
        assert account is not None
        assert account.failed_logins == 0

    def test_change_password_current_check_is_reserved_too(self, env: Env) -> None:
        """32 parallel change attempts with a wrong current password: ``backoff_after``."""
        account_id = env.register()
        stored = env.hash_of(account_id)
        results = _race(
            32,
            lambda _: env.service.change_password(
                account_id, WRONG, NEW, NEW, client_key=_client()
            ),
        )
        assert env.hasher.count(stored) == env.service.settings.backoff_after
        reasons = [r.reason for r in results]
        assert reasons.count("wrong_password") == env.service.settings.backoff_after
        assert set(reasons) == {"wrong_password", "throttled"}
        assert env.hash_of(account_id) == stored

    def test_a_proven_current_password_is_no_failure(self, env: Env) -> None:
        account_id = env.register()
        assert not env.service.authenticate(EMAIL, WRONG, client_key=_client()).ok
        changed = env.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        assert changed.ok
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert account.failed_logins == 0


_PROCESSES = 4
_THREADS = 8


def _guess_in_process(path: str, start: Any, results: Any) -> None:
    """Child process: 8 threads guess wrong at one (manual) instant; put their reasons."""
    with sqlite_storage(path) as storage:
        service = IdentityService(
            storage,
            _settings(),
            email_sender=Outbox(),
            hasher=PasswordHasher(TESTS_ONLY),
            clock=ManualClock(),
        )
        start.wait(timeout=60)
        outcomes = _race(
            _THREADS, lambda i: service.authenticate(EMAIL, WRONG, client_key=f"c{i}").reason
        )
        results.put(outcomes)


class TestReservedAcrossProcesses:
    def test_processes_share_the_reservation(self, tmp_path: Path) -> None:
        """4 processes x 8 threads guess at once: ``backoff_after`` verifications in all."""
        made = _make("sqlite", tmp_path)
        with made.storage:
            account_id = made.register()
        assert made.path is not None
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(_PROCESSES)
        results = context.Queue()
        processes = [
            context.Process(target=_guess_in_process, args=(str(made.path), start, results))
            for _ in range(_PROCESSES)
        ]
        for process in processes:
            process.start()
        reasons = [r for _ in processes for r in results.get(timeout=300)]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        results.close()
        results.join_thread()
        backoff_after = made.service.settings.backoff_after
        assert reasons.count("invalid") == backoff_after
        assert reasons.count("throttled") == _PROCESSES * _THREADS - backoff_after
        with sqlite_storage(made.path) as storage:
            account = storage.accounts.get(account_id)
            assert account is not None
            assert account.failed_logins == backoff_after


# -- 2. throttling per client and per identifier ------------------------------------------


class TestLoginLimits:
    def test_spraying_one_password_is_stopped_per_client(self, tmp_path: Path) -> None:
        """One client, one password, many accounts (known and not): the client limit bites."""
        made = _make("memory", tmp_path, login_per_client=RateLimit(5, timedelta(minutes=1)))
        for index in range(3):
            made.register(f"user{index}@example.kz", phone=None)
        targets = [f"user{i}@example.kz" for i in range(3)] + [f"x{i}@example.kz" for i in range(5)]
        answers = [made.service.authenticate(t, WRONG, client_key="sprayer") for t in targets]
        assert [a.reason for a in answers] == ["invalid"] * 5 + ["throttled"] * 3
        assert all(a.retry_after == timedelta(minutes=1) for a in answers[5:])
        assert made.service.authenticate(EMAIL, WRONG, client_key="someone-else").reason == (
            "invalid"
        )
        made.clock.advance(minutes=1)
        assert made.service.authenticate("x9@example.kz", WRONG, client_key="sprayer").reason == (
            "invalid"
        )

    @pytest.mark.parametrize("known", [True, False])
    def test_identifier_limit_is_the_same_for_known_and_unknown(
        self, tmp_path: Path, known: bool
    ) -> None:
        """Per identifier, across clients: the (limit+1)-th attempt is throttled either way."""
        made = _make(
            "memory",
            tmp_path,
            login_per_identifier=RateLimit(4, timedelta(minutes=5)),
            backoff_after=10,
        )
        if known:
            made.register()
        spellings = [EMAIL, " ALIYA@example.kz", "Aliya@Example.KZ", "aliya@example.kz  ", EMAIL]
        answers = [made.service.authenticate(s, WRONG, client_key=_client()) for s in spellings]
        assert [a.reason for a in answers] == ["invalid"] * 4 + ["throttled"]
        assert answers[-1].retry_after == timedelta(minutes=5)
        assert answers[-1].account_id is None

    def test_phone_spellings_are_one_identifier(self, tmp_path: Path) -> None:
        made = _make("memory", tmp_path, login_per_identifier=RateLimit(3, HOUR), backoff_after=10)
        made.register()
        spellings = ["+7 701 123 45 67", "8 701 123 45 67", "8(701)123-45-67", "87011234567"]
        answers = [made.service.authenticate(s, WRONG, client_key=_client()) for s in spellings]
        assert [a.reason for a in answers] == ["invalid"] * 3 + ["throttled"]

    def test_limited_attempts_verify_nothing(self, tmp_path: Path) -> None:
        made = _make("memory", tmp_path, login_per_client=RateLimit(1, HOUR))
        made.register()
        made.service.authenticate(EMAIL, WRONG, client_key="c")
        before = len(made.hasher.verified)
        assert made.service.authenticate(EMAIL, PW, client_key="c").reason == "throttled"
        assert len(made.hasher.verified) == before

    def test_known_and_unknown_make_the_same_writes(self, env: Env) -> None:
        """A wrong password on a known account and any password on an unknown one write
        the same number of times (the reserved attempt against one equal-work hit)."""
        env.register()
        calls: list[str] = []

        class Spy:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def __getattr__(self, name: str) -> Any:
                attribute = getattr(self.inner, name)

                def call(*args: Any, **kwargs: Any) -> Any:
                    calls.append(name)
                    return attribute(*args, **kwargs)

                return call

        spied = Storage(
            accounts=Spy(env.storage.accounts),
            history=env.storage.history,
            ledger=env.storage.ledger,
            codes=env.storage.codes,
            rate_limits=Spy(env.storage.rate_limits),
        )
        service = IdentityService(
            spied,
            env.service.settings,
            email_sender=env.outbox,
            hasher=env.hasher,
            clock=env.clock,
        )
        writes = {"hit", "reserve_login_attempt", "record_login_success", "set_password_hash"}
        seen = []
        for identifier in (EMAIL, "nobody@example.kz", "nobody", "+77479998877"):
            calls.clear()
            assert service.authenticate(identifier, WRONG, client_key=_client()).reason == (
                "invalid"
            )
            seen.append(sum(1 for c in calls if c in writes))
        assert len(set(seen)) == 1, seen


class TestRegisterAndChangeLimits:
    def test_register_per_client(self, tmp_path: Path) -> None:
        made = _make("memory", tmp_path, register_per_client=RateLimit(2, HOUR))
        answers = [
            made.service.register(
                email=f"u{i}@example.kz", password=PW, confirmation=PW, client_key="one"
            )
            for i in range(3)
        ]
        assert [a.ok for a in answers] == [True, True, False]
        assert answers[2].retry_after == HOUR
        assert made.storage.accounts.find_by_login("email", "u2@example.kz") is None

    def test_register_per_identifier_counts_casefolded(self, tmp_path: Path) -> None:
        made = _make("memory", tmp_path, register_per_identifier=RateLimit(2, HOUR))
        spellings = ["new@example.kz", "NEW@example.kz", "New@Example.kz"]
        answers = [
            made.service.register(email=s, password=PW, confirmation=PW, client_key=_client())
            for s in spellings
        ]
        assert [a.ok for a in answers] == [True, True, False]

    def test_policy_failures_are_not_counted(self, tmp_path: Path) -> None:
        """A form the policy refuses costs no limit: a user may fix their password."""
        made = _make("memory", tmp_path, register_per_identifier=RateLimit(1, HOUR))
        for _ in range(3):
            bad = made.service.register(
                email=EMAIL, password="short", confirmation="short", client_key=_client()
            )
            assert not bad.ok
            assert bad.retry_after is None
        assert made.service.register(
            email=EMAIL, password=PW, confirmation=PW, client_key=_client()
        ).ok

    def test_change_password_per_client(self, tmp_path: Path) -> None:
        made = _make("memory", tmp_path, login_per_client=RateLimit(1, HOUR))
        account_id = made.register()
        first = made.service.change_password(account_id, WRONG, NEW, NEW, client_key="c")
        second = made.service.change_password(account_id, PW, NEW, NEW, client_key="c")
        assert first.reason == "wrong_password"
        assert second.reason == "throttled"
        assert second.retry_after == HOUR

    @pytest.mark.parametrize("bad", [None, b"1.2.3.4", 5])
    def test_client_key_must_be_str(self, env: Env, bad: Any) -> None:
        account_id = env.register()
        with pytest.raises(TypeError):
            env.service.authenticate(EMAIL, PW, client_key=bad)
        with pytest.raises(TypeError):
            env.service.register(email="b@example.kz", password=PW, confirmation=PW, client_key=bad)
        with pytest.raises(TypeError):
            env.service.change_password(account_id, PW, NEW, NEW, client_key=bad)
        assert env.storage.accounts.find_by_login("email", "b@example.kz") is None


# -- 4. limits keyed on who it is, not on what was typed ----------------------------------


class TestResolvedLimits:
    def test_twelve_spellings_of_one_number_send_at_most_the_limit(self, env: Env) -> None:
        """Issue 10: 12 spellings of one phone sent 12 letters against a limit of 5."""
        env.register()
        service = env.rebuild(reset_per_identifier=RateLimit(5, HOUR))
        env.outbox.clear()
        spellings = [
            "+7 701 123 45 67",
            "8 701 123 45 67",
            "8(701)123-45-67",
            "87011234567",
            "+77011234567",
            "7011234567",
            "+7 (701) 123-45-67",
            "8 701 1234567",
            "+7-701-123-45-67",
            "8.701.123.45.67",
            " +77011234567 ",
            "77011234567",
        ]
        answers = [service.request_password_reset(s, client_key=_client()) for s in spellings]
        letters = [m for m in env.outbox.emails if m.kind == "password_reset"]
        assert len(letters) == 5
        assert [a.accepted for a in answers] == [True] * 5 + [False] * 7

    def test_user_name_email_and_phone_share_the_account_limit(self, env: Env) -> None:
        env.register(username="aliya_n")
        service = env.rebuild(reset_per_identifier=RateLimit(2, HOUR))
        env.outbox.clear()
        for identifier in ("aliya_n", EMAIL, PHONE, "Aliya_N"):
            service.request_password_reset(identifier, client_key=_client())
        assert len([m for m in env.outbox.emails if m.kind == "password_reset"]) == 2

    def test_unknown_identifiers_are_limited_the_same(self, env: Env) -> None:
        env.register()
        service = env.rebuild(reset_per_identifier=RateLimit(2, HOUR))
        known = [service.request_password_reset(EMAIL, client_key=_client()) for _ in range(3)]
        unknown = [
            service.request_password_reset("nobody@example.kz", client_key=_client())
            for _ in range(3)
        ]
        assert known == unknown
        assert [a.accepted for a in known] == [True, True, False]

    @given(
        typed=st.sampled_from(
            ["+7 701 123 45 67", "8 701 123 45 67", "8(701)123-45-67", "87011234567"]
        ),
        other=st.sampled_from(["+77011234567", "7011234567", "8 (701) 123 45 67"]),
    )
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_spellings_resolve_to_one_key(self, typed: str, other: str) -> None:
        """Any two spellings of one number are one identifier for every limit."""
        settings = _make("memory", Path(".")).service.settings
        assert limit_value(resolve(typed, settings), typed) == limit_value(
            resolve(other, settings), other
        )


# -- 5. links and sessions bound to a security stamp ----------------------------------------


class TestSecurityStamp:
    def test_reset_link_stays_dead_when_the_address_comes_back(self, env: Env) -> None:
        """Issue 10: a link refused after set_email(B) was accepted after set_email(A)."""
        account_id = env.register()
        assert env.service.request_password_reset(EMAIL, client_key=_client())
        token = _token(extract_link(env.outbox.last_email(to=EMAIL)))
        env.storage.accounts.set_email(account_id, "other@example.kz")
        with pytest.raises(InvalidTokenError):
            env.service.reset_password(token, NEW, NEW)
        env.storage.accounts.set_email(account_id, EMAIL)
        with pytest.raises(InvalidTokenError):
            env.service.reset_password(token, NEW, NEW)

    def test_reset_link_stays_dead_when_the_hash_comes_back(self, env: Env) -> None:
        account_id = env.register()
        env.service.request_password_reset(EMAIL, client_key=_client())
        token = _token(extract_link(env.outbox.last_email(to=EMAIL)))
        old = env.hash_of(account_id)
        other = env.hasher.hash(NEW)
        assert env.storage.accounts.set_password_hash(account_id, expected=old, new=other)
        assert env.storage.accounts.set_password_hash(account_id, expected=other, new=old or "")
        with pytest.raises(InvalidTokenError):
            env.service.reset_password(token, NEW, NEW)

    def test_sms_grant_dies_with_the_stamp(self, env: Env) -> None:
        account_id = env.register()
        env.service.request_sms_reset(PHONE, client_key=_client())
        grant = env.service.verify_sms_code(PHONE, extract_code(env.outbox.last_sms(to=PHONE)))
        env.storage.accounts.set_email(account_id, "other@example.kz")
        with pytest.raises(InvalidTokenError):
            env.service.reset_password(grant, NEW, NEW)

    def test_sessions_end_after_a_change(self, env: Env) -> None:
        account_id = env.register()
        first = env.service.authenticate(EMAIL, PW, client_key=_client())
        second = env.service.authenticate(EMAIL, PW, client_key=_client())
        assert first.security_stamp is not None
        assert first.security_stamp == second.security_stamp
        assert env.service.session_is_current(account_id, first.security_stamp)
        changed = env.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        assert changed.ok
        assert changed.security_stamp is not None
        assert not env.service.session_is_current(account_id, first.security_stamp)
        assert env.service.session_is_current(account_id, changed.security_stamp)

    def test_sessions_end_after_a_reset(self, env: Env) -> None:
        account_id = env.register()
        login = env.service.authenticate(EMAIL, PW, client_key=_client())
        assert login.security_stamp is not None
        env.service.request_password_reset(EMAIL, client_key=_client())
        token = _token(extract_link(env.outbox.last_email(to=EMAIL)))
        assert env.service.reset_password(token, NEW, NEW).ok
        assert not env.service.session_is_current(account_id, login.security_stamp)

    def test_rehash_on_login_keeps_links_and_sessions(self, env: Env) -> None:
        """Upgrading the hash parameters is no change of password: nothing ends."""
        account_id = env.register()
        login = env.service.authenticate(EMAIL, PW, client_key=_client())
        env.service.request_password_reset(EMAIL, client_key=_client())
        token = _token(extract_link(env.outbox.last_email(to=EMAIL)))
        stronger = PasswordHasher(replace(TESTS_ONLY, time_cost=TESTS_ONLY.time_cost + 1))
        upgraded = IdentityService(
            env.storage,
            env.service.settings,
            email_sender=env.outbox,
            hasher=stronger,
            clock=env.clock,
        )
        again = upgraded.authenticate(EMAIL, PW, client_key=_client())
        assert again.rehashed
        assert login.security_stamp is not None
        assert env.service.session_is_current(account_id, login.security_stamp)
        assert env.service.reset_password(token, NEW, NEW).ok

    @pytest.mark.parametrize("bad", [None, b"stamp", 1, "", "\ud800", "x" * 10_000, "a\x00b"])
    def test_garbage_sessions_are_not_current(self, env: Env, bad: Any) -> None:
        account_id = env.register()
        assert env.service.session_is_current(account_id, bad) is False
        assert env.service.session_is_current(bad, "stamp") is False

    def test_stamp_not_in_reprs(self, env: Env) -> None:
        account_id = env.register()
        login = env.service.authenticate(EMAIL, PW, client_key=_client())
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert login.security_stamp is not None
        assert login.security_stamp not in repr(login)
        assert account.security_stamp not in repr(account)


# -- 6. key rotation keeps the defences --------------------------------------------------------


class TestKeyRotation:
    def test_rate_limits_survive_a_rotation(self, env: Env) -> None:
        """Issue 10: a limited request was accepted right after rotation."""
        env.register()
        limited = env.rebuild(reset_per_identifier=RateLimit(2, HOUR))
        for _ in range(2):
            assert limited.request_password_reset(EMAIL, client_key=_client())
        assert not limited.request_password_reset(EMAIL, client_key=_client())
        rotated = env.rebuild(reset_per_identifier=RateLimit(2, HOUR), secret_keys=(NEW_KEY, KEY))
        answer = rotated.request_password_reset(EMAIL, client_key=_client())
        assert answer == ResetRequestResult(False, retry_after=HOUR)

    def test_a_code_sent_before_the_rotation_still_verifies(self, env: Env) -> None:
        env.register()
        env.service.request_sms_reset(PHONE, client_key=_client())
        code = extract_code(env.outbox.last_sms(to=PHONE))
        rotated = env.rebuild(secret_keys=(NEW_KEY, KEY))
        assert rotated.verify_sms_code(PHONE, code)

    def test_a_code_dies_with_its_key(self, env: Env) -> None:
        env.register()
        env.service.request_sms_reset(PHONE, client_key=_client())
        code = extract_code(env.outbox.last_sms(to=PHONE))
        retired = env.rebuild(secret_keys=(NEW_KEY,))
        with pytest.raises(InvalidCodeError) as caught:
            retired.verify_sms_code(PHONE, code)
        assert caught.value.reason == "wrong"

    def test_codes_after_the_rotation_use_the_new_key(self, env: Env) -> None:
        env.register()
        rotated = env.rebuild(secret_keys=(NEW_KEY, KEY))
        rotated.request_sms_reset(PHONE, client_key=_client())
        code = extract_code(env.outbox.last_sms(to=PHONE))
        assert env.rebuild(secret_keys=(NEW_KEY,)).verify_sms_code(PHONE, code)


# -- 7. smaller leaks ------------------------------------------------------------------------


GARBAGE = ["", "garbage", "a.b.c", "x" * 5000, "\ud800", "a\x00b", "токен", "...."]


class TestNoChains:
    @pytest.mark.parametrize("token", GARBAGE)
    def test_reset_with_garbage_chains_nothing(self, env: Env, token: str) -> None:
        with pytest.raises(InvalidTokenError) as caught:
            env.service.reset_password(token, NEW, NEW)
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None

    def test_tampered_link_chains_nothing(self, env: Env) -> None:
        env.register()
        env.service.request_password_reset(EMAIL, client_key=_client())
        token = _token(extract_link(env.outbox.last_email(to=EMAIL)))
        tampered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        for call in (
            lambda: env.service.reset_password(tampered, NEW, NEW),
            lambda: env.service.confirm_email(tampered),
        ):
            with pytest.raises(InvalidTokenError) as caught:
                call()
            assert caught.value.__context__ is None
            assert caught.value.__cause__ is None
