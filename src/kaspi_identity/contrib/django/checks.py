"""Django system checks (``manage.py check``) for a project that uses the app.

========================  =====================================================================
``kaspi_identity.E001``   ``KASPI_IDENTITY`` cannot build the service (the message says why)
``kaspi_identity.W002``   an SQLite database whose transactions do not take the write lock at
                          ``BEGIN``: concurrent writes fail with "database is locked"
``kaspi_identity.W003``   ``SecurityStampMiddleware`` missing, or before
                          ``AuthenticationMiddleware``: sessions outlive a reset
``kaspi_identity.W004``   ``Argon2PasswordHasher`` missing from ``PASSWORD_HASHERS``: Django's
                          own ``check_password`` (the admin) cannot read the flows' hashes
``kaspi_identity.W005``   ``USE_TZ = False``
========================  =====================================================================
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

__all__ = ["check_setup"]

_STAMP = "kaspi_identity.contrib.django.middleware.SecurityStampMiddleware"
_AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
_ARGON2 = "django.contrib.auth.hashers.Argon2PasswordHasher"


def check_setup(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The kaspi_identity checks (registered with the tag ``kaspi_identity``)."""
    found: list[checks.CheckMessage] = []
    from .service import get_service

    try:
        get_service()
    except ImproperlyConfigured as exc:
        found.append(checks.Error(str(exc), id="kaspi_identity.E001"))
    for alias, database in settings.DATABASES.items():
        if "sqlite3" in str(database.get("ENGINE", "")):
            mode = str(database.get("OPTIONS", {}).get("transaction_mode", "")).upper()
            if mode not in ("IMMEDIATE", "EXCLUSIVE"):
                found.append(
                    checks.Warning(
                        f"the SQLite database {alias!r} begins transactions DEFERRED",
                        hint='set OPTIONS = {"transaction_mode": "IMMEDIATE", "timeout": 30}',
                        id="kaspi_identity.W002",
                    )
                )
    middleware = list(settings.MIDDLEWARE)
    if _STAMP not in middleware or (
        _AUTH in middleware and middleware.index(_STAMP) < middleware.index(_AUTH)
    ):
        found.append(
            checks.Warning(
                "SecurityStampMiddleware is missing or comes before AuthenticationMiddleware",
                hint=f"add {_STAMP!r} after {_AUTH!r}",
                id="kaspi_identity.W003",
            )
        )
    if _ARGON2 not in settings.PASSWORD_HASHERS:
        found.append(
            checks.Warning(
                "Argon2PasswordHasher is not in PASSWORD_HASHERS",
                hint="list it first, so Django reads (and makes) the same argon2id hashes",
                id="kaspi_identity.W004",
            )
        )
    if not settings.USE_TZ:
        found.append(
            checks.Warning(
                "USE_TZ is False; the stores keep UTC",
                hint="set USE_TZ = True",
                id="kaspi_identity.W005",
            )
        )
    return found
