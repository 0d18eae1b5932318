"""Account and e-mail flows (issue 4): register + confirm, log in, change and reset passwords.

Every flow runs against both bundled adapters (memory and SQLite) through the storage
protocols, with a manual clock, an in-memory outbox and audit log, and the TESTS_ONLY argon2
profile (the real profile's cost is measured in benchmarks/, never asserted here). The SMS
flow is tested in tests/test_services_sms.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from _faces import FACES, Face, make_service
from kaspi_identity import (
    AccountNotFoundError,
    PasswordHasher,
    PasswordPolicy,
    StorageError,
    UnknownLanguageError,
)
from kaspi_identity._errors import ExpiredTokenError, InvalidTokenError
from kaspi_identity.delivery import EmailMessage, Outbox, extract_link
from kaspi_identity.hashing import TESTS_ONLY, HashProfile
from kaspi_identity.phone import InvalidPhoneError
from kaspi_identity.services import (
    AuditEvent,
    IdentityService,
    IdentitySettings,
    InvalidIdentifierError,
    LoggingAuditSink,
    LoginResult,
    ManualClock,
    MemoryAuditLog,
    RateLimit,
    RegistrationResult,
    ResetRequestResult,
)
from kaspi_identity.services._tokens import bound_state
from kaspi_identity.storage import Account, HistoryEntry, PasswordHistoryStore, Storage
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage

KEY = hashlib.sha256(b"kaspi-identity tests: services key").digest()
OTHER_KEY = hashlib.sha256(b"kaspi-identity tests: another deployment").digest()
CONFIRM_URL = "https://portal.example.kz/confirm"
RESET_URL = "https://portal.example.kz/reset?lang=kk"
HOST = "portal.example.kz"
EMAIL = "Aliya@Example.kz"
EMAIL_B = "bolat@example.kz"
PW = "Tr0ub4dor&3x"
PW_B = "Saxaul-Steppe-1991"
NEW = "Velvet#Quartz-9182"
NEWER = "Amber!Falcon-4471"
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
WRITES = frozenset(
    {
        "create",
        "set_password_hash",
        "set_email",
        "mark_email_confirmed",
        "reserve_login_attempt",
        "record_login_success",
        "clear_login_failures",
        "set_must_change_password",
        "use_grace_login",
        "append",
        "consume",
        "put",
        "attempt",
        "hit",
    }
)
_clients = itertools.count(1)


def _client() -> str:
    """A fresh client key, so the per-client limit only bites where a test wants it to."""
    return f"198.51.100.{next(_clients)}"


class CountingHasher(PasswordHasher):
    """A TESTS_ONLY hasher that counts argon2 hashes and verifications."""

    def __init__(self, profile: HashProfile = TESTS_ONLY) -> None:
        super().__init__(profile)
        self.hashes = 0
        self.verifications = 0

    def hash(self, password: str) -> str:
        """Count, then hash."""
        self.hashes += 1
        return super().hash(password)

    def verify(self, hash: str, password: str) -> None:
        """Count, then verify (``verify_and_update`` goes through here too)."""
        self.verifications += 1
        super().verify(hash, password)

    def reset_counts(self) -> None:
        """Start counting from zero."""
        self.hashes = 0
        self.verifications = 0


class _Spy:
    """Forwards every call to a store and records the method names called."""

    def __init__(self, inner: object, calls: list[str]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute) or name == "close":
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return attribute(*args, **kwargs)

        return call


class FailingHistory:
    """A history store whose ``append`` fails (the backend went away mid-flow)."""

    def __init__(self, inner: PasswordHistoryStore) -> None:
        self.inner = inner

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Fail like a broken backend."""
        raise StorageError("simulated history store failure")

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Read through to the real store."""
        return self.inner.recent(account_id, limit)


class RacingHistory:
    """A history store that runs ``before_read`` once, just before its first ``recent``.

    It puts a concurrent flow at the worst moment of another, deterministically.
    """

    def __init__(self, inner: PasswordHistoryStore, before_read: Callable[[], object]) -> None:
        self.inner = inner
        self.before_read: Callable[[], object] | None = before_read

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        """Write through to the real store."""
        self.inner.append(account_id, entry, keep=keep)

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        """Run the racing flow once, then read the real store."""
        hook, self.before_read = self.before_read, None
        if hook is not None:
            hook()
        return self.inner.recent(account_id, limit)


class TeeAudit:
    """Keeps events in memory and also logs them (so the log capture sees every event)."""

    def __init__(self) -> None:
        self.memory = MemoryAuditLog()
        self.logging = LoggingAuditSink()

    def emit(self, event: AuditEvent) -> None:
        """Record and log ``event``."""
        self.memory.emit(event)
        self.logging.emit(event)


@dataclass
class Env:
    """A service under test and everything around it."""

    name: str
    raw: Storage
    storage: Storage
    path: Path | None
    service: IdentityService
    settings: IdentitySettings
    outbox: Outbox
    audit: MemoryAuditLog
    clock: ManualClock
    hasher: CountingHasher
    face: Face = "sync"
    calls: list[str] = field(default_factory=list)

    def writes(self) -> list[str]:
        """Every storage write since the last :meth:`forget_calls`."""
        return [c for c in self.calls if c in WRITES]

    def forget_calls(self) -> None:
        """Start recording storage calls afresh."""
        self.calls.clear()

    def account(self, email: str = EMAIL) -> Account:
        """The stored account with this e-mail."""
        account = self.raw.accounts.find_by_login("email", email)
        assert account is not None
        return account

    def kinds(self) -> list[str]:
        """Audit event kinds so far."""
        return self.audit.kinds()

    def rebuild(
        self, storage: Storage | None = None, audit: object = None, **changes: Any
    ) -> IdentityService:
        """Another service on the same face over (by default) the same stores, new settings."""
        settings = dataclasses.replace(self.settings, **changes)
        return make_service(
            self.face,
            storage or self.storage,
            settings,
            email_sender=self.outbox,
            policy=self.service.policy,
            hasher=self.hasher,
            clock=self.clock,
            audit=audit if audit is not None else self.service.audit,
        )


def _settings(**changes: Any) -> IdentitySettings:
    base: dict[str, Any] = {
        "secret_keys": (KEY,),
        "confirm_url": CONFIRM_URL,
        "reset_url": RESET_URL,
        "site_name": "portal.example.kz",
        "backoff_after": 3,
        "lockout_after": 6,
        "reset_per_identifier": RateLimit(3, HOUR),
        "reset_per_client": RateLimit(5, HOUR),
    }
    base.update(changes)
    return IdentitySettings(**base)


@pytest.fixture(
    params=[(kind, face) for kind in ("memory", "sqlite") for face in FACES],
    ids=lambda p: "-".join(p),
)
def svc_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """A fresh service over memory or SQLite storage, on either face (each test runs on all)."""
    kind, face = request.param
    path = tmp_path / "identity.sqlite3" if kind == "sqlite" else None
    raw = sqlite_storage(path) if path is not None else memory_storage()
    calls: list[str] = []
    spied = Storage(
        accounts=cast(Any, _Spy(raw.accounts, calls)),
        history=cast(Any, _Spy(raw.history, calls)),
        ledger=cast(Any, _Spy(raw.ledger, calls)),
        codes=cast(Any, _Spy(raw.codes, calls)),
        rate_limits=cast(Any, _Spy(raw.rate_limits, calls)),
    )
    settings = _settings()
    outbox, audit, clock, hasher = Outbox(), MemoryAuditLog(), ManualClock(), CountingHasher()
    service = make_service(
        face,
        spied,
        settings,
        email_sender=outbox,
        policy=PasswordPolicy(history=6, history_similar=True),
        hasher=hasher,
        clock=clock,
        audit=audit,
    )
    env = Env(kind, raw, spied, path, service, settings, outbox, audit, clock, hasher, face)
    env.calls = calls
    try:
        yield env
    finally:
        raw.close()


def _register(
    env: Env,
    email: str | None = EMAIL,
    *,
    username: str | None = None,
    phone: str | None = None,
    password: str = PW,
    language: str = "en",
) -> str:
    """Register an account (the flow must accept it); return its id."""
    result = env.service.register(
        email=email,
        username=username,
        phone=phone,
        password=password,
        confirmation=password,
        language=language,
        client_key=_client(),
    )
    assert result.ok, result.policy.codes
    if email is not None:
        return env.account(email).id
    assert username is not None
    account = env.raw.accounts.find_by_login("username", username)
    assert account is not None
    return account.id


def _token(message: EmailMessage) -> str:
    """The token in the letter's link, as the page that opens it would read it."""
    link = extract_link(message)
    assert urlsplit(link).hostname == HOST
    return parse_qs(urlsplit(link).query)["token"][0]


def _confirm_token(env: Env, email: str = EMAIL) -> str:
    message = env.outbox.last_email(to=email)
    assert message.kind == "confirm_email"
    return _token(message)


def _reset_token(env: Env, identifier: str = EMAIL, to: str = EMAIL) -> str:
    """Ask for a reset link and read it from the letter."""
    assert env.service.request_password_reset(identifier, client_key=_client()) == (
        ResetRequestResult(True)
    )
    message = env.outbox.last_email(to=to)
    assert message.kind == "password_reset"
    return _token(message)


