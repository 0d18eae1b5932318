"""``SecurityStampMiddleware``: a session ends when its account's security stamp changes.

Put it after ``AuthenticationMiddleware``. At every log-in (through the app's views, the
admin, or any ``django.contrib.auth.login``) the account's stamp is kept in the session;
on each request the middleware asks ``IdentityService.session_is_current`` and logs out a
session whose stamp is no longer the account's -- after a reset, a change of password in
another session, or a change of e-mail. (Django's own session auth hash already ends
sessions when the password column changes; the stamp covers the e-mail too, and the flows
that rotate it on purpose.) It costs one indexed read per authenticated request.

When the log-in said the password must be changed (``LoginResult.needs_password_change``),
the session is sent to the change-of-password page until it is changed.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from .service import get_service

__all__ = ["MUST_CHANGE_KEY", "SESSION_STAMP_KEY", "SecurityStampMiddleware", "remember_stamp"]

#: The session key that holds the account's security stamp.
SESSION_STAMP_KEY = "_kaspi_identity_stamp"
#: The session key set when the log-in said the password must be changed (its reason).
MUST_CHANGE_KEY = "_kaspi_identity_must_change"


def remember_stamp(request: HttpRequest, stamp: str | None) -> None:
    """Keep ``stamp`` (the account's current security stamp) in the request's session."""
    if stamp is not None:
        request.session[SESSION_STAMP_KEY] = stamp


class SecurityStampMiddleware:
    """Log out a session whose account has a new security stamp since it logged in."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """End the session if its stamp is stale, then answer the request."""
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            stamp = request.session.get(SESSION_STAMP_KEY)
            if not isinstance(stamp, str) or not get_service().session_is_current(
                str(user.pk), stamp
            ):
                logout(request)
            elif request.session.get(MUST_CHANGE_KEY) and request.path not in _free_paths():
                # The log-in said the password must change (an operator's flag, an expired
                # password in its grace log-ins, a tightened policy): nothing else until then.
                return HttpResponseRedirect(reverse("kaspi_identity:change"))
        return self.get_response(request)


def _free_paths() -> tuple[str, ...]:
    """The pages a session that must change its password may still open."""
    return (reverse("kaspi_identity:change"), reverse("kaspi_identity:logout"))
