"""The storage contract suite against the Django ORM stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

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
from kaspi_identity.storage import NewAccount, Storage  # noqa: E402
from kaspi_identity.testing import StorageContract  # noqa: E402

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
