"""The storage contract suite against the Django ORM stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("django")

import _django_setup

_django_setup.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connections  # noqa: E402

from _servers import require_server  # noqa: E402
from kaspi_identity._errors import (  # noqa: E402
    CorruptRecordError,
    DuplicateAccountError,
    StorageError,
)
from kaspi_identity.contrib.django.models import (  # noqa: E402
    Identity,
)
from kaspi_identity.contrib.django.storage import (  # noqa: E402
    DjangoAccountStore,
    DjangoAccountWithHistory,
    DjangoPasswordHistoryStore,
    django_storage,
    from_django_password,
    to_django_password,
)
from kaspi_identity.storage import Account, Contact, NewAccount, Storage  # noqa: E402
from kaspi_identity.testing import StorageContract  # noqa: E402
from kaspi_identity.testing._contracts import _message, _race  # noqa: E402

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
User: Any = get_user_model()
_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGFoYXNoYWhhc2g"


class DjangoBundle:
    """A fresh, empty bundle on ``self.alias`` for each test; threads' connections closed."""

    alias = "default"

    @pytest.fixture
    def storage(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Storage]:
        """Yield the Django bundle on an emptied database."""
        self.require()
        _django_setup.close_thread_connections(monkeypatch)
        _django_setup.empty(self.alias)
        storage = django_storage(self.alias)
        yield storage
        gc.collect()  # the racing threads' connections
        _django_setup.mend_history(self.alias)
        _django_setup.empty(self.alias)

    def require(self) -> None:
        """Skip (or fail in CI) when the database is missing."""

    def break_history_writes(self, storage: Storage) -> None:
        """Install a trigger that aborts every history write."""
        _django_setup.break_history(storage)


class TestDjangoStorageSQLite(DjangoBundle, StorageContract):
    """Every contract on the Django stores over SQLite."""


class TestDjangoStoragePostgreSQL(DjangoBundle, StorageContract):
    """Every contract on the Django stores over PostgreSQL."""

    alias = _django_setup.POSTGRES

    def require(self) -> None:
        """Skip (or fail in CI) without the test PostgreSQL server."""
        require_server("KASPI_IDENTITY_POSTGRES_URL")
        if self.alias not in connections:
            pytest.fail("the PostgreSQL server answers but Django was set up without it")


