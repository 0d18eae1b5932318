"""What the FastAPI and Flask integrations share, written once and free of any framework.

- :func:`negotiate_language`: an ``Accept-Language`` header to ``"kk"``, ``"ru"`` or ``"en"``;
- :class:`Answer` and the ``*_answer`` functions: a service result, or a typed error of bad
  input, as an HTTP status, a JSON body (stable ``error`` code, localised ``message``,
  violation codes) and a ``Retry-After`` in whole seconds;
- the session keys and :func:`start_session` / :func:`session_credentials`: what a session
  keeps so that :meth:`IdentityService.session_is_current` can end it after a reset;
- :class:`LinkCookie` and :data:`LINK_HEADERS`: how a link's token leaves the URL;
- :func:`contact_answer`, :func:`token_refusal`, :func:`time_zone_answer` and
  :func:`live_account`: the changes of e-mail, phone and time zone of a logged-in account.

docs/fastapi.md and docs/flask.md describe the JSON; the faces only move it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Any, Final, Literal, TypeAlias

from kaspi_identity._errors import (
    ExpiredTokenError,
    InvalidCodeError,
    InvalidIdentifierError,
    InvalidIinError,
    InvalidPasswordError,
    InvalidPhoneError,
    InvalidTokenError,
    UnknownLanguageError,
)
from kaspi_identity.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES, Catalog, normalize_language
from kaspi_identity.policy import PasswordPolicy, PolicyResult, StrengthFeedback
from kaspi_identity.services import (
    ContactChangeResult,
    IdentitySettings,
    LoginResult,
    PasswordChangeResult,
    PasswordResetResult,
    RegistrationResult,
    ResetRequestResult,
)

__all__ = [
    "LINK_HEADERS",
    "SESSION_ACCOUNT",
    "SESSION_CHANGE",
    "SESSION_EXPIRED",
    "SESSION_STAMP",
    "TOKEN_COOKIE_LIMIT",
    "Answer",
    "LinkCookie",
    "LinkKind",
    "account_answer",
    "change_answer",
    "change_required",
    "code_answer",
    "confirm_answer",
    "contact_answer",
    "error_answer",
    "expired_account",
    "expired_session",
    "form_names",
    "form_text",
    "invalid_request",
    "invalid_time_zone",
    "keep_session",
    "link_cookie",
    "link_cookie_name",
    "live_account",
    "logged_out",
    "login_answer",
    "message",
    "negotiate_language",
    "no_link",
    "not_logged_in",
    "pending_change",
    "policy_answer",
    "registration_answer",
    "request_answer",
    "reset_answer",
    "retry_after_seconds",
    "session_credentials",
    "start_session",
    "time_zone_answer",
    "token_refusal",
    "undone_answer",
]

#: The links whose page moves the token into a cookie: the registration's confirmation,
#: the reset, the confirmation of a new address and the undo sent to the old one.
LinkKind: TypeAlias = Literal["confirm", "reset", "email_change", "email_undo"]

#: The session keys: the account id and the security stamp it was logged in with.
SESSION_ACCOUNT: Final = "kaspi_identity.account"
SESSION_STAMP: Final = "kaspi_identity.stamp"
#: Why a live session must change its password first; the account of an expired password.
SESSION_CHANGE: Final = "kaspi_identity.change"
SESSION_EXPIRED: Final = "kaspi_identity.expired"

#: On every answer of a link's page: the token must not leave through ``Referer`` or a cache.
LINK_HEADERS: Final[Mapping[str, str]] = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: A link's token longer than this is not put in a cookie (browsers keep at most 4096
#: bytes a cookie; a genuine token is about 150 characters).
TOKEN_COOKIE_LIMIT: Final = 1024

# An Accept-Language header longer than this is read only this far (RFC 9110 sets no
# limit; real browsers send well under 200 characters).
_HEADER_LIMIT: Final = 1024
_RANGE = re.compile(r"\s*([A-Za-z0-9*_-]{1,35})\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*")


# --------------------------------------------------------------------------- languages


def negotiate_language(header: object, *, default: str = DEFAULT_LANGUAGE) -> str:
    """The language to answer in: the best of kk/ru/en an ``Accept-Language`` header asks for.

    Ranges are taken by their ``q`` weight (RFC 9110 §12.5.4; ``q=0`` means "not this one"),
    earlier first among equals; a range with a region or script (``ru-KZ``, ``kk-Cyrl-KZ``)
    counts as its base language; ``*`` stands for the languages the header does not name,
    ``default`` first. A missing, malformed or unmatched header gives ``default``; a
    malformed range is skipped, never an error.

    Raises:
        UnknownLanguageError: ``default`` itself has no catalog (a configuration mistake).
    """
    default = normalize_language(default)
    if not isinstance(header, str) or not header:
        return default
    # language -> (q, position of the range, rank among the wildcard's languages)
    weights: dict[str, tuple[float, int, int]] = {}
    wildcard: tuple[float, int] | None = None
    for position, part in enumerate(header[:_HEADER_LIMIT].split(",")):
        match = _RANGE.fullmatch(part)
        if match is None:
            continue
        tag, weight = match.group(1), match.group(2)
        try:
            q = 1.0 if weight is None else float(weight)
        except ValueError:
            continue
        if not 0.0 <= q <= 1.0:
            continue
        if tag == "*":
            wildcard = wildcard or (q, position)
            continue
        try:
            lang = normalize_language(tag)
        except UnknownLanguageError:
            continue
        if lang not in weights:  # the first range naming a language decides its weight
            weights[lang] = (q, position, 0)
    if wildcard is not None:
        unnamed = [default, *(lang for lang in SUPPORTED_LANGUAGES if lang != default)]
        for rank, lang in enumerate(unnamed):
            weights.setdefault(lang, (*wildcard, rank))
    ranked = sorted((-q, position, rank, lang) for lang, (q, position, rank) in weights.items())
    best = [lang for minus_q, _, _, lang in ranked if minus_q < 0]
    return best[0] if best else default


@functools.cache
def _catalog(lang: str) -> Catalog:
    text = (resources.files("kaspi_identity.contrib") / "locale" / f"{lang}.po").read_text(
        encoding="utf-8"
    )
    return Catalog.from_po_text(text, source=f"kaspi_identity/contrib/locale/{lang}.po")


def message(key: str, lang: str, **params: str) -> str:
    """The web integrations' message ``key`` (``"login_failed"``, ...) in ``lang``.

    Raises:
        UnknownLanguageError: ``lang`` has no catalog.
    """
    fields: dict[str, Any] = dict(params)  # never ``count``: no web message is plural
    return _catalog(normalize_language(lang)).message(f"web.{key}", **fields)


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: ``status``, the JSON ``body`` and, for a 429, ``retry_after`` seconds.

    Every body holds ``ok``, a stable ``error`` code (``None`` on success) and a ``message``
    in the negotiated language. A face sends ``Retry-After`` when ``retry_after`` is set.
    """

    status: int
    body: dict[str, Any]
    retry_after: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The headers the answer needs besides its content type."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def retry_after_seconds(wait: timedelta | None) -> int:
    """``wait`` in whole seconds for ``Retry-After``: rounded up, at least 1."""
    if wait is None:
        return 1
    return max(1, math.ceil(wait.total_seconds()))


