"""Tests of the reset by SMS code: phone formats, regions, codes, attempts, limits and secrecy.

Every test runs against the in-memory and the SQLite storage. The code and rate-limit stores
are wrapped in spies that record what the service asked them to store, so "nothing stored"
and "no code for an unknown phone" are checked the same way on both adapters; for SQLite the
table rows are also read back with :mod:`sqlite3`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from _faces import FACES, Face, core_of, make_service
from kaspi_identity import KaspiIdentityError
from kaspi_identity._errors import ExpiredTokenError, InvalidTokenError
from kaspi_identity.delivery import Outbox, extract_code, extract_link, sms_encoding, sms_segments
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.phone import InvalidPhoneError, parse_phone
from kaspi_identity.services import (
    IdentityService,
    IdentitySettings,
    InvalidCodeError,
    ManualClock,
    MemoryAuditLog,
    ResetRequestResult,
)
from kaspi_identity.storage import (
    CodeAttempt,
    OneTimeCodeStore,
    RateLimiter,
    RateLimitResult,
    Storage,
)
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage
from kaspi_identity.testing import mark_phone_verified

_clients = itertools.count(1)


def _client() -> str:
    """A fresh client key, so the per-client limits only bite where a test wants them to."""
    return f"203.0.113.{next(_clients)}"


T = TypeVar("T")

SECRET = b"sms-tests-secret-key-0123456789abcdef"
OTHER_SECRET = b"sms-tests-other-key-fedcba9876543210"
PASSWORD = "Zq7!vLp#2xWm"
NEW_PASSWORD = "Nw9$kTr!4bQz"
THIRD_PASSWORD = "Hu4%mYc@8sRd"
PHONE = "+77011234567"
OTHER_PHONE = "+77029876543"
UNKNOWN_PHONE = "+77471112233"
EN_PHONE = "+77051234567"
RU_PHONE = "+79161234567"
CLIENT = "198.51.100.7"
FORMATS = ("+7 701 123 45 67", "8 (701) 123-45-67", "87011234567", "7011234567", "+77011234567")
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


class SpyCodes:
    """A one-time code store that records what it was asked to store and check."""

    def __init__(self, inner: OneTimeCodeStore) -> None:
        self.inner = inner
        self.puts: list[tuple[str, bytes]] = []
        self.attempts: list[str] = []
        self._lock = threading.Lock()

    def put(
        self,
        key: str,
        code_hash: bytes,
        *,
        expires_at: datetime,
        now: datetime,
        failure_window: timedelta,
    ) -> None:
        self.inner.put(
            key, code_hash, expires_at=expires_at, now=now, failure_window=failure_window
        )
        with self._lock:
            self.puts.append((key, code_hash))

    def attempt(
        self, key: str, candidates: Sequence[bytes], *, now: datetime, max_attempts: int
    ) -> CodeAttempt:
        with self._lock:
            self.attempts.append(key)
        return self.inner.attempt(key, candidates, now=now, max_attempts=max_attempts)


class SpyLimits:
    """A rate limiter that records the keys it was asked to count."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def hit(self, key: str, *, limit: int, window: timedelta, now: datetime) -> RateLimitResult:
        with self._lock:
            self.keys.append(key)
        return self.inner.hit(key, limit=limit, window=window, now=now)


@dataclass
class SmsEnv:
    """A service wired to an outbox, a manual clock, an audit log and spied stores."""

    service: IdentityService
    outbox: Outbox
    clock: ManualClock
    audit: MemoryAuditLog
    codes: SpyCodes
    limits: SpyLimits
    db_path: Path | None
    storage: Storage

    def register(self, phone: str = PHONE, *, language: str = "en") -> str:
        """Register an account with ``phone`` (any format); return its id."""
        e164 = parse_phone(phone, allowed_regions=self.service.settings.phone_regions).e164
        result = self.service.register(
            password=PASSWORD,
            confirmation=PASSWORD,
            email=f"u{e164[1:]}@example.kz",
            phone=phone,
            language=language,
            client_key=_client(),
        )
        assert result.ok, result
        account = self.storage.accounts.find_by_login("phone", e164)
        assert account is not None
        # Only a proven number receives reset codes (tests/test_contact.py proves one).
        mark_phone_verified(self.storage.accounts, account.id)
        # Registration's own limits are set-up: the tests look at what the SMS flow counts.
        self.limits.keys[:] = [k for k in self.limits.keys if not k.startswith("register-")]
        return account.id

    def request(self, phone: str = PHONE, client: str = CLIENT) -> ResetRequestResult:
        """Ask for a reset code."""
        return self.service.request_sms_reset(phone, client_key=client)

    def code(self, to: str = PHONE) -> str:
        """The code in the newest SMS to ``to``."""
        return extract_code(self.outbox.last_sms(to=to))

    def grant_owner(self, grant: str) -> str:
        """The account id a grant was issued for."""
        return self.service.tokens.verify(grant, "sms_grant", now=self.clock.now()).account_id

    def reasons(self) -> list[str]:
        """The reasons of the ``sms_code_failed`` audit events, oldest first."""
        return [e.details["reason"] for e in self.audit.events if e.kind == "sms_code_failed"]

    def code_rows(self) -> list[tuple[Any, ...]]:
        """Every row of the SQLite ``one_time_codes`` table (SQLite only)."""
        assert self.db_path is not None
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            return db.execute("SELECT * FROM one_time_codes").fetchall()

    def rate_rows(self) -> list[tuple[Any, ...]]:
        """Every row of the SQLite ``rate_limits`` table (SQLite only)."""
        assert self.db_path is not None
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            rows = db.execute("SELECT * FROM rate_limits").fetchall()
        return [row for row in rows if not str(row[0]).startswith("register-")]


SmsMake = Callable[..., SmsEnv]


@pytest.fixture(params=["memory", "sqlite"])
def sms_backend(request: pytest.FixtureRequest) -> str:
    """The storage adapter under test."""
    backend: str = request.param
    return backend


@pytest.fixture(params=FACES)
def sms_face(request: pytest.FixtureRequest) -> Face:
    """The face of the service under test."""
    face: Face = request.param
    return face


