"""Password age (issue 18): maximum age with warning and grace log-ins, minimum age, the
must-change flag, and a stored password checked against a tightened policy at log-in.

The flows run on both faces over memory and SQLite storage, with a manual clock; the store
operations themselves are proven for every adapter by the contract suite.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _faces import FACES, Face, make_service
from kaspi_identity import AccountNotFoundError, PasswordPolicy, PolicyConfigError
from kaspi_identity.delivery import Outbox, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.i18n import SUPPORTED_LANGUAGES
from kaspi_identity.services import (
    PASSWORD_CHANGE_REASONS,
    IdentityService,
    IdentitySettings,
    LoginResult,
    ManualClock,
    MemoryAuditLog,
    PasswordChangeResult,
    RateLimit,
)
from kaspi_identity.services._age import age_of, changeable_at
from kaspi_identity.storage import Account, Storage
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage

KEY = hashlib.sha256(b"kaspi-identity tests: password age").digest()
EMAIL = "aigerim@example.kz"
PW = "Tr0ub4dor&3x-Steppe"
NEW = "Velvet#Quartz-9182"
NEWER = "Amber!Falcon-4471"
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
YEARLY = PasswordPolicy(
    max_age_days=365, expiry_warning_days=14, grace_logins=3, min_age_hours=24, history=3
)


@dataclass
class Env:
    storage: Storage
    service: IdentityService
    clock: ManualClock
    outbox: Outbox
    audit: MemoryAuditLog
    face: Face
    account_id: str = ""

    def login(self, password: str = PW) -> LoginResult:
        return self.service.authenticate(EMAIL, password, client_key=f"c-{id(object())}")

    def change(self, current: str, new: str) -> PasswordChangeResult:
        return self.service.change_password(
            self.account_id, current, new, new, client_key=f"c-{id(object())}"
        )

    def account(self) -> Account:
        account = self.storage.accounts.get(self.account_id)
        assert account is not None
        return account


def _settings() -> IdentitySettings:
    return IdentitySettings(
        secret_keys=(KEY,),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        site_name="portal.example.kz",
        login_per_identifier=RateLimit(1000, HOUR),
        login_per_client=RateLimit(1000, HOUR),
    )


def _service(
    face: Face, storage: Storage, clock: ManualClock, outbox: Outbox, policy: PasswordPolicy
) -> tuple[IdentityService, MemoryAuditLog]:
    audit = MemoryAuditLog()
    service = make_service(
        face,
        storage,
        _settings(),
        email_sender=outbox,
        policy=policy,
        hasher=PasswordHasher(TESTS_ONLY),
        clock=clock,
        audit=audit,
    )
    return service, audit


@pytest.fixture(
    params=[(kind, face) for kind in ("memory", "sqlite") for face in FACES],
    ids=lambda p: "-".join(p),
)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """A registered account under the yearly policy, on each store and face."""
    kind, face = request.param
    storage = sqlite_storage(tmp_path / "age.sqlite3") if kind == "sqlite" else memory_storage()
    clock, outbox = ManualClock(T0), Outbox()
    service, audit = _service(face, storage, clock, outbox, YEARLY)
    result = service.register(email=EMAIL, password=PW, confirmation=PW, client_key="reg")
    assert result.ok, result
    account = storage.accounts.find_by_login("email", EMAIL)
    assert account is not None
    yield Env(storage, service, clock, outbox, audit, face, account.id)
    storage.close()


def _at(env: Env, moment: datetime) -> None:
    env.clock.advance(moment - env.clock.now())


class TestMaximumAge:
    def test_a_fresh_password_says_when_it_expires(self, env: Env) -> None:
        """Log-in right after registration: no change asked, the expiry date given."""
        assert env.account().password_changed_at == T0
        result = env.login()
        assert (result.ok, result.reason, result.needs_password_change) == (True, "ok", False)
        assert result.password_change_reason is None
        assert result.password_expires_at == T0 + 365 * DAY
        assert result.password_change_message("ru") is None

    def test_the_warning_window_starts_exactly_at_its_day(self, env: Env) -> None:
        """One microsecond before the window: nothing; at its start: "expiring", advice only."""
        start = T0 + (365 - 14) * DAY
        _at(env, start - US)
        assert env.login().password_change_reason is None
        _at(env, start)
        result = env.login()
        assert result.ok
        assert not result.needs_password_change
        assert result.password_change_reason == "expiring"
        assert result.password_change_message("en", now=start) == (
            "Your password expires in 14 days. Change it before then."
        )
        assert "14 дней" in (result.password_change_message("ru", now=start) or "")
        assert env.account().grace_logins_used == 0

    def test_expiry_is_at_the_day_not_a_microsecond_before(self, env: Env) -> None:
        """At max_age_days exactly the password is expired; one microsecond before, not."""
        expires = T0 + 365 * DAY
        _at(env, expires - US)
        assert env.login().password_change_reason == "expiring"
        _at(env, expires)
        result = env.login()
        assert (result.ok, result.password_change_reason) == (True, "expired")
        assert result.needs_password_change
        assert result.grace_logins_left == 2

    def test_grace_logins_then_refusal(self, env: Env) -> None:
        """Three grace log-ins (2, 1, 0 left), then password_expired with the account id."""
        _at(env, T0 + 400 * DAY)
        left = []
        for _ in range(3):
            result = env.login()
            assert (result.ok, result.password_change_reason) == (True, "expired")
            assert result.security_stamp is not None
            left.append(result.grace_logins_left)
        assert left == [2, 1, 0]
        refused = env.login()
        assert (refused.ok, refused.reason) == (False, "password_expired")
        assert refused.account_id == env.account_id
        assert refused.security_stamp is None
        assert refused.password_change_reason == "expired"
        assert refused.password_change_message("kk") == (
            "Құпиясөздің жарамдылық мерзімі өтті. Жаңа құпиясөз ойлап табыңыз."
        )
        account = env.account()
        assert (account.grace_logins_used, account.failed_logins) == (3, 0)
        kinds = [(e.kind, dict(e.details)) for e in env.audit.events[-2:]]
        assert kinds[-1] == ("login_failed", {"reason": "password_expired"})

    def test_a_wrong_password_on_an_expired_account_says_nothing_of_the_age(self, env: Env) -> None:
        """Only a proven password learns of the expiry; a wrong one is "invalid", no grace spent."""
        _at(env, T0 + 400 * DAY)
        result = env.login("Not-The-Password-1")
        assert (result.ok, result.reason) == (False, "invalid")
        assert result.password_change_reason is None
        assert result.account_id is None
        assert env.account().grace_logins_used == 0

    def test_an_expired_password_can_be_changed_and_ages_afresh(self, env: Env) -> None:
        """change_password works on an expired password (no min-age hold); the age restarts."""
        later = T0 + 400 * DAY
        _at(env, later)
        assert env.login().reason == "ok"  # one grace log-in spent
        changed = env.change(PW, NEW)
        assert changed.ok, changed
        account = env.account()
        assert (account.password_changed_at, account.grace_logins_used) == (later, 0)
        result = env.login(NEW)
        assert (result.password_change_reason, result.password_expires_at) == (
            None,
            later + 365 * DAY,
        )

    def test_a_reset_restarts_the_age(self, env: Env) -> None:
        """A reset by e-mail link sets a new change time and clears the grace count."""
        later = T0 + 500 * DAY
        _at(env, later)
        assert env.login().reason == "password_expired" or env.login().ok
        env.outbox.clear()
        env.service.request_password_reset(EMAIL, client_key="r")
        token = extract_link(env.outbox.last_email(to=EMAIL)).split("token=")[1]
        assert env.service.reset_password(token, NEW, NEW).ok
        account = env.account()
        assert (account.password_changed_at, account.grace_logins_used) == (later, 0)
        assert env.login(NEW).password_change_reason is None

    def test_a_rehash_keeps_the_age(self, env: Env, tmp_path: Path) -> None:
        """A log-in that upgrades the hash parameters does not make the password new."""
        _at(env, T0 + 30 * DAY)
        core = replace(TESTS_ONLY, time_cost=TESTS_ONLY.time_cost + 1)
        service, _ = _service(env.face, env.storage, env.clock, env.outbox, YEARLY)
        service_hasher = PasswordHasher(core)
        service = make_service(
            env.face,
            env.storage,
            _settings(),
            email_sender=env.outbox,
            policy=YEARLY,
            hasher=service_hasher,
            clock=env.clock,
        )
        result = service.authenticate(EMAIL, PW, client_key="rehash")
        assert result.ok
        assert result.rehashed
        assert env.account().password_changed_at == T0

    def test_without_a_maximum_age_nothing_expires(self, tmp_path: Path) -> None:
        """The default policy: no expiry date, no reason, ever."""
        storage, clock, outbox = memory_storage(), ManualClock(T0), Outbox()
        service, _ = _service("sync", storage, clock, outbox, PasswordPolicy())
        assert service.register(email=EMAIL, password=PW, confirmation=PW, client_key="c").ok
        clock.advance(days=10_000)
        result = service.authenticate(EMAIL, PW, client_key="c")
        assert result.ok
        assert result.password_expires_at is None
        assert result.password_change_reason is None

    def test_an_unknown_change_time_never_expires(self) -> None:
        """A store that keeps no change time (None): the age is unknown, no maximum applies."""
        storage, clock, outbox = memory_storage(), ManualClock(T0), Outbox()
        service, _ = _service("sync", storage, clock, outbox, YEARLY)
        assert service.register(email=EMAIL, password=PW, confirmation=PW, client_key="c").ok
        accounts: Any = storage.accounts
        real_get, real_find = accounts.get, accounts.find_by_login

        def unknown(account: Account | None) -> Account | None:
            return None if account is None else replace(account, password_changed_at=None)

        clock.advance(days=1000)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(accounts, "get", lambda i: unknown(real_get(i)))
            patch.setattr(accounts, "find_by_login", lambda k, v: unknown(real_find(k, v)))
            result = service.authenticate(EMAIL, PW, client_key="c")
        assert result.ok
        assert result.password_expires_at is None
        assert result.password_change_reason is None


class TestRacingGraceLogins:
    @pytest.mark.parametrize("kind", ["memory", "sqlite"])
    def test_racing_logins_never_spend_more_than_the_grace(self, kind: str, tmp_path: Path) -> None:
        """16 threads log in at once with an expired password: exactly 3 get in."""
        storage = (
            sqlite_storage(tmp_path / "race.sqlite3") if kind == "sqlite" else memory_storage()
        )
        clock, outbox = ManualClock(T0), Outbox()
        service, _ = _service("sync", storage, clock, outbox, YEARLY)
        assert service.register(email=EMAIL, password=PW, confirmation=PW, client_key="c").ok
        clock.advance(days=400)
        barrier = threading.Barrier(16)
        results: list[LoginResult] = []
        lock = threading.Lock()

        def log_in(index: int) -> None:
            barrier.wait(timeout=30)
            result = service.authenticate(EMAIL, PW, client_key=f"c{index}")
            with lock:
                results.append(result)

        threads = [threading.Thread(target=log_in, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        reasons = sorted(r.reason for r in results)
        # Racing verifications may also be throttled by the account's back-off; none passes
        # beyond the grace log-ins.
        assert reasons.count("ok") <= 3
        assert set(reasons) <= {"ok", "password_expired", "throttled"}
        account = storage.accounts.find_by_login("email", EMAIL)
        assert account is not None
        assert account.grace_logins_used == reasons.count("ok")
        assert sorted(r.grace_logins_left or 0 for r in results if r.ok) == list(
            range(3 - reasons.count("ok"), 3)
        )
        storage.close()


class TestMustChange:
    def test_the_flag_is_said_at_log_in_and_a_change_clears_it(self, env: Env) -> None:
        """require_password_change → "must_change" at every log-in until a new password."""
        env.service.require_password_change(env.account_id)
        for _ in range(2):
            result = env.login()
            assert result.ok
            assert result.needs_password_change
            assert result.password_change_reason == "must_change"
            assert result.password_change_message("en") == "Choose a new password to continue."
        assert env.change(PW, NEW).ok  # a required change ignores min_age_hours
        assert env.login(NEW).password_change_reason is None
        assert not env.account().must_change_password
        assert [e.kind for e in env.audit.events].count("password_change_required") == 1

    def test_the_flag_can_be_cleared(self, env: Env) -> None:
        """required=False takes the flag back; the stamp and sessions are left alone."""
        stamp = env.account().security_stamp
        env.service.require_password_change(env.account_id)
        env.service.require_password_change(env.account_id, required=False)
        assert not env.account().must_change_password
        assert env.account().security_stamp == stamp
        assert env.login().password_change_reason is None

    def test_the_flag_outranks_expiry(self, env: Env) -> None:
        """An expired password with the flag set: the reason is must_change, grace still spent."""
        env.service.require_password_change(env.account_id)
        _at(env, T0 + 400 * DAY)
        result = env.login()
        assert (result.password_change_reason, result.grace_logins_left) == ("must_change", 2)

    @pytest.mark.parametrize("garbage", ["no-such-id", "", "\x00", "\ud800", "x" * 100_000])
    def test_unknown_accounts(self, env: Env, garbage: str) -> None:
        """An id no account has: AccountNotFoundError, nothing written."""
        with pytest.raises(AccountNotFoundError):
            env.service.require_password_change(garbage)
        assert not env.account().must_change_password

    @pytest.mark.parametrize(
        ("account_id", "required"), [(None, True), (b"id", True), (1, True), ("id", 1)]
    )
    def test_bad_input(self, env: Env, account_id: object, required: object) -> None:
        """Wrong types: TypeError before anything is written."""
        target = env.account_id if account_id == "id" else account_id
        with pytest.raises(TypeError):
            env.service.require_password_change(target, required=required)  # type: ignore[arg-type]
        assert not env.account().must_change_password


class TestTightenedPolicy:
    def test_a_password_below_the_new_rules_asks_for_a_change(self, env: Env) -> None:
        """Registered under the default length, logging in under 24 and 4 digits: "policy"."""
        strict = replace(YEARLY, min_length=24, require={"digit": 4})
        service, _ = _service(env.face, env.storage, env.clock, env.outbox, strict)
        result = service.authenticate(EMAIL, PW, client_key="strict")
        assert result.ok
        assert result.needs_password_change
        assert result.password_change_reason == "policy"
        assert result.password_violations == ("too_short", "missing_digit")
        assert result.password_change_message("ru") == (
            "Пароль больше не соответствует требованиям сайта. Придумайте новый пароль."
        )

    def test_the_personal_data_rule_uses_the_account(self, tmp_path: Path) -> None:
        """A password holding the user name passes an old policy and fails a new one."""
        storage, clock, outbox = memory_storage(), ManualClock(T0), Outbox()
        lax = PasswordPolicy(forbid_personal_info=False)
        service, _ = _service("sync", storage, clock, outbox, lax)
        password = "aigerim-Steppe-2026"
        assert service.register(
            email=EMAIL, password=password, confirmation=password, client_key="c"
        ).ok
        strict, _ = _service("sync", storage, clock, outbox, PasswordPolicy())
        result = strict.authenticate(EMAIL, password, client_key="c")
        assert result.password_change_reason == "policy"
        assert result.password_violations == ("contains_personal_info",)


class TestMinimumAge:
    def test_a_second_change_waits_for_min_age(self, env: Env) -> None:
        """Changed at T0+1d; again within 24 h: too_soon with the wait; at 24 h: allowed."""
        start = T0 + DAY
        _at(env, start)
        assert env.change(PW, NEW).ok
        _at(env, start + 23 * HOUR)
        refused = env.change(NEW, NEWER)
        assert (refused.ok, refused.reason, refused.retry_after) == (False, "too_soon", HOUR)
        assert refused.too_soon_message("en") == (
            "The password was changed recently. It can be changed again in 1 hour."
        )
        assert "1 час." in (refused.too_soon_message("ru") or "")
        assert env.account().failed_logins == 0  # the proven password is no failure
        _at(env, start + 24 * HOUR - US)
        assert env.change(NEW, NEWER).reason == "too_soon"
        _at(env, start + 24 * HOUR)
        assert env.change(NEW, NEWER).ok

    def test_a_wrong_current_password_is_not_told_too_soon(self, env: Env) -> None:
        """The hold is said only once the current password is proven."""
        held = env.change(PW, NEW)  # the registration's password is held too
        assert (held.reason, held.retry_after) == ("too_soon", 24 * HOUR)
        _at(env, T0 + DAY)
        assert env.change(PW, NEW).ok
        result = env.change("Wrong-Password-77", NEWER)
        assert result.reason == "wrong_password"

    def test_a_reset_is_not_held(self, env: Env) -> None:
        """Recovery ignores min_age_hours: a forgotten new password can always be reset."""
        _at(env, T0 + DAY)
        assert env.change(PW, NEW).ok
        env.outbox.clear()
        env.service.request_password_reset(EMAIL, client_key="r")
        token = extract_link(env.outbox.last_email(to=EMAIL)).split("token=")[1]
        assert env.service.reset_password(token, NEWER, NEWER).ok

    def test_too_soon_message_only_for_too_soon(self) -> None:
        """Every other reason has no such message."""
        from kaspi_identity.policy import PolicyResult

        assert PasswordChangeResult(True, "ok", PolicyResult()).too_soon_message() is None


class TestMessages:
    @pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
    @pytest.mark.parametrize("reason", PASSWORD_CHANGE_REASONS)
    def test_every_reason_has_a_message_in_every_language(self, lang: str, reason: str) -> None:
        """Each reason renders a sentence (no braces left), in kk, ru and en."""
        result = LoginResult(
            True,
            "ok",
            "1",
            password_change_reason=reason,  # type: ignore[arg-type]
            password_expires_at=T0 + 3 * DAY,
            grace_logins_left=2,
        )
        text = result.password_change_message(lang, now=T0)
        assert text
        assert text.endswith(".")
        assert "{" not in text

    @pytest.mark.parametrize("days", [0, 1, 2, 5, 11, 21, 22, 25, 100, 111])
    def test_days_left_round_up_and_inflect(self, days: int) -> None:
        """The days left are rounded up (an expiry an hour away is "1 day"); Russian forms."""
        expires = T0 + days * DAY + HOUR
        result = LoginResult(
            True,
            "ok",
            password_change_reason="expiring",
            password_expires_at=expires,
        )
        shown = max(days + 1, 1)
        assert f" {shown} " in (result.password_change_message("en", now=T0) or "")
        ru = result.password_change_message("ru", now=T0) or ""
        form = (
            "день"
            if shown % 10 == 1 and shown % 100 != 11
            else ("дня" if 2 <= shown % 10 <= 4 and not 12 <= shown % 100 <= 14 else "дней")
        )
        assert f"{shown} {form}." in ru

    def test_nothing_to_say(self) -> None:
        """A plain success or failure has no password message."""
        assert LoginResult(True, "ok").password_change_message("kk") is None
        assert LoginResult(False, "invalid").password_change_message("kk") is None


class TestPolicyKeys:
    @pytest.mark.parametrize(
        ("key", "low", "high"),
        [
            ("max_age_days", 1, 3650),
            ("grace_logins", 1, 100),
            ("min_age_hours", 1, 8760),
        ],
    )
    def test_bounds(self, key: str, low: int, high: int) -> None:
        """At each limit the key is accepted; one past it, refused naming the key."""
        base: dict[str, Any] = {"max_age_days": 3650} if key != "max_age_days" else {}
        if key == "min_age_hours":
            base = {}
        for value in (low, high):
            assert getattr(PasswordPolicy(**{**base, key: value}), key) == value
        for value in (low - 1 if low > 1 else -1, high + 1):
            if value == 0:
                continue
            with pytest.raises(PolicyConfigError) as caught:
                PasswordPolicy(**{**base, key: value})
            assert key in caught.value.errors

    @pytest.mark.parametrize("value", [True, "365", 365.0, [365], b"1"])
    def test_wrong_types(self, value: object) -> None:
        """Booleans, strings, floats: PolicyConfigError for each age key."""
        for key in ("max_age_days", "expiry_warning_days", "grace_logins", "min_age_hours"):
            with pytest.raises(PolicyConfigError) as caught:
                PasswordPolicy.from_mapping({"max_age_days": 90, key: value})
            assert key in caught.value.errors

    def test_keys_that_need_a_maximum_age(self) -> None:
        """A warning or grace log-ins without max_age_days is an error naming the key."""
        for key in ("expiry_warning_days", "grace_logins"):
            with pytest.raises(PolicyConfigError, match="needs max_age_days") as caught:
                PasswordPolicy.from_mapping({key: 3})
            assert set(caught.value.errors) == {key}

    def test_the_window_and_the_minimum_fit_inside_the_maximum(self) -> None:
        """A warning of max_age_days or more, a minimum age of a whole term: refused."""
        assert PasswordPolicy(max_age_days=30, expiry_warning_days=29).expiry_warning_days == 29
        with pytest.raises(PolicyConfigError, match="fewer than max_age_days"):
            PasswordPolicy(max_age_days=30, expiry_warning_days=30)
        assert PasswordPolicy(max_age_days=2, min_age_hours=47).min_age_hours == 47
        with pytest.raises(PolicyConfigError, match="not less than max_age_days"):
            PasswordPolicy(max_age_days=2, min_age_hours=48)

    def test_off_values_and_round_trip(self) -> None:
        """0, False and None switch each key off; to_mapping/from_mapping give it back."""
        off = PasswordPolicy.from_mapping({"max_age_days": 0, "min_age_hours": False})
        assert (off.max_age_days, off.min_age_hours) == (None, None)
        assert PasswordPolicy.from_mapping(YEARLY.to_mapping()) == YEARLY
        assert YEARLY.to_mapping()["grace_logins"] == 3
        assert YEARLY.check(PW) == PasswordPolicy(history=3).check(PW)  # check() ignores age

    def test_describe_and_deviations(self) -> None:
        """The age keys appear in describe (each language) and max_age_days in deviations."""
        lines = {lang: YEARLY.describe(lang) for lang in SUPPORTED_LANGUAGES}
        assert "Can be changed again 24 hours after a change" in lines["en"]
        assert "Кемінде 365 күнде бір рет ауыстырылады" in lines["kk"]
        assert "Повторно сменить можно не ранее чем через 24 часа" in lines["ru"]
        rules = {(d.rule, d.standard) for d in YEARLY.deviations()}
        assert ("max_age_days", "OWASP ASVS 5.0") in rules
        assert not any(d.rule == "min_age_hours" for d in YEARLY.deviations())
        assert not any(d.rule == "max_age_days" for d in PasswordPolicy().deviations())


def _account(changed: datetime | None, *, used: int = 0, must: bool = False) -> Account:
    return Account(
        id="1",
        username="u",
        email=None,
        phone=None,
        password_hash="h",
        email_confirmed=True,
        failed_logins=0,
        last_failed_login_at=None,
        last_login_at=None,
        created_at=T0,
        security_stamp="s",
        password_changed_at=changed,
        must_change_password=must,
        grace_logins_used=used,
    )


class TestAgeProperties:
    @given(
        max_days=st.integers(1, 3650),
        warn=st.one_of(st.none(), st.integers(1, 365)),
        grace=st.one_of(st.none(), st.integers(1, 100)),
        used=st.integers(0, 150),
        elapsed=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000)),
    )
    def test_the_verdict_follows_the_definition(
        self, max_days: int, warn: int | None, grace: int | None, used: int, elapsed: timedelta
    ) -> None:
        """expired ⇔ elapsed ≥ max; expiring ⇔ inside the window; grace never negative."""
        if warn is not None and warn >= max_days:
            warn = None
        policy = PasswordPolicy(max_age_days=max_days, expiry_warning_days=warn, grace_logins=grace)
        age = age_of(policy, _account(T0, used=used), T0 + elapsed)
        expires = T0 + timedelta(days=max_days)
        assert age.expires_at == expires
        assert age.expired == (elapsed >= timedelta(days=max_days))
        window = warn is not None and T0 + elapsed >= expires - timedelta(days=warn)
        assert age.expiring == (not age.expired and window)
        assert age.grace_left == (max((grace or 0) - used, 0) if age.expired else 0)

    @given(
        hours=st.integers(1, 8760),
        elapsed=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
        must=st.booleans(),
    )
    def test_the_hold_follows_the_definition(
        self, hours: int, elapsed: timedelta, must: bool
    ) -> None:
        """Held exactly while elapsed < min age, never for a required change."""
        policy = PasswordPolicy(min_age_hours=hours)
        until = changeable_at(policy, _account(T0, must=must), T0 + elapsed)
        held = not must and elapsed < timedelta(hours=hours)
        assert until == (T0 + timedelta(hours=hours) if held else None)