class TestDjangoSpecifics:
    """What only the Django stores have: the user model, Django's hash form, the aliases."""

    @pytest.fixture(autouse=True)
    def _empty(self) -> Iterator[None]:
        _django_setup.empty()
        yield
        _django_setup.empty()

    @pytest.mark.parametrize(
        ("ours", "stored"),
        [
            (_HASH, "argon2" + _HASH),
            ("pbkdf2_sha256$600000$salt$hash", "pbkdf2_sha256$600000$salt$hash"),
        ],
    )
    def test_password_forms(self, ours: str, stored: str) -> None:
        """Our argon2id hashes take Django's ``argon2$`` form; others are kept as they are."""
        assert to_django_password(ours) == stored
        assert from_django_password(stored) == ours

    @pytest.mark.parametrize("unusable", [None, "", "!", "!abcdef"])
    def test_unusable_passwords_are_none(self, unusable: str | None) -> None:
        """An empty or ``!``-prefixed (unusable) password is no password."""
        assert from_django_password(unusable) is None
        assert from_django_password(to_django_password(None)) is None

    def test_the_user_row_holds_what_django_reads(self) -> None:
        """The user name, e-mail, password and last log-in are the user model's columns."""
        accounts = DjangoAccountStore()
        created = accounts.create(
            NewAccount(username="Aliya", email="A@Example.kz", password_hash=_HASH), now=T0
        )
        user = User.objects.get(pk=int(created.id))
        assert (user.username, user.email, user.password) == (
            "Aliya",
            "A@Example.kz",
            "argon2" + _HASH,
        )
        accounts.record_login_success(created.id, now=T0)
        user.refresh_from_db()
        assert user.last_login == T0

    def test_an_account_without_a_user_name_gets_a_placeholder(self) -> None:
        """Django's user name is NOT NULL and unique: e-mail-only accounts get a random one."""
        accounts = DjangoAccountStore()
        one = accounts.create(NewAccount(email="one@example.kz"), now=T0)
        two = accounts.create(NewAccount(email="two@example.kz"), now=T0)
        names = set(User.objects.values_list("username", flat=True))
        assert len(names) == 2
        assert all(name.startswith("~") for name in names)
        assert (accounts.get(one.id), accounts.get(two.id)) == (one, two)
        assert accounts.find_by_login("username", next(iter(names))) is None

    def test_a_user_name_held_by_a_bare_user_is_taken(self) -> None:
        """A user row whose identity is gone still holds its user name: DuplicateAccountError."""
        user = User.objects.create_user("admin", "admin@example.kz")
        Identity.objects.filter(pk=user.pk).delete()
        with pytest.raises(DuplicateAccountError) as caught:
            DjangoAccountStore().create(NewAccount(username="admin"), now=T0)
        assert caught.value.field == "username"
        assert User.objects.count() == 1

    def test_a_user_without_an_identity_is_no_account(self) -> None:
        """Until it has an identity, a user is found by nothing and its CAS loses."""
        user = User.objects.create_user("bare", "bare@example.kz")
        Identity.objects.filter(pk=user.pk).delete()
        accounts = DjangoAccountStore()
        assert accounts.get(str(user.pk)) is None
        assert accounts.find_by_login("username", "bare") is None
        stored = User.objects.get(pk=user.pk).password
        assert accounts.set_password_hash(str(user.pk), expected=None, new=_HASH) is False
        assert User.objects.get(pk=user.pk).password == stored

    @pytest.mark.parametrize("odd", ["007", "+7", " 7", "7.0", "9" * 30, "-0", "1e3"])
    def test_ids_are_compared_as_strings(self, odd: str) -> None:
        """``"007"`` is not user 7: an id that is not ``str(pk)`` finds nothing."""
        accounts = DjangoAccountStore()
        created = accounts.create(NewAccount(username="aliya"), now=T0)
        assert accounts.get(created.id) is not None
        assert accounts.get(odd) is None

    def test_a_hash_longer_than_the_column_is_refused(self) -> None:
        """Django's password column holds 128 characters: a longer hash is a ValueError."""
        accounts = DjangoAccountStore()
        created = accounts.create(NewAccount(username="aliya", password_hash=_HASH), now=T0)
        with pytest.raises(ValueError, match="password column"):
            accounts.set_password_hash(created.id, expected=_HASH, new="$argon2id$" + "x" * 200)
        with pytest.raises(ValueError, match="password column"):
            accounts.create(
                NewAccount(username="b", password_hash="$argon2id$" + "x" * 200), now=T0
            )
        assert accounts.get(created.id) == created

    def test_garbage_names_are_corrupt(self) -> None:
        """A stored ``names`` that is not a list of strings: CorruptRecordError."""
        accounts = DjangoAccountStore()
        created = accounts.create(NewAccount(username="aliya"), now=T0)
        for garbage in ({"a": 1}, [1, 2], "Алия", [["nested"]], 7):
            Identity.objects.filter(pk=int(created.id)).update(names=garbage)
            with pytest.raises(CorruptRecordError):
                accounts.get(created.id)

    def test_unknown_alias_and_mixed_aliases(self) -> None:
        """An alias not in DATABASES, or accounts and history on two aliases: ValueError."""
        with pytest.raises(ValueError, match="DATABASES"):
            DjangoAccountStore("nowhere")
        if _django_setup.POSTGRES in connections:
            with pytest.raises(ValueError, match="same database"):
                DjangoAccountWithHistory(
                    DjangoAccountStore(), DjangoPasswordHistoryStore(_django_setup.POSTGRES)
                )

    def test_database_errors_are_storage_errors(self) -> None:
        """A failing database raises StorageError, without the row's values in the message."""
        accounts = DjangoAccountStore()
        with connections["default"].cursor() as cursor:
            cursor.execute(f"ALTER TABLE {Identity._meta.db_table} RENAME TO moved_away")
        try:
            with pytest.raises(StorageError) as caught:
                accounts.create(NewAccount(username="secret-name", email="s@example.kz"), now=T0)
            assert "secret-name" not in str(caught.value)
        finally:
            with connections["default"].cursor() as cursor:
                cursor.execute(f"ALTER TABLE moved_away RENAME TO {Identity._meta.db_table}")

    def test_the_migrations_match_the_models(self) -> None:
        """``makemigrations --check`` finds nothing to do."""
        from django.core.management import call_command

        call_command("makemigrations", "kaspi_identity", "--check", "--dry-run", verbosity=0)

    def test_a_required_email_column_refuses_accounts_without_one(self) -> None:
        """A unique NOT NULL e-mail column (as the store reads it): a clear ValueError."""
        accounts = DjangoAccountStore()
        accounts._email_required = True  # what a unique, NOT NULL e-mail column gives
        with pytest.raises(ValueError, match="needs an e-mail"):
            accounts.create(NewAccount(username="aliya"), now=T0)
        assert User.objects.count() == 0


