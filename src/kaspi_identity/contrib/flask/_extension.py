"""``KaspiIdentity``: the Flask extension, its blueprint and the session check."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, redirect, request, session
from werkzeug.wrappers import Response as WerkzeugResponse

from kaspi_identity._errors import InvalidTokenError, KaspiIdentityError
from kaspi_identity.contrib import _web
from kaspi_identity.i18n import DEFAULT_LANGUAGE
from kaspi_identity.services import IdentityService

__all__ = ["CONFIG_DEFAULTS", "KaspiIdentity", "current_account", "login_required"]

P = ParamSpec("P")
R = TypeVar("R")

#: The extension's config keys and their defaults (``app.config.setdefault`` at init_app).
CONFIG_DEFAULTS: Final[dict[str, object]] = {
    "KASPI_IDENTITY_URL_PREFIX": "/auth",
    "KASPI_IDENTITY_DEFAULT_LANGUAGE": DEFAULT_LANGUAGE,
    "KASPI_IDENTITY_CONFIRM_PAGE": None,
    "KASPI_IDENTITY_RESET_PAGE": None,
    "KASPI_IDENTITY_EMAIL_CHANGE_PAGE": None,
    "KASPI_IDENTITY_EMAIL_UNDO_PAGE": None,
    "KASPI_IDENTITY_CHECK_SESSIONS": True,
}
_KEY: Final = "kaspi_identity"
_G_ACCOUNT: Final = "kaspi_identity_account"


@dataclass(frozen=True, slots=True)
class _State:
    """What one app's extension holds: ``app.extensions["kaspi_identity"]``."""

    service: IdentityService
    default_language: str
    confirm_page: str | None
    reset_page: str | None
    email_change_page: str | None
    email_undo_page: str | None
    client_key: Callable[[], str]

    def page(self, kind: _web.LinkKind) -> str | None:
        """The host's page a ``kind`` link's page sends the browser on to (``None``: itself)."""
        return {
            "confirm": self.confirm_page,
            "reset": self.reset_page,
            "email_change": self.email_change_page,
            "email_undo": self.email_undo_page,
        }[kind]


def _state() -> _State:
    state = current_app.extensions.get(_KEY)
    if not isinstance(state, _State):
        raise RuntimeError("KaspiIdentity(app, service=...) was not set up for this app")
    return state


def _client_address() -> str:
    return request.remote_addr or "unknown"


def _language() -> str:
    default = _state().default_language
    return _web.negotiate_language(request.headers.get("Accept-Language"), default=default)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(current_app.json.dumps(body), status=status, mimetype="application/json")


def _send(answer: _web.Answer, lang: str) -> Response:
    response = _json(answer.body, answer.status)
    response.headers.update(answer.headers)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = lang
    response.headers["Vary"] = "Accept-Language"
    return response


class KaspiIdentity:
    """The Flask extension: ``KaspiIdentity(app, service=IdentityService(...))``.

    Or, with an application factory, ``identity = KaspiIdentity()`` at module level and
    ``identity.init_app(app, service=...)`` in the factory: one extension object serves many
    apps, each with its own service, kept in ``app.extensions["kaspi_identity"]``.

    ``init_app`` registers the blueprint ``kaspi_identity`` (every flow as a JSON endpoint)
    under ``KASPI_IDENTITY_URL_PREFIX`` and a ``before_request`` hook that enforces the
    security stamp: a session whose account changed its password or e-mail since the log-in
    is cleared before the view runs. The app needs a ``SECRET_KEY`` (Flask's session).

    Config keys (defaults in :data:`CONFIG_DEFAULTS`): ``KASPI_IDENTITY_URL_PREFIX``
    (``"/auth"``), ``KASPI_IDENTITY_DEFAULT_LANGUAGE`` (``"en"``: the answer's language when
    ``Accept-Language`` names none of kk/ru/en), ``KASPI_IDENTITY_CONFIRM_PAGE`` and
    ``KASPI_IDENTITY_RESET_PAGE``, ``KASPI_IDENTITY_EMAIL_CHANGE_PAGE`` and
    ``KASPI_IDENTITY_EMAIL_UNDO_PAGE`` (where a link's page sends the browser once the token
    is in a cookie; default: the same path), ``KASPI_IDENTITY_CHECK_SESSIONS`` (``True``).

    Args:
        app: the app to set up now, or ``None`` to call :meth:`init_app` later.
        service: the service of every app set up without one of its own.
        client_key: who is asking, for the rate limits (default: ``request.remote_addr``;
            behind a proxy use werkzeug's ``ProxyFix``, never a header any client can set).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        service: IdentityService | None = None,
        client_key: Callable[[], str] = _client_address,
    ) -> None:
        self._service = service
        self._client_key = client_key
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, service: IdentityService | None = None) -> None:
        """Set up ``app``: config defaults, the blueprint and the session check.

        Raises:
            TypeError: no :class:`IdentityService` was given (here or to the constructor).
            UnknownLanguageError: ``KASPI_IDENTITY_DEFAULT_LANGUAGE`` has no catalog.
        """
        service = service if service is not None else self._service
        if not isinstance(service, IdentityService):
            raise TypeError("KaspiIdentity needs service=IdentityService(...)")
        for key, value in CONFIG_DEFAULTS.items():
            app.config.setdefault(key, value)
        config = app.config
        app.extensions[_KEY] = _State(
            service=service,
            default_language=_web.negotiate_language(
                None, default=config["KASPI_IDENTITY_DEFAULT_LANGUAGE"]
            ),
            confirm_page=config["KASPI_IDENTITY_CONFIRM_PAGE"],
            reset_page=config["KASPI_IDENTITY_RESET_PAGE"],
            email_change_page=config["KASPI_IDENTITY_EMAIL_CHANGE_PAGE"],
            email_undo_page=config["KASPI_IDENTITY_EMAIL_UNDO_PAGE"],
            client_key=self._client_key,
        )
        if config["KASPI_IDENTITY_CHECK_SESSIONS"]:
            app.before_request(_check_session)
        app.register_blueprint(_blueprint(), url_prefix=config["KASPI_IDENTITY_URL_PREFIX"])

    @property
    def service(self) -> IdentityService:
        """The current app's service (inside an app context)."""
        return _state().service