def _ok(status: int, key: str, lang: str, **extra: Any) -> Answer:
    return Answer(status, {"ok": True, "error": None, "message": message(key, lang), **extra})


def _error(
    status: int,
    error: str,
    lang: str,
    *,
    key: str | None = None,
    params: Mapping[str, str] | None = None,
    **extra: Any,
) -> Answer:
    text = message(key or error, lang, **(params or {}))
    return Answer(status, {"ok": False, "error": error, "message": text, **extra})


def _throttled(wait: timedelta | None, lang: str) -> Answer:
    seconds = retry_after_seconds(wait)
    answer = _error(429, "rate_limited", lang, retry_after=seconds)
    return Answer(answer.status, answer.body, seconds)


def _plain(value: object) -> Any:
    """A violation's parameter as JSON data (feedback as its ``to_dict``, tuples as lists)."""
    if isinstance(value, StrengthFeedback):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset | set):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _policy_problem(result: PolicyResult, lang: str) -> Answer:
    return _error(
        422,
        "password_policy",
        lang,
        violations=[
            {"code": v.code, "params": _plain(v.params), "message": v.message(lang)}
            for v in result.violations
        ],
        hints=[{"code": h.code, "message": h.message(lang)} for h in result.hints],
    )


def registration_answer(result: RegistrationResult, lang: str) -> Answer:
    """202 (check your e-mail: the same for a new and a taken address), 422, 409 or 429."""
    if result.ok:
        return _ok(202, "registered", lang)
    if not result.policy:
        return _policy_problem(result.policy, lang)
    if result.retry_after is not None:
        return _throttled(result.retry_after, lang)
    return _error(409, "username_taken", lang)


