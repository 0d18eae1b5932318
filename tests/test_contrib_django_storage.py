"""The storage contract suite against the Django ORM stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

pytest.importorskip("django")

import _django_setup  # noqa: E402

_django_setup.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connections  # noqa: E402

from _servers import require_server  # noqa: E402
from kaspi_identity._errors import CorruptRecordError, StorageError  # noqa: E402
from kaspi_identity.contrib.django.models import (  # noqa: E402
    ConsumedToken,
    Identity,
    OneTimeCode,
    PasswordHistoryEntry,
    RateLimitWindow,
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
_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGFoYXNoYWhhc2g"


def _break_history(storage: Storage) -> None:
    """Make every later history insert and trim fail inside the store's transaction."""
    assert isinstance(storage.history, DjangoPasswordHistoryStore)
    using = storage.history.using
    connection = connections[using]
    table = PasswordHistoryEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for event in ("INSERT", "DELETE"):
                cursor.execute(
                    f"CREATE TRIGGER fail_history_{event.lower()} BEFORE {event} ON {table}"
                    " BEGIN SELECT RAISE(ABORT, 'injected fault: disk full'); END"
                )
        else:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION kaspi_fail() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'injected fault: disk full'; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER fail_history BEFORE INSERT OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION kaspi_fail()"
            )


def _mend_history(using: str) -> None:
    connection = connections[using]
    table = PasswordHistoryEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS fail_history_insert")
            cursor.execute("DROP TRIGGER IF EXISTS fail_history_delete")
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS fail_history ON {table}")


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
        _mend_history(self.alias)
        _django_setup.empty(self.alias)

    def require(self) -> None:
        """Skip (or fail in CI) when the database is missing."""

    def break_history_writes(self, storage: Storage) -> None:
        """Install a trigger that aborts every history write."""
        _break_history(storage)


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