def _login_ok(env: Env, password: str, identifier: str = EMAIL) -> bool:
    return env.service.authenticate(identifier, password, client_key=_client()).ok


GARBAGE_TOKENS: list[object] = [
    "",
    "x" * 10 * 1024,
    "токен",
    "abc.def",
    "\ud800",
    "a\x00b",
    None,
    b"token",
    42,
]


class TestSettings:
    """IdentitySettings refuses configurations the issue rules out."""

    def test_lockout_after_more_than_100_is_refused(self) -> None:
        """NIST SP 800-63B RL-2: at most 100 consecutive failures before recovery."""
        assert _settings(lockout_after=100).lockout_after == 100
        for bad in (101, 1000, 0):
            with pytest.raises(ValueError, match="lockout_after"):
                _settings(lockout_after=bad)

    def test_backoff_after_must_not_exceed_lockout(self) -> None:
        """Back-off starts before, or at, the lockout."""
        with pytest.raises(ValueError, match="backoff_after"):
            _settings(backoff_after=7, lockout_after=6)

    @pytest.mark.parametrize("name", ["reset_link_lifetime", "confirm_link_lifetime"])
    def test_link_lifetimes_capped_at_24_hours(self, name: str) -> None:
        """A link living longer than 24 hours, or not at all, is refused."""
        assert getattr(_settings(**{name: timedelta(hours=24)}), name) == timedelta(hours=24)
        for bad in (timedelta(hours=24, seconds=1), timedelta(0)):
            with pytest.raises(ValueError, match=name):
                _settings(**{name: bad})

    def test_link_defaults(self) -> None:
        """Reset links live 1 hour and confirmation links 24 hours by default."""
        settings = _settings()
        assert settings.reset_link_lifetime == HOUR
        assert settings.confirm_link_lifetime == timedelta(hours=24)

    @pytest.mark.parametrize(
        "url", ["http://portal.example.kz/reset", "/reset", "portal.example.kz/reset"]
    )
    def test_link_urls_must_be_https(self, url: str) -> None:
        """Reset and confirmation pages must be absolute https:// URLs."""
        with pytest.raises(ValueError, match="https"):
            _settings(reset_url=url)
        with pytest.raises(ValueError, match="https"):
            _settings(confirm_url=url)

    def test_http_only_with_the_escape_hatch(self) -> None:
        """``allow_insecure_http`` admits an http:// page for local development."""
        settings = _settings(reset_url="http://localhost:8000/reset", allow_insecure_http=True)
        assert settings.reset_url.startswith("http://")

    @pytest.mark.parametrize("keys", [(), (b"short",), KEY])
    def test_keys_are_checked(self, keys: Any) -> None:
        """At least one key, each at least 32 bytes, given as a sequence."""
        with pytest.raises(ValueError, match="key"):
            _settings(secret_keys=keys)

    def test_repr_hides_the_keys(self) -> None:
        """The settings' repr shows no key."""
        text = repr(_settings(secret_keys=(KEY, OTHER_KEY)))
        assert "secret_keys" not in text
        assert KEY.hex() not in text
        assert repr(KEY) not in text


class TestRegister:
    """register(): policy check with personal info, unconfirmed account, confirmation letter."""

    def test_creates_an_unconfirmed_account_and_sends_a_working_link(self, svc_env: Env) -> None:
        """The account is stored unconfirmed; its letter's link confirms it."""
        result = svc_env.service.register(
            email=EMAIL, username="aliya", password=PW, confirmation=PW, client_key=_client()
        )
        assert result == RegistrationResult(True, result.policy)
        assert result.policy.ok
        account = svc_env.account()
        assert account.email == EMAIL
        assert account.username == "aliya"
        assert not account.email_confirmed
        assert svc_env.hasher.needs_rehash(account.password_hash or "") is False
        assert [m.to for m in svc_env.outbox.emails] == [EMAIL]
        message = svc_env.outbox.last_email(to=EMAIL)
        assert message.kind == "confirm_email"
        assert extract_link(message).startswith(CONFIRM_URL + "?token=")
        assert svc_env.service.confirm_email(_token(message)) == account.id
        assert svc_env.account().email_confirmed
        assert svc_env.kinds() == ["registered", "email_confirmed"]

    @pytest.mark.parametrize("language", ["kk", "ru", "en"])
    def test_letters_are_in_the_account_language(self, svc_env: Env, language: str) -> None:
        """Confirmation, reset and change letters are written in the chosen language."""
        _register(svc_env, language=language)
        assert svc_env.account().language == language
        assert svc_env.outbox.last_email().language == language
        token = _reset_token(svc_env)
        assert svc_env.outbox.last_email().language == language
        assert svc_env.service.reset_password(token, NEW, NEW).ok
        changed = svc_env.outbox.last_email()
        assert (changed.kind, changed.language) == ("password_changed", language)

    def test_the_three_languages_differ(self, svc_env: Env) -> None:
        """kk, ru and en letters are three different texts."""
        for n, language in enumerate(("kk", "ru", "en")):
            _register(svc_env, f"user{n}@example.kz", language=language)
        subjects = {m.language: m.subject for m in svc_env.outbox.emails}
        assert len(set(subjects.values())) == 3
        assert subjects["en"].isascii()
        assert any("\u0400" <= c <= "\u04ff" for c in subjects["ru"] + subjects["kk"])

    def test_language_tag_is_normalised_and_unknown_refused(self, svc_env: Env) -> None:
        """ "ru-KZ" is Russian; a language without a catalog is refused before any write."""
        _register(svc_env, language="ru-KZ")
        assert svc_env.account().language == "ru"
        svc_env.forget_calls()
        with pytest.raises(UnknownLanguageError):
            svc_env.service.register(
                email=EMAIL_B, password=PW, confirmation=PW, language="de", client_key=_client()
            )
        assert svc_env.writes() == []

    def test_policy_rejection_writes_nothing(self, svc_env: Env) -> None:
        """A password containing the e-mail's local part is refused; nothing stored or sent."""
        result = svc_env.service.register(
            email="nurlanova@example.kz",
            password="Nurlanova#2024",
            confirmation="Nurlanova#2024",
            client_key=_client(),
        )
        assert not result.ok
        assert "contains_personal_info" in result.policy.codes
        assert svc_env.writes() == []
        assert svc_env.raw.accounts.find_by_login("email", "nurlanova@example.kz") is None
        assert svc_env.outbox.emails == []
        assert svc_env.kinds() == []
        assert svc_env.hasher.hashes == 0

    @pytest.mark.parametrize(
        ("kwargs", "password"),
        [
            ({"username": "aliya"}, "xAliya#2024!"),
            ({"names": ("Nurlanova",)}, "nurlanova-77-Q"),
            ({"phone": "+7 701 123 45 67"}, "Pass-7011234567"),
        ],
        ids=["username", "names", "phone"],
    )
    def test_personal_info_from_every_identifier(
        self, svc_env: Env, kwargs: dict[str, Any], password: str
    ) -> None:
        """The user name, given names and phone digits count as personal information."""
        result = svc_env.service.register(
            email=EMAIL_B, password=password, confirmation=password, **kwargs, client_key=_client()
        )
        assert "contains_personal_info" in result.policy.codes
        assert svc_env.writes() == []

    def test_confirmation_mismatch(self, svc_env: Env) -> None:
        """The password typed twice must match."""
        result = svc_env.service.register(
            email=EMAIL, password=PW, confirmation=PW + "x", client_key=_client()
        )
        assert result.policy.codes == ("confirmation_mismatch",)
        assert svc_env.writes() == []

    def test_duplicate_email_gives_the_same_answer(self, svc_env: Env) -> None:
        """A taken address: same result as a new one, owner told, no second account."""
        first = svc_env.service.register(
            email=EMAIL, password=PW, confirmation=PW, client_key=_client()
        )
        original = svc_env.account()
        svc_env.outbox.clear()
        second = svc_env.service.register(
            email="  ALIYA@example.KZ ",
            password=PW_B,
            confirmation=PW_B,
            language="ru",
            client_key=_client(),
        )
        assert second == first
        assert bool(second) is True
        assert [(m.to, m.kind) for m in svc_env.outbox.emails] == [(EMAIL, "already_registered")]
        assert svc_env.account().id == original.id
        assert svc_env.account().password_hash == original.password_hash
        assert svc_env.kinds().count("registered") == 1
        assert svc_env.kinds()[-1] == "registration_duplicate"
        assert _login_ok(svc_env, PW)
        assert not _login_ok(svc_env, PW_B)

    def test_already_registered_letter_leads_to_a_reset(self, svc_env: Env) -> None:
        """The owner's "you already have an account" letter links to a working reset."""
        _register(svc_env)
        svc_env.service.register(
            email=EMAIL, password=PW_B, confirmation=PW_B, client_key=_client()
        )
        message = svc_env.outbox.last_email(to=EMAIL)
        assert message.kind == "already_registered"
        assert extract_link(message).startswith("https://portal.example.kz/reset?lang=kk&token=")
        assert svc_env.service.reset_password(_token(message), NEW, NEW).ok
        assert _login_ok(svc_env, NEW)

    def test_duplicate_phone_gives_the_same_answer(self, svc_env: Env) -> None:
        """A taken phone: same answer and same letter to the requester; its owner is told.

        Issue 10: the requester's letters must not depend on whether the phone is free, so
        the new account is made without the phone and gets its confirmation letter as usual.
        """
        first = svc_env.service.register(
            email=EMAIL,
            phone="+7 701 123 45 67",
            password=PW,
            confirmation=PW,
            client_key=_client(),
        )
        svc_env.outbox.clear()
        second = svc_env.service.register(
            email=EMAIL_B,
            phone="8 (701) 123-45-67",
            password=PW_B,
            confirmation=PW_B,
            client_key=_client(),
        )
        assert second == first
        assert sorted((m.to, m.kind) for m in svc_env.outbox.emails) == [
            (EMAIL, "phone_already_registered"),
            (EMAIL_B, "confirm_email"),
        ]
        newcomer = svc_env.raw.accounts.find_by_login("email", EMAIL_B)
        assert newcomer is not None
        assert newcomer.phone is None
        assert svc_env.account().phone == "+77011234567"

    def test_taken_phone_sends_the_requester_the_same_letters(self, svc_env: Env) -> None:
        """register(email=mine, phone=victim) cannot tell a free phone from a taken one."""
        _register(svc_env, EMAIL, phone="+7 701 123 45 67")
        letters = []
        for phone, mine in (
            ("8 701 123 45 67", "mine1@example.kz"),
            ("8 702 765 43 21", "mine2@example.kz"),
        ):
            svc_env.outbox.clear()
            answer = svc_env.service.register(
                email=mine, phone=phone, password=PW_B, confirmation=PW_B, client_key=_client()
            )
            assert answer == RegistrationResult(True, answer.policy)
            letters.append([m.kind for m in svc_env.outbox.emails if m.to == mine])
        assert letters[0] == letters[1] == ["confirm_email"]

    def test_username_taken(self, svc_env: Env) -> None:
        """A user name in use (case-insensitively) is reported; nothing else happens."""
        _register(svc_env, username="aliya")
        svc_env.outbox.clear()
        result = svc_env.service.register(
            email=EMAIL_B, username="ALIYA", password=PW_B, confirmation=PW_B, client_key=_client()
        )
        assert not result.ok
        assert result.username_taken
        assert result.policy.ok
        assert svc_env.raw.accounts.find_by_login("email", EMAIL_B) is None
        assert svc_env.outbox.emails == []
        assert svc_env.kinds() == ["registered"]

    def test_username_only_account(self, svc_env: Env) -> None:
        """An account without e-mail is created; no letter can be sent."""
        account_id = _register(svc_env, None, username="bolat_77")
        assert svc_env.outbox.emails == []
        assert svc_env.service.authenticate("Bolat_77", PW, client_key=_client()) == LoginResult(
            True, "ok", account_id, email_confirmed=False
        )

    def test_no_identifier_is_refused(self, svc_env: Env) -> None:
        """At least one of e-mail, user name or phone is required."""
        with pytest.raises(InvalidIdentifierError):
            svc_env.service.register(password=PW, confirmation=PW, client_key=_client())
        assert svc_env.writes() == []

    @pytest.mark.parametrize(
        "email",
        [
            "",
            "not-an-email",
            "a@b",
            "aliya@example.kz\r\nBcc: x@evil.kz",
            "a b@example.kz",
            "aliya@example.kz, x@evil.kz",
            "Aliya <aliya@example.kz>",
            "x" * 65 + "@example.kz",
            "a@" + "b" * 260 + ".kz",
            "ali\x00ya@example.kz",
            "\ud800@example.kz",
        ],
    )
    def test_malformed_email(self, svc_env: Env, email: str) -> None:
        """A malformed address raises InvalidIdentifierError; nothing is written or sent."""
        with pytest.raises(InvalidIdentifierError) as caught:
            svc_env.service.register(
                email=email, username="aliya", password=PW, confirmation=PW, client_key=_client()
            )
        assert caught.value.field == "email"
        assert svc_env.writes() == []
        assert svc_env.raw.accounts.find_by_login("username", "aliya") is None
        assert svc_env.outbox.emails == []

    @pytest.mark.parametrize(
        "username",
        ["", "a", "x" * 65, "bad name", "ab\x00cd", "ab\ud800cd", "_aliya", "aliya!", "a/b"],
    )
    def test_malformed_username(self, svc_env: Env, username: str) -> None:
        """A malformed user name raises InvalidIdentifierError; nothing is written or sent."""
        with pytest.raises(InvalidIdentifierError) as caught:
            svc_env.service.register(
                email=EMAIL, username=username, password=PW, confirmation=PW, client_key=_client()
            )
        assert caught.value.field == "username"
        assert svc_env.writes() == []
        assert svc_env.outbox.emails == []

    @pytest.mark.parametrize(
        "phone",
        ["", "12345", "phone", "+1 202 555 0100", "+7 727 250 00 00", "+7 701 123\x0045 67"],
    )
    def test_malformed_phone(self, svc_env: Env, phone: str) -> None:
        """Malformed, foreign or landline numbers raise InvalidPhoneError; nothing written."""
        with pytest.raises(InvalidPhoneError):
            svc_env.service.register(
                email=EMAIL, phone=phone, password=PW, confirmation=PW, client_key=_client()
            )
        assert svc_env.writes() == []
        assert svc_env.outbox.emails == []

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"password": None},
            {"password": PW.encode()},
            {"confirmation": None},
            {"confirmation": PW.encode()},
            {"email": EMAIL.encode()},
            {"username": 42},
            {"phone": b"+77011234567"},
        ],
    )
    def test_wrong_types_raise_type_error(self, svc_env: Env, kwargs: dict[str, Any]) -> None:
        """Non-str passwords or identifiers raise TypeError before anything is written."""
        arguments: dict[str, Any] = {"email": EMAIL, "password": PW, "confirmation": PW}
        arguments.update(kwargs)
        with pytest.raises(TypeError):
            svc_env.service.register(**arguments)
        assert svc_env.writes() == []
        assert svc_env.outbox.emails == []