@pytest.fixture
def sms_make(sms_backend: str, sms_face: Face, tmp_path: Path) -> Iterator[SmsMake]:
    """Build services on fresh storage; keyword arguments override IdentitySettings."""
    opened: list[Storage] = []

    def make(*, secret: bytes = SECRET, with_sms: bool = True, **overrides: Any) -> SmsEnv:
        db_path: Path | None = None
        if sms_backend == "sqlite":
            db_path = tmp_path / f"identity-{len(opened)}.sqlite3"
            base = sqlite_storage(db_path, synchronous="NORMAL")
        else:
            base = memory_storage()
        opened.append(base)
        codes, limits = SpyCodes(base.codes), SpyLimits(base.rate_limits)
        storage = Storage(
            accounts=base.accounts,
            history=base.history,
            ledger=base.ledger,
            codes=codes,
            rate_limits=limits,
        )
        settings = IdentitySettings(
            secret_keys=(secret,),
            confirm_url="https://portal.example.kz/confirm",
            reset_url="https://portal.example.kz/reset",
            **overrides,
        )
        outbox, clock, audit = Outbox(), ManualClock(), MemoryAuditLog()
        service = make_service(
            sms_face,
            storage,
            settings,
            email_sender=outbox,
            sms_sender=outbox if with_sms else None,
            hasher=PasswordHasher(TESTS_ONLY),
            clock=clock,
            audit=audit,
        )
        return SmsEnv(service, outbox, clock, audit, codes, limits, db_path, storage)

    yield make
    for storage in opened:
        storage.close()


@pytest.fixture
def sms_env(sms_make: SmsMake) -> SmsEnv:
    """A service with default settings."""
    return sms_make()


