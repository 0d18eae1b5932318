"""What the app's management commands share: the language, finding a user by a login."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from kaspi_identity._errors import UnknownLanguageError
from kaspi_identity.i18n import normalize_language
from kaspi_identity.services._identifiers import resolve

from ...service import get_service

__all__ = ["find_user", "language"]


def language(asked: str | None) -> str:
    """``asked``, else ``LANGUAGE_CODE``, as kk, ru or en."""
    try:
        return normalize_language(asked or settings.LANGUAGE_CODE)
    except UnknownLanguageError as exc:
        if asked:
            raise CommandError(f"unknown language {asked!r}: kk, ru or en") from exc
        return "en"


def find_user(login: str) -> Any:
    """The user whose user name, e-mail, phone or IIN is ``login``, read as the log-in reads it.

    Raises:
        CommandError: no account has it, or it is malformed.

    """
    service = get_service()
    resolved = resolve(login, service.settings)
    account = None if resolved is None else service.storage.accounts.find_by_login(*resolved)
    if account is None:
        raise CommandError(f"no account has the login {login!r}")
    return get_user_model()._default_manager.get(pk=account.id)