def confirm_answer(account_id: str, lang: str) -> Answer:
    """200: the e-mail address is confirmed."""
    return _ok(200, "confirmed", lang, account_id=account_id)


def request_answer(result: ResetRequestResult, lang: str, *, sms: bool = False) -> Answer:
    """202 for a reset (or confirmation) request, known account or not; 429 when limited."""
    if not result.accepted:
        return _throttled(result.retry_after, lang)
    return _ok(202, "sms_sent" if sms else "letter_sent", lang)


def login_answer(result: LoginResult, lang: str) -> Answer:
    """200 when logged in; 403 ``password_expired``; 429 for a rate limit; else one 401.

    A rate limit (per client, per identifier) refuses known and unknown identifiers alike,
    so its ``Retry-After`` tells nothing. The account's own back-off and lockout exist only
    for real accounts: they get the 401 of a wrong password, or the answer would say which
    identifiers have an account. ``password_expired`` needs the right password, so saying
    it reveals nothing; the user changes the password there and then
    (``POST /password/change``) or resets it.

    A log-in's answer carries the password's state (docs/policy.md, "Password age"):
    ``needs_password_change``, ``password_change_reason``, ``password_expires_at`` (ISO 8601),
    ``grace_logins_left``, ``password_violations`` and ``password_message``.
    """
    if result.ok:
        return _ok(
            200,
            "logged_in",
            lang,
            account_id=result.account_id,
            email_confirmed=result.email_confirmed,
            **_password_state(result, lang),
        )
    if result.reason == "password_expired":
        body = {"ok": False, "error": "password_expired"}
        return Answer(403, {**body, **_password_state(result, lang)})
    if result.reason == "throttled" and result.account_id is None:
        return _throttled(result.retry_after, lang)
    return _error(401, "login_failed", lang)


def _password_state(result: LoginResult, lang: str) -> dict[str, Any]:
    expires = result.password_expires_at
    text = result.password_change_message(lang)
    return {
        **({"message": text} if result.reason == "password_expired" and text else {}),
        "needs_password_change": result.needs_password_change,
        "password_change_reason": result.password_change_reason,
        "password_expires_at": None if expires is None else expires.isoformat(),
        "grace_logins_left": result.grace_logins_left,
        "password_violations": list(result.password_violations),
        "password_message": text,
    }


