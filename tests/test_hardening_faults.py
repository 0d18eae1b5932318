"""Issue 11 ("Hardening II") at the service level: nothing is lost, every rule holds.

Password changes and registrations are units of work: on the bundled SQLite and memory
storage (``Storage.with_history``) a failing history write leaves nothing changed; with
stores in different backends the order of the writes leaves the old password working. The
adapters prove their half through the contract suite (``AccountWithHistoryContract``).
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from _faces import FACES, Face, make_service
from kaspi_identity import PasswordPolicy, StorageError
from kaspi_identity._errors import InvalidTokenError
from kaspi_identity.delivery import Outbox, extract_code, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import (
    IdentityService,
    IdentitySettings,
    ManualClock,
    MemoryAuditLog,
    RateLimit,
    ResetRequestResult,
)
from kaspi_identity.storage import HistoryEntry, PasswordHistoryStore, Storage
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage
from kaspi_identity.testing import mark_phone_verified

KEY = hashlib.sha256(b"kaspi-identity tests: faults key").digest()
EMAIL = "aliya@example.kz"
PHONE = "+77011234567"
PW = "Tr0ub4dor&3x"
NEW = "Velvet#Quartz-9182"
HOUR = timedelta(hours=1)
_clients = itertools.count(1)


def _client() -> str:
    return f"198.18.0.{next(_clients)}"


class FailingHistory:
    """A history store in another backend that has gone away: every append fails."""

    def __init__(self, inner: PasswordHistoryStore) -> None:
        self.inner = inner
        self.failing = True

    def append(self, account_id: str, entry: HistoryEntry, *, keep: int) -> None:
        if self.failing:
            raise StorageError("simulated: the history backend is down")
        self.inner.append(account_id, entry, keep=keep)

    def recent(self, account_id: str, limit: int) -> list[HistoryEntry]:
        return self.inner.recent(account_id, limit)


@dataclass
class Env:
    storage: Storage
    service: IdentityService
    outbox: Outbox
    clock: ManualClock
    audit: MemoryAuditLog
    path: Path | None

    def register(self, email: str = EMAIL, **more: Any) -> str:
        result = self.service.register(
            email=email, password=PW, confirmation=PW, client_key=_client(), **more
        )
        assert result.ok, result
        account = self.storage.accounts.find_by_login("email", email)
        assert account is not None
        if account.phone is not None:  # only a proven number receives reset codes
            mark_phone_verified(self.storage.accounts, account.id)
        return account.id

    def login(self, password: str, identifier: str = EMAIL) -> bool:
        return self.service.authenticate(identifier, password, client_key=_client()).ok

    def reset_token(self, identifier: str = EMAIL) -> str:
        assert self.service.request_password_reset(identifier, client_key=_client())
        link = extract_link(self.outbox.last_email(to=EMAIL))
        return parse_qs(urlsplit(link).query)["token"][0]


def _settings(**changes: Any) -> IdentitySettings:
    base: dict[str, Any] = {
        "secret_keys": (KEY,),
        "confirm_url": "https://portal.example.kz/confirm",
        "reset_url": "https://portal.example.kz/reset",
        "site_name": "portal.example.kz",
    }
    base.update(changes)
    return IdentitySettings(**base)


def _service(
    storage: Storage,
    outbox: Outbox,
    clock: ManualClock,
    audit: MemoryAuditLog,
    face: Face = "sync",
    **changes: Any,
) -> IdentityService:
    return make_service(
        face,
        storage,
        _settings(**changes),
        email_sender=outbox,
        sms_sender=outbox,
        policy=PasswordPolicy(history=6, history_similar=True),
        hasher=PasswordHasher(TESTS_ONLY),
        clock=clock,
        audit=audit,
    )


def _make(
    kind: str, tmp_path: Path, face: Face = "sync", *, split: bool = False, **changes: Any
) -> Env:
    path = tmp_path / "identity.sqlite3" if kind == "sqlite" else None
    raw = sqlite_storage(path) if path is not None else memory_storage()
    storage = raw
    if split:  # history in "another backend": no shared unit of work
        storage = replace(raw, history=FailingHistory(raw.history), with_history=None)
    outbox, clock, audit = Outbox(), ManualClock(), MemoryAuditLog()
    return Env(
        storage,
        _service(storage, outbox, clock, audit, face, **changes),
        outbox,
        clock,
        audit,
        path,
    )


@pytest.fixture(params=[(k, f) for k in ("memory", "sqlite") for f in FACES], ids="-".join)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    kind, face = request.param
    made = _make(kind, tmp_path, face)
    try:
        yield made
    finally:
        made.storage.close()


@pytest.fixture(params=[(k, f) for k in ("memory", "sqlite") for f in FACES], ids="-".join)
def split(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    kind, face = request.param
    made = _make(kind, tmp_path, face, split=True)
    assert isinstance(made.storage.history, FailingHistory)
    made.storage.history.failing = False
    try:
        yield made
    finally:
        made.storage.close()


def _break_sqlite_history(path: Path) -> None:
    """Make every history insert fail inside the database (a disk-full stand-in)."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER fail_history BEFORE INSERT ON password_history "
            "BEGIN SELECT RAISE(ABORT, 'simulated disk full'); END"
        )


