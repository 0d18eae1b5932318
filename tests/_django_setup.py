"""Django settings for the tests of kaspi_identity.contrib.django, configured once per process.

Two databases: ``default`` (an SQLite file, write lock taken at BEGIN) and, when the test
PostgreSQL server is reachable, ``postgres``. Each test database is created fresh for the
session (``test_`` prefixed, dropped at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import django
import pytest

if TYPE_CHECKING:
    from kaspi_identity.storage import Storage
from django.conf import settings

__all__ = [
    "POSTGRES",
    "break_history",
    "close_thread_connections",
    "empty",
    "mend_history",
    "setup",
]

_KEY = "django-test-secret-key-that-is-long-enough-0123456789"
POSTGRES = "postgres"
_ready: dict[str, Any] = {}


def _postgres() -> dict[str, Any] | None:
    url = os.environ.get("KASPI_IDENTITY_POSTGRES_URL", "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or 5432),
        "TEST": {"NAME": f"test_kaspi_django_{os.getpid()}"},
    }


def setup() -> dict[str, Any]:
    """Configure Django (once) and create the test databases; return what was made."""
    if _ready:
        return _ready
    folder = tempfile.mkdtemp(prefix="kaspi-django-")
    databases: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(folder, "default.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
            "TEST": {"NAME": os.path.join(folder, "test.sqlite3")},
        }
    }
    postgres = _postgres()
    if postgres is not None:
        databases[POSTGRES] = postgres
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["evil.example.com"],
        SECRET_KEY=_KEY,
        USE_TZ=True,
        USE_I18N=True,
        LANGUAGE_CODE="en",
        LANGUAGES=[("kk", "Қазақша"), ("ru", "Русский"), ("en", "English")],
        DATABASES=databases,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "kaspi_identity.contrib.django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.locale.LocaleMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "kaspi_identity.contrib.django.middleware.SecurityStampMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        ROOT_URLCONF="_django_urls",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        PASSWORD_HASHERS=[
            "django.contrib.auth.hashers.Argon2PasswordHasher",
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
            "django.contrib.auth.hashers.MD5PasswordHasher",
        ],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        KASPI_IDENTITY={
            "SECRET_KEYS": [_KEY],
            "SITE_URL": "https://portal.example.kz",
            "SITE_NAME": "Portal",
            "POLICY": {"preset": "kz-procurement"},
            "HASH_PROFILE": "tests-only",
            "SMS_SENDER": "kaspi_identity.delivery.Outbox",
        },
    )
    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()
    from django.db import connections

    made = {}
    for alias in databases:
        creation = connections[alias].creation
        made[alias] = creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)

    def teardown() -> None:
        import gc

        gc.collect()
        connections.close_all()
        for alias, name in made.items():
            with contextlib.suppress(Exception):  # a best-effort cleanup at exit
                connections[alias].creation.destroy_test_db(name, verbosity=0)

    atexit.register(teardown)
    _ready.update(made)
    return _ready


def close_thread_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every thread close its Django connections when it ends, as a request does.

    Racing threads each open their own connection (Django keeps one per thread); left to
    the garbage collector, psycopg warns that they were never closed.
    """
    from django.db import connections

    run = threading.Thread.run

    def run_then_close(self: threading.Thread) -> None:
        try:
            run(self)
        finally:
            connections.close_all()

    monkeypatch.setattr(threading.Thread, "run", run_then_close)


def empty(using: str = "default") -> None:
    """Delete every row the app's stores write, users and sessions included."""
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session

    from kaspi_identity.contrib.django.models import (
        ConsumedToken,
        Identity,
        OneTimeCode,
        PasswordHistoryEntry,
        RateLimitWindow,
    )

    for model in (PasswordHistoryEntry, ConsumedToken, OneTimeCode, RateLimitWindow, Identity):
        model.objects.using(using).all().delete()
    get_user_model()._default_manager.db_manager(using).all().delete()
    Session.objects.using(using).all().delete()


def break_history(storage: Storage) -> None:
    """Make every later history insert and trim fail inside the store's transaction."""
    from django.db import connections

    from kaspi_identity.contrib.django.models import PasswordHistoryEntry
    from kaspi_identity.contrib.django.storage import DjangoPasswordHistoryStore

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


def mend_history(using: str) -> None:
    """Drop the triggers :func:`break_history` made."""
    from django.db import connections

    from kaspi_identity.contrib.django.models import PasswordHistoryEntry

    connection = connections[using]
    table = PasswordHistoryEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS fail_history_insert")
            cursor.execute("DROP TRIGGER IF EXISTS fail_history_delete")
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS fail_history ON {table}")