def _check_session() -> None:
    """``before_request``: clear a session whose account's security stamp has changed."""
    g.pop(_G_ACCOUNT, None)
    if request.endpoint == "static":
        return
    held = _web.session_credentials(session)
    if held is None:
        return
    if _state().service.session_is_current(*held):
        setattr(g, _G_ACCOUNT, held[0])
    else:
        session.clear()


def current_account() -> str | None:
    """The logged-in account id of this request, or ``None`` (the stamp is checked).

    With ``KASPI_IDENTITY_CHECK_SESSIONS`` on, the ``before_request`` hook checked the
    stamp already; otherwise this checks it (one store read) on first use in a request.
    """
    if _G_ACCOUNT not in g:
        _check_session()
    account = g.get(_G_ACCOUNT)
    return account if isinstance(account, str) else None


def login_required(view: Callable[P, R]) -> Callable[P, R | Response]:
    """Decorate a view that needs a live session: without one it answers 401 (``not_logged_in``).

    A session whose log-in said the password must be changed gets a 403
    (``password_change_required``) until it is.
    """

    @functools.wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        if current_account() is None:
            lang = _language()
            return _send(_web.not_logged_in(lang), lang)
        if _web.pending_change(session) is not None:
            lang = _language()
            return _send(_web.change_required(lang), lang)
        return view(*args, **kwargs)

    return guarded


class _BadRequest(Exception):
    def __init__(self, field_name: str) -> None:
        self.field_name = field_name


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)  # None unless the body is JSON (application/json)
    if not isinstance(data, dict):
        raise _BadRequest("body")
    return data


def _text(data: dict[str, Any], name: str, *, required: bool = True) -> Any:
    try:
        return _web.form_text(data, name, required=required)
    except (LookupError, TypeError):
        raise _BadRequest(name) from None


def _run(call: Callable[[str], _web.Answer]) -> Response:
    lang = _language()
    try:
        answer = call(lang)
    except _BadRequest as bad:
        answer = _web.invalid_request(bad.field_name, lang)
    except KaspiIdentityError as exc:
        refused = _web.error_answer(exc, lang)
        if refused is None:
            raise
        answer = refused
    return _send(answer, lang)


def _drop(response: Response, kind: _web.LinkKind) -> None:
    name = _web.link_cookie_name(kind)
    if name in request.cookies:
        response.delete_cookie(
            name, path=request.path, secure=request.is_secure, httponly=True, samesite="Strict"
        )


def _landing(kind: _web.LinkKind) -> WerkzeugResponse:
    """A link's page: move ``?token=`` into a cookie and send the browser on without it."""
    state = _state()
    cookie = _web.link_cookie(kind, request.path, state.service.settings)
    token = request.args.get("token")
    response: WerkzeugResponse
    if token is None:
        response = _json({"link": kind, "pending": cookie.name in request.cookies})
    else:
        response = redirect(state.page(kind) or request.path, code=303)
        if len(token) <= _web.TOKEN_COOKIE_LIMIT:
            response.set_cookie(
                cookie.name,
                token,
                max_age=cookie.max_age,
                path=cookie.path,
                secure=cookie.secure,
                httponly=cookie.httponly,
                samesite="Strict",
            )
    response.headers.update(_web.LINK_HEADERS)
    return response