def _mend_sqlite_history(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER fail_history")


# -- 1. a password change is one unit of work ------------------------------------------


class TestSplitStores:
    """History in another backend: the entry is written first, the hash after."""

    def test_change_with_history_down_keeps_the_old_password(self, split: Env) -> None:
        account_id = split.register()
        assert isinstance(split.storage.history, FailingHistory)
        split.storage.history.failing = True
        before = split.storage.accounts.get(account_id)
        with pytest.raises(StorageError):
            split.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        after = split.storage.accounts.get(account_id)
        assert before is not None
        assert after is not None
        assert after.password_hash == before.password_hash
        assert after.security_stamp == before.security_stamp
        assert split.login(PW)
        assert not split.login(NEW)

    def test_reset_with_history_down_keeps_the_old_password(self, split: Env) -> None:
        split.register()
        token = split.reset_token()
        assert isinstance(split.storage.history, FailingHistory)
        split.storage.history.failing = True
        with pytest.raises(StorageError):
            split.service.reset_password(token, NEW, NEW)
        assert split.login(PW)
        split.storage.history.failing = False
        # The link was consumed before the write failed (single use comes first): a new
        # letter finishes the reset.
        with pytest.raises(InvalidTokenError):
            split.service.reset_password(token, NEW, NEW)
        assert split.service.reset_password(split.reset_token(), NEW, NEW).ok
        assert split.login(NEW)

    def test_reset_of_an_account_without_password(self, split: Env) -> None:
        """Issue 11: the put-back raised an untyped ValueError and left the new hash set."""
        from kaspi_identity.storage import NewAccount

        account = split.storage.accounts.create(NewAccount(email=EMAIL), now=split.clock.now())
        token = split.reset_token()
        assert isinstance(split.storage.history, FailingHistory)
        split.storage.history.failing = True
        with pytest.raises(StorageError):
            split.service.reset_password(token, NEW, NEW)
        stored = split.storage.accounts.get(account.id)
        assert stored is not None
        assert stored.password_hash is None

    def test_registration_with_history_down_still_confirms(self, split: Env) -> None:
        """The account is made and its letter sent; the lost entry is audited."""
        assert isinstance(split.storage.history, FailingHistory)
        split.storage.history.failing = True
        account_id = split.register()
        assert split.outbox.last_email(to=EMAIL).kind == "confirm_email"
        assert "history_write_failed" in split.audit.kinds()
        link = extract_link(split.outbox.last_email(to=EMAIL))
        assert split.service.confirm_email(parse_qs(urlsplit(link).query)["token"][0]) == (
            account_id
        )


class TestOneTransaction:
    """Accounts and history in one SQLite database: both writes or neither."""

    @pytest.fixture
    def db(self, tmp_path: Path) -> Iterator[Env]:
        made = _make("sqlite", tmp_path)
        assert made.storage.with_history is not None
        try:
            yield made
        finally:
            made.storage.close()

    def test_change_fails_whole(self, db: Env) -> None:
        account_id = db.register()
        assert db.path is not None
        before = db.storage.accounts.get(account_id)
        entries = db.storage.history.recent(account_id, 6)
        _break_sqlite_history(db.path)
        with pytest.raises(StorageError):
            db.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        after = db.storage.accounts.get(account_id)
        assert before is not None
        assert after is not None
        assert (after.password_hash, after.security_stamp) == (
            before.password_hash,
            before.security_stamp,
        )
        assert db.storage.history.recent(account_id, 6) == entries
        assert db.login(PW)

    def test_reset_fails_whole(self, db: Env) -> None:
        account_id = db.register()
        token = db.reset_token()
        assert db.path is not None
        _break_sqlite_history(db.path)
        with pytest.raises(StorageError):
            db.service.reset_password(token, NEW, NEW)
        assert db.login(PW)
        assert len(db.storage.history.recent(account_id, 6)) == 1
        _mend_sqlite_history(db.path)

    def test_registration_fails_whole_and_a_retry_finishes_it(self, db: Env) -> None:
        assert db.path is not None
        _break_sqlite_history(db.path)
        with pytest.raises(StorageError):
            db.service.register(email=EMAIL, password=PW, confirmation=PW, client_key=_client())
        assert db.storage.accounts.find_by_login("email", EMAIL) is None
        assert db.outbox.emails == []
        _mend_sqlite_history(db.path)
        db.register()
        assert db.outbox.last_email(to=EMAIL).kind == "confirm_email"


# -- 2. registration is never stuck ------------------------------------------------------


class TestResendConfirmation:
    def test_a_lost_letter_can_be_sent_again(self, env: Env) -> None:
        account_id = env.register()
        env.outbox.clear()
        assert env.service.resend_confirmation(EMAIL, client_key=_client()) == (
            ResetRequestResult(True)
        )
        letter = env.outbox.last_email(to=EMAIL)
        assert letter.kind == "confirm_email"
        token = parse_qs(urlsplit(extract_link(letter)).query)["token"][0]
        assert env.service.confirm_email(token) == account_id

    def test_same_answer_for_unknown_and_confirmed(self, env: Env) -> None:
        env.register()
        token = parse_qs(urlsplit(extract_link(env.outbox.last_email(to=EMAIL))).query)
        env.service.confirm_email(token["token"][0])
        env.outbox.clear()
        answers = [
            env.service.resend_confirmation(identifier, client_key=_client())
            for identifier in (EMAIL, "nobody@example.kz", "nobody", "+77479998877", "")
        ]
        assert answers == [ResetRequestResult(True)] * 5
        assert env.outbox.emails == []

    def test_limited_per_identifier_and_account(self, env: Env) -> None:
        env.register(username="aliya_n")
        service = env.service
        limited = IdentityService(
            env.storage,
            replace(service.settings, reset_per_identifier=RateLimit(2, HOUR)),
            email_sender=env.outbox,
            hasher=service.hasher,
            clock=env.clock,
        )
        env.outbox.clear()
        answers = [
            limited.resend_confirmation(identifier, client_key=_client())
            for identifier in (EMAIL, "aliya_n", "ALIYA@example.kz")
        ]
        assert [a.accepted for a in answers] == [True, True, False]
        assert answers[2].retry_after == HOUR
        assert len(env.outbox.emails) == 2

    @pytest.mark.parametrize("bad", [None, b"x", 1])
    def test_bad_input(self, env: Env, bad: Any) -> None:
        with pytest.raises(TypeError):
            env.service.resend_confirmation(bad, client_key="c")
        with pytest.raises(TypeError):
            env.service.resend_confirmation(EMAIL, client_key=bad)

    def test_a_reset_by_email_confirms_the_address(self, env: Env) -> None:
        account_id = env.register()
        assert env.service.reset_password(env.reset_token(), NEW, NEW).ok
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert account.email_confirmed

    def test_a_reset_by_sms_does_not(self, env: Env) -> None:
        account_id = env.register(phone=PHONE)
        env.service.request_sms_reset(PHONE, client_key=_client())
        grant = env.service.verify_sms_code(PHONE, extract_code(env.outbox.last_sms(to=PHONE)))
        assert env.service.reset_password(grant, NEW, NEW).ok
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert not account.email_confirmed


# -- 6. personal data at every change ------------------------------------------------------


class TestNamesAtEveryChange:
    def test_names_are_kept_and_checked(self, env: Env) -> None:
        """Issue 11: names refused at sign-up were accepted by change and reset."""
        account_id = env.register(names=("Aigerim", "Nurlanova"))
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert account.names == ("Aigerim", "Nurlanova")
        changed = env.service.change_password(
            account_id, PW, "Aigerim#2026x", "Aigerim#2026x", client_key=_client()
        )
        assert changed.reason == "policy"
        assert "contains_personal_info" in changed.policy.codes
        reset = env.service.reset_password(env.reset_token(), "nurlanova!Q9z", "nurlanova!Q9z")
        assert not reset.ok
        assert "contains_personal_info" in reset.policy.codes

    def test_names_not_in_reprs(self, env: Env) -> None:
        account_id = env.register(names=("Aigerim",))
        account = env.storage.accounts.get(account_id)
        assert "Aigerim" not in repr(account)


# -- 9. development mode --------------------------------------------------------------------


class TestDevelopmentMode:
    def test_http_links_are_sent_in_development(self, tmp_path: Path) -> None:
        made = _make(
            "memory",
            tmp_path,
            allow_insecure_http=True,
            confirm_url="http://127.0.0.1:8000/confirm",
            reset_url="http://127.0.0.1:8000/reset",
        )
        account_id = made.register()
        letter = made.outbox.last_email(to=EMAIL)
        link = extract_link(letter)
        assert link.startswith("http://127.0.0.1:8000/confirm?")
        assert made.service.confirm_email(parse_qs(urlsplit(link).query)["token"][0]) == (
            account_id
        )
        assert made.service.request_password_reset(EMAIL, client_key=_client())
        assert extract_link(made.outbox.last_email(to=EMAIL)).startswith("http://127.0.0.1")

    def test_a_service_that_cannot_write_letters_is_refused(self) -> None:
        with pytest.raises(ValueError, match="cannot write its"):
            _service(
                memory_storage(),
                Outbox(),
                ManualClock(),
                MemoryAuditLog(),
                site_name="portal\nBcc: victim@example.kz",
            )


# -- token material never chained through the new flows --------------------------------------


def test_confirm_with_garbage_chains_nothing(env: Env) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        env.service.confirm_email("garbage")
    assert caught.value.__context__ is None


# -- 7. IIN/BIN logins --------------------------------------------------------------------

IIN = "880101300123"  # born 1 January 1988; a valid check digit
OTHER_IIN = "900502401237"


class TestIinLogins:
    def test_register_and_log_in_by_iin(self, env: Env) -> None:
        account_id = env.register(iin=IIN)
        account = env.storage.accounts.get(account_id)
        assert account is not None
        assert account.iin == IIN
        assert env.login(PW, identifier=IIN)
        assert env.login(PW, identifier=f"  {IIN} ")
        assert not env.login(PW, identifier=OTHER_IIN)

    def test_reset_by_iin_sends_the_letter(self, env: Env) -> None:
        env.register(iin=IIN)
        env.outbox.clear()
        assert env.service.request_password_reset(IIN, client_key=_client())
        assert env.outbox.last_email(to=EMAIL).kind == "password_reset"

    def test_digit_only_user_names_are_refused(self, env: Env) -> None:
        """Issue 11: register(username=IIN) succeeded and then nobody could log in by it."""
        from kaspi_identity.services import InvalidIdentifierError

        for username in (IIN, "87011234567", "+7 701 123 45 67", "8(701)1234567"):
            with pytest.raises(InvalidIdentifierError) as caught:
                env.service.register(
                    email="new@example.kz",
                    username=username,
                    password=PW,
                    confirmation=PW,
                    client_key=_client(),
                )
            assert caught.value.field == "username"
        assert env.storage.accounts.find_by_login("email", "new@example.kz") is None

    def test_a_user_name_never_finds_another_accounts_phone(self, env: Env) -> None:
        """An identifier names at most one account."""
        phone_owner = env.register("owner@example.kz", phone=PHONE)
        named = env.register("named@example.kz", username="aliya77")
        # The lookup itself (a private step) is the same on both faces: ask the sync one.
        core = make_service("sync", env.storage, env.service.settings, email_sender=env.outbox)
        found = {
            identifier: core._plumbing.lookup(core._plumbing.resolve(identifier))
            for identifier in ("aliya77", PHONE, "8 701 123 45 67")
        }
        assert found["aliya77"] is not None
        assert found["aliya77"].id == named
        assert {found[PHONE].id, found["8 701 123 45 67"].id} == {phone_owner}  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "bad",
        [
            "88010130012",
            "8801013001234",
            "880101300124",
            "88O101300123",
            "８８０１０１３００１２３",
        ],
    )
    def test_malformed_iin_is_a_typed_error_and_nothing_is_written(
        self, env: Env, bad: str
    ) -> None:
        from kaspi_identity import InvalidIinError

        with pytest.raises(InvalidIinError) as caught:
            env.service.register(
                email=EMAIL, iin=bad, password=PW, confirmation=PW, client_key=_client()
            )
        assert caught.value.message("kk")
        assert env.storage.accounts.find_by_login("email", EMAIL) is None

    def test_a_taken_iin_gives_the_same_answer_and_letters(self, env: Env) -> None:
        env.register("owner@example.kz", iin=IIN)
        letters = []
        for iin, mine in ((IIN, "mine1@example.kz"), (OTHER_IIN, "mine2@example.kz")):
            env.outbox.clear()
            answer = env.service.register(
                email=mine, iin=iin, password=NEW, confirmation=NEW, client_key=_client()
            )
            assert answer.ok
            letters.append([m.kind for m in env.outbox.emails if m.to == mine])
        assert letters[0] == letters[1] == ["confirm_email"]
        assert [m.kind for m in env.outbox.emails if m.to == "owner@example.kz"] == []
        env.outbox.clear()
        env.service.register(
            email="mine3@example.kz", iin=IIN, password=NEW, confirmation=NEW, client_key=_client()
        )
        assert env.outbox.last_email(to="owner@example.kz").kind == "iin_already_registered"
        newcomer = env.storage.accounts.find_by_login("email", "mine1@example.kz")
        assert newcomer is not None
        assert newcomer.iin is None