class TestConfirmEmail:
    """confirm_email(): once, before expiry, only while the address is unchanged."""

    def test_works_once(self, svc_env: Env) -> None:
        """The first use confirms; the second raises InvalidTokenError."""
        account_id = _register(svc_env)
        token = _confirm_token(svc_env)
        assert svc_env.service.confirm_email(token) == account_id
        with pytest.raises(InvalidTokenError) as caught:
            svc_env.service.confirm_email(token)
        assert not isinstance(caught.value, ExpiredTokenError)
        assert svc_env.kinds().count("email_confirmed") == 1

    def test_valid_at_the_expiry_second(self, svc_env: Env) -> None:
        """24 hours after registration, to the second, the link still works."""
        account_id = _register(svc_env)
        token = _confirm_token(svc_env)
        svc_env.clock.advance(hours=24)
        assert svc_env.service.confirm_email(token) == account_id
        assert svc_env.account().email_confirmed

    def test_expired_one_second_past(self, svc_env: Env) -> None:
        """One second later it raises ExpiredTokenError and confirms nothing."""
        _register(svc_env)
        token = _confirm_token(svc_env)
        svc_env.clock.advance(timedelta(hours=24, seconds=1))
        with pytest.raises(ExpiredTokenError):
            svc_env.service.confirm_email(token)
        assert not svc_env.account().email_confirmed

    def test_configured_lifetime(self, svc_env: Env) -> None:
        """A shorter configured lifetime is honoured, boundary included."""
        service = svc_env.rebuild(confirm_link_lifetime=timedelta(minutes=30))
        service.register(email=EMAIL, password=PW, confirmation=PW, client_key=_client())
        service.register(email=EMAIL_B, password=PW_B, confirmation=PW_B, client_key=_client())
        svc_env.clock.advance(minutes=30)
        service.confirm_email(_confirm_token(svc_env, EMAIL))
        svc_env.clock.advance(seconds=1)
        with pytest.raises(ExpiredTokenError):
            service.confirm_email(_confirm_token(svc_env, EMAIL_B))

    def test_dies_when_the_email_changes(self, svc_env: Env) -> None:
        """A link to the old address does not confirm the new one."""
        account_id = _register(svc_env)
        token = _confirm_token(svc_env)
        svc_env.raw.accounts.set_email(account_id, "aliya.new@example.kz")
        with pytest.raises(InvalidTokenError):
            svc_env.service.confirm_email(token)
        assert not svc_env.account("aliya.new@example.kz").email_confirmed

    def test_token_of_a_confirms_only_a(self, svc_env: Env) -> None:
        """A's link confirms A and never B."""
        a = _register(svc_env)
        b = _register(svc_env, EMAIL_B, password=PW_B)
        token_a = _confirm_token(svc_env, EMAIL)
        assert svc_env.service.confirm_email(token_a) == a
        assert svc_env.account().email_confirmed
        assert not svc_env.account(EMAIL_B).email_confirmed
        assert svc_env.service.confirm_email(_confirm_token(svc_env, EMAIL_B)) == b

    def test_reset_token_is_not_a_confirmation(self, svc_env: Env) -> None:
        """A reset link cannot confirm an address (its own salt)."""
        _register(svc_env)
        with pytest.raises(InvalidTokenError):
            svc_env.service.confirm_email(_reset_token(svc_env))
        assert not svc_env.account().email_confirmed

    def test_other_deployments_token_is_refused(self, svc_env: Env) -> None:
        """A token signed with another key (another deployment, a retired key) is refused."""
        account_id = _register(svc_env)
        foreign = svc_env.rebuild(secret_keys=(OTHER_KEY,))
        token = foreign.tokens.issue(
            "confirm", account_id, state=EMAIL.casefold(), now=svc_env.clock.now()
        )
        with pytest.raises(InvalidTokenError):
            svc_env.service.confirm_email(token)

    @pytest.mark.parametrize("token", GARBAGE_TOKENS, ids=repr)
    def test_garbage_tokens(self, svc_env: Env, token: Any) -> None:
        """Garbage of any shape or type raises InvalidTokenError; nothing is written."""
        _register(svc_env)
        svc_env.forget_calls()
        with pytest.raises(InvalidTokenError):
            svc_env.service.confirm_email(token)
        assert svc_env.writes() == []