@pytest.fixture
def sms_fixed_code(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ``secrets.randbelow`` return 583920 (recording each bound it was asked for)."""
    bounds: list[int] = []

    def fixed(bound: int) -> int:
        bounds.append(bound)
        return 583920 % bound

    monkeypatch.setattr(secrets, "randbelow", fixed)
    return bounds


def _wrong(code: str, n: int = 1) -> str:
    """A code of the same length that is not ``code``."""
    width = len(code)
    return f"{(int(code) + n) % 10**width:0{width}d}"


def _race(n: int, call: Callable[[], T]) -> tuple[list[T], list[BaseException]]:
    """Run ``call`` in ``n`` threads released together; return results and exceptions."""
    barrier = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            value = call()
        except BaseException as exc:  # collected, and asserted by the caller
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results, errors


def _unkeyed(phone: str, code: str) -> list[bytes]:
    """The code in clear and unkeyed digests of it (alone and with the phone), raw and hex."""
    texts = [
        code,
        phone + code,
        code + phone,
        f"{phone}:{code}",
        f"{phone}\x00{code}",
        f"kaspi-identity/sms-code\x00{phone}\x00{code}",
    ]
    needles: list[bytes] = []
    for text in texts:
        data = text.encode()
        needles.append(data)
        for algorithm in ("md5", "sha1", "sha256", "sha512", "sha3_256", "blake2b"):
            digest = hashlib.new(algorithm, data).digest()
            needles += [digest, digest.hex().encode(), digest.hex().upper().encode()]
    return needles


class TestPhoneFormats:
    """Every format a user types reaches the same account and the same code slot."""

    @pytest.mark.parametrize("registered_as", FORMATS)
    def test_every_format_reaches_the_same_account(
        self, sms_env: SmsEnv, registered_as: str
    ) -> None:
        """A code asked for in one format and typed with another opens the registered account."""
        account_id = sms_env.register(registered_as)
        for i, typed in enumerate(FORMATS):
            sms_env.clock.advance(sms_env.service.settings.sms_cooldown)
            assert sms_env.request(typed) == ResetRequestResult(True)
            assert sms_env.outbox.sms[-1].to == PHONE
            grant = sms_env.service.verify_sms_code(FORMATS[(i + 1) % 5], sms_env.code())
            assert sms_env.grant_owner(grant) == account_id
        assert len(sms_env.outbox.sms) == len(FORMATS)
        assert {key for key, _ in sms_env.codes.puts} == {PHONE}

    def test_every_format_counts_against_the_same_code(self, sms_env: SmsEnv) -> None:
        """Wrong codes typed with five formats burn the code asked for with a sixth."""
        sms_env.register()
        sms_env.request("+7 (701) 123 4567")
        code = sms_env.code()
        for n, typed in enumerate(FORMATS, start=1):
            with pytest.raises(InvalidCodeError) as caught:
                sms_env.service.verify_sms_code(typed, _wrong(code, n))
            assert caught.value.reason == "wrong"
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code("8 701 123 45 67", code)
        assert caught.value.reason == "exhausted"
        assert set(sms_env.codes.attempts) == {PHONE}

    def test_rate_limits_are_shared_across_formats(self, sms_env: SmsEnv) -> None:
        """The cooldown applies to the number, whatever format the second request uses."""
        sms_env.register()
        assert sms_env.request(FORMATS[0])
        for typed in FORMATS[1:]:
            result = sms_env.request(typed)
            assert not result.accepted
            assert result.retry_after == sms_env.service.settings.sms_cooldown
        assert len(sms_env.outbox.sms) == 1


class TestRegions:
    """Kazakh and Russian numbers share +7; the number itself decides the region."""

    def test_russian_mobile_refused_by_default(self, sms_env: SmsEnv) -> None:
        """A +7 916 number is RU: refused with region_not_allowed; nothing sent or stored."""
        for typed in ("+7 916 123 45 67", "8 916 123 45 67", "9161234567"):
            with pytest.raises(InvalidPhoneError) as caught:
                sms_env.request(typed)
            assert caught.value.reason == "region_not_allowed"
            assert caught.value.region == "RU"
            assert caught.value.allowed_regions == ("KZ",)
            with pytest.raises(InvalidPhoneError) as caught:
                sms_env.service.verify_sms_code(typed, "123456")
            assert caught.value.reason == "region_not_allowed"
        assert sms_env.outbox.sms == []
        assert sms_env.codes.puts == []
        assert sms_env.codes.attempts == []
        assert sms_env.limits.keys == []

    def test_russian_mobile_accepted_when_allowed(self, sms_make: SmsMake) -> None:
        """With phone_regions=("KZ", "RU") a Russian mobile gets its code and its grant."""
        env = sms_make(phone_regions=("KZ", "RU"))
        account_id = env.register("8 916 123 45 67")
        assert env.request("+7 916 123-45-67")
        assert env.outbox.last_sms().to == RU_PHONE
        grant = env.service.verify_sms_code("89161234567", env.code(RU_PHONE))
        assert env.grant_owner(grant) == account_id

    def test_region_decided_by_number_not_default_region(self, sms_make: SmsMake) -> None:
        """With default region RU and only RU allowed, a KZ number typed as 8 701 is refused."""
        env = sms_make(phone_region="RU", phone_regions=("RU",))
        with pytest.raises(InvalidPhoneError) as caught:
            env.request("8 (701) 123-45-67")
        assert caught.value.reason == "region_not_allowed"
        assert caught.value.region == "KZ"
        env.register("8 916 123 45 67")
        assert env.request("8 916 123 45 67")
        assert env.outbox.last_sms().to == RU_PHONE

    def test_allow_list_given_as_str_refused(self) -> None:
        """phone_regions="RU" is a TypeError at construction, not ("R", "U") failing later."""
        with pytest.raises(TypeError, match="phone_regions"):
            IdentitySettings(
                secret_keys=(SECRET,),
                confirm_url="https://portal.example.kz/confirm",
                reset_url="https://portal.example.kz/reset",
                phone_regions=cast(tuple[str, ...], "RU"),
            )

    @pytest.mark.parametrize("landline", ["+7 727 212 34 56", "8 (7172) 12-34-56"])
    def test_landline_refused(self, sms_env: SmsEnv, landline: str) -> None:
        """A Kazakh landline cannot receive SMS: not_mobile, with a localised message."""
        with pytest.raises(InvalidPhoneError) as caught:
            sms_env.request(landline)
        assert caught.value.reason == "not_mobile"
        assert caught.value.kind == "fixed_line"
        for lang in ("kk", "ru", "en"):
            assert caught.value.message(lang).strip()
        assert sms_env.outbox.sms == []
        assert sms_env.limits.keys == []

    @pytest.mark.parametrize(
        ("typed", "reason"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("abc", "invalid"),
            ("+7 701 ABC 45 67", "invalid"),
            ("+7 701 123 45 6", "too_short"),
            ("8 701 123", "too_short"),
            ("+7 701 123 45 678", "too_long"),
            ("7" * 65, "too_long"),
            ("7" * 1_000_000, "too_long"),
            ("+7701\x001234567", "invalid"),
            ("+7701\ud8001234567", "invalid"),
            ("７０１１２３４５６７", "invalid"),
            ("+77011234567;ext=1", "invalid"),
        ],
    )
    def test_garbage_refused_with_typed_error(
        self, sms_env: SmsEnv, typed: str, reason: str
    ) -> None:
        """Malformed numbers raise InvalidPhoneError with a stable reason; nothing happens."""
        sms_env.register()
        with pytest.raises(InvalidPhoneError) as caught:
            sms_env.request(typed)
        assert caught.value.reason == reason
        for lang in ("kk", "ru", "en"):
            assert caught.value.message(lang).strip()
        with pytest.raises(InvalidPhoneError):
            sms_env.service.verify_sms_code(typed, "123456")
        assert sms_env.outbox.sms == []
        assert sms_env.codes.puts == []
        assert sms_env.codes.attempts == []
        assert sms_env.limits.keys == []
        if sms_env.db_path is not None:
            assert sms_env.code_rows() == []
            assert sms_env.rate_rows() == []

    @pytest.mark.parametrize("bad", [None, b"+77011234567", 77011234567, ["+77011234567"]])
    def test_non_string_is_type_error(self, sms_env: SmsEnv, bad: Any) -> None:
        """None, bytes and numbers are a TypeError for the phone, the client key and the code."""
        with pytest.raises(TypeError):
            sms_env.service.request_sms_reset(bad, client_key=CLIENT)
        with pytest.raises(TypeError):
            sms_env.service.request_sms_reset(PHONE, client_key=bad)
        with pytest.raises(TypeError):
            sms_env.service.verify_sms_code(bad, "123456")
        with pytest.raises(TypeError):
            sms_env.service.verify_sms_code(PHONE, bad)
        assert sms_env.outbox.sms == []
        assert sms_env.codes.puts == []
        assert sms_env.codes.attempts == []
        assert sms_env.limits.keys == []

    def test_no_sms_sender_configured(self, sms_make: SmsMake) -> None:
        """Without an SMS sender the request is a clear error, and nothing is counted."""
        env = sms_make(with_sms=False)
        env.register()
        with pytest.raises(KaspiIdentityError, match="no SMS sender"):
            env.request()
        assert env.codes.puts == []
        assert env.limits.keys == []


class TestCodes:
    """The code: random digits from secrets, sms_code_digits long, short-lived, single-use."""

    def test_default_code_is_six_ascii_digits(self, sms_env: SmsEnv) -> None:
        """The SMS holds a 6-digit numeric code, and that code is the one that works."""
        sms_env.register()
        sms_env.request()
        code = sms_env.code()
        assert len(code) == 6
        assert code.isascii()
        assert code.isdigit()
        sms_env.service.verify_sms_code(PHONE, code)

    @pytest.mark.parametrize("digits", [6, 7, 8])
    def test_configured_length(self, sms_make: SmsMake, digits: int) -> None:
        """sms_code_digits of 6, 7 or 8 gives a code of that many digits."""
        env = sms_make(sms_code_digits=digits)
        env.register()
        env.request()
        code = env.code()
        assert len(code) == digits
        assert code.isdigit()
        env.service.verify_sms_code(PHONE, code)

    @pytest.mark.parametrize("digits", [0, 4, 5, 9, 10])
    def test_length_outside_six_to_eight_refused(self, digits: int) -> None:
        """Settings refuse codes shorter than 6 or longer than 8 digits."""
        with pytest.raises(ValueError, match="sms_code_digits"):
            IdentitySettings(
                secret_keys=(SECRET,),
                confirm_url="https://portal.example.kz/confirm",
                reset_url="https://portal.example.kz/reset",
                sms_code_digits=digits,
            )

    @pytest.mark.parametrize(
        "lifetime", [timedelta(minutes=10, seconds=1), timedelta(hours=1), timedelta(0), -MINUTE]
    )
    def test_lifetime_over_ten_minutes_refused(self, lifetime: timedelta) -> None:
        """NIST SP 800-63B OBV-3: a code lifetime over 10 minutes (or not positive) is refused."""
        with pytest.raises(ValueError, match="sms_code_lifetime"):
            IdentitySettings(
                secret_keys=(SECRET,),
                confirm_url="https://portal.example.kz/confirm",
                reset_url="https://portal.example.kz/reset",
                sms_code_lifetime=lifetime,
            )

    def test_ten_minutes_is_the_longest_lifetime(self) -> None:
        """Exactly 10 minutes is allowed; the default is 5."""
        settings = IdentitySettings(
            secret_keys=(SECRET,),
            confirm_url="https://portal.example.kz/confirm",
            reset_url="https://portal.example.kz/reset",
            sms_code_lifetime=timedelta(minutes=10),
        )
        assert settings.sms_code_lifetime == timedelta(minutes=10)
        assert settings.sms_code_digits == 6
        assert settings.sms_max_attempts == 5
        assert settings.sms_cooldown == timedelta(seconds=60)
        default = IdentitySettings(
            secret_keys=(SECRET,),
            confirm_url="https://portal.example.kz/confirm",
            reset_url="https://portal.example.kz/reset",
        )
        assert default.sms_code_lifetime == timedelta(minutes=5)

    @pytest.mark.parametrize("digits", [6, 8])
    def test_code_comes_from_secrets_with_leading_zeros(
        self, sms_make: SmsMake, sms_fixed_code: list[int], digits: int
    ) -> None:
        """The code is secrets.randbelow(10**digits), zero-padded to its full length."""
        env = sms_make(sms_code_digits=digits)
        env.register()
        env.request()
        assert sms_fixed_code == [10**digits]
        expected = f"{583920 % 10**digits:0{digits}d}"
        assert env.code() == expected
        assert env.grant_owner(env.service.verify_sms_code(PHONE, expected))

    def test_codes_differ(self, sms_env: SmsEnv) -> None:
        """Successive codes are random, not a counter or a function of the time."""
        sms_env.register()
        codes = []
        for _ in range(5):
            assert sms_env.request()
            codes.append(sms_env.code())
            sms_env.clock.advance(sms_env.service.settings.sms_cooldown)
        assert len(set(codes)) >= 4

    @pytest.mark.parametrize("lifetime", [timedelta(minutes=5), timedelta(minutes=10), MINUTE])
    def test_code_works_until_one_second_before_expiry(
        self, sms_make: SmsMake, lifetime: timedelta
    ) -> None:
        """The store keeps a code live while now < expires_at: one second before, it works."""
        env = sms_make(sms_code_lifetime=lifetime)
        env.register()
        env.request()
        env.clock.advance(lifetime - SECOND)
        env.service.verify_sms_code(PHONE, env.code())

    @pytest.mark.parametrize("lifetime", [timedelta(minutes=5), timedelta(minutes=10), MINUTE])
    def test_code_dead_at_expiry_and_after(self, sms_make: SmsMake, lifetime: timedelta) -> None:
        """At now == expires_at the code is dead ("expired"), and one second past as well."""
        env = sms_make(sms_code_lifetime=lifetime)
        env.register()
        env.request()
        code = env.code()
        env.clock.advance(lifetime)
        with pytest.raises(InvalidCodeError) as caught:
            env.service.verify_sms_code(PHONE, code)
        assert caught.value.reason == "expired"
        env.clock.advance(SECOND)
        with pytest.raises(InvalidCodeError) as caught:
            env.service.verify_sms_code(PHONE, code)
        assert caught.value.reason == "expired"

    def test_attempts_on_expired_code_are_not_counted(self, sms_env: SmsEnv) -> None:
        """4 wrong, then attempts after expiry (not counted): the next right code still works."""
        sms_env.register()
        sms_env.request()
        code = sms_env.code()
        for n in range(1, 5):
            with pytest.raises(InvalidCodeError):
                sms_env.service.verify_sms_code(PHONE, _wrong(code, n))
        sms_env.clock.advance(sms_env.service.settings.sms_code_lifetime)
        for _ in range(3):
            with pytest.raises(InvalidCodeError) as caught:
                sms_env.service.verify_sms_code(PHONE, code)
            assert caught.value.reason == "expired"
        assert sms_env.request()
        sms_env.service.verify_sms_code(PHONE, sms_env.code())

    def test_code_is_single_use(self, sms_env: SmsEnv) -> None:
        """The right code gives one grant; typed again it is refused."""
        sms_env.register()
        sms_env.request()
        code = sms_env.code()
        sms_env.service.verify_sms_code(PHONE, code)
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(PHONE, code)
        assert caught.value.reason == "expired"

    def test_new_code_replaces_the_old_one(self, sms_env: SmsEnv) -> None:
        """After a resend only the newest code works."""
        sms_env.register()
        sms_env.request()
        old = sms_env.code()
        sms_env.clock.advance(sms_env.service.settings.sms_cooldown)
        sms_env.request()
        new = sms_env.code()
        if old != new:
            with pytest.raises(InvalidCodeError) as caught:
                sms_env.service.verify_sms_code(PHONE, old)
            assert caught.value.reason == "wrong"
        sms_env.service.verify_sms_code(PHONE, new)

    def test_code_is_bound_to_its_phone(self, sms_env: SmsEnv) -> None:
        """A code sent to one phone does not open another phone's account."""
        first, second = sms_env.register(PHONE), sms_env.register(OTHER_PHONE)
        sms_env.request(PHONE)
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(OTHER_PHONE, sms_env.code(PHONE))
        assert caught.value.reason == "expired"
        sms_env.request(OTHER_PHONE)
        if sms_env.code(PHONE) != sms_env.code(OTHER_PHONE):
            with pytest.raises(InvalidCodeError) as caught:
                sms_env.service.verify_sms_code(OTHER_PHONE, sms_env.code(PHONE))
            assert caught.value.reason == "wrong"
        assert (
            sms_env.grant_owner(sms_env.service.verify_sms_code(PHONE, sms_env.code(PHONE)))
            == first
        )
        grant = sms_env.service.verify_sms_code(OTHER_PHONE, sms_env.code(OTHER_PHONE))
        assert sms_env.grant_owner(grant) == second

    def test_code_with_surrounding_spaces_accepted(self, sms_env: SmsEnv) -> None:
        """Spaces around a typed code are ignored."""
        account_id = sms_env.register()
        sms_env.request()
        grant = sms_env.service.verify_sms_code(PHONE, f"  {sms_env.code()}\n")
        assert sms_env.grant_owner(grant) == account_id

    @pytest.mark.parametrize("typed", ["", "abcdef", "1" * 1_000_000, "12\x003456", "\ud800" * 6])
    def test_garbage_code_is_a_wrong_code(self, sms_env: SmsEnv, typed: str) -> None:
        """Garbage codes are counted as wrong, never a crash."""
        sms_env.register()
        sms_env.request()
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(PHONE, typed)
        assert caught.value.reason == "wrong"

    def test_no_code_requested(self, sms_env: SmsEnv) -> None:
        """Verifying before any code was sent is refused as "expired" and counts nothing."""
        sms_env.register()
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(PHONE, "123456")
        assert caught.value.reason == "expired"
        assert isinstance(caught.value, InvalidTokenError)

    def test_failed_delivery_gives_the_same_answer(self, sms_env: SmsEnv) -> None:
        """A failing SMS gateway does not change the answer; it is audited."""
        sms_env.register()
        sms_env.outbox.fail_next()
        assert sms_env.request() == ResetRequestResult(True)
        assert sms_env.outbox.sms == []
        assert "delivery_failed" in sms_env.audit.kinds()


class TestAttempts:
    """Wrong codes are counted before the comparison; five burn the code, resends do not help."""

    def test_five_wrong_then_right_refused(self, sms_env: SmsEnv) -> None:
        """After 5 wrong codes the right one is refused as "exhausted", and then it is gone."""
        sms_env.register()
        sms_env.request()
        code = sms_env.code()
        for n in range(1, 6):
            with pytest.raises(InvalidCodeError) as caught:
                sms_env.service.verify_sms_code(PHONE, _wrong(code, n))
            assert caught.value.reason == "wrong"
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(PHONE, code)
        assert caught.value.reason == "exhausted"
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(PHONE, code)
        assert caught.value.reason == "expired"
        assert sms_env.reasons() == ["wrong"] * 5 + ["exhausted", "expired"]

    def test_four_wrong_then_right_accepted(self, sms_env: SmsEnv) -> None:
        """The fifth attempt may still be the right one."""
        account_id = sms_env.register()
        sms_env.request()
        code = sms_env.code()
        for n in range(1, 5):
            with pytest.raises(InvalidCodeError):
                sms_env.service.verify_sms_code(PHONE, _wrong(code, n))
        assert sms_env.grant_owner(sms_env.service.verify_sms_code(PHONE, code)) == account_id

    @pytest.mark.parametrize("limit", [1, 3, 10])
    def test_configured_attempt_limit(self, sms_make: SmsMake, limit: int) -> None:
        """sms_max_attempts wrong codes burn the code; one fewer does not."""
        env = sms_make(sms_max_attempts=limit)
        env.register()
        env.request()
        code = env.code()
        for n in range(1, limit + 1):
            with pytest.raises(InvalidCodeError):
                env.service.verify_sms_code(PHONE, _wrong(code, n))
        with pytest.raises(InvalidCodeError) as caught:
            env.service.verify_sms_code(PHONE, code)
        assert caught.value.reason == "exhausted"

    @pytest.mark.parametrize("limit", [0, 11])
    def test_attempt_limit_out_of_range_refused(self, limit: int) -> None:
        """sms_max_attempts must be 1 to 10."""
        with pytest.raises(ValueError, match="sms_max_attempts"):
            IdentitySettings(
                secret_keys=(SECRET,),
                confirm_url="https://portal.example.kz/confirm",
                reset_url="https://portal.example.kz/reset",
                sms_max_attempts=limit,
            )

    def test_new_code_after_five_wrong_still_counted(self, sms_env: SmsEnv) -> None:
        """NIST OBV-7: a new code after 5 wrong is refused until the failure window passes."""
        settings = sms_env.service.settings
        sms_env.register()
        start = sms_env.clock.now()
        sms_env.request()
        first = sms_env.code()
        for n in range(1, 6):
            with pytest.raises(InvalidCodeError):
                sms_env.service.verify_sms_code(PHONE, _wrong(first, n))
        # A new code is sent (the request looks normal) but typing it is refused.
        sms_env.clock.advance(settings.sms_cooldown)
        assert sms_env.request()
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(PHONE, sms_env.code())
        assert caught.value.reason == "exhausted"
        # One second before the failure window ends: still refused.
        sms_env.clock.advance(start + settings.sms_failure_window - SECOND - sms_env.clock.now())
        assert sms_env.request()
        with pytest.raises(InvalidCodeError) as caught:
            sms_env.service.verify_sms_code(PHONE, sms_env.code())
        assert caught.value.reason == "exhausted"
        # Past the window (and the cooldown): a new code works again.
        sms_env.clock.advance(settings.sms_cooldown)
        assert sms_env.request()
        sms_env.service.verify_sms_code(PHONE, sms_env.code())

    def test_shorter_failure_window(self, sms_make: SmsMake) -> None:
        """With sms_failure_window of one hour, the count is forgotten after one hour."""
        env = sms_make(sms_failure_window=timedelta(hours=1))
        env.register()
        env.request()
        code = env.code()
        for n in range(1, 6):
            with pytest.raises(InvalidCodeError):
                env.service.verify_sms_code(PHONE, _wrong(code, n))
        env.clock.advance(timedelta(minutes=59))
        env.request()
        with pytest.raises(InvalidCodeError):
            env.service.verify_sms_code(PHONE, env.code())
        env.clock.advance(MINUTE)
        env.request()
        env.service.verify_sms_code(PHONE, env.code())

    def test_success_resets_the_count(self, sms_env: SmsEnv) -> None:
        """A right code clears the count: a later code gets the full 5 attempts again."""
        sms_env.register()
        sms_env.request()
        code = sms_env.code()
        for n in range(1, 5):
            with pytest.raises(InvalidCodeError):
                sms_env.service.verify_sms_code(PHONE, _wrong(code, n))
        sms_env.service.verify_sms_code(PHONE, code)
        sms_env.clock.advance(sms_env.service.settings.sms_cooldown)
        sms_env.request()
        code = sms_env.code()
        for n in range(1, 5):
            with pytest.raises(InvalidCodeError):
                sms_env.service.verify_sms_code(PHONE, _wrong(code, n))
        sms_env.service.verify_sms_code(PHONE, code)

    def test_thirty_two_right_codes_at_once_give_one_grant(self, sms_env: SmsEnv) -> None:
        """32 threads submitting the right code together: exactly one grant, 31 refusals."""
        account_id = sms_env.register()
        sms_env.request()
        code = sms_env.code()
        grants, errors = _race(32, lambda: sms_env.service.verify_sms_code(PHONE, code))
        assert len(grants) == 1
        assert sms_env.grant_owner(grants[0]) == account_id
        assert len(errors) == 31
        assert all(isinstance(e, InvalidCodeError) for e in errors), errors

    def test_thirty_two_wrong_codes_at_once_count_each(self, sms_env: SmsEnv) -> None:
        """32 parallel wrong guesses: 5 counted as wrong, the rest find the code burned."""
        sms_env.register()
        sms_env.request()
        code = sms_env.code()
        guesses = iter([_wrong(code, n) for n in range(1, 33)])
        lock = threading.Lock()

        def guess() -> str:
            with lock:
                typed = next(guesses)
            return sms_env.service.verify_sms_code(PHONE, typed)

        grants, errors = _race(32, guess)
        assert grants == []
        reasons = sorted(e.reason for e in errors if isinstance(e, InvalidCodeError))
        assert len(reasons) == 32
        assert reasons.count("wrong") == 5
        assert reasons.count("exhausted") == 1
        with pytest.raises(InvalidCodeError):
            sms_env.service.verify_sms_code(PHONE, code)


class TestGrant:
    """The grant of a verified code: one reset, short-lived, bound to the current password."""

    def _grant(self, env: SmsEnv) -> tuple[str, str]:
        account_id = env.register()
        env.request()
        return account_id, env.service.verify_sms_code(PHONE, env.code())

    def test_grant_resets_the_password_once(self, sms_env: SmsEnv) -> None:
        """reset_password accepts the grant once; the new password logs in; a reuse fails."""
        account_id, grant = self._grant(sms_env)
        result = sms_env.service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD)
        assert result.ok
        assert result.account_id == account_id
        assert result.end_sessions
        assert sms_env.service.authenticate(
            "8 701 123 45 67", NEW_PASSWORD, client_key=_client()
        ).ok
        assert not sms_env.service.authenticate(
            "8 701 123 45 67", PASSWORD, client_key=_client()
        ).ok
        with pytest.raises(InvalidTokenError):
            sms_env.service.reset_password(grant, THIRD_PASSWORD, THIRD_PASSWORD)
        assert sms_env.service.authenticate(PHONE, NEW_PASSWORD, client_key=_client()).ok
        completed = [e for e in sms_env.audit.events if e.kind == "password_reset_completed"]
        assert [(e.account_id, dict(e.details)) for e in completed] == [
            (account_id, {"via": "sms"})
        ]

    def test_policy_failure_keeps_the_grant(self, sms_env: SmsEnv) -> None:
        """A password the policy refuses does not use the grant up."""
        _, grant = self._grant(sms_env)
        refused = sms_env.service.reset_password(grant, "short", "short")
        assert not refused.ok
        assert refused.policy.violations
        assert sms_env.service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD).ok

    def test_grant_valid_through_its_last_second(self, sms_env: SmsEnv) -> None:
        """At exactly sms_grant_lifetime after issue the grant still works (inclusive)."""
        _, grant = self._grant(sms_env)
        sms_env.clock.advance(sms_env.service.settings.sms_grant_lifetime)
        assert sms_env.service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD).ok

    @pytest.mark.parametrize("lifetime", [timedelta(minutes=10), timedelta(minutes=2)])
    def test_grant_expires(self, sms_make: SmsMake, lifetime: timedelta) -> None:
        """One second past sms_grant_lifetime the grant is refused as expired."""
        env = sms_make(sms_grant_lifetime=lifetime)
        _, grant = self._grant(env)
        env.clock.advance(lifetime + SECOND)
        with pytest.raises(ExpiredTokenError):
            env.service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD)
        assert env.service.authenticate(PHONE, PASSWORD, client_key=_client()).ok

    def test_grant_dies_when_password_changes(self, sms_env: SmsEnv) -> None:
        """A grant issued before a change of password is refused after it."""
        account_id, grant = self._grant(sms_env)
        changed = sms_env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key=_client()
        )
        assert changed.ok
        with pytest.raises(InvalidTokenError):
            sms_env.service.reset_password(grant, THIRD_PASSWORD, THIRD_PASSWORD)
        assert sms_env.service.authenticate(PHONE, NEW_PASSWORD, client_key=_client()).ok

    def test_grant_dies_when_another_grant_is_used(self, sms_env: SmsEnv) -> None:
        """Of two grants from two codes, the second dies once the first reset the password."""
        _, first = self._grant(sms_env)
        sms_env.clock.advance(sms_env.service.settings.sms_cooldown)
        sms_env.request()
        second = sms_env.service.verify_sms_code(PHONE, sms_env.code())
        assert sms_env.service.reset_password(first, NEW_PASSWORD, NEW_PASSWORD).ok
        with pytest.raises(InvalidTokenError):
            sms_env.service.reset_password(second, THIRD_PASSWORD, THIRD_PASSWORD)

    def test_grant_is_not_an_email_confirmation(self, sms_env: SmsEnv) -> None:
        """confirm_email refuses a grant; the address stays unconfirmed."""
        account_id, grant = self._grant(sms_env)
        with pytest.raises(InvalidTokenError):
            sms_env.service.confirm_email(grant)
        account = sms_env.storage.accounts.get(account_id)
        assert account is not None
        assert not account.email_confirmed

    def test_confirmation_token_is_not_a_grant(self, sms_env: SmsEnv) -> None:
        """The token of a confirmation letter is refused by reset_password."""
        self._grant(sms_env)
        link = extract_link(sms_env.outbox.last_email())
        token = link.split("token=", 1)[1]
        with pytest.raises(InvalidTokenError):
            sms_env.service.reset_password(token, NEW_PASSWORD, NEW_PASSWORD)
        assert sms_env.service.confirm_email(token)

    def test_tampered_grant_refused(self, sms_env: SmsEnv) -> None:
        """A grant with one character changed is refused."""
        _, grant = self._grant(sms_env)
        tampered = grant[:-2] + ("A" if grant[-2] != "A" else "B") + grant[-1]
        with pytest.raises(InvalidTokenError):
            sms_env.service.reset_password(tampered, NEW_PASSWORD, NEW_PASSWORD)

    def test_concurrent_redemption_resets_once(self, sms_env: SmsEnv) -> None:
        """8 threads redeeming one grant at once: exactly one reset."""
        _, grant = self._grant(sms_env)
        results, errors = _race(
            8, lambda: sms_env.service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD)
        )
        assert [r.ok for r in results] == [True]
        assert len(errors) == 7
        assert all(isinstance(e, InvalidTokenError) for e in errors), errors


