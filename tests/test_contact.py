"""The account lifecycle (issue 15): change of e-mail with undo, phone by code, time zone.

Every test runs on both faces (sync and async) and on the memory, SQLite and SQLAlchemy
adapters; the SQLite and SQLAlchemy bundles queue every letter in the durable outbox (the
worker delivers them), the memory one sends in the request. With the test servers up, the
same runs on PostgreSQL (through SQLAlchemy, a schema of its own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _faces import FACES, make_service
from _servers import require_server
from kaspi_identity import (
    AccountNotFoundError,
    ExpiredTokenError,
    InvalidCodeError,
    InvalidPhoneError,
    InvalidTokenError,
    KaspiIdentityError,
)
from kaspi_identity.delivery import EmailMessage, Outbox, SmsMessage, extract_code, extract_link
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import (
    ContactChangeResult,
    IdentityService,
    IdentitySettings,
    InvalidIdentifierError,
    ManualClock,
    MemoryAuditLog,
    OutboxWorker,
)
from kaspi_identity.storage import Account, NewAccount, Storage
from kaspi_identity.storage.memory import memory_storage
from kaspi_identity.storage.sqlite import sqlite_storage
from kaspi_identity.testing import mark_phone_verified

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
KEY = "k" * 32
EMAIL = "aliya@example.kz"
NEW_EMAIL = "aliya.new@example.kz"
OTHER_EMAIL = "bolat@example.kz"
PHONE = "+77011234567"
NEW_PHONE = "+77021234567"
OTHER_PHONE = "+77051234567"
PASSWORD = "Alatau-Peak-2026!"
NEW_PASSWORD = "Medeu-Rink-1972?"
HOSTILE = [None, b"x", 7, "", "x" * 1_000_000, "a\x00b", "\ud800", "...."]

_T = TypeVar("_T")


def _settings(**changes: Any) -> IdentitySettings:
    return IdentitySettings(
        secret_keys=(KEY.encode(),),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
        email_change_url="https://portal.example.kz/email/confirm",
        email_undo_url="https://portal.example.kz/email/undo",
        site_name="portal.example.kz",
        **changes,
    )


def _token(message: EmailMessage) -> str:
    return parse_qs(urlsplit(extract_link(message)).query)["token"][0]


@dataclass
class Env:
    """A service on one face and adapter, its senders, clock, audit and outbox worker."""

    storage: Storage
    service: IdentityService
    outbox: Outbox
    clock: ManualClock
    audit: MemoryAuditLog
    worker: OutboxWorker | None

    def deliver(self) -> None:
        if self.worker is not None:
            self.worker.run_until_idle()

    def register(
        self,
        email: str | None = EMAIL,
        phone: str | None = PHONE,
        *,
        verified: bool = True,
        **more: Any,
    ) -> str:
        result = self.service.register(
            email=email,
            phone=phone,
            password=PASSWORD,
            confirmation=PASSWORD,
            client_key=f"register-{email}-{phone}",
            **more,
        )
        assert result.ok, result
        account = (
            self.storage.accounts.find_by_login("email", email)
            if email is not None
            else self.storage.accounts.find_by_login("username", more["username"])
        )
        assert account is not None
        if phone is not None and verified:
            mark_phone_verified(self.storage.accounts, account.id)
        self.deliver()
        return account.id

    def account(self, account_id: str) -> Account:
        account = self.storage.accounts.get(account_id)
        assert account is not None
        return account

    def letters_to(self, to: str) -> list[EmailMessage]:
        self.deliver()
        return [m for m in self.outbox.emails if m.to == to]

    def texts_to(self, to: str) -> list[SmsMessage]:
        self.deliver()
        return [m for m in self.outbox.sms if m.to == to]

    def change_email(self, account_id: str, new: str = NEW_EMAIL, **kw: Any) -> ContactChangeResult:
        return self.service.request_email_change(
            account_id, kw.get("password", PASSWORD), new, client_key=kw.get("client", "c1")
        )

    def change_phone(self, account_id: str, new: str = NEW_PHONE, **kw: Any) -> ContactChangeResult:
        self.clock.advance(self.service.settings.sms_cooldown)
        return self.service.request_phone_change(
            account_id, kw.get("password", PASSWORD), new, client_key=kw.get("client", "c1")
        )

    def events(self, kind: str) -> list[Any]:
        return [e for e in self.audit.events if e.kind == kind]


ADAPTERS = ["memory", "sqlite", "sqlalchemy", "postgresql"]


@pytest.fixture(scope="module")
def postgresql_engine() -> Iterator[tuple[Any, Any]]:
    """A schema of this module's own on the test server, with the library's tables."""
    import secrets

    import sqlalchemy as sa

    from kaspi_identity.storage.sqlalchemy import make_metadata

    url = require_server("KASPI_IDENTITY_POSTGRES_URL")
    schema = f"kaspi_contact_{secrets.token_hex(4)}"
    engine = sa.create_engine(url, pool_size=8, max_overflow=16, hide_parameters=True)
    with engine.begin() as connection:
        connection.execute(sa.schema.CreateSchema(schema))
    metadata = make_metadata(schema=schema)
    metadata.create_all(engine)
    try:
        yield engine, metadata
    finally:
        with engine.begin() as connection:
            connection.execute(sa.schema.DropSchema(schema, cascade=True))
        engine.dispose()


def _storage(adapter: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    if adapter == "memory":
        return memory_storage()
    if adapter == "sqlite":
        return sqlite_storage(tmp_path / "contact.sqlite3", outbox=True)
    from kaspi_identity.storage.sqlalchemy import sqlalchemy_storage

    if adapter == "postgresql":
        import sqlalchemy as sa

        engine, metadata = request.getfixturevalue("postgresql_engine")
        with engine.begin() as connection:  # each test starts from empty tables
            for table in reversed(metadata.sorted_tables):
                connection.execute(sa.delete(table))
        return sqlalchemy_storage(engine, metadata=metadata, outbox=True)
    return sqlalchemy_storage(
        f"sqlite:///{tmp_path / 'contact-sa.sqlite3'}", create_tables=True, outbox=True
    )


@pytest.fixture(params=[(a, f) for a in ADAPTERS for f in FACES], ids=lambda p: f"{p[0]}-{p[1]}")
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    adapter, face = request.param
    storage = _storage(adapter, tmp_path, request)
    outbox, clock, audit = Outbox(), ManualClock(T0), MemoryAuditLog()
    common: dict[str, Any] = {
        "email_sender": outbox,
        "sms_sender": outbox,
        "hasher": PasswordHasher(TESTS_ONLY),
        "clock": clock,
    }
    service = make_service(face, storage, _settings(), audit=audit, **common)
    worker = None
    if storage.outbox is not None:
        worker = OutboxWorker(IdentityService(storage, _settings(), **common))
    yield Env(storage, service, outbox, clock, audit, worker)
    storage.close()


def _race(count: int, action: Callable[[int], _T]) -> list[_T | BaseException]:
    barrier = threading.Barrier(count)
    results: list[_T | BaseException] = [RuntimeError("not run")] * count

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = action(index)
        except BaseException as exc:  # collected for the assertions
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


# -- change of e-mail -----------------------------------------------------------------------


class TestEmailChange:
    def test_nothing_changes_until_the_link_is_opened(self, env: Env) -> None:
        account_id = env.register()
        before = env.account(account_id)
        result = env.change_email(account_id)
        assert result == ContactChangeResult(True, "ok", account_id=account_id)
        after = env.account(account_id)
        assert (after.email, after.pending_email) == (EMAIL, NEW_EMAIL)
        assert after.security_stamp == before.security_stamp  # no session ends yet
        (letter,) = env.letters_to(NEW_EMAIL)
        assert letter.kind == "email_change_confirm"
        assert extract_link(letter).startswith("https://portal.example.kz/email/confirm?token=")
        assert len(_token(letter)) <= 100
        assert env.storage.accounts.find_by_login("email", NEW_EMAIL) is None

    def test_the_link_changes_the_address_and_tells_the_old_one(self, env: Env) -> None:
        account_id = env.register()
        old_stamp = env.account(account_id).security_stamp
        env.change_email(account_id)
        result = env.service.confirm_email_change(_token(env.letters_to(NEW_EMAIL)[-1]))
        assert (result.ok, result.reason, result.account_id) == (True, "ok", account_id)
        assert result.end_other_sessions
        account = env.account(account_id)
        assert (account.email, account.email_confirmed, account.pending_email) == (
            NEW_EMAIL,
            True,
            None,
        )
        assert (account.previous_email, account.email_changed_at) == (EMAIL, T0)
        assert result.security_stamp == account.security_stamp != old_stamp
        assert not env.service.session_is_current(account_id, old_stamp)
        assert env.service.session_is_current(account_id, account.security_stamp)
        assert env.storage.accounts.find_by_login("email", EMAIL) is None
        notice = env.letters_to(EMAIL)[-1]
        assert notice.kind == "email_changed"
        assert NEW_EMAIL not in notice.text  # the old mailbox is not told the new one
        assert extract_link(notice).startswith("https://portal.example.kz/email/undo?token=")
        assert [m.kind for m in env.texts_to(PHONE)] == ["email_changed"]
        assert [e.account_id for e in env.events("email_changed")] == [account_id]
        # The new address logs in.
        assert env.service.authenticate(NEW_EMAIL, PASSWORD, client_key="c9").ok

    def test_the_link_works_once(self, env: Env) -> None:
        account_id = env.register()
        env.change_email(account_id)
        token = _token(env.letters_to(NEW_EMAIL)[-1])
        assert env.service.confirm_email_change(token).ok
        with pytest.raises(InvalidTokenError):
            env.service.confirm_email_change(token)

    def test_a_newer_request_kills_the_older_link(self, env: Env) -> None:
        account_id = env.register()
        env.change_email(account_id)
        first = _token(env.letters_to(NEW_EMAIL)[-1])
        env.change_email(account_id, "third@example.kz")
        with pytest.raises(InvalidTokenError):
            env.service.confirm_email_change(first)
        assert env.service.confirm_email_change(_token(env.letters_to("third@example.kz")[-1])).ok
        assert env.account(account_id).email == "third@example.kz"

    def test_a_change_of_password_kills_the_link(self, env: Env) -> None:
        account_id = env.register()
        env.change_email(account_id)
        token = _token(env.letters_to(NEW_EMAIL)[-1])
        assert env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c2"
        ).ok
        with pytest.raises(InvalidTokenError):
            env.service.confirm_email_change(token)
        assert env.account(account_id).email == EMAIL

    def test_the_link_works_to_its_last_second(self, env: Env) -> None:
        account_id = env.register()
        env.change_email(account_id)
        token = _token(env.letters_to(NEW_EMAIL)[-1])
        env.clock.advance(env.service.settings.email_change_link_lifetime)
        assert env.service.confirm_email_change(token).ok

    def test_the_link_expires(self, env: Env) -> None:
        account_id = env.register()
        env.change_email(account_id)
        token = _token(env.letters_to(NEW_EMAIL)[-1])
        lifetime = env.service.settings.email_change_link_lifetime
        env.clock.advance(lifetime + timedelta(seconds=1))
        with pytest.raises(ExpiredTokenError):
            env.service.confirm_email_change(token)

    def test_a_wrong_password_changes_nothing(self, env: Env) -> None:
        account_id = env.register()
        before = env.account(account_id)
        result = env.change_email(account_id, password="wrong-password-1")
        assert result.reason == "wrong_password"
        after = env.account(account_id)
        assert after.pending_email is None
        assert after.failed_logins == before.failed_logins + 1  # a failed log-in
        assert env.letters_to(NEW_EMAIL) == []

    def test_the_same_address_is_unchanged(self, env: Env) -> None:
        account_id = env.register()
        assert env.change_email(account_id, EMAIL.upper()).reason == "unchanged"
        assert env.account(account_id).pending_email is None

    def test_a_taken_address_gets_the_same_answer_and_work(self, env: Env) -> None:
        owner = env.register(OTHER_EMAIL, OTHER_PHONE)
        account_id = env.register()
        free = env.change_email(account_id, "free@example.kz")
        taken = env.change_email(account_id, OTHER_EMAIL.upper())
        assert free == taken == ContactChangeResult(True, "ok", account_id=account_id)
        assert env.account(account_id).pending_email == OTHER_EMAIL.upper()
        (told,) = [m for m in env.letters_to(OTHER_EMAIL) if m.kind != "confirm_email"]
        assert told.kind == "email_change_taken"  # its owner is told, with a reset link
        assert "/reset?token=" in extract_link(told)
        assert [e.account_id for e in env.events("email_change_requested")] == [account_id] * 2
        assert env.account(owner).email == OTHER_EMAIL

    def test_bad_input_is_refused_before_anything_is_written(self, env: Env) -> None:
        account_id = env.register()
        for value in (None, b"new@example.kz", 5):
            with pytest.raises(TypeError):
                env.change_email(account_id, value)  # type: ignore[arg-type]
        for text in ("", "not-an-address", "a\x00b@example.kz", "x" * 1_000_000, "\ud800@x.kz"):
            with pytest.raises(InvalidIdentifierError):
                env.change_email(account_id, text)
        with pytest.raises(AccountNotFoundError):
            env.change_email("no-such-account")
        account = env.account(account_id)
        assert (account.pending_email, account.failed_logins) == (None, 0)

    def test_garbage_tokens_are_invalid(self, env: Env) -> None:
        env.register()
        for value in HOSTILE:
            with pytest.raises(InvalidTokenError):
                env.service.confirm_email_change(value)  # type: ignore[arg-type]
            with pytest.raises(InvalidTokenError):
                env.service.undo_email_change(value)  # type: ignore[arg-type]

    def test_a_reset_link_is_no_change_link(self, env: Env) -> None:
        account_id = env.register()
        env.change_email(account_id)
        env.service.request_password_reset(EMAIL, client_key="c3")
        reset = _token(env.letters_to(EMAIL)[-1])
        with pytest.raises(InvalidTokenError):
            env.service.confirm_email_change(reset)
        with pytest.raises(InvalidTokenError):
            env.service.undo_email_change(reset)

    def test_requests_are_limited_per_account_and_per_address(self, env: Env) -> None:
        account_id = env.register()
        limit = env.service.settings.reset_per_identifier.limit
        for i in range(limit):
            assert env.change_email(account_id, f"n{i}@example.kz", client=f"c{i}").ok
        over = env.change_email(account_id, "late@example.kz", client="c-late")
        assert over.reason == "throttled"
        assert over.retry_after is not None
        assert over.retry_after > timedelta(0)
        # Per address: many accounts cannot flood one mailbox either.
        target = "target@example.kz"
        others = [env.register(f"u{i}@example.kz", None) for i in range(limit + 1)]
        answers = [
            env.change_email(other, target, client=f"d{i}") for i, other in enumerate(others)
        ]
        assert [a.reason for a in answers] == ["ok"] * limit + ["throttled"]
        assert len(env.letters_to(target)) == limit

    def test_racing_redemptions_change_once(self, env: Env) -> None:
        account_id = env.register()
        env.change_email(account_id)
        token = _token(env.letters_to(NEW_EMAIL)[-1])
        results = _race(8, lambda _: env.service.confirm_email_change(token))
        assert sum(isinstance(r, ContactChangeResult) and r.ok for r in results) == 1
        assert all(
            isinstance(r, InvalidTokenError)
            for r in results
            if not isinstance(r, ContactChangeResult)
        )
        assert env.account(account_id).email == NEW_EMAIL

    def test_two_accounts_confirming_one_address(self, env: Env) -> None:
        first, second = env.register(), env.register(OTHER_EMAIL, OTHER_PHONE)
        target = "shared@example.kz"
        env.change_email(first, target)
        env.change_email(second, target)
        tokens = [_token(m) for m in env.letters_to(target)]
        results = _race(2, lambda i: env.service.confirm_email_change(tokens[i]))
        reasons = sorted(r.reason for r in results if isinstance(r, ContactChangeResult))
        assert reasons == ["conflict", "ok"]
        owner = env.storage.accounts.find_by_login("email", target)
        assert owner is not None
        assert owner.id in (first, second)

    def test_an_account_without_an_address_gets_one(self, env: Env) -> None:
        account_id = env.register(None, None, username="aliya")
        env.change_email(account_id)
        assert env.service.confirm_email_change(_token(env.letters_to(NEW_EMAIL)[-1])).ok
        account = env.account(account_id)
        assert (account.email, account.previous_email) == (NEW_EMAIL, None)


class TestUndo:
    def _changed(self, env: Env, new: str = NEW_EMAIL) -> tuple[str, str]:
        account_id = env.register()
        env.change_email(account_id, new)
        env.service.confirm_email_change(_token(env.letters_to(new)[-1]))
        return account_id, _token(env.letters_to(EMAIL)[-1])

    def test_undo_gives_the_address_back_and_locks_the_intruder_out(self, env: Env) -> None:
        account_id, undo = self._changed(env)
        stamp = env.account(account_id).security_stamp
        result = env.service.undo_email_change(undo)
        assert (result.ok, result.account_id, result.end_other_sessions) == (True, account_id, True)
        account = env.account(account_id)
        assert (account.email, account.email_confirmed, account.previous_email) == (
            EMAIL,
            True,
            None,
        )
        assert account.password_hash is None  # whoever changed it may know the password
        assert not account.phone_verified  # ... and may have proven a phone of his
        assert not env.service.session_is_current(account_id, stamp)
        assert not env.service.authenticate(NEW_EMAIL, PASSWORD, client_key="c5").ok
        assert not env.service.authenticate(EMAIL, PASSWORD, client_key="c6").ok
        assert env.events("email_change_undone")
        # The owner sets a new password from the reset link sent to the restored address.
        reset = env.letters_to(EMAIL)[-1]
        assert reset.kind == "password_reset"
        assert env.service.reset_password(_token(reset), NEW_PASSWORD, NEW_PASSWORD).ok
        assert env.service.authenticate(EMAIL, NEW_PASSWORD, client_key="c7").ok

    def test_undo_works_once(self, env: Env) -> None:
        _, undo = self._changed(env)
        assert env.service.undo_email_change(undo).ok
        with pytest.raises(InvalidTokenError):
            env.service.undo_email_change(undo)

    def test_the_intruder_changing_the_password_cannot_stop_the_undo(self, env: Env) -> None:
        account_id, undo = self._changed(env)
        assert env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c8"
        ).ok
        assert env.service.undo_email_change(undo).ok
        assert env.account(account_id).email == EMAIL

    def test_a_second_change_keeps_the_first_address_to_give_back(self, env: Env) -> None:
        account_id, undo = self._changed(env)
        env.clock.advance(timedelta(hours=1))
        env.change_email(account_id, "third@example.kz")
        env.service.confirm_email_change(_token(env.letters_to("third@example.kz")[-1]))
        account = env.account(account_id)
        assert (account.previous_email, account.email_changed_at) == (EMAIL, T0)
        assert env.service.undo_email_change(undo).ok  # the owner's link still works
        assert env.account(account_id).email == EMAIL

    def test_undo_works_to_the_last_second_of_its_window(self, env: Env) -> None:
        account_id, undo = self._changed(env)
        env.clock.advance(env.service.settings.email_undo_lifetime)
        assert env.service.undo_email_change(undo).ok
        assert env.account(account_id).email == EMAIL

    def test_undo_expires(self, env: Env) -> None:
        _, undo = self._changed(env)
        env.clock.advance(env.service.settings.email_undo_lifetime + timedelta(seconds=1))
        with pytest.raises(ExpiredTokenError):
            env.service.undo_email_change(undo)

    def test_an_address_taken_since_is_not_kept_for_the_intruder(self, env: Env) -> None:
        account_id, undo = self._changed(env)
        env.register(EMAIL.upper(), None)  # someone signs up with the freed address
        assert env.service.undo_email_change(undo).ok
        account = env.account(account_id)
        assert (account.email, account.password_hash) == (None, None)
        assert env.events("email_change_failed")


# -- phone ----------------------------------------------------------------------------------


class TestPhone:
    def test_a_new_number_is_proven_by_a_code(self, env: Env) -> None:
        account_id = env.register()
        old_stamp = env.account(account_id).security_stamp
        assert env.change_phone(account_id) == ContactChangeResult(
            True, "ok", account_id=account_id
        )
        pending = env.account(account_id)
        assert (pending.phone, pending.pending_phone) == (PHONE, NEW_PHONE)
        (text,) = env.texts_to(NEW_PHONE)
        assert text.kind == "phone_code"
        result = env.service.verify_phone(account_id, extract_code(text))
        assert result.ok
        assert result.end_other_sessions
        account = env.account(account_id)
        assert (account.phone, account.phone_verified, account.pending_phone) == (
            NEW_PHONE,
            True,
            None,
        )
        assert result.security_stamp == account.security_stamp != old_stamp
        notice = env.letters_to(EMAIL)[-1]
        assert notice.kind == "phone_changed"
        assert NEW_PHONE not in notice.text
        assert "67" in notice.text
        assert [m.kind for m in env.texts_to(PHONE)] == ["phone_changed"]
        assert env.storage.accounts.find_by_login("phone", NEW_PHONE) is not None
        assert env.storage.accounts.find_by_login("phone", PHONE) is None

    def test_a_number_given_at_sign_up_receives_no_reset_code_until_proven(self, env: Env) -> None:
        account_id = env.register(verified=False)
        assert env.service.request_sms_reset(PHONE, client_key="c1").accepted
        assert env.texts_to(PHONE) == []  # the same answer, but nothing is sent
        assert env.change_phone(account_id, PHONE).ok
        assert env.service.verify_phone(account_id, extract_code(env.texts_to(PHONE)[-1])).ok
        assert env.account(account_id).phone_verified
        assert env.letters_to(EMAIL)[-1].kind == "confirm_email"  # no notice: nothing changed
        env.clock.advance(env.service.settings.sms_cooldown)
        assert env.service.request_sms_reset(PHONE, client_key="c2").accepted
        grant = env.service.verify_sms_code(PHONE, extract_code(env.texts_to(PHONE)[-1]))
        assert env.service.reset_password(grant, NEW_PASSWORD, NEW_PASSWORD).ok

    def test_an_unproven_number_cannot_be_used_with_a_guessed_code(self, env: Env) -> None:
        env.register(verified=False)
        env.service.request_sms_reset(PHONE, client_key="c1")
        for _ in range(env.service.settings.sms_max_attempts):
            with pytest.raises(InvalidCodeError):
                env.service.verify_sms_code(PHONE, "123456")

    def test_a_verified_number_is_unchanged(self, env: Env) -> None:
        account_id = env.register()
        assert env.change_phone(account_id, "8 701 123 45 67").reason == "unchanged"

    def test_a_number_of_another_account_gets_the_same_answer(self, env: Env) -> None:
        env.register(OTHER_EMAIL, OTHER_PHONE)
        account_id = env.register()
        taken = env.change_phone(account_id, OTHER_PHONE)
        assert taken == ContactChangeResult(True, "ok", account_id=account_id)
        (told,) = env.texts_to(OTHER_PHONE)
        assert told.kind == "phone_in_use"  # no code in it
        for code in ("000000", "123456"):
            with pytest.raises(InvalidCodeError):
                env.service.verify_phone(account_id, code)
        assert env.account(account_id).phone == PHONE

    def test_a_number_held_unproven_goes_to_whoever_proves_it(self, env: Env) -> None:
        squatter = env.register(OTHER_EMAIL, NEW_PHONE, verified=False)
        account_id = env.register()
        assert env.change_phone(account_id, NEW_PHONE).ok
        (text,) = env.texts_to(NEW_PHONE)
        assert text.kind == "phone_code"  # an unproven holder does not make it "in use"
        assert env.service.verify_phone(account_id, extract_code(text)).ok
        account, held = env.account(account_id), env.account(squatter)
        assert (account.phone, account.phone_verified) == (NEW_PHONE, True)
        assert (held.phone, held.phone_verified) == (None, False)
        assert env.letters_to(OTHER_EMAIL)[-1].kind == "phone_removed"
        assert [e.account_id for e in env.events("phone_removed")] == [squatter]

    def test_wrong_codes_burn_the_code(self, env: Env) -> None:
        account_id = env.register()
        env.change_phone(account_id)
        right = extract_code(env.texts_to(NEW_PHONE)[-1])
        wrong = "0" * len(right) if right != "0" * len(right) else "1" * len(right)
        attempts = env.service.settings.sms_max_attempts
        reasons = []
        for _ in range(attempts):
            with pytest.raises(InvalidCodeError) as caught:
                env.service.verify_phone(account_id, wrong)
            reasons.append(caught.value.reason)
        assert reasons == ["wrong"] * attempts
        with pytest.raises(InvalidCodeError) as caught:
            env.service.verify_phone(account_id, right)  # the right one, too late
        assert caught.value.reason == "exhausted"
        assert env.account(account_id).phone == PHONE

    def test_a_code_for_a_replaced_number_does_not_work(self, env: Env) -> None:
        account_id = env.register()
        env.change_phone(account_id)
        first = extract_code(env.texts_to(NEW_PHONE)[-1])
        env.change_phone(account_id, "+77071234567")
        with pytest.raises(InvalidCodeError):
            env.service.verify_phone(account_id, first)

    def test_no_change_waiting(self, env: Env) -> None:
        account_id = env.register()
        with pytest.raises(InvalidCodeError):
            env.service.verify_phone(account_id, "123456")

    def test_bad_numbers_and_codes(self, env: Env) -> None:
        account_id = env.register()
        for value in (None, b"+77021234567", 77021234567):
            with pytest.raises(TypeError):
                env.change_phone(account_id, value)  # type: ignore[arg-type]
        for text in ("", "12", "+7 7172 12 34 56", "x" * 1_000_000, "+7701\x001234567", "\ud800"):
            with pytest.raises(InvalidPhoneError):
                env.change_phone(account_id, text)
        assert env.account(account_id).pending_phone is None
        env.change_phone(account_id)
        for code in ("", "x" * 1_000_000, "\x00" * 6, "\udfff", "١٢٣٤٥٦"):
            with pytest.raises(InvalidCodeError):
                env.service.verify_phone(account_id, code)
        for bad in (None, b"123456"):
            with pytest.raises(TypeError):
                env.service.verify_phone(account_id, bad)  # type: ignore[arg-type]

    def test_the_cooldown_is_shared_with_the_sms_reset(self, env: Env) -> None:
        account_id = env.register()
        assert env.service.request_sms_reset(NEW_PHONE, client_key="c1").accepted
        result = env.service.request_phone_change(account_id, PASSWORD, NEW_PHONE, client_key="c2")
        assert result.reason == "throttled"
        assert env.account(account_id).pending_phone is None

    def test_racing_right_codes_change_once(self, env: Env) -> None:
        account_id = env.register()
        env.change_phone(account_id)
        code = extract_code(env.texts_to(NEW_PHONE)[-1])
        results = _race(8, lambda _: env.service.verify_phone(account_id, code))
        assert sum(isinstance(r, ContactChangeResult) and r.ok for r in results) == 1
        assert env.account(account_id).phone == NEW_PHONE

    def test_removal_needs_the_password(self, env: Env) -> None:
        account_id = env.register()
        assert env.service.remove_phone(account_id, "wrong-password-1", client_key="c1").reason == (
            "wrong_password"
        )
        assert env.account(account_id).phone == PHONE
        stamp = env.account(account_id).security_stamp
        result = env.service.remove_phone(account_id, PASSWORD, client_key="c1")
        assert result.ok
        account = env.account(account_id)
        assert (account.phone, account.phone_verified) == (None, False)
        assert account.security_stamp == result.security_stamp != stamp
        assert env.letters_to(EMAIL)[-1].kind == "phone_removed"
        assert [m.kind for m in env.texts_to(PHONE)] == ["phone_removed"]
        assert env.service.remove_phone(account_id, PASSWORD, client_key="c1").reason == "no_phone"

    def test_an_sms_sender_is_needed(self, env: Env, tmp_path: Path) -> None:
        service = IdentityService(memory_storage(), _settings(), email_sender=Outbox())
        with pytest.raises(KaspiIdentityError):
            service.request_phone_change("x", PASSWORD, NEW_PHONE, client_key="c")


def test_an_undo_page_is_needed() -> None:
    """The change of address refuses to run without a page for its undo link."""
    settings = IdentitySettings(
        secret_keys=(KEY.encode(),),
        confirm_url="https://portal.example.kz/confirm",
        reset_url="https://portal.example.kz/reset",
    )
    storage = memory_storage()
    service = IdentityService(storage, settings, email_sender=Outbox())
    made = storage.accounts.create(NewAccount(email=EMAIL), now=T0)
    with pytest.raises(KaspiIdentityError, match="email_undo_url"):
        service.request_email_change(made.id, PASSWORD, NEW_EMAIL, client_key="c")
    assert storage.accounts.get(made.id) == made


# -- time zone ------------------------------------------------------------------------------


class TestTimeZone:
    def test_letters_tell_the_time_in_the_accounts_zone(self, env: Env) -> None:
        account_id = env.register(time_zone="Europe/Moscow")
        assert env.account(account_id).time_zone == "Europe/Moscow"
        env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c"
        )
        notice = env.letters_to(EMAIL)[-1]
        assert notice.kind == "password_changed"
        assert "12:00" in notice.text  # 09:00 UTC in Moscow

    def test_set_time_zone(self, env: Env) -> None:
        account_id = env.register()
        stamp = env.account(account_id).security_stamp
        env.service.set_time_zone(account_id, "Asia/Tokyo")
        account = env.account(account_id)
        assert (account.time_zone, account.security_stamp) == ("Asia/Tokyo", stamp)
        env.service.change_password(
            account_id, PASSWORD, NEW_PASSWORD, NEW_PASSWORD, client_key="c"
        )
        assert "18:00" in env.letters_to(EMAIL)[-1].text
        env.service.set_time_zone(account_id, None)
        assert env.account(account_id).time_zone is None

    def test_unknown_zones_are_refused(self, env: Env) -> None:
        account_id = env.register()
        for zone in ("Mars/Olympus", "", "x" * 1000, "Asia/\x00Almaty"):
            with pytest.raises(ValueError, match="time_zone"):
                env.service.set_time_zone(account_id, zone)
        with pytest.raises(TypeError):
            env.service.set_time_zone(account_id, 5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="time_zone"):
            env.service.register(
                email="z@example.kz",
                password=PASSWORD,
                confirmation=PASSWORD,
                client_key="z",
                time_zone="Mars/Olympus",
            )
        assert env.storage.accounts.find_by_login("email", "z@example.kz") is None


# -- secrets --------------------------------------------------------------------------------


def test_no_code_or_token_in_events_or_results(env: Env) -> None:
    account_id = env.register()
    env.change_email(account_id)
    token = _token(env.letters_to(NEW_EMAIL)[-1])
    changed = env.service.confirm_email_change(token)
    undo = _token(env.letters_to(EMAIL)[-1])
    env.change_phone(account_id)
    code = extract_code(env.texts_to(NEW_PHONE)[-1])
    env.service.verify_phone(account_id, code)
    text = repr(env.audit.events) + repr(changed)
    for secret in (token, undo, code, PASSWORD, changed.security_stamp or "-"):
        assert secret not in text
    if env.storage.outbox is not None:
        stored = repr([entry.message for entry in env.storage.outbox.list(limit=1000)])
        for secret in (token, undo, code):
            assert secret not in stored


# -- faults and properties ------------------------------------------------------------------


def test_a_failing_outbox_leaves_the_address_as_it_was(tmp_path: Path) -> None:
    """The notices are queued with the change: when the queue write fails, nothing changes."""
    import sqlite3

    path = tmp_path / "fault.sqlite3"
    storage = sqlite_storage(path, outbox=True)
    outbox, clock = Outbox(), ManualClock(T0)
    service = IdentityService(
        storage,
        _settings(),
        email_sender=outbox,
        sms_sender=outbox,
        hasher=PasswordHasher(TESTS_ONLY),
        clock=clock,
    )
    worker = OutboxWorker(service)
    env = Env(storage, service, outbox, clock, MemoryAuditLog(), worker)
    account_id = env.register()
    env.change_email(account_id)
    token = _token(env.letters_to(NEW_EMAIL)[-1])
    before = env.account(account_id)
    queued = len(storage.outbox.list(limit=1000)) if storage.outbox else 0
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER no_letters BEFORE INSERT ON outbox BEGIN"
            " SELECT RAISE(ABORT, 'the queue is down'); END"
        )
    with pytest.raises(KaspiIdentityError):
        service.confirm_email_change(token)
    assert env.account(account_id) == before
    assert storage.outbox is not None
    assert len(storage.outbox.list(limit=1000)) == queued
    storage.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(local=st.from_regex(r"[a-z][a-z0-9.]{0,20}[a-z0-9]", fullmatch=True), taken=st.booleans())
def test_the_answer_never_says_whether_an_address_is_taken(local: str, taken: bool) -> None:
    """Property: for any address, taken or free, the answer and the requester's letters agree."""
    outbox, clock = Outbox(), ManualClock(T0)
    storage = memory_storage()
    service = IdentityService(
        storage,
        _settings(),
        email_sender=outbox,
        sms_sender=outbox,
        hasher=PasswordHasher(TESTS_ONLY),
        clock=clock,
    )
    env = Env(storage, service, outbox, clock, MemoryAuditLog(), None)
    address = f"{local}@mail.example.kz"
    if taken:
        env.register(address, None)
    account_id = env.register()
    sent_before = len(outbox.emails)
    result = env.change_email(account_id, address)
    assert result == ContactChangeResult(True, "ok", account_id=account_id)
    assert env.account(account_id).pending_email == address
    assert len(outbox.emails) == sent_before + 1  # one letter, to the address either way
    assert outbox.emails[-1].to == address
    assert env.letters_to(EMAIL)[-1].kind == "confirm_email"  # the requester sees nothing new