class TestAuthenticate:
    """authenticate(): one generic failure, equal work, rehash, back-off and lockout."""

    def test_ok_by_email_or_username(self, svc_env: Env) -> None:
        """Either identifier logs in; e-mail and user name compare case-insensitively."""
        account_id = _register(svc_env, username="aliya")
        expected = LoginResult(True, "ok", account_id, email_confirmed=False)
        for identifier in (EMAIL, "aliya@example.kz", " ALIYA ", "aliya"):
            assert svc_env.service.authenticate(identifier, PW, client_key=_client()) == expected
        assert svc_env.kinds().count("login_succeeded") == 4
        assert svc_env.account().last_login_at == svc_env.clock.now()

    def test_unconfirmed_email_is_reported(self, svc_env: Env) -> None:
        """email_confirmed tells the host whether the address was confirmed."""
        _register(svc_env)
        assert (
            svc_env.service.authenticate(EMAIL, PW, client_key=_client()).email_confirmed is False
        )
        svc_env.service.confirm_email(_confirm_token(svc_env))
        assert svc_env.service.authenticate(EMAIL, PW, client_key=_client()).email_confirmed is True

    def test_wrong_password_and_unknown_account_answer_alike(self, svc_env: Env) -> None:
        """A wrong password and an unknown account both give exactly LoginResult(invalid)."""
        _register(svc_env)
        wrong = svc_env.service.authenticate(EMAIL, PW_B, client_key=_client())
        unknown_email = svc_env.service.authenticate(
            "nobody@example.kz", PW_B, client_key=_client()
        )
        unknown_name = svc_env.service.authenticate("nobody", PW_B, client_key=_client())
        assert wrong == unknown_email == unknown_name == LoginResult(False, "invalid")
        assert not wrong
        assert svc_env.account().failed_logins == 1
        failed = [e for e in svc_env.audit.events if e.kind == "login_failed"]
        assert [e.account_id for e in failed] == [svc_env.account().id, None, None]

    def test_unknown_account_costs_one_verification_like_a_known_one(self, svc_env: Env) -> None:
        """Known (right or wrong password) and unknown accounts each cost one argon2 verify."""
        _register(svc_env)
        svc_env.service.authenticate(
            "warm-up@example.kz", PW, client_key=_client()
        )  # makes the dummy hash once
        counts = {}
        for name, identifier, password in (
            ("known, right", EMAIL, PW),
            ("known, wrong", EMAIL, PW_B),
            ("unknown e-mail", "nobody@example.kz", PW),
            ("unknown name", "nobody", PW),
            ("unknown phone", "+7 701 000 00 00", PW),
        ):
            svc_env.hasher.reset_counts()
            svc_env.service.authenticate(identifier, password, client_key=_client())
            counts[name] = (svc_env.hasher.verifications, svc_env.hasher.hashes)
        assert set(counts.values()) == {(1, 0)}, counts

    def test_rehash_on_login_when_the_profile_changed(self, svc_env: Env) -> None:
        """A hash made with other parameters is replaced on the next successful login."""
        _register(svc_env)
        account = svc_env.account()
        old_profile = HashProfile(time_cost=2, memory_cost=16, parallelism=1)
        old_hash = PasswordHasher(old_profile).hash(PW)
        assert svc_env.raw.accounts.set_password_hash(
            account.id, expected=account.password_hash, new=old_hash
        )
        first = svc_env.service.authenticate(EMAIL, PW, client_key=_client())
        assert first.ok
        assert first.rehashed
        stored = svc_env.account().password_hash
        assert stored is not None
        assert stored != old_hash
        assert stored.startswith("$argon2id$")
        assert not svc_env.hasher.needs_rehash(stored)
        second = svc_env.service.authenticate(EMAIL, PW, client_key=_client())
        assert second.ok
        assert not second.rehashed
        assert svc_env.account().password_hash == stored

    def test_no_rehash_on_a_failed_login(self, svc_env: Env) -> None:
        """A wrong password never rewrites the hash."""
        _register(svc_env)
        account = svc_env.account()
        old_hash = PasswordHasher(HashProfile(time_cost=2, memory_cost=16, parallelism=1)).hash(PW)
        svc_env.raw.accounts.set_password_hash(
            account.id, expected=account.password_hash, new=old_hash
        )
        assert not svc_env.service.authenticate(EMAIL, PW_B, client_key=_client()).rehashed
        assert svc_env.account().password_hash == old_hash

    def test_backoff_after_consecutive_failures(self, svc_env: Env) -> None:
        """After backoff_after failures each attempt waits, doubling; then it is allowed."""
        _register(svc_env)
        for _ in range(3):
            assert svc_env.service.authenticate(EMAIL, PW_B, client_key=_client()) == LoginResult(
                False, "invalid"
            )
        throttled = svc_env.service.authenticate(EMAIL, PW, client_key=_client())
        assert (throttled.ok, throttled.reason) == (False, "throttled")
        assert throttled.retry_after == SECOND
        svc_env.clock.advance(milliseconds=500)
        assert svc_env.service.authenticate(
            EMAIL, PW, client_key=_client()
        ).retry_after == timedelta(milliseconds=500)
        assert svc_env.account().failed_logins == 3  # throttled attempts are not counted
        svc_env.clock.advance(milliseconds=500)
        assert svc_env.service.authenticate(EMAIL, PW_B, client_key=_client()).reason == "invalid"
        assert (
            svc_env.service.authenticate(EMAIL, PW, client_key=_client()).retry_after == 2 * SECOND
        )
        svc_env.clock.advance(seconds=2)
        assert svc_env.service.authenticate(EMAIL, PW, client_key=_client()).ok
        assert svc_env.account().failed_logins == 0
        assert svc_env.service.authenticate(EMAIL, PW_B, client_key=_client()).reason == "invalid"

    def test_throttled_attempt_still_costs_a_verification(self, svc_env: Env) -> None:
        """A throttled answer takes as long as a checked one."""
        _register(svc_env)
        for _ in range(3):
            svc_env.service.authenticate(EMAIL, PW_B, client_key=_client())
        svc_env.hasher.reset_counts()
        assert svc_env.service.authenticate(EMAIL, PW, client_key=_client()).reason == "throttled"
        assert svc_env.hasher.verifications == 1

    def test_lockout_needs_a_reset(self, svc_env: Env) -> None:
        """At lockout_after failures the account is locked; only a password reset unlocks it."""
        _register(svc_env)
        reasons = []
        for _ in range(6):
            svc_env.clock.advance(hours=1)  # past any back-off
            reasons.append(svc_env.service.authenticate(EMAIL, PW_B, client_key=_client()).reason)
        assert reasons == ["invalid"] * 5 + ["locked"]
        assert svc_env.kinds().count("account_locked") == 1
        svc_env.clock.advance(days=30)
        locked = svc_env.service.authenticate(EMAIL, PW, client_key=_client())
        assert (locked.ok, locked.reason) == (False, "locked")
        assert svc_env.account().failed_logins == 6
        assert svc_env.service.reset_password(_reset_token(svc_env), NEW, NEW).ok
        assert svc_env.account().failed_logins == 0
        assert svc_env.service.authenticate(EMAIL, NEW, client_key=_client()).ok

    def test_locked_account_cannot_change_its_password(self, svc_env: Env) -> None:
        """A locked account stays locked in a session too: only a reset recovers it."""
        account_id = _register(svc_env)
        for _ in range(6):
            svc_env.clock.advance(hours=1)
            svc_env.service.authenticate(EMAIL, PW_B, client_key=_client())
        change = svc_env.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        assert (change.ok, change.reason) == (False, "locked")
        assert svc_env.service.authenticate(EMAIL, PW, client_key=_client()).reason == "locked"

    def test_change_of_password_is_throttled_like_a_login(self, svc_env: Env) -> None:
        """Guessing the current password in a session backs off exactly like logging in."""
        account_id = _register(svc_env)
        for _ in range(svc_env.service.settings.backoff_after):
            svc_env.service.change_password(account_id, PW_B, NEW, NEW, client_key=_client())
        change = svc_env.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        assert (change.ok, change.reason) == (False, "throttled")
        assert change.retry_after is not None
        svc_env.clock.advance(change.retry_after)
        assert svc_env.service.change_password(account_id, PW, NEW, NEW, client_key=_client()).ok

    @pytest.mark.parametrize(
        ("identifier", "password"),
        [(EMAIL, None), (EMAIL, PW.encode()), (None, PW), (EMAIL.encode(), PW), (42, PW)],
    )
    def test_wrong_types_raise_type_error(
        self, svc_env: Env, identifier: Any, password: Any
    ) -> None:
        """Non-str identifiers or passwords raise TypeError and count nothing."""
        _register(svc_env)
        svc_env.forget_calls()
        with pytest.raises(TypeError):
            svc_env.service.authenticate(identifier, password, client_key=_client())
        assert svc_env.writes() == []

    @pytest.mark.parametrize(
        "password", ["", "x" * (1 << 20), PW + "\x00", PW + "\ud800", "\ud800", "\x00" * 8]
    )
    def test_odd_passwords_are_just_wrong(self, svc_env: Env, password: str) -> None:
        """Empty, 1 MB, NUL or lone-surrogate passwords fail cleanly as "invalid"."""
        _register(svc_env)
        assert svc_env.service.authenticate(EMAIL, password, client_key=_client()) == LoginResult(
            False, "invalid"
        )
        assert svc_env.service.authenticate(
            "nobody@example.kz", password, client_key=_client()
        ) == LoginResult(False, "invalid")

    @pytest.mark.parametrize(
        "identifier", ["", " ", "x" * 100_000, "a\x00b", "\ud800", "\ud800@example.kz", "@"]
    )
    def test_odd_identifiers_find_nothing(self, svc_env: Env, identifier: str) -> None:
        """Huge, empty, NUL or lone-surrogate identifiers are unknown accounts, no crash."""
        _register(svc_env)
        assert svc_env.service.authenticate(identifier, PW, client_key=_client()) == LoginResult(
            False, "invalid"
        )