def change_answer(result: PasswordChangeResult, lang: str) -> Answer:
    """200, 422 (policy), 403 (wrong current password, locked, too soon), 409 or 429.

    The user is logged in, so saying "locked" or "throttled" reveals nothing new.
    """
    if result.ok:
        return _ok(200, "password_changed", lang)
    if result.reason == "policy":
        return _policy_problem(result.policy, lang)
    if result.reason == "throttled":
        return _throttled(result.retry_after, lang)
    if result.reason == "conflict":
        return _error(409, "conflict", lang)
    if result.reason == "locked":
        return _error(403, "locked", lang)
    if result.reason == "too_soon":
        seconds = retry_after_seconds(result.retry_after)
        text = result.too_soon_message(lang) or message("too_soon", lang)
        body = {"ok": False, "error": "too_soon", "message": text, "retry_after": seconds}
        return Answer(403, body, seconds)
    return _error(403, "wrong_password", lang)


def reset_answer(result: PasswordResetResult, lang: str) -> Answer:
    """200 (log in again: every session of the account has ended) or 422 (the link lives on)."""
    if result.ok:
        return _ok(200, "password_reset", lang)
    return _policy_problem(result.policy, lang)


def code_answer(grant: str, lang: str) -> Answer:
    """200 with the ``grant`` a reset takes in place of a link's token."""
    return _ok(200, "code_accepted", lang, grant=grant)


def contact_answer(
    result: ContactChangeResult,
    lang: str,
    *,
    done: str,
    status: int = 200,
    with_account: bool = False,
) -> Answer:
    """A change of e-mail or phone: ``status`` with the message ``done``, or the refusal.

    ``done`` is the message key of success (``"email_change_sent"``, ``"phone_verified"``,
    ...); ``with_account`` adds ``account_id`` (a link's completion, where the browser may not
    be logged in). Refusals: 403 ``wrong_password`` or ``locked``, 429 ``rate_limited``
    with ``Retry-After``, 409 ``unchanged`` (the account has it already), ``no_phone`` or
    ``conflict`` (the account changed meanwhile). The user is logged in, or holds the link
    or code, so none of these tells a stranger anything.
    """
    if result.ok:
        extra = {"account_id": result.account_id} if with_account else {}
        return _ok(status, done, lang, **extra)
    if result.reason == "throttled":
        return _throttled(result.retry_after, lang)
    if result.reason in ("wrong_password", "locked"):
        return _error(403, result.reason, lang)
    if result.reason == "conflict":
        return _error(409, "conflict", lang, key="contact_conflict")
    return _error(409, result.reason, lang)


def token_refusal(first: InvalidTokenError, second: InvalidTokenError) -> InvalidTokenError:
    """Which refusal to answer when neither of two purposes takes a link's token.

    ``POST /confirm`` tries a token as a registration's confirmation, then as a change of
    address (``IdentitySettings.email_change_url`` defaults to ``confirm_url``): an expired
    genuine token says "expired" whichever purpose it had; otherwise the first refusal.
    """
    if isinstance(second, ExpiredTokenError) and not isinstance(first, ExpiredTokenError):
        return second
    return first


def time_zone_answer(lang: str) -> Answer:
    """200: the account's time zone is saved."""
    return _ok(200, "time_zone_set", lang)


def invalid_time_zone(lang: str) -> Answer:
    """422 ``invalid_time_zone``: the name is no IANA zone the server knows."""
    return _error(422, "invalid_time_zone", lang, field="time_zone")


def undone_answer(result: ContactChangeResult, lang: str) -> Answer:
    """200: the previous address is back, every session ended, a reset link is on its way."""
    return contact_answer(result, lang, done="email_restored", with_account=True)


def policy_answer(policy: PasswordPolicy, lang: str) -> Answer:
    """200 with :meth:`PasswordPolicy.document` in ``lang`` (docs/policy.schema.json)."""
    return Answer(200, policy.document(lang))


def account_answer(account_id: str, lang: str, *, change: str | None = None) -> Answer:
    """200 with the logged-in ``account_id`` and whether it must change its password first."""
    return _ok(
        200,
        "logged_in",
        lang,
        account_id=account_id,
        needs_password_change=change is not None,
        password_change_reason=change,
    )


def logged_out(lang: str) -> Answer:
    """200: the session is cleared."""
    return _ok(200, "logged_out", lang)