class TestRateLimits:
    """Resend cooldown and daily caps per phone and per client key."""

    def test_cooldown(self, sms_env: SmsEnv) -> None:
        """A second request within 60 s is refused with retry_after; at 60 s it is sent."""
        sms_env.register()
        assert sms_env.request() == ResetRequestResult(True)
        sms_env.clock.advance(seconds=59)
        assert sms_env.request() == ResetRequestResult(False, retry_after=SECOND)
        assert len(sms_env.outbox.sms) == 1
        assert len(sms_env.codes.puts) == 1
        sms_env.clock.advance(SECOND)
        assert sms_env.request() == ResetRequestResult(True)
        assert len(sms_env.outbox.sms) == 2

    def test_configured_cooldown(self, sms_make: SmsMake) -> None:
        """sms_cooldown sets the wait."""
        env = sms_make(sms_cooldown=timedelta(minutes=2))
        env.register()
        assert env.request()
        env.clock.advance(seconds=90)
        assert env.request() == ResetRequestResult(False, retry_after=timedelta(seconds=30))
        env.clock.advance(seconds=30)
        assert env.request()

    def test_daily_cap_per_phone(self, sms_env: SmsEnv) -> None:
        """5 codes a day to one phone: the 5th is sent, the 6th refused until the day is over."""
        sms_env.register()
        start = sms_env.clock.now()
        for _ in range(5):
            assert sms_env.request()
            sms_env.clock.advance(MINUTE)
        assert len(sms_env.outbox.sms) == 5
        refused = sms_env.request()
        assert not refused.accepted
        assert refused.retry_after == start + DAY - sms_env.clock.now()
        assert len(sms_env.outbox.sms) == 5
        assert len(sms_env.codes.puts) == 5
        sms_env.clock.advance(start + DAY - sms_env.clock.now())
        assert sms_env.request()
        assert len(sms_env.outbox.sms) == 6

    def test_configured_daily_cap_per_phone(self, sms_make: SmsMake) -> None:
        """sms_per_phone_daily=2: two codes, then refused."""
        env = sms_make(sms_per_phone_daily=2)
        env.register()
        assert env.request()
        env.clock.advance(MINUTE)
        assert env.request()
        env.clock.advance(MINUTE)
        assert not env.request()

    def test_daily_cap_per_client(self, sms_env: SmsEnv) -> None:
        """20 requests a day per client key: the 20th is accepted, the 21st refused."""
        sms_env.register("+7 707 555 0000")
        phones = [f"+7707555{i:04d}" for i in range(21)]
        for phone in phones[:20]:
            assert sms_env.request(phone) == ResetRequestResult(True)
        refused = sms_env.request(phones[20])
        assert refused == ResetRequestResult(False, retry_after=DAY)
        assert sms_env.request(phones[20], client="203.0.113.9") == ResetRequestResult(True)
        sms_env.clock.advance(DAY)
        assert sms_env.request(phones[20])

    def test_configured_daily_cap_per_client(self, sms_make: SmsMake) -> None:
        """sms_per_client_daily=3: the 4th phone from that client is refused."""
        env = sms_make(sms_per_client_daily=3)
        for i in range(3):
            assert env.request(f"+7707555{i:04d}")
        assert not env.request("+77075550009")

    @pytest.mark.parametrize("field", ["sms_per_phone_daily", "sms_per_client_daily"])
    def test_caps_must_be_positive(self, field: str) -> None:
        """A daily cap below 1 is refused by the settings."""
        with pytest.raises(ValueError, match=field):
            IdentitySettings(
                secret_keys=(SECRET,),
                confirm_url="https://portal.example.kz/confirm",
                reset_url="https://portal.example.kz/reset",
                **cast(dict[str, Any], {field: 0}),
            )

    def test_limits_apply_to_unknown_phones_alike(self, sms_env: SmsEnv) -> None:
        """An unknown phone gets the same cooldown answer as a known one."""
        sms_env.register()
        assert sms_env.request(PHONE) == sms_env.request(UNKNOWN_PHONE)
        sms_env.clock.advance(seconds=30)
        known, unknown = sms_env.request(PHONE), sms_env.request(UNKNOWN_PHONE)
        assert known == unknown == ResetRequestResult(False, retry_after=timedelta(seconds=30))

    def test_rate_limit_keys_hide_phone_and_client(self, sms_env: SmsEnv) -> None:
        """The rate-limit keys are keyed hashes: neither the phone nor the client key shows."""
        sms_env.register()
        sms_env.request()
        assert sms_env.limits.keys
        for key in sms_env.limits.keys:
            assert PHONE not in key
            assert PHONE[1:] not in key
            assert CLIENT not in key
        if sms_env.db_path is not None:
            for row in sms_env.rate_rows():
                assert PHONE[1:] not in str(row)
                assert CLIENT not in str(row)