class TestChangePassword:
    """change_password(): current password, full policy + history, compare-and-set."""

    def test_success(self, svc_env: Env) -> None:
        """The new password works, the old one not; others sessions end; owner told."""
        account_id = _register(svc_env)
        svc_env.outbox.clear()
        result = svc_env.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        assert result.ok
        assert result.reason == "ok"
        assert result.end_other_sessions
        assert [(m.to, m.kind) for m in svc_env.outbox.emails] == [(EMAIL, "password_changed")]
        assert svc_env.kinds()[-1] == "password_changed"
        assert not _login_ok(svc_env, PW)
        assert _login_ok(svc_env, NEW)
        entries = svc_env.raw.history.recent(account_id, 10)
        assert len(entries) == 2
        assert entries[0].password_hash == svc_env.account().password_hash
        changed = [e for e in svc_env.audit.events if e.kind == "password_changed"]
        assert dict(changed[0].details) == {"via": "change"}

    def test_wrong_current_password_counts_as_a_failure(self, svc_env: Env) -> None:
        """A wrong current password changes nothing and counts as a failed login."""
        account_id = _register(svc_env)
        before = svc_env.account().password_hash
        result = svc_env.service.change_password(account_id, PW_B, NEW, NEW, client_key=_client())
        assert (result.ok, result.reason, result.end_other_sessions) == (
            False,
            "wrong_password",
            False,
        )
        assert svc_env.account().password_hash == before
        assert svc_env.account().failed_logins == 1
        assert svc_env.kinds()[-1] == "login_failed"
        assert len(svc_env.raw.history.recent(account_id, 10)) == 1

    def test_policy_violation(self, svc_env: Env) -> None:
        """The full policy applies to the new password."""
        account_id = _register(svc_env)
        result = svc_env.service.change_password(
            account_id, PW, "short", "short", client_key=_client()
        )
        assert (result.ok, result.reason) == (False, "policy")
        assert "too_short" in result.policy.codes
        mismatch = svc_env.service.change_password(account_id, PW, NEW, NEWER, client_key=_client())
        assert mismatch.policy.codes == ("confirmation_mismatch",)
        assert _login_ok(svc_env, PW)

    def test_similar_to_current(self, svc_env: Env) -> None:
        """A small edit of the current password is "similar_to_previous"."""
        account_id = _register(svc_env)
        for similar in ("Tr0ub4dor&3y", "tr0ub4dor&3x", "Tr0ub4dor&3x!"):
            result = svc_env.service.change_password(
                account_id, PW, similar, similar, client_key=_client()
            )
            assert result.reason == "policy"
            assert "similar_to_previous" in result.policy.codes
        assert _login_ok(svc_env, PW)

    def test_reuse_of_a_previous_password(self, svc_env: Env) -> None:
        """Going back to an earlier password is "reused"."""
        account_id = _register(svc_env)
        assert svc_env.service.change_password(account_id, PW, NEW, NEW, client_key=_client()).ok
        result = svc_env.service.change_password(account_id, NEW, PW, PW, client_key=_client())
        assert result.reason == "policy"
        assert "reused" in result.policy.codes

    def test_history_failure_leaves_the_old_password(self, svc_env: Env) -> None:
        """If storing history fails mid-change, the old password works and history is intact."""
        account_id = _register(svc_env)
        before_hash = svc_env.account().password_hash
        before_history = svc_env.raw.history.recent(account_id, 10)
        svc_env.outbox.clear()
        broken = dataclasses.replace(svc_env.storage, history=FailingHistory(svc_env.raw.history))
        service = svc_env.rebuild(broken)
        with pytest.raises(StorageError):
            service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        assert svc_env.account().password_hash == before_hash
        assert svc_env.raw.history.recent(account_id, 10) == before_history
        assert svc_env.outbox.emails == []
        assert "password_changed" not in svc_env.kinds()
        assert _login_ok(svc_env, PW)
        assert not _login_ok(svc_env, NEW)

    def test_conflict_when_the_password_changed_meanwhile(self, svc_env: Env) -> None:
        """Compare-and-set: a concurrent change between check and write wins."""
        account_id = _register(svc_env)
        real = svc_env.raw.accounts.set_password_hash

        def racing(account: str, *, expected: str | None, new: str, now: datetime) -> bool:
            other = PasswordHasher(TESTS_ONLY).hash(NEWER)
            assert real(account, expected=expected, new=other, now=now)
            return real(account, expected=expected, new=new, now=now)

        accounts = cast(Any, svc_env.storage.accounts)
        accounts.__dict__["set_password_hash"] = racing
        try:
            result = svc_env.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        finally:
            del accounts.__dict__["set_password_hash"]
        assert (result.ok, result.reason) == (False, "conflict")
        assert _login_ok(svc_env, NEWER)
        assert not _login_ok(svc_env, NEW)

    def test_unknown_account(self, svc_env: Env) -> None:
        """An id no account has raises AccountNotFoundError."""
        with pytest.raises(AccountNotFoundError):
            svc_env.service.change_password("no-such-account", PW, NEW, NEW, client_key=_client())

    @pytest.mark.parametrize("position", range(4))
    @pytest.mark.parametrize("bad", [None, b"bytes"])
    def test_wrong_types_raise_type_error(self, svc_env: Env, position: int, bad: Any) -> None:
        """Any non-str argument raises TypeError before anything is written."""
        account_id = _register(svc_env)
        arguments: list[Any] = [account_id, PW, NEW, NEW]
        arguments[position] = bad
        svc_env.forget_calls()
        with pytest.raises(TypeError):
            svc_env.service.change_password(*arguments, client_key=_client())
        assert svc_env.writes() == []