# -- contact details: what only the Django stores have --------------------------------------

_ALIASES = [
    "default",
    _django_setup.POSTGRES,
]
_PHONE = "+77011234567"
_STAMP_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def _alias(alias: str) -> str:
    """``alias``, after skipping (or failing in CI) when its database is missing."""
    if alias == _django_setup.POSTGRES:
        require_server("KASPI_IDENTITY_POSTGRES_URL")
        if alias not in connections:
            pytest.fail("the PostgreSQL server answers but Django was set up without it")
    return alias


def _aliya(accounts: DjangoAccountStore) -> Any:
    return accounts.create(
        NewAccount(username="aliya", email="aliya@example.kz", phone=_PHONE, password_hash=_HASH),
        now=T0,
    )


@pytest.mark.parametrize("alias", _ALIASES)
class TestDjangoContact:
    """update_contact on the user model and the identity; migration 0002."""

    @pytest.fixture(autouse=True)
    def _empty(self, alias: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        _django_setup.close_thread_connections(monkeypatch)
        _django_setup.empty(_alias(alias))
        yield
        gc.collect()
        _django_setup.empty(alias)

    def test_the_user_row_follows_the_contact(self, alias: str) -> None:
        """The user row has the contact's e-mail ("" for none); a cleared password is unusable."""
        accounts = DjangoAccountStore(alias)
        created = _aliya(accounts)
        changed = accounts.update_contact(
            created.id,
            expected_stamp=created.security_stamp,
            contact=replace(created.contact, email="New@Example.kz"),
        )
        assert changed is not None
        user = User.objects.using(alias).get(pk=int(created.id))
        assert user.email == "New@Example.kz"
        assert user.check_password("x") is False
        assert user.has_usable_password()
        cleared = accounts.update_contact(
            created.id,
            expected_stamp=changed.security_stamp,
            contact=replace(changed.contact, email=None, email_confirmed=False),
            clear_password=True,
        )
        assert cleared is not None
        assert cleared.password_hash is None
        user.refresh_from_db()
        assert user.email == ""
        assert not user.has_usable_password()
        assert user.username == "aliya"
        assert accounts.get(created.id) == cleared

    def test_a_stamp_is_compared_exactly(self, alias: str) -> None:
        """The stamp in another case, with a suffix or as a prefix wins nothing."""
        accounts = DjangoAccountStore(alias)
        created = _aliya(accounts)
        stamp = created.security_stamp
        contact = replace(created.contact, time_zone="Asia/Almaty")
        for near in (stamp.swapcase(), stamp + " ", stamp[:-1], f"{stamp}\u00e9"):
            if near != stamp:
                assert (
                    accounts.update_contact(created.id, expected_stamp=near, contact=contact)
                    is None
                )
        assert accounts.get(created.id) == created

    def test_with_history_refuses_messages_without_an_outbox(self, alias: str) -> None:
        """Messages given to the Django unit of work: ValueError, and nothing written."""
        storage = django_storage(alias)
        assert storage.with_history is not None
        created = _aliya(DjangoAccountStore(alias))
        contact = replace(created.contact, email="new@example.kz")
        letter = _message(1)
        with pytest.raises(ValueError, match="no outbox"):
            storage.with_history.update_contact(
                created.id,
                expected_stamp=created.security_stamp,
                contact=contact,
                messages=[letter],
            )
        with pytest.raises(TypeError):
            storage.with_history.update_contact(
                created.id,
                expected_stamp=created.security_stamp,
                contact=contact,
                messages=["letter"],  # type: ignore[list-item]
            )
        with pytest.raises(TypeError):  # the contact is checked before the messages
            storage.with_history.update_contact(
                created.id,
                expected_stamp=created.security_stamp,
                contact=None,  # type: ignore[arg-type]
                messages=[letter],
            )
        assert storage.accounts.get(created.id) == created
        changed = storage.with_history.update_contact(
            created.id, expected_stamp=created.security_stamp, contact=contact
        )
        assert changed is not None
        assert storage.accounts.get(created.id) == changed
        assert storage.accounts.find_by_login("email", "NEW@example.kz") == changed

    def test_a_required_email_column_refuses_removing_the_email(self, alias: str) -> None:
        """A unique NOT NULL e-mail column: taking the e-mail away is a ValueError."""
        accounts = DjangoAccountStore(alias)
        created = _aliya(accounts)
        accounts._email_required = True  # what a unique, NOT NULL e-mail column gives
        with pytest.raises(ValueError, match="needs an e-mail"):
            accounts.update_contact(
                created.id,
                expected_stamp=created.security_stamp,
                contact=replace(created.contact, email=None, email_confirmed=False),
            )
        assert accounts.get(created.id) == created

    def test_a_failing_write_leaves_nothing_half_done(self, alias: str) -> None:
        """The identity write failing after the user row's: the e-mail stays on both rows."""
        accounts = DjangoAccountStore(alias)
        created = _aliya(accounts)
        connection = connections[alias]
        table = Identity._meta.db_table
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute(
                    f"CREATE TRIGGER fail_identity BEFORE UPDATE ON {table}"
                    " BEGIN SELECT RAISE(ABORT, 'injected fault: disk full'); END"
                )
            else:
                cursor.execute(
                    "CREATE OR REPLACE FUNCTION kaspi_fail() RETURNS trigger LANGUAGE plpgsql"
                    " AS $$ BEGIN RAISE EXCEPTION 'injected fault: disk full'; END $$"
                )
                cursor.execute(
                    f"CREATE TRIGGER fail_identity BEFORE UPDATE ON {table}"
                    " FOR EACH ROW EXECUTE FUNCTION kaspi_fail()"
                )
        try:
            with pytest.raises(StorageError) as caught:
                accounts.update_contact(
                    created.id,
                    expected_stamp=created.security_stamp,
                    contact=replace(created.contact, email="secret.new@example.kz"),
                )
            assert "secret.new" not in str(caught.value)
        finally:
            with connection.cursor() as cursor:
                if connection.vendor == "sqlite":
                    cursor.execute("DROP TRIGGER IF EXISTS fail_identity")
                else:
                    cursor.execute(f"DROP TRIGGER IF EXISTS fail_identity ON {table}")
        assert accounts.get(created.id) == created
        assert User.objects.using(alias).get(pk=int(created.id)).email == "aliya@example.kz"

    def test_contact_updates_racing_password_and_email_changes(self, alias: str) -> None:
        """update_contact, set_password_hash and set_email at once never deadlock.

        Each locks the user row before the identity; a cycle would be a PostgreSQL
        deadlock, a StorageError. Every round one password change wins, and at most one of
        the contact updates read from the round's stamp.
        """
        accounts = DjangoAccountStore(alias)
        created = _aliya(accounts)
        hashes = [_HASH, _HASH.replace("aGFz", "b3Ro"), _HASH.replace("aGFz", "c2Vj")]
        for round_ in range(6):
            before = accounts.get(created.id)
            assert before is not None
            expected, new = hashes[round_ % 3], hashes[(round_ + 1) % 3]

            def act(
                index: int,
                before: Account = before,
                expected: str = expected,
                new: str = new,
                round_: int = round_,
            ) -> str:
                if index % 3 == 0:
                    won = accounts.set_password_hash(created.id, expected=expected, new=new)
                    return "password" if won else "-"
                if index % 3 == 1:
                    accounts.set_email(created.id, f"r{round_}i{index}@example.kz")
                    return "email"
                contact = replace(before.contact, time_zone="Asia/Almaty", phone=None)
                changed = accounts.update_contact(
                    created.id, expected_stamp=before.security_stamp, contact=contact
                )
                return "-" if changed is None else "contact"

            outcomes = _race(9, act)
            assert outcomes.count("password") == 1
            assert outcomes.count("email") == 3
            assert outcomes.count("contact") <= 1
            stored = accounts.get(created.id)
            assert stored is not None
            assert stored.password_hash == new

    def test_migration_0002_counts_stored_phones_verified(self, alias: str) -> None:
        """Phones stored before 0002 are verified after it; the new fields start empty."""
        from django.db.migrations.executor import MigrationExecutor

        connection = connections[alias]
        executor = MigrationExecutor(connection)
        latest = executor.loader.graph.leaf_nodes("kaspi_identity")
        before = [("kaspi_identity", "0001_initial")]
        executor.migrate(before)
        try:
            old = executor.loader.project_state(before).apps
            old_user = old.get_model(User._meta.app_label, User._meta.model_name)
            old_identity = old.get_model("kaspi_identity", "Identity")
            made = {}
            for name, phone in (("with-phone", _PHONE), ("without", None)):
                user = old_user.objects.using(alias).create(username=name, password="!")
                old_identity.objects.using(alias).create(
                    user_id=user.pk,
                    username=name,
                    username_key=name,
                    phone=phone,
                    created_at=T0,
                    security_stamp="stamp",
                    names=[],
                )
                made[name] = str(user.pk)
        finally:
            executor = MigrationExecutor(connection)
            executor.migrate(latest)
        accounts = DjangoAccountStore(alias)
        with_phone, without = accounts.get(made["with-phone"]), accounts.get(made["without"])
        assert with_phone is not None
        assert without is not None
        assert (with_phone.phone, with_phone.phone_verified) == (_PHONE, True)
        assert (without.phone, without.phone_verified) == (None, False)
        for account in (with_phone, without):
            assert account.contact == Contact(
                email=None,
                email_confirmed=False,
                phone=account.phone,
                phone_verified=account.phone is not None,
            )
        # Phones stored after the migration are verified only when the account says so.
        fresh = accounts.create(NewAccount(phone="+77021234567"), now=T0)
        assert accounts.get(fresh.id) == fresh
        assert not fresh.phone_verified


# Contacts drawn from a few addresses and phones, so that some clash with another account.
_EMAILS = st.sampled_from(["aliya@example.kz", "ALIYA@example.kz", "b@example.kz", "c@example.kz"])
_PHONES = st.sampled_from(["+77011234567", "+77021234567", "+77031234567"])
_CHANGED_AT = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)