class TestUnknownPhone:
    """Unknown and known phones: the same answer, the same work, but no SMS and no code."""

    def test_same_answer_same_work(self, sms_env: SmsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
        """Both get ResetRequestResult(True); each makes one code, one keyed hash, one put."""
        sms_env.register()
        flow = core_of(sms_env.service)._sms_reset  # the flow that runs, on either face
        calls: list[str] = []
        real_hash, real_randbelow = flow.code_hash, secrets.randbelow

        def counting_hash(key: bytes, e164: str, code: str) -> bytes:
            calls.append("hash")
            return real_hash(key, e164, code)

        def counting_randbelow(bound: int) -> int:
            calls.append("randbelow")
            return real_randbelow(bound)

        monkeypatch.setattr(flow, "code_hash", counting_hash)
        monkeypatch.setattr(secrets, "randbelow", counting_randbelow)

        known = sms_env.request(PHONE)
        known_calls, calls[:] = sorted(calls), []
        unknown = sms_env.request(UNKNOWN_PHONE)
        unknown_calls = sorted(calls)

        assert known == unknown == ResetRequestResult(True)
        assert known_calls == unknown_calls == ["hash", "randbelow"]
        assert [key for key, _ in sms_env.codes.puts] == [PHONE, UNKNOWN_PHONE]
        assert [m.to for m in sms_env.outbox.sms] == [PHONE]

    def test_unknown_phone_gets_a_code_nobody_can_match(self, sms_env: SmsEnv) -> None:
        """An unknown phone's code is stored (equal state), but under a key no try uses."""
        assert sms_env.request(UNKNOWN_PHONE)
        [(key, stored)] = sms_env.codes.puts
        assert key == UNKNOWN_PHONE
        assert len(stored) == 32
        assert sms_env.outbox.sms == []
        flow = core_of(sms_env.service)._sms_reset  # the keys and the hash: both faces'
        for code in ("000000", "123456", "999999"):
            for k in flow.code_keys:
                assert flow.code_hash(k, UNKNOWN_PHONE, code) != stored

    def test_verify_answers_the_same_for_known_and_unknown(self, sms_env: SmsEnv) -> None:
        """Issue 10: the reasons, the tries before exhaustion and expiry are the same."""
        sms_env.register()
        s = sms_env.service.settings
        answers: dict[str, list[str]] = {PHONE: [], UNKNOWN_PHONE: []}
        for phone in (PHONE, UNKNOWN_PHONE):  # no code asked for yet
            with pytest.raises(InvalidCodeError) as caught:
                sms_env.service.verify_sms_code(phone, "000000")
            answers[phone].append(caught.value.reason)
        for phone in (PHONE, UNKNOWN_PHONE):
            assert sms_env.request(phone) == ResetRequestResult(True)
        for _ in range(s.sms_max_attempts + 2):
            for phone in (PHONE, UNKNOWN_PHONE):
                wrong = "000000" if sms_env.code() != "000000" else "111111"
                with pytest.raises(InvalidCodeError) as caught:
                    sms_env.service.verify_sms_code(phone, wrong)
                answers[phone].append(caught.value.reason)
        assert answers[PHONE] == answers[UNKNOWN_PHONE]
        assert answers[PHONE][:2] == ["expired", "wrong"]
        assert "exhausted" in answers[PHONE]

    def test_expired_codes_answer_the_same(self, sms_env: SmsEnv) -> None:
        """After the code's lifetime both phones answer "expired"."""
        sms_env.register()
        for phone in (PHONE, UNKNOWN_PHONE):
            sms_env.request(phone)
        sms_env.clock.advance(sms_env.service.settings.sms_code_lifetime)
        reasons = []
        for phone in (PHONE, UNKNOWN_PHONE):
            with pytest.raises(InvalidCodeError) as caught:
                sms_env.service.verify_sms_code(phone, "000000")
            reasons.append(caught.value.reason)
        assert reasons == ["expired", "expired"]

    def test_audit_tells_found_or_not(self, sms_env: SmsEnv) -> None:
        """The audit log (for the operator) records whether an account was found."""
        sms_env.register()
        sms_env.request(PHONE)
        sms_env.request(UNKNOWN_PHONE)
        requested = [e for e in sms_env.audit.events if e.kind == "sms_reset_requested"]
        assert [e.details["found"] for e in requested] == ["yes", "no"]
        assert requested[1].account_id is None


class TestStoredCode:
    """The stored row holds a 32-byte HMAC, never the code nor an unkeyed hash of it."""

    def test_stored_row_has_no_code_and_no_unkeyed_hash(self, sms_make: SmsMake) -> None:
        """Only a 32-byte keyed hash is stored: not the code, nor an unkeyed digest of it.

        Checked on what the service hands the store, and for SQLite on the table rows read
        with sqlite3 and on the database files themselves.
        """
        env = sms_make(sms_code_digits=8)
        env.register()
        env.request()
        code = env.code()
        needles = _unkeyed(PHONE, code) + _unkeyed(PHONE[1:], code)
        [(key, stored)] = env.codes.puts
        assert key == PHONE
        assert len(stored) == 32
        assert stored not in needles
        assert not any(needle in stored or needle in stored.hex().encode() for needle in needles)
        if env.db_path is None:
            return
        rows = env.code_rows()
        assert len(rows) == 1
        for value in rows[0]:
            if isinstance(value, int):
                assert value != int(code)
                continue
            data = value if isinstance(value, bytes) else str(value).encode()
            for candidate in (data, data.hex().encode()):
                assert not any(needle in candidate for needle in needles)
        assert [value for value in rows[0] if isinstance(value, bytes)] == [stored]
        assert rows[0][0] == PHONE
        files = b"".join(
            p.read_bytes() for p in env.db_path.parent.glob(env.db_path.name + "*") if p.is_file()
        )
        assert stored in files
        digests = [n for n in needles if len(n) >= 16]
        assert not any(needle in files for needle in digests)

    def test_stored_hash_is_keyed(self, sms_make: SmsMake, sms_fixed_code: list[int]) -> None:
        """The same code for the same phone hashes differently under another server key."""
        first, second = sms_make(), sms_make(secret=OTHER_SECRET)
        for env in (first, second):
            env.register()
            env.request()
        assert first.code() == second.code()
        [(key_a, hash_a)], [(key_b, hash_b)] = first.codes.puts, second.codes.puts
        assert key_a == key_b == PHONE
        assert len(hash_a) == len(hash_b) == 32
        assert hash_a != hash_b
        for stored in (hash_a, hash_b):
            assert stored not in _unkeyed(PHONE, first.code())
        assert not hmac.compare_digest(hash_a, hashlib.sha256(first.code().encode()).digest())

    def test_stored_hash_is_bound_to_the_phone(
        self, sms_env: SmsEnv, sms_fixed_code: list[int]
    ) -> None:
        """The same code for two phones is stored as two different hashes."""
        sms_env.register(PHONE)
        sms_env.register(OTHER_PHONE)
        sms_env.request(PHONE)
        sms_env.request(OTHER_PHONE)
        assert sms_env.code(PHONE) == sms_env.code(OTHER_PHONE)
        (_, first), (_, second) = sms_env.codes.puts
        assert first != second


class TestSmsTexts:
    """The SMS in kk / ru / en fits one segment even with an 8-digit code."""

    @pytest.mark.parametrize("lang", ["kk", "ru", "en"])
    @pytest.mark.parametrize("minutes", [1, 2, 5, 10])
    @pytest.mark.parametrize("site", ["kaspi-identity", "goszakup.gov.kz"])
    def test_one_segment_with_longest_code(
        self, sms_make: SmsMake, lang: str, minutes: int, site: str
    ) -> None:
        """Through the service, with sms_code_digits=8: one segment, the account's language."""
        env = sms_make(
            sms_code_digits=8, sms_code_lifetime=timedelta(minutes=minutes), site_name=site
        )
        env.register(language=lang)
        env.request()
        message = env.outbox.last_sms(to=PHONE)
        assert message.language == lang
        assert sms_segments(message.text) == 1
        code = env.code()
        assert len(code) == 8
        assert message.text.count(code) == 1
        assert str(minutes) in message.text
        if lang == "en":
            assert sms_encoding(message.text) == "GSM-7"
            assert len(message.text) <= 160
        else:
            assert sms_encoding(message.text) == "UCS-2"
            assert len(message.text) <= 70
        env.service.verify_sms_code(PHONE, code)

    def test_languages_differ(self, sms_make: SmsMake) -> None:
        """Each account gets its own language."""
        env = sms_make(sms_code_digits=8)
        phones = {"kk": PHONE, "ru": OTHER_PHONE, "en": EN_PHONE}
        for lang, phone in phones.items():
            env.register(phone, language=lang)
            env.request(phone)
        texts = {lang: env.outbox.last_sms(to=phone).text for lang, phone in phones.items()}
        assert len(set(texts.values())) == 3
        assert "Do not share" in texts["en"]


class TestSecrecy:
    """No code, grant, password or key in log records, audit events, reprs or errors."""

    def test_no_secret_leaks(
        self, sms_env: SmsEnv, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A whole flow with failures logged at DEBUG: no secret in any record or event."""
        caplog.set_level(logging.DEBUG)
        made: list[str] = []
        real_randbelow = secrets.randbelow

        def recording(bound: int) -> int:
            value = real_randbelow(bound)
            made.append(f"{value:06d}")
            return value

        monkeypatch.setattr(secrets, "randbelow", recording)
        service, clock = sms_env.service, sms_env.clock
        account_id = sms_env.register()
        # A code lost in a failed delivery, a code to an unknown phone, a code burned by
        # wrong guesses, and one that is used.
        sms_env.outbox.fail_next()
        sms_env.request()
        sms_env.request(UNKNOWN_PHONE)
        clock.advance(MINUTE)
        sms_env.request()
        burned = sms_env.code()
        errors: list[BaseException] = []
        for n in range(1, 7):
            with pytest.raises(InvalidCodeError) as caught:
                service.verify_sms_code(PHONE, _wrong(burned, n))
            errors.append(caught.value)
        clock.advance(DAY)
        sms_env.request()
        code = sms_env.code()
        grant = service.verify_sms_code(PHONE, code)
        result = service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD)
        with pytest.raises(InvalidTokenError) as reused:
            service.reset_password(grant, THIRD_PASSWORD, THIRD_PASSWORD)
        errors.append(reused.value)
        with pytest.raises(InvalidPhoneError) as bad_phone:
            sms_env.request("+7 727 212 34 56")
        errors.append(bad_phone.value)

        secrets_seen = {*made, burned, code, grant, PASSWORD, NEW_PASSWORD, THIRD_PASSWORD}
        secrets_seen |= {_wrong(burned, n) for n in range(1, 7)}
        secrets_seen |= {SECRET.decode(), SECRET.hex(), grant.split(".")[-1]}
        assert len(made) == 4

        texts: list[str] = []
        for record in caplog.records:
            texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
        assert any(r.levelno >= logging.WARNING for r in caplog.records)  # the failed SMS
        for event in sms_env.audit.events:
            texts += [repr(event), *event.details.values()]
        assert account_id in " ".join(texts)
        texts += [
            repr(service),
            repr(service.settings),
            repr(service.tokens),
            repr(sms_env.outbox),
            repr(result),
            repr(sms_env.request()),
            *(repr(m) for m in sms_env.outbox.sms),
            *(f"{e!s} {e!r}" for e in errors),
        ]
        joined = "\n".join(texts)
        leaked = sorted(s for s in secrets_seen if s in joined)
        assert leaked == []
        assert "727 212 34 56" not in joined
        assert "7272123456" not in joined