def not_logged_in(lang: str) -> Answer:
    """401 for a view that needs a live session."""
    return _error(401, "not_logged_in", lang)


def no_link(lang: str) -> Answer:
    """400: a link's form was sent without the token its page moved out of the URL."""
    return _error(400, "invalid_link", lang, key="no_link")


def invalid_request(field_name: str, lang: str) -> Answer:
    """422: a field of the request is missing or is not text."""
    return _error(422, "invalid_request", lang, params={"field": field_name}, field=field_name)


def error_answer(exc: BaseException, lang: str) -> Answer | None:
    """The answer to a typed error of bad input or a refused token/code, else ``None``.

    400 for a link or grant (``invalid_link``, ``expired_link``) or an SMS code
    (``invalid_code`` with its ``reason``); 422 for a malformed identifier (``field``,
    ``code``), phone (``reason``), IIN (``reason``) or unusable password. The messages come
    from the errors' own catalogs; none repeats what was typed.
    """
    if isinstance(exc, InvalidCodeError):
        return _error(400, "invalid_code", lang, key=f"code_{exc.reason}", reason=exc.reason)
    if isinstance(exc, ExpiredTokenError):
        return _error(400, "expired_link", lang)
    if isinstance(exc, InvalidTokenError):
        return _error(400, "invalid_link", lang)
    if isinstance(exc, InvalidIdentifierError):
        body = {"ok": False, "error": "invalid_identifier", "message": exc.message(lang)}
        return Answer(422, {**body, "field": exc.field, "code": exc.code})
    if isinstance(exc, InvalidPhoneError | InvalidIinError):
        kind = "invalid_phone" if isinstance(exc, InvalidPhoneError) else "invalid_iin"
        body = {"ok": False, "error": kind, "message": exc.message(lang)}
        return Answer(422, {**body, "reason": exc.reason})
    if isinstance(exc, InvalidPasswordError):
        return _error(422, "invalid_request", lang, field="password", key="password_policy")
    return None


# --------------------------------------------------------------------------- sessions


def start_session(session: MutableMapping[str, Any], result: LoginResult) -> None:
    """Begin a fresh session for a successful log-in: what was in it before is dropped.

    The session keeps the account id and the security stamp (what
    :meth:`IdentityService.session_is_current` compares on later requests) and, when the
    log-in said so, why the password must be changed before anything else.

    Raises:
        ValueError: ``result`` is not a successful log-in.
    """
    if not result.ok or result.account_id is None or result.security_stamp is None:
        raise ValueError("only a successful log-in starts a session")
    session.clear()
    session[SESSION_ACCOUNT] = result.account_id
    session[SESSION_STAMP] = result.security_stamp
    if result.needs_password_change:
        session[SESSION_CHANGE] = result.password_change_reason


def expired_session(session: MutableMapping[str, Any], result: LoginResult) -> None:
    """After ``password_expired``: no session, only the account whose password must change.

    ``POST /password/change`` then takes the current password again; nothing else does.
    """
    session.clear()
    if result.reason == "password_expired" and result.account_id is not None:
        session[SESSION_EXPIRED] = result.account_id


def session_credentials(session: Mapping[str, Any]) -> tuple[str, str] | None:
    """The ``(account_id, security_stamp)`` a session holds, or ``None`` when it holds none."""
    account_id, stamp = session.get(SESSION_ACCOUNT), session.get(SESSION_STAMP)
    if isinstance(account_id, str) and isinstance(stamp, str):
        return account_id, stamp
    return None


def pending_change(session: Mapping[str, Any]) -> str | None:
    """Why this live session must change its password first (``"expired"``, ...), or ``None``."""
    reason = session.get(SESSION_CHANGE)
    return reason if isinstance(reason, str) else None


def expired_account(session: Mapping[str, Any]) -> str | None:
    """The account a ``password_expired`` log-in left in the session, or ``None``."""
    account_id = session.get(SESSION_EXPIRED)
    return account_id if isinstance(account_id, str) else None


