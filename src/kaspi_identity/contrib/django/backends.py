"""``KaspiIdentityBackend``: Django's ``authenticate()`` through ``IdentityService.authenticate``.

With it in ``AUTHENTICATION_BACKENDS`` the admin's log-in page, Django's ``LoginView`` and
any ``authenticate(request, username=..., password=...)`` obey the service's rules: log-in
by user name, e-mail or phone, per-client and per-identifier limits, back-off and lockout,
argon2id with rehash (and old Django hashes upgraded).
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from .service import get_service
from .validators import active_language

__all__ = ["KaspiIdentityBackend", "client_key"]


def client_key(request: HttpRequest | None) -> str:
    """Who is asking, for the rate limits: the client's address (``REMOTE_ADDR``).

    Behind a proxy, have the proxy's middleware set ``REMOTE_ADDR`` to the client's address;
    never trust ``X-Forwarded-For`` as it comes.
    """
    if request is None:
        return "unknown"
    return str(request.META.get("REMOTE_ADDR") or "unknown")


class KaspiIdentityBackend(ModelBackend):
    """A ``ModelBackend`` whose password check is the service's log-in."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """The user whose user name, e-mail or phone is ``username``, if ``password`` is right."""
        if username is None:
            username = kwargs.get(str(cast(Any, get_user_model()).USERNAME_FIELD))
        if not isinstance(username, str) or not isinstance(password, str):
            return None
        result = get_service().authenticate(username, password, client_key=client_key(request))
        if not result.ok or result.account_id is None:
            return None
        user = get_user_model()._default_manager.filter(pk=result.account_id).first()
        if user is None or not self.user_can_authenticate(user):
            return None
        if result.needs_password_change:  # read at user_logged_in: the session must change it
            notice = result.password_change_message(active_language())
            user._kaspi_identity_must_change = notice  # type: ignore[attr-defined]
        return user