# -- 4. no input makes a call slow (results checked, never the time) -----------------------

_MB = 1024 * 1024


@pytest.fixture(scope="module", params=[_MB, 100 * _MB], ids=["1MB", "100MB"])
def huge(request: pytest.FixtureRequest) -> dict[str, str]:
    size = request.param
    return {
        "ascii": "a" * size,
        "nfkc": "\ufdfa" * (size // 18),  # NFKC expands U+FDFA 18 times
        "digits": "7" * size,
    }


class TestHugeInputs:
    """Every entry point answers a huge text with its usual typed error or refusal."""

    def test_log_in(self, env: Env, huge: dict[str, str]) -> None:
        env.register()
        for text in huge.values():
            assert env.service.authenticate(text, PW, client_key=_client()).reason == "invalid"
            assert env.service.authenticate(EMAIL, text, client_key=_client()).reason == ("invalid")
        assert env.service.authenticate(EMAIL, PW, client_key=huge["ascii"]).ok

    def test_registration(self, env: Env, huge: dict[str, str]) -> None:
        from kaspi_identity import InvalidIinError, InvalidPhoneError
        from kaspi_identity.services import InvalidIdentifierError

        for text in huge.values():
            with pytest.raises(InvalidIdentifierError):
                env.service.register(email=text, password=PW, confirmation=PW, client_key="c")
            with pytest.raises(InvalidIdentifierError):
                env.service.register(
                    email=EMAIL, username=text, password=PW, confirmation=PW, client_key="c"
                )
            with pytest.raises(InvalidIdentifierError):
                env.service.register(
                    email=EMAIL, names=(text,), password=PW, confirmation=PW, client_key="c"
                )
            with pytest.raises(InvalidPhoneError):
                env.service.register(
                    email=EMAIL, phone=text, password=PW, confirmation=PW, client_key="c"
                )
            with pytest.raises(InvalidIinError):
                env.service.register(
                    email=EMAIL, iin=text, password=PW, confirmation=PW, client_key="c"
                )
            refused = env.service.register(
                email=EMAIL, password=text, confirmation=text, client_key=_client()
            )
            assert not refused.ok
            assert "too_long" in refused.policy.codes
        assert env.storage.accounts.find_by_login("email", EMAIL) is None

    def test_change_and_reset(self, env: Env, huge: dict[str, str]) -> None:
        account_id = env.register()
        for text in huge.values():
            changed = env.service.change_password(account_id, PW, text, text, client_key=_client())
            assert changed.reason == "policy"
            assert "too_long" in changed.policy.codes
            wrong = env.service.change_password(account_id, text, NEW, NEW, client_key=_client())
            assert wrong.reason in ("wrong_password", "throttled")
            env.clock.advance(HOUR)
        token = env.reset_token()
        for text in huge.values():
            result = env.service.reset_password(token, text, text)
            assert not result.ok
            assert "too_long" in result.policy.codes
            with pytest.raises(InvalidTokenError):
                env.service.reset_password(text, NEW, NEW)
        assert env.login(PW)

    def test_recovery_requests(self, env: Env, huge: dict[str, str]) -> None:
        from kaspi_identity import InvalidPhoneError
        from kaspi_identity.services import InvalidCodeError

        env.register(phone=PHONE)
        for text in huge.values():
            assert env.service.request_password_reset(text, client_key=_client())
            assert env.service.resend_confirmation(text, client_key=_client())
            with pytest.raises(InvalidPhoneError):
                env.service.request_sms_reset(text, client_key=_client())
            with pytest.raises(InvalidCodeError):
                env.service.verify_sms_code(PHONE, text)
            with pytest.raises(InvalidTokenError):
                env.service.confirm_email(text)
            assert env.service.session_is_current(text, text) is False


def test_a_unit_of_work_for_other_stores_is_refused(tmp_path: Path) -> None:
    """replace(bundle, accounts=mine) must not keep writing into the bundled table."""
    from kaspi_identity.storage.memory import MemoryAccountStore

    with sqlite_storage(tmp_path / "x.sqlite3") as bundled:
        with pytest.raises(ValueError, match="with_history"):
            replace(bundled, accounts=MemoryAccountStore())
        assert (
            replace(bundled, accounts=MemoryAccountStore(), with_history=None).with_history is None
        )
    memory = memory_storage()
    with pytest.raises(ValueError, match="with_history"):
        replace(memory, history=memory_storage().history)


class TestIinIsPersonalData:
    @pytest.mark.parametrize(
        "password", ["Qz880101300123!", "Qz-880101-Steppe", "Steppe010188!z", "Steppe01011988!"]
    )
    def test_iin_and_birth_date_are_refused_everywhere(self, env: Env, password: str) -> None:
        refused = env.service.register(
            email=EMAIL, iin=IIN, password=password, confirmation=password, client_key=_client()
        )
        assert "contains_personal_info" in refused.policy.codes
        account_id = env.register(iin=IIN)
        changed = env.service.change_password(
            account_id, PW, password, password, client_key=_client()
        )
        assert changed.reason == "policy"
        assert "contains_personal_info" in changed.policy.codes
        assert [v.params["field"] for v in changed.policy.violations] in (["iin"], ["birth_date"])
        reset = env.service.reset_password(env.reset_token(), password, password)
        assert "contains_personal_info" in reset.policy.codes


class TestRedisHistoryWithSqlAccounts:
    """The split the issue names: accounts in SQL, history in Redis (a real adapter)."""

    def _env(self, tmp_path: Path, url: str) -> Env:
        redis = pytest.importorskip("redis")
        from kaspi_identity.storage.redis import RedisPasswordHistoryStore

        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        prefix = f"kaspi-faults-{next(_clients)}:"
        raw = sqlite_storage(tmp_path / "accounts.sqlite3")
        storage = replace(
            raw, history=RedisPasswordHistoryStore(client, prefix=prefix), with_history=None
        )
        outbox, clock, audit = Outbox(), ManualClock(), MemoryAuditLog()
        return Env(storage, _service(storage, outbox, clock, audit), outbox, clock, audit, None)

    def test_works_end_to_end(self, tmp_path: Path) -> None:
        from _servers import require_server

        made = self._env(tmp_path, require_server("KASPI_IDENTITY_REDIS_URL"))
        account_id = made.register()
        assert made.service.change_password(account_id, PW, NEW, NEW, client_key=_client()).ok
        assert len(made.storage.history.recent(account_id, 6)) == 2
        assert made.login(NEW)

    def test_redis_gone_keeps_the_old_password(self, tmp_path: Path) -> None:
        """History on a Redis that is not there (killed): the change fails, the old works."""
        from _servers import require_server

        live = self._env(tmp_path, require_server("KASPI_IDENTITY_REDIS_URL"))
        account_id = live.register()
        dead = self._env(tmp_path, "redis://127.0.0.1:1/0")  # nothing listens on port 1
        with pytest.raises(StorageError):
            dead.service.change_password(account_id, PW, NEW, NEW, client_key=_client())
        assert live.login(PW)
        assert not live.login(NEW)
        assert len(live.storage.history.recent(account_id, 6)) == 1


def test_unknown_language_message_is_bounded() -> None:
    from kaspi_identity import UnknownLanguageError
    from kaspi_identity.i18n import normalize_language

    with pytest.raises(UnknownLanguageError) as caught:
        normalize_language("x" * 1_000_000)
    assert len(str(caught.value)) < 200


class TestIdentifierErrorsAreLocalised:
    @pytest.mark.parametrize(
        ("arguments", "code"),
        [
            ({"email": "not-an-address"}, "email"),
            ({"email": EMAIL, "username": "a"}, "username"),
            ({"email": EMAIL, "username": "87011234567"}, "username_number"),
            ({"email": EMAIL, "names": tuple("abcdefghi")}, "names"),
            ({"email": EMAIL, "names": ("a\x00b",)}, "name_character"),
            ({}, "missing"),
        ],
    )
    def test_every_code_in_every_language(
        self, env: Env, arguments: dict[str, Any], code: str
    ) -> None:
        import pickle

        from kaspi_identity.services import IDENTIFIER_ERROR_CODES, InvalidIdentifierError

        with pytest.raises(InvalidIdentifierError) as caught:
            env.service.register(password=PW, confirmation=PW, client_key=_client(), **arguments)
        error = caught.value
        assert error.code == code
        assert code in IDENTIFIER_ERROR_CODES
        texts = {lang: error.message(lang) for lang in ("kk", "ru", "en")}
        assert len(set(texts.values())) == 3
        for text in texts.values():
            assert "87011234567" not in text
            assert "not-an-address" not in text
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 -- our own bytes, round-tripped
        assert (copy.field, copy.code, str(copy)) == (error.field, error.code, str(error))


def test_racing_redemptions_with_one_transaction(env: Env) -> None:
    """Bundled storage: 32 redemptions of one link, one wins, every other is a dead link."""
    import threading

    env.register()
    token = env.reset_token()
    barrier = threading.Barrier(32)
    outcomes: list[object] = []
    lock = threading.Lock()

    def redeem(n: int) -> None:
        password = f"Parallel#{n:02d}-Orchid"
        barrier.wait(timeout=30)
        try:
            outcome: object = env.service.reset_password(token, password, password)
        except InvalidTokenError as exc:
            outcome = exc
        with lock:
            outcomes.append(outcome)

    workers = [threading.Thread(target=redeem, args=(n,)) for n in range(32)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(outcomes) == 32
    assert sum(1 for o in outcomes if getattr(o, "ok", False)) == 1
    assert sum(1 for o in outcomes if type(o) is InvalidTokenError) == 31