class TestRequestPasswordReset:
    """request_password_reset(): one answer, equal work, stored address, rate limits."""

    def test_same_answer_for_known_and_unknown(self, svc_env: Env) -> None:
        """User name or e-mail, known or not: the answer is ResetRequestResult(True)."""
        _register(svc_env, username="aliya")
        svc_env.outbox.clear()
        answers = [
            svc_env.service.request_password_reset(identifier, client_key=_client())
            for identifier in ("aliya", EMAIL, "nobody", "nobody@example.kz", "+77010000000")
        ]
        assert answers == [ResetRequestResult(True)] * 5
        assert [(m.to, m.kind) for m in svc_env.outbox.emails] == [
            (EMAIL, "password_reset"),
            (EMAIL, "password_reset"),
        ]
        found = [
            e.details["found"] for e in svc_env.audit.events if e.kind == "password_reset_requested"
        ]
        assert found == ["yes", "yes", "no", "no", "no"]

    def test_account_without_email_answers_alike(self, svc_env: Env) -> None:
        """A user name whose account has no address: same answer, no letter."""
        _register(svc_env, None, username="bolat_77")
        answer = svc_env.service.request_password_reset("bolat_77", client_key=_client())
        assert answer == ResetRequestResult(True)
        assert svc_env.outbox.emails == []

    def test_equal_work(self, svc_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        """Known and unknown identifiers sign one token each, hash nothing, same store calls."""
        _register(svc_env, username="aliya")
        issued: list[str] = []
        real_issue = svc_env.service.tokens.issue

        def counting_issue(purpose: Any, account_id: str, *, state: str, now: Any) -> str:
            issued.append(purpose)
            return real_issue(purpose, account_id, state=state, now=now)

        monkeypatch.setattr(svc_env.service.tokens, "issue", counting_issue)
        work = {}
        for identifier in (EMAIL, "aliya", "nobody@example.kz", "nobody"):
            issued.clear()
            svc_env.hasher.reset_counts()
            svc_env.forget_calls()
            svc_env.service.request_password_reset(identifier, client_key=_client())
            work[identifier] = (
                tuple(issued),
                svc_env.hasher.hashes,
                svc_env.hasher.verifications,
                tuple(svc_env.calls),
            )
        assert len(set(work.values())) == 1, work
        assert work[EMAIL][:3] == (("reset",), 0, 0)

    @pytest.mark.parametrize(
        "typed", ["aliya@example.kz", "ALIYA@EXAMPLE.KZ", "  aliya@example.KZ\t", "aliya"]
    )
    def test_letter_goes_to_the_stored_address(self, svc_env: Env, typed: str) -> None:
        """The letter goes to the address as stored, never to the typed string."""
        _register(svc_env, username="aliya")
        svc_env.outbox.clear()
        svc_env.service.request_password_reset(typed, client_key=_client())
        assert [(m.to, m.kind) for m in svc_env.outbox.emails] == [(EMAIL, "password_reset")]
        link = extract_link(svc_env.outbox.emails[0])
        assert link.startswith("https://portal.example.kz/reset?lang=kk&token=")

    def test_letter_says_how_long_the_link_lives(self, svc_env: Env) -> None:
        """The reset letter quotes the configured lifetime (60 minutes by default)."""
        _register(svc_env)
        _reset_token(svc_env)
        assert "60" in svc_env.outbox.last_email().text

    @pytest.mark.parametrize("mode", ["fail_next", "failing", "type_error"])
    def test_failing_sender_does_not_change_the_answer(self, svc_env: Env, mode: str) -> None:
        """A mail server that is down is logged and audited; the answer stays the same."""
        _register(svc_env)
        if mode == "fail_next":
            svc_env.outbox.fail_next()
        elif mode == "failing":
            svc_env.outbox.failing = True
        else:
            svc_env.outbox.fail_next(exc=ValueError("simulated bad address"))
        answer = svc_env.service.request_password_reset(EMAIL, client_key=_client())
        assert answer == ResetRequestResult(True)
        assert svc_env.outbox.failures == 1
        assert svc_env.kinds()[-2:] == ["delivery_failed", "password_reset_requested"]

    def test_rate_limited_per_identifier(self, svc_env: Env) -> None:
        """The limit is reached exactly, one more is refused; other identifiers are fine."""
        _register(svc_env)
        typed = ("aliya@example.kz", EMAIL, " ALIYA@example.kz ")  # one identifier, casefolded
        for identifier in typed:
            assert svc_env.service.request_password_reset(identifier, client_key=_client())
        refused = svc_env.service.request_password_reset(EMAIL, client_key=_client())
        assert not refused.accepted
        assert refused.retry_after is not None
        assert timedelta(0) < refused.retry_after <= HOUR
        assert len(svc_env.outbox.emails) == 1 + 3  # confirmation + three reset letters
        assert svc_env.kinds()[-1] == "rate_limited"
        assert svc_env.service.request_password_reset(EMAIL_B, client_key=_client())
        assert svc_env.service.request_password_reset("nobody", client_key=_client())
        svc_env.clock.advance(refused.retry_after)
        assert svc_env.service.request_password_reset(EMAIL, client_key=_client())

    def test_unknown_identifiers_are_limited_alike(self, svc_env: Env) -> None:
        """An unknown identifier hits the same limit (the limit reveals nothing)."""
        for _ in range(3):
            assert svc_env.service.request_password_reset("nobody", client_key=_client())
        assert not svc_env.service.request_password_reset("nobody", client_key=_client())

    def test_rate_limited_per_client(self, svc_env: Env) -> None:
        """One client key gets exactly reset_per_client requests; other clients unaffected."""
        client = "203.0.113.7"
        for n in range(5):
            answer = svc_env.service.request_password_reset(f"user{n}", client_key=client)
            assert answer == ResetRequestResult(True)
        refused = svc_env.service.request_password_reset("user-new", client_key=client)
        assert not refused
        assert refused.retry_after == HOUR
        assert svc_env.service.request_password_reset("user-new", client_key="203.0.113.8")
        svc_env.clock.advance(HOUR)
        assert svc_env.service.request_password_reset("user-newer", client_key=client)

    def test_refused_request_sends_nothing(self, svc_env: Env) -> None:
        """A rate-limited request for a real account sends no letter."""
        _register(svc_env)
        for _ in range(3):
            _reset_token(svc_env)
        svc_env.outbox.clear()
        assert not svc_env.service.request_password_reset(EMAIL, client_key=_client())
        assert svc_env.outbox.emails == []

    @pytest.mark.parametrize(
        "identifier", ["", "x" * 100_000, "a\x00b", "\ud800", "\ud800@example.kz", "@@"]
    )
    @pytest.mark.parametrize("client", ["10.0.0.1", "", "\ud800", "x" * 10_000])
    def test_odd_input_is_an_unknown_account(
        self, svc_env: Env, identifier: str, client: str
    ) -> None:
        """Huge, empty, NUL or lone-surrogate identifiers and client keys: same answer."""
        assert svc_env.service.request_password_reset(
            identifier, client_key=client
        ) == ResetRequestResult(True)
        assert svc_env.outbox.emails == []

    @pytest.mark.parametrize(("identifier", "client"), [(None, "c"), (b"x", "c"), ("x", None)])
    def test_wrong_types_raise_type_error(self, svc_env: Env, identifier: Any, client: Any) -> None:
        """Non-str identifier or client key: TypeError before anything is counted."""
        with pytest.raises(TypeError):
            svc_env.service.request_password_reset(identifier, client_key=client)
        assert svc_env.writes() == []


class TestResetPassword:
    """reset_password(): valid, unexpired, bound to the current state, used exactly once."""

    def test_success(self, svc_env: Env) -> None:
        """The password changes, sessions end, no log-in happens, the owner is told."""
        account_id = _register(svc_env)
        token = _reset_token(svc_env)
        svc_env.outbox.clear()
        svc_env.audit.clear()
        result = svc_env.service.reset_password(token, NEW, NEW)
        assert result.ok
        assert result.account_id == account_id
        assert result.end_sessions
        assert "login_succeeded" not in svc_env.kinds()
        assert svc_env.kinds() == ["password_reset_completed"]
        assert dict(svc_env.audit.events[0].details) == {"via": "email"}
        assert svc_env.account().last_login_at is None
        assert [(m.to, m.kind) for m in svc_env.outbox.emails] == [(EMAIL, "password_changed")]
        assert _login_ok(svc_env, NEW)
        assert not _login_ok(svc_env, PW)
        assert len(svc_env.raw.history.recent(account_id, 10)) == 2

    def test_reuse_fails(self, svc_env: Env) -> None:
        """A link works once."""
        _register(svc_env)
        token = _reset_token(svc_env)
        assert svc_env.service.reset_password(token, NEW, NEW)
        with pytest.raises(InvalidTokenError):
            svc_env.service.reset_password(token, NEWER, NEWER)
        assert _login_ok(svc_env, NEW)

    def test_valid_at_the_expiry_second(self, svc_env: Env) -> None:
        """One hour after the request, to the second, the link still works."""
        _register(svc_env)
        token = _reset_token(svc_env)
        svc_env.clock.advance(HOUR)
        assert svc_env.service.reset_password(token, NEW, NEW).ok
        assert _login_ok(svc_env, NEW)

    def test_expired_one_second_past(self, svc_env: Env) -> None:
        """One second later: ExpiredTokenError (an InvalidTokenError), nothing changes."""
        _register(svc_env)
        token = _reset_token(svc_env)
        svc_env.clock.advance(HOUR + SECOND)
        with pytest.raises(ExpiredTokenError) as caught:
            svc_env.service.reset_password(token, NEW, NEW)
        assert isinstance(caught.value, InvalidTokenError)
        assert _login_ok(svc_env, PW)

    def test_configured_lifetime(self, svc_env: Env) -> None:
        """A shorter configured lifetime is honoured, and quoted in the letter."""
        _register(svc_env)
        service = svc_env.rebuild(reset_link_lifetime=timedelta(minutes=15))
        service.request_password_reset(EMAIL, client_key=_client())
        token = _token(svc_env.outbox.last_email())
        assert "15" in svc_env.outbox.last_email().text
        svc_env.clock.advance(minutes=15, seconds=1)
        with pytest.raises(ExpiredTokenError):
            service.reset_password(token, NEW, NEW)

    @pytest.mark.parametrize("threads", [32])
    def test_concurrent_redemption_changes_the_password_once(
        self, svc_env: Env, threads: int
    ) -> None:
        """32 threads redeem one link at once: exactly one succeeds, the rest are refused."""
        account_id = _register(svc_env)
        token = _reset_token(svc_env)
        svc_env.outbox.clear()
        barrier = threading.Barrier(threads)
        outcomes: list[tuple[int, object]] = []
        lock = threading.Lock()

        def redeem(n: int) -> None:
            password = f"Parallel#{n:02d}-Orchid"
            barrier.wait()
            try:
                outcome: object = svc_env.service.reset_password(token, password, password)
            except Exception as exc:  # every outcome is inspected below
                outcome = exc
            with lock:
                outcomes.append((n, outcome))

        workers = [threading.Thread(target=redeem, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert len(outcomes) == threads
        wins = [(n, o) for n, o in outcomes if getattr(o, "ok", False)]
        # These stores have no shared unit of work (Storage.with_history is None), so the
        # winner's history entry is written before its hash: a redemption that reads the
        # history in between is refused by the policy (reused / similar to the winner's new
        # password) instead of as a dead link. Either way it writes nothing.
        in_flight = {"reused", "similar_to_previous"}
        refused = [
            o
            for _, o in outcomes
            if type(o) is InvalidTokenError
            or (not getattr(o, "ok", True) and set(o.policy.codes) <= in_flight)  # type: ignore[attr-defined]
        ]
        assert len(wins) == 1, outcomes
        assert len(refused) == threads - 1, outcomes
        winner, result = wins[0]
        assert getattr(result, "ok", False)
        assert svc_env.kinds().count("password_reset_completed") == 1
        assert [m.kind for m in svc_env.outbox.emails] == ["password_changed"]
        assert len(svc_env.raw.history.recent(account_id, 10)) == 2
        assert _login_ok(svc_env, f"Parallel#{winner:02d}-Orchid")

    def test_losing_a_race_after_the_policy_check_is_a_dead_token(self, svc_env: Env) -> None:
        """The other redemption wins between our state check and history read: InvalidToken.

        The winner's new history entry makes our password "reused"; the answer must still be
        that the link is used up, not a policy complaint about a link that no longer works.
        """
        _register(svc_env)
        token = _reset_token(svc_env)
        winner: list[object] = []

        def other_tab() -> None:
            winner.append(svc_env.service.reset_password(token, NEW, NEW))

        racing = dataclasses.replace(
            svc_env.storage, history=RacingHistory(svc_env.raw.history, other_tab)
        )
        with pytest.raises(InvalidTokenError):
            svc_env.rebuild(racing).reset_password(token, NEW, NEW)
        assert [getattr(w, "ok", None) for w in winner] == [True]
        assert svc_env.kinds().count("password_reset_completed") == 1
        assert _login_ok(svc_env, NEW)

    def test_token_of_a_changes_only_a(self, svc_env: Env) -> None:
        """A's link changes A's password; B's stays."""
        a = _register(svc_env)
        b = _register(svc_env, EMAIL_B, password=PW_B)
        token_a = _reset_token(svc_env)
        result = svc_env.service.reset_password(token_a, NEW, NEW)
        assert result.account_id == a != b
        assert _login_ok(svc_env, PW_B, EMAIL_B)
        assert not _login_ok(svc_env, NEW, EMAIL_B)

    def test_token_bound_to_another_account_state_is_refused(self, svc_env: Env) -> None:
        """A genuine token naming B but bound to A's state fails the state check."""
        _register(svc_env)
        b = _register(svc_env, EMAIL_B, password=PW_B)
        service = svc_env.service
        state_a = bound_state("reset", svc_env.account())  # what A's link is bound to
        assert state_a is not None
        forged = service.tokens.issue("reset", b, state=state_a, now=svc_env.clock.now())
        with pytest.raises(InvalidTokenError):
            service.reset_password(forged, NEW, NEW)
        assert _login_ok(svc_env, PW_B, EMAIL_B)

    def test_dies_on_change_of_password(self, svc_env: Env) -> None:
        """Changing the password after the link was sent kills the link."""
        account_id = _register(svc_env)
        token = _reset_token(svc_env)
        assert svc_env.service.change_password(account_id, PW, NEW, NEW, client_key=_client()).ok
        with pytest.raises(InvalidTokenError):
            svc_env.service.reset_password(token, NEWER, NEWER)
        assert _login_ok(svc_env, NEW)

    def test_dies_on_another_reset(self, svc_env: Env) -> None:
        """Of two links sent, using one kills the other (the password changed)."""
        _register(svc_env)
        first = _reset_token(svc_env)
        second = _reset_token(svc_env)
        assert svc_env.service.reset_password(second, NEW, NEW).ok
        with pytest.raises(InvalidTokenError):
            svc_env.service.reset_password(first, NEWER, NEWER)

    def test_dies_on_change_of_email(self, svc_env: Env) -> None:
        """Changing the e-mail address after the link was sent kills the link."""
        account_id = _register(svc_env)
        token = _reset_token(svc_env)
        svc_env.raw.accounts.set_email(account_id, "aliya.new@example.kz")
        with pytest.raises(InvalidTokenError):
            svc_env.service.reset_password(token, NEW, NEW)
        assert _login_ok(svc_env, PW, "aliya.new@example.kz")

    def test_policy_violation_keeps_the_link(self, svc_env: Env) -> None:
        """A refused password leaves the link usable, so the form can be shown again."""
        account_id = _register(svc_env)
        token = _reset_token(svc_env)
        for new, confirmation, code in (
            ("short", "short", "too_short"),
            (NEW, NEWER, "confirmation_mismatch"),
            (PW, PW, "reused"),
            ("TR0UB4DOR&99x", "TR0UB4DOR&99x", "similar_to_previous"),
            ("Aliya#Example9", "Aliya#Example9", "contains_personal_info"),
        ):
            result = svc_env.service.reset_password(token, new, confirmation)
            assert not result.ok
            assert not result.end_sessions
            assert code in result.policy.codes
        assert svc_env.account().password_hash is not None
        assert _login_ok(svc_env, PW)
        result = svc_env.service.reset_password(token, NEW, NEW)
        assert result.ok
        assert result.account_id == account_id

    def test_confirmation_token_is_not_a_reset(self, svc_env: Env) -> None:
        """A confirmation link cannot reset a password (its own salt)."""
        _register(svc_env)
        with pytest.raises(InvalidTokenError):
            svc_env.service.reset_password(_confirm_token(svc_env), NEW, NEW)
        assert _login_ok(svc_env, PW)

    def test_deleted_account(self, svc_env: Env) -> None:
        """A genuine token for an account that no longer exists is refused."""
        service = svc_env.service
        token = service.tokens.issue("reset", "gone", state="", now=svc_env.clock.now())
        with pytest.raises(InvalidTokenError):
            service.reset_password(token, NEW, NEW)

    def test_history_failure_keeps_the_old_password(self, svc_env: Env) -> None:
        """If storing history fails, the old password keeps working."""
        account_id = _register(svc_env)
        token = _reset_token(svc_env)
        broken = dataclasses.replace(svc_env.storage, history=FailingHistory(svc_env.raw.history))
        with pytest.raises(StorageError):
            svc_env.rebuild(broken).reset_password(token, NEW, NEW)
        assert _login_ok(svc_env, PW)
        assert len(svc_env.raw.history.recent(account_id, 10)) == 1

    @pytest.mark.parametrize("token", GARBAGE_TOKENS, ids=repr)
    def test_garbage_tokens(self, svc_env: Env, token: Any) -> None:
        """Garbage of any shape or type raises InvalidTokenError; nothing is written."""
        _register(svc_env)
        svc_env.forget_calls()
        with pytest.raises(InvalidTokenError) as caught:
            svc_env.service.reset_password(token, NEW, NEW)
        assert not isinstance(caught.value, ExpiredTokenError)
        assert svc_env.writes() == []

    def test_tampered_link_tokens(self, svc_env: Env) -> None:
        """Truncated or altered real tokens are refused; the real one still works after."""
        _register(svc_env)
        token = _reset_token(svc_env)
        for bad in (token[:-1], token[: len(token) // 2], token + "x", "x" + token, token[::-1]):
            with pytest.raises(InvalidTokenError):
                svc_env.service.reset_password(bad, NEW, NEW)
        assert svc_env.service.reset_password(token, NEW, NEW).ok

    @pytest.mark.parametrize(("new", "confirmation"), [(None, NEW), (NEW, None), (b"x", b"x")])
    def test_wrong_types_raise_type_error(self, svc_env: Env, new: Any, confirmation: Any) -> None:
        """Non-str passwords raise TypeError; the link is not used up."""
        _register(svc_env)
        token = _reset_token(svc_env)
        svc_env.forget_calls()
        with pytest.raises(TypeError):
            svc_env.service.reset_password(token, new, confirmation)
        assert svc_env.writes() == []
        assert svc_env.service.reset_password(token, NEW, NEW).ok


ONE_MB = "Aa1!" * (1 << 18)


class TestBadPasswords:
    """1 MB, NUL and lone-surrogate passwords: a clean violation, never a crash or a write."""

    @pytest.mark.parametrize(
        ("password", "code"),
        [
            (ONE_MB, "too_long"),
            ("Quartz\x00Velvet-91", "disallowed_character"),
            ("Quartz\ud800Velvet-91", "disallowed_character"),
            ("\ud800" * 12, "disallowed_character"),
        ],
        ids=["1 MB", "NUL", "lone surrogate", "only surrogates"],
    )
    def test_in_every_flow(self, svc_env: Env, password: str, code: str) -> None:
        """register, change_password and reset_password all answer with the violation."""
        result = svc_env.service.register(
            email=EMAIL_B, password=password, confirmation=password, client_key=_client()
        )
        assert not result.ok
        assert code in result.policy.codes
        assert svc_env.writes() == []
        assert svc_env.hasher.hashes == 0
        account_id = _register(svc_env)
        before = svc_env.account().password_hash
        change = svc_env.service.change_password(
            account_id, PW, password, password, client_key=_client()
        )
        assert (change.reason, code in change.policy.codes) == ("policy", True)
        token = _reset_token(svc_env)
        svc_env.forget_calls()
        svc_env.hasher.reset_counts()
        reset = svc_env.service.reset_password(token, password, password)
        assert not reset.ok
        assert code in reset.policy.codes
        assert svc_env.writes() == []
        assert svc_env.hasher.hashes == 0
        assert svc_env.account().password_hash == before
        assert len(svc_env.raw.history.recent(account_id, 10)) == 1
        assert svc_env.service.reset_password(token, NEW, NEW).ok

    def test_huge_current_password_is_just_wrong(self, svc_env: Env) -> None:
        """A 1 MB "current" password is a wrong password, not a crash."""
        account_id = _register(svc_env)
        result = svc_env.service.change_password(account_id, ONE_MB, NEW, NEW, client_key=_client())
        assert result.reason == "wrong_password"


def _all_flows(env: Env) -> tuple[set[str], list[object]]:
    """Run every e-mail flow, good and bad; return the secrets used and every result."""
    service, secrets = env.service, {PW, PW_B, NEW, NEWER}
    results: list[object] = []

    def keep(message: EmailMessage) -> None:
        link = extract_link(message)
        token = parse_qs(urlsplit(link).query)["token"][0]
        secrets.update({link, token, token.rsplit(".", 1)[-1], token.rsplit(".", 1)[0]})

    results.append(
        service.register(
            email=EMAIL, username="aliya", password=PW, confirmation=PW, client_key=_client()
        )
    )
    keep(env.outbox.last_email())
    results.append(
        service.register(email=EMAIL, password=PW_B, confirmation=PW_B, client_key=_client())
    )
    keep(env.outbox.last_email())
    weak = "bolat-1991"
    secrets.add(weak)
    refused = service.register(
        email=EMAIL_B, password=weak, confirmation=weak, client_key=_client()
    )
    assert not refused.ok
    results.append(refused)
    results.append(
        service.register(email=EMAIL_B, password=PW_B, confirmation=PW_B, client_key=_client())
    )
    keep(env.outbox.last_email(to=EMAIL_B))
    results.append(service.confirm_email(_token(env.outbox.last_email(to=EMAIL_B))))
    account_id = env.account().id
    for identifier, password in ((EMAIL, PW), ("aliya", PW_B), ("nobody", PW_B)):
        results.append(service.authenticate(identifier, password, client_key=_client()))
    for _ in range(3):
        results.append(service.authenticate(EMAIL, PW_B, client_key=_client()))
    env.clock.advance(hours=1)
    results.append(service.change_password(account_id, PW_B, NEW, NEW, client_key=_client()))
    env.clock.advance(hours=1)  # past the back-off the wrong guesses above started
    results.append(
        service.change_password(
            account_id, PW, "Tr0ub4dor&3y", "Tr0ub4dor&3y", client_key=_client()
        )
    )
    secrets.add("Tr0ub4dor&3y")
    results.append(service.change_password(account_id, PW, NEW, NEW, client_key=_client()))
    env.outbox.fail_next()
    results.append(service.request_password_reset(EMAIL, client_key="203.0.113.9"))
    results.append(service.request_password_reset("nobody", client_key="203.0.113.9"))
    results.append(service.request_password_reset("aliya", client_key="203.0.113.9"))
    message = env.outbox.last_email(to=EMAIL)
    keep(message)
    token = _token(message)
    results.append(service.reset_password(token, NEW, NEW))  # reused
    results.append(service.reset_password(token, NEWER, NEWER))
    for bad in (token, token[:-3], "garbage"):
        try:
            service.reset_password(bad, NEWER, NEWER)
        except InvalidTokenError as exc:
            results.append(exc)
    for _ in range(3):
        results.append(service.request_password_reset("aliya", client_key="203.0.113.9"))
    return secrets, results


class TestSecretsNeverLeak:
    """No password, token or link in a log record, event, repr, exception or stored row."""

    def test_across_all_flows(self, svc_env: Env, caplog: pytest.LogCaptureFixture) -> None:
        """Capture at DEBUG, run every flow, then search everything for every secret."""
        caplog.set_level(logging.DEBUG, logger="kaspi_identity")
        tee = TeeAudit()
        env = dataclasses.replace(svc_env, audit=tee.memory)
        env.service = svc_env.rebuild(audit=tee)
        secrets, results = _all_flows(env)
        secrets |= {KEY.hex(), repr(KEY)}
        assert len(secrets) > 15

        records = caplog.records
        assert any(r.name == "kaspi_identity.audit" for r in records)
        assert any(r.levelno == logging.WARNING for r in records)  # the failed delivery
        log_text = caplog.text + "".join(
            f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in records
        )
        events = tee.memory.events
        assert {"registered", "password_changed", "password_reset_completed"} <= {
            e.kind for e in events
        }
        event_text = "".join(f"{e!r} {dict(e.details)!r}" for e in events)
        repr_text = " ".join(
            repr(x)
            for x in (
                env.service,
                env.settings,
                env.service.tokens,
                getattr(env.service, "history", None),  # the sync face's only
                env.outbox,
                env.account(),
                env.account(EMAIL_B),
                *env.raw.history.recent(env.account().id, 10),
                *results,
            )
        )
        error_text = " ".join(str(r) for r in results if isinstance(r, Exception))
        for secret in secrets:
            for where, text in (
                ("log", log_text),
                ("event", event_text),
                ("repr", repr_text),
                ("error", error_text),
            ):
                assert secret not in text, f"a secret appears in a {where}"
        for account in (env.account(), env.account(EMAIL_B)):
            stored = account.password_hash or ""
            assert stored.startswith("$argon2id$")
            assert stored not in repr_text + log_text + event_text

        if env.path is None:
            return
        with contextlib.closing(sqlite3.connect(env.path)) as connection:
            tables = [
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            assert {"accounts", "password_history", "consumed_tokens", "rate_limits"} <= set(tables)
            cells: list[object] = []
            for table in tables:
                cells.extend(
                    cell
                    for row in connection.execute(f'SELECT * FROM "{table}"')  # noqa: S608
                    for cell in row
                )
            hashes = [
                row[0]
                for query in (
                    "SELECT password_hash FROM accounts",
                    "SELECT password_hash FROM password_history",
                )
                for row in connection.execute(query)
            ]
        assert hashes
        assert all(isinstance(h, str) and h.startswith("$argon2id$") for h in hashes)
        assert cells
        for cell in cells:
            text = cell.decode("latin-1") if isinstance(cell, bytes) else str(cell)
            for secret in secrets:
                assert secret not in text, "a secret appears in a stored row"
                assert secret.encode("utf-8", "surrogatepass") not in (
                    cell if isinstance(cell, bytes) else b""
                )

    def test_exception_messages_hold_no_input(self, svc_env: Env) -> None:
        """Typed errors say what was wrong, never the value that was typed."""
        secret_email = "secret.address@example"
        with pytest.raises(InvalidIdentifierError) as caught:
            svc_env.service.register(
                email=secret_email, password=PW, confirmation=PW, client_key=_client()
            )
        assert secret_email not in str(caught.value)
        assert PW not in str(caught.value)
        token = "zz-not-a-token-zz"
        with pytest.raises(InvalidTokenError) as bad:
            svc_env.service.reset_password(token, NEW, NEW)
        assert token not in str(bad.value)

    def test_broken_audit_sink_does_not_break_a_flow(
        self, svc_env: Env, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A sink that raises is logged (without secrets); the flow completes."""

        class Broken:
            def emit(self, event: AuditEvent) -> None:
                raise RuntimeError("sink down")

        caplog.set_level(logging.DEBUG, logger="kaspi_identity")
        service = svc_env.rebuild(audit=Broken())
        assert service.register(email=EMAIL, password=PW, confirmation=PW, client_key=_client()).ok
        token = _token(svc_env.outbox.last_email())
        assert service.authenticate(EMAIL, PW, client_key=_client()).ok
        assert "audit sink failed" in caplog.text
        assert PW not in caplog.text
        assert token not in caplog.text


class TestConfirmRace:
    def test_address_changed_during_confirmation_stays_unconfirmed(self, svc_env: Env) -> None:
        """An address changed between the link's check and the mark is not confirmed by it."""
        _register(svc_env)
        token = _token(svc_env.outbox.last_email(to=EMAIL))
        accounts = svc_env.raw.accounts
        account = accounts.find_by_login("email", EMAIL)
        assert account is not None
        real_mark = accounts.mark_email_confirmed

        def racing_mark(account_id: str, *, email: str, now: datetime) -> bool:
            accounts.set_email(account_id, "other@example.kz")  # the race, just before
            return real_mark(account_id, email=email, now=now)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(accounts, "mark_email_confirmed", racing_mark)
            with pytest.raises(InvalidTokenError):
                svc_env.service.confirm_email(token)
        stored = accounts.get(account.id)
        assert stored is not None
        assert (stored.email, stored.email_confirmed) == ("other@example.kz", False)