@st.composite
def _contacts(draw: st.DrawFn) -> Contact:
    phone = draw(st.none() | _PHONES)
    previous = draw(st.none() | _EMAILS)
    return Contact(
        email=draw(st.none() | _EMAILS),
        email_confirmed=draw(st.booleans()),
        phone=phone,
        phone_verified=phone is not None and draw(st.booleans()),
        pending_email=draw(st.none() | _EMAILS),
        pending_phone=draw(st.none() | _PHONES),
        previous_email=previous,
        email_changed_at=None if previous is None else draw(_CHANGED_AT),
        time_zone=draw(st.sampled_from([None, "Asia/Almaty", "UTC", "Etc/GMT-5"])),
    )


class TestDjangoContactAgreesWithMemory:
    """Every sequence of contact updates gives the Django store what it gives the memory one."""

    @given(
        steps=st.lists(
            st.tuples(st.sampled_from([0, 1]), _contacts(), st.booleans(), st.booleans()),
            min_size=1,
            max_size=4,
        )
    )
    @settings(max_examples=40, deadline=None)
    def test_agrees_with_memory(self, steps: list[tuple[int, Contact, bool, bool]]) -> None:
        """Same answers (account, None or the duplicate field) and the same rows after."""
        from kaspi_identity.storage.memory import MemoryAccountStore

        _django_setup.empty()
        django_store, memory = DjangoAccountStore(), MemoryAccountStore()
        pairs: list[list[Account]] = []
        for new in (
            NewAccount(username="aliya", email="aliya@example.kz", phone="+77011234567"),
            NewAccount(username="bota", email="b@example.kz", password_hash=_HASH),
        ):
            pairs.append([django_store.create(new, now=T0), memory.create(new, now=T0)])
        for which, contact, rotate, clear in steps:
            ours, theirs = pairs[which]
            answers: list[tuple[str, object]] = []
            for store, account in ((django_store, ours), (memory, theirs)):
                try:
                    written = store.update_contact(
                        account.id,
                        expected_stamp=account.security_stamp,
                        contact=contact,
                        rotate_stamp=rotate,
                        clear_password=clear,
                    )
                except DuplicateAccountError as exc:
                    answers.append(("duplicate", exc.field))
                else:
                    assert written is not None
                    assert store.get(account.id) == written
                    answers.append(("written", _comparable(written)))
                    if store is django_store:
                        pairs[which][0] = written
                    else:
                        pairs[which][1] = written
            assert answers[0] == answers[1]
        for ours, theirs in pairs:
            stored = django_store.get(ours.id)
            assert stored is not None
            assert _comparable(stored) == _comparable(theirs)
            assert stored.security_stamp == ours.security_stamp
        _django_setup.empty()


def _comparable(account: Account) -> Account:
    """``account`` without what two stores give differently: the id and the stamp."""
    return replace(account, id="x", security_stamp="s")