def keep_session(
    session: MutableMapping[str, Any], result: PasswordChangeResult | ContactChangeResult
) -> None:
    """After a change of password, e-mail or phone: this session takes the new stamp.

    Every other session of the account ends (their stamp is old). A session that had to
    change its password is free now; the change of an expired password (no session yet)
    leaves none: the user logs in with the new password. A change of e-mail or phone renews
    only a session of the account changed (a link may be opened in another account's
    browser); a refused change leaves the session as it was.
    """
    if not result.ok:
        return
    if isinstance(result, ContactChangeResult):
        held = session_credentials(session)
        if (
            result.end_other_sessions
            and result.security_stamp is not None
            and held is not None
            and held[0] == result.account_id
        ):
            session[SESSION_STAMP] = result.security_stamp
        return
    if expired_account(session) is not None:
        session.clear()
        return
    session.pop(SESSION_CHANGE, None)
    if result.security_stamp is not None:
        session[SESSION_STAMP] = result.security_stamp


def live_account(session: Mapping[str, Any], account_id: str | None, lang: str) -> str | Answer:
    """The account of a live session that may use any view, else the refusal (401 or 403).

    ``account_id`` is the session's account after its stamp was checked (``None``: no live
    session); a session that must change its password first gets :func:`change_required`.
    """
    if account_id is None:
        return not_logged_in(lang)
    if pending_change(session) is not None:
        return change_required(lang)
    return account_id


def change_required(lang: str) -> Answer:
    """403 for a view the session may not use before it changes its password."""
    return _error(403, "password_change_required", lang)


# --------------------------------------------------------------------------- link tokens


@dataclass(frozen=True, slots=True)
class LinkCookie:
    """The cookie a link's page moves the token into before sending the browser on.

    ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's request carries
    it), ``Secure`` unless the deployment is on ``http://`` for development, limited to the
    form's ``path`` and to the link's lifetime.
    """

    name: str
    path: str
    max_age: int
    secure: bool
    httponly: bool = field(default=True)
    samesite: Literal["strict"] = "strict"


def link_cookie_name(kind: LinkKind) -> str:
    """The name of the cookie a ``kind`` link's page moves the token into."""
    return f"kaspi_identity_{kind}"


def link_cookie(kind: LinkKind, path: str, settings: IdentitySettings) -> LinkCookie:
    """The :class:`LinkCookie` of a ``kind`` link served at ``path``, living as long as the link.

    A reset cookie lives as long as the longer of a reset link and an SMS grant.
    """
    if kind == "confirm":
        lifetime = settings.confirm_link_lifetime
    elif kind == "email_change":
        lifetime = settings.email_change_link_lifetime
    elif kind == "email_undo":
        lifetime = settings.email_undo_lifetime
    else:
        lifetime = max(settings.reset_link_lifetime, settings.sms_grant_lifetime)
    return LinkCookie(
        name=link_cookie_name(kind),
        path=path,
        max_age=math.ceil(lifetime.total_seconds()),
        secure=not settings.allow_insecure_http,
    )


def form_text(data: object, name: str, *, required: bool = True) -> str | None:
    """Field ``name`` of a decoded JSON object, which must be a ``str`` when present.

    Raises:
        LookupError: the field is required and absent (or ``null``).
        TypeError: the body is not an object, or the field is not a ``str``.
    """
    if not isinstance(data, Mapping):
        raise TypeError("the body must be a JSON object")
    value = data.get(name)
    if value is None:
        if required:
            raise LookupError(name)
        return None
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def form_names(data: object, name: str = "names") -> list[str]:
    """Field ``name`` of a decoded JSON object as a list of ``str`` (absent: empty).

    Raises:
        TypeError: the field is not a list of ``str``.
    """
    if not isinstance(data, Mapping):
        raise TypeError("the body must be a JSON object")
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(name)
    return list(value)
