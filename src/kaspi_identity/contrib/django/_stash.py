"""A token kept between two requests, split so that no stored row holds it in clear.

A reset link's token (or an SMS code's grant) must leave the URL at once, and Django's
sessions live in the database (or a signed, readable cookie): a token kept there as it is
would be a secret in a stored row. So it is split in two with a one-time pad: the session
holds ``token XOR pad``, and an ``HttpOnly`` cookie, limited to the one page that redeems
it, holds ``pad``. Either half alone is uniformly random; the token exists again only in
the request that brings both.
"""

from __future__ import annotations

import base64
import secrets

from django.http import HttpRequest, HttpResponse

__all__ = ["drop", "keep", "peek"]

_COOKIE = "kaspi_identity_pad"
#: How long the cookie half lives: the longest a link's token can (24 hours).
_MAX_AGE = 24 * 3600
_MAX_TOKEN = 4096  # far above any token this library signs; a longer one is garbage


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes | None:
    if not isinstance(text, str) or len(text) > 2 * _MAX_TOKEN:
        return None
    try:
        return base64.urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


def keep(request: HttpRequest, response: HttpResponse, key: str, token: str, *, path: str) -> None:
    """Keep ``token`` under ``key``: the masked half in the session, the pad in a cookie.

    ``path`` is the page that will :func:`peek` it (the cookie is sent only there).
    """
    raw = token.encode("utf-8", "surrogatepass")[:_MAX_TOKEN]
    pad = secrets.token_bytes(len(raw))
    request.session[key] = _b64(bytes(a ^ b for a, b in zip(raw, pad, strict=True)))
    response.set_cookie(
        f"{_COOKIE}_{key.strip('_')}",
        _b64(pad),
        max_age=_MAX_AGE,
        path=path,
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


def peek(request: HttpRequest, key: str) -> str | None:
    """The token kept under ``key``, or ``None`` when either half is missing or garbage."""
    masked = _unb64(request.session.get(key))
    pad = _unb64(request.COOKIES.get(f"{_COOKIE}_{key.strip('_')}"))
    if masked is None or pad is None or len(masked) != len(pad):
        return None
    raw = bytes(a ^ b for a, b in zip(masked, pad, strict=True))
    return raw.decode("utf-8", "surrogatepass")


def drop(request: HttpRequest, response: HttpResponse | None, key: str, *, path: str) -> None:
    """Forget the token under ``key``: the session half now, the cookie with ``response``."""
    request.session.pop(key, None)
    if response is not None:
        response.delete_cookie(f"{_COOKIE}_{key.strip('_')}", path=path)