def _blueprint() -> Blueprint:
    """The blueprint ``kaspi_identity``: the same endpoints as the FastAPI router."""
    bp = Blueprint("kaspi_identity", __name__)

    def client() -> str:
        return _state().client_key()

    @bp.get("/policy")
    def policy() -> Response:
        return _run(lambda lang: _web.policy_answer(_state().service.policy, lang))

    @bp.post("/register")
    def register() -> Response:
        def call(lang: str) -> _web.Answer:
            data = _body()
            result = _state().service.register(
                email=_text(data, "email", required=False),
                username=_text(data, "username", required=False),
                phone=_text(data, "phone", required=False),
                iin=_text(data, "iin", required=False),
                names=_names(data),
                password=_text(data, "password"),
                confirmation=_text(data, "confirmation"),
                client_key=client(),
                language=lang,
            )
            return _web.registration_answer(result, lang)

        return _run(call)

    @bp.get("/confirm")
    def confirm_link() -> WerkzeugResponse:
        return _landing("confirm")

    @bp.post("/confirm")
    def confirm() -> Response:
        def call(lang: str) -> _web.Answer:
            token = _text(_body(), "token", required=False)
            token = token or request.cookies.get(_web.link_cookie_name("confirm"))
            if token is None:
                return _web.no_link(lang)
            service = _state().service
            try:
                account_id = service.confirm_email(token)
            except InvalidTokenError as first:  # perhaps a new address's link on this page
                try:
                    result = service.confirm_email_change(token)
                except InvalidTokenError as second:
                    raise _web.token_refusal(first, second) from None
                _web.keep_session(session, result)
                return _web.contact_answer(result, lang, done="email_changed", with_account=True)
            return _web.confirm_answer(account_id, lang)

        response = _run(call)
        _drop(response, "confirm")
        return response

    @bp.post("/confirm/resend")
    def resend() -> Response:
        def call(lang: str) -> _web.Answer:
            identifier = _text(_body(), "identifier")
            result = _state().service.resend_confirmation(identifier, client_key=client())
            return _web.request_answer(result, lang)

        return _run(call)

    @bp.post("/login")
    def login() -> Response:
        def call(lang: str) -> _web.Answer:
            data = _body()
            identifier, password = _text(data, "identifier"), _text(data, "password")
            result = _state().service.authenticate(identifier, password, client_key=client())
            if result.ok:
                _web.start_session(session, result)
                setattr(g, _G_ACCOUNT, result.account_id)
            elif result.reason == "password_expired":
                _web.expired_session(session, result)
            return _web.login_answer(result, lang)

        return _run(call)

    @bp.post("/logout")
    def logout() -> Response:
        session.clear()
        g.pop(_G_ACCOUNT, None)
        return _run(_web.logged_out)

    @bp.get("/me")
    def me() -> Response:
        account = current_account()
        if account is None:
            return _run(_web.not_logged_in)
        change = _web.pending_change(session)
        return _run(lambda lang: _web.account_answer(account, lang, change=change))

    @bp.post("/password/change")
    def change() -> Response:
        def call(lang: str) -> _web.Answer:
            data = _body()  # a malformed body is a 422 before the session is looked at
            current, password = _text(data, "current"), _text(data, "password")
            confirmation = _text(data, "confirmation")
            account = current_account() or _web.expired_account(session)
            if account is None:
                return _web.not_logged_in(lang)
            result = _state().service.change_password(
                account, current, password, confirmation, client_key=client()
            )
            _web.keep_session(session, result)
            return _web.change_answer(result, lang)

        return _run(call)

    @bp.post("/password/forgot")
    def forgot() -> Response:
        def call(lang: str) -> _web.Answer:
            identifier = _text(_body(), "identifier")
            result = _state().service.request_password_reset(identifier, client_key=client())
            return _web.request_answer(result, lang)

        return _run(call)

    @bp.post("/password/forgot/sms")
    def forgot_sms() -> Response:
        def call(lang: str) -> _web.Answer:
            phone = _text(_body(), "phone")
            result = _state().service.request_sms_reset(phone, client_key=client())
            return _web.request_answer(result, lang, sms=True)

        return _run(call)

    @bp.post("/password/verify-code")
    def verify_code() -> Response:
        def call(lang: str) -> _web.Answer:
            data = _body()
            grant = _state().service.verify_sms_code(_text(data, "phone"), _text(data, "code"))
            return _web.code_answer(grant, lang)

        return _run(call)

    @bp.get("/password/reset")
    def reset_link() -> WerkzeugResponse:
        return _landing("reset")

    @bp.post("/password/reset")
    def reset() -> Response:
        done = False

        def call(lang: str) -> _web.Answer:
            nonlocal done
            data = _body()
            token = _text(data, "token", required=False)
            token = token or request.cookies.get(_web.link_cookie_name("reset"))
            password, confirmation = _text(data, "password"), _text(data, "confirmation")
            if token is None:
                return _web.no_link(lang)
            try:
                result = _state().service.reset_password(token, password, confirmation)
            except InvalidTokenError:
                done = True
                raise
            done = result.ok
            return _web.reset_answer(result, lang)

        response = _run(call)
        if done:
            _drop(response, "reset")
        return response

    def live(lang: str) -> str | _web.Answer:
        return _web.live_account(session, current_account(), lang)

    @bp.post("/email/change")
    def email_change() -> Response:
        def call(lang: str) -> _web.Answer:
            data = _body()  # a malformed body is a 422 before the session is looked at
            password, email = _text(data, "password"), _text(data, "email")
            who = live(lang)
            if isinstance(who, _web.Answer):
                return who
            result = _state().service.request_email_change(
                who, password, email, client_key=client()
            )
            return _web.contact_answer(result, lang, done="email_change_sent", status=202)

        return _run(call)

    @bp.get("/email/confirm")
    def email_confirm_link() -> WerkzeugResponse:
        return _landing("email_change")

    @bp.post("/email/confirm")
    def email_confirm() -> Response:
        def call(lang: str) -> _web.Answer:
            token = _text(_body(), "token", required=False)
            token = token or request.cookies.get(_web.link_cookie_name("email_change"))
            if token is None:
                return _web.no_link(lang)
            result = _state().service.confirm_email_change(token)
            _web.keep_session(session, result)
            return _web.contact_answer(result, lang, done="email_changed", with_account=True)

        response = _run(call)
        _drop(response, "email_change")
        return response

    @bp.get("/email/undo")
    def email_undo_link() -> WerkzeugResponse:
        return _landing("email_undo")

    @bp.post("/email/undo")
    def email_undo() -> Response:
        def call(lang: str) -> _web.Answer:
            token = _text(_body(), "token", required=False)
            token = token or request.cookies.get(_web.link_cookie_name("email_undo"))
            if token is None:
                return _web.no_link(lang)
            result = _state().service.undo_email_change(token)
            if result.ok:
                session.clear()
                g.pop(_G_ACCOUNT, None)
            return _web.undone_answer(result, lang)

        response = _run(call)
        _drop(response, "email_undo")
        return response

    @bp.post("/phone")
    def phone_change() -> Response:
        def call(lang: str) -> _web.Answer:
            data = _body()
            password, phone = _text(data, "password"), _text(data, "phone")
            who = live(lang)
            if isinstance(who, _web.Answer):
                return who
            result = _state().service.request_phone_change(
                who, password, phone, client_key=client()
            )
            return _web.contact_answer(result, lang, done="phone_code_sent", status=202)

        return _run(call)

    @bp.post("/phone/verify")
    def phone_verify() -> Response:
        def call(lang: str) -> _web.Answer:
            code = _text(_body(), "code")
            who = live(lang)
            if isinstance(who, _web.Answer):
                return who
            result = _state().service.verify_phone(who, code)
            _web.keep_session(session, result)
            return _web.contact_answer(result, lang, done="phone_verified")

        return _run(call)

    @bp.post("/phone/remove")
    def phone_remove() -> Response:
        def call(lang: str) -> _web.Answer:
            password = _text(_body(), "password")
            who = live(lang)
            if isinstance(who, _web.Answer):
                return who
            result = _state().service.remove_phone(who, password, client_key=client())
            _web.keep_session(session, result)
            return _web.contact_answer(result, lang, done="phone_removed")

        return _run(call)

    @bp.post("/time-zone")
    def time_zone() -> Response:
        def call(lang: str) -> _web.Answer:
            data = _body()
            if "time_zone" not in data:  # null (the site's zone) must be said, as in FastAPI
                raise _BadRequest("time_zone")
            zone = _text(data, "time_zone", required=False)
            who = live(lang)
            if isinstance(who, _web.Answer):
                return who
            try:
                _state().service.set_time_zone(who, zone)
            except ValueError as exc:
                if isinstance(exc, KaspiIdentityError):
                    raise
                return _web.invalid_time_zone(lang)
            return _web.time_zone_answer(lang)

        return _run(call)

    return bp


def _names(data: dict[str, Any]) -> list[str]:
    try:
        return _web.form_names(data)
    except TypeError:
        raise _BadRequest("names") from None
