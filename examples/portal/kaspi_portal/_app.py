"""The portal: server-rendered pages over ``kaspi_identity.contrib.fastapi``.

Every page works without JavaScript: its form posts here, the handler calls the library's
flow on the service the integration holds (``get_identity_service``), keeps the session
the integration's way (``start_session`` / ``keep_session``) and renders the outcome.
``static/portal.js`` only enhances: the eye toggle, the live checklist from the router's
``GET /auth/policy``, per-field errors as you type, the keyboard-layout hint.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.middleware.sessions import SessionMiddleware

from kaspi_identity import (
    ExpiredTokenError,
    InvalidCodeError,
    InvalidIdentifierError,
    InvalidIinError,
    InvalidPasswordError,
    InvalidPhoneError,
    InvalidTokenError,
    PasswordPolicy,
)
from kaspi_identity.contrib.fastapi import (
    client_address,
    current_account,
    forget_link,
    get_identity_service,
    identity_lifespan,
    identity_router,
    keep_session,
    link_token,
    optional_account,
    request_language,
    start_session,
)
from kaspi_identity.delivery import AsyncSmtpEmailSender, EmailSender, SmsSender
from kaspi_identity.hashing import PasswordHasher
from kaspi_identity.i18n import render
from kaspi_identity.policy import PolicyResult
from kaspi_identity.services import (
    AsyncIdentityService,
    ContactChangeResult,
    IdentitySettings,
    ResetRequestResult,
)
from kaspi_identity.storage.sqlite import async_sqlite_storage
from kaspi_portal._dev import CapturingSms, DevMailServer
from kaspi_portal._text import LANGUAGE_NAMES, LANGUAGES, text

__all__ = ["PortalConfig", "create_app"]

HERE = Path(__file__).parent
PREFIX = "/auth"  # the integration's JSON API; the letters' links land under it
CONFIRM_LINK = f"{PREFIX}/confirm"
RESET_LINK = f"{PREFIX}/password/reset"
# The pages a link's token cookie reaches: the cookie is limited to the link's path, so
# the form that sends it lives below that path.
CONFIRM_PAGE = f"{CONFIRM_LINK}/email"
RESET_PAGE = f"{RESET_LINK}/new"
# A change of address: the link to the new address, and the undo link to the old one.
EMAIL_CHANGE_LINK = f"{PREFIX}/email/confirm"
EMAIL_UNDO_LINK = f"{PREFIX}/email/undo"
EMAIL_CHANGE_PAGE = f"{EMAIL_CHANGE_LINK}/new"
EMAIL_UNDO_PAGE = f"{EMAIL_UNDO_LINK}/back"

LANG_COOKIE = "portal_lang"
_CSRF = "portal.csrf"
_FLASH = "portal.flash"
_LOGGED_IN = "portal.logged_in"
_URL = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class PortalConfig:
    """What a deployment of the portal chooses; :meth:`from_env` reads it from ``PORTAL_*``.

    Attributes:
        policy: the password policy (a preset, a TOML file, or built in code).
        policy_name: what the pages call it (the preset's name).
        base_url: where the portal is served; the letters' links start with it.
        db: the SQLite file of the accounts.
        dev: development mode: a local SMTP server and ``/dev/mailbox``; never in production.
        secret_key: the key that signs links and codes (32 bytes or more); random per start
            in development when not given.
        session_key: the key that signs the session cookie; likewise.
        site_name: the portal's name in letters and SMS.
        hasher: argon2id parameters (default: the library's); tests pass a cheap one.
        settings: further :class:`IdentitySettings` fields (rate limits, lifetimes, ...).
    """

    policy: PasswordPolicy = field(default_factory=lambda: PasswordPolicy.preset("kz-procurement"))
    policy_name: str = "kz-procurement"
    base_url: str = "http://127.0.0.1:8000"
    db: str = "portal.sqlite3"
    dev: bool = False
    secret_key: bytes | None = field(default=None, repr=False)
    session_key: str | None = field(default=None, repr=False)
    site_name: str = "portal.example.kz"
    hasher: PasswordHasher | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> PortalConfig:
        """A config from ``PORTAL_PRESET`` or ``PORTAL_POLICY`` (a TOML file), ``PORTAL_DB``,
        ``PORTAL_BASE_URL``, ``PORTAL_DEV`` (``1``), ``PORTAL_SECRET_KEY`` and
        ``PORTAL_SESSION_KEY``; keyword arguments win over the environment.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("PORTAL_POLICY"):
            values["policy"] = PasswordPolicy.from_toml(env["PORTAL_POLICY"])
            values["policy_name"] = Path(env["PORTAL_POLICY"]).name
        elif env.get("PORTAL_PRESET"):
            values["policy"] = PasswordPolicy.preset(env["PORTAL_PRESET"])
            values["policy_name"] = env["PORTAL_PRESET"]
        for key, name in (("db", "PORTAL_DB"), ("base_url", "PORTAL_BASE_URL")):
            if env.get(name):
                values[key] = env[name]
        if env.get("PORTAL_DEV"):
            values["dev"] = env["PORTAL_DEV"].strip().lower() in {"1", "true", "yes"}
        if env.get("PORTAL_SECRET_KEY"):
            values["secret_key"] = env["PORTAL_SECRET_KEY"].encode()
        if env.get("PORTAL_SESSION_KEY"):
            values["session_key"] = env["PORTAL_SESSION_KEY"]
        values.update(overrides)
        return cls(**values)


def _keys(config: PortalConfig) -> tuple[bytes, str]:
    if config.secret_key is not None and config.session_key is not None:
        return config.secret_key, config.session_key
    if not config.dev:
        raise ValueError("set secret_key and session_key (PORTAL_SECRET_KEY, PORTAL_SESSION_KEY)")
    return (
        config.secret_key or secrets.token_bytes(32),
        config.session_key or secrets.token_urlsafe(32),
    )


# --------------------------------------------------------------------------- the app


def create_app(
    config: PortalConfig,
    *,
    email_sender: EmailSender | None = None,
    sms_sender: SmsSender | None = None,
) -> FastAPI:
    """The portal's FastAPI app.

    In development mode (``config.dev``) the letters go to a local aiosmtpd server started
    with the app and the SMS to a capturing sender, both shown on ``/dev/mailbox``;
    otherwise pass the deployment's ``email_sender`` and ``sms_sender``.

    Raises:
        ValueError: outside development mode, a sender or a key is missing.
    """
    secret_key, session_key = _keys(config)
    base = config.base_url.rstrip("/")
    mail = DevMailServer() if config.dev else None
    sms: SmsSender | None = sms_sender
    if config.dev and sms is None:
        sms = CapturingSms()
    if not config.dev and (email_sender is None or sms_sender is None):
        raise ValueError("outside development mode, pass email_sender and sms_sender")
    settings = IdentitySettings(
        secret_keys=(secret_key,),
        site_name=config.site_name,
        confirm_url=f"{base}{CONFIRM_LINK}",
        reset_url=f"{base}{RESET_LINK}",
        email_change_url=f"{base}{EMAIL_CHANGE_LINK}",
        email_undo_url=f"{base}{EMAIL_UNDO_LINK}",
        allow_insecure_http=base.startswith("http://"),
        **dict(config.settings),
    )

    def build() -> AsyncIdentityService:
        sender: Any = email_sender
        if mail is not None:
            sender = AsyncSmtpEmailSender(
                mail.host, mail.port, sender=f"no-reply@{config.site_name}", security="none"
            )
        return AsyncIdentityService(
            async_sqlite_storage(config.db),
            settings,
            email_sender=sender,
            sms_sender=sms,
            policy=config.policy,
            hasher=config.hasher,
        )

    service_lifespan = identity_lifespan(build)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if mail is not None:
            mail.start()
        try:
            async with service_lifespan(app):
                yield
        finally:
            if mail is not None:
                mail.stop()

    app = FastAPI(lifespan=lifespan, title="kaspi-identity portal", docs_url=None, redoc_url=None)
    app.state.portal = config
    app.state.portal_mail = mail
    app.state.portal_sms = sms
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_key,
        https_only=base.startswith("https://"),
        same_site="lax",
    )
    app.include_router(
        identity_router(
            confirm_page=CONFIRM_PAGE,
            reset_page=RESET_PAGE,
            email_change_page=EMAIL_CHANGE_PAGE,
            email_undo_page=EMAIL_UNDO_PAGE,
        ),
        prefix=PREFIX,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _pages(app, Jinja2Templates(directory=HERE / "templates"), config)
    return app


# --------------------------------------------------------------------------- helpers


def page_language(request: Request) -> str:
    """The page's language: the switcher's cookie, else the browser's ``Accept-Language``."""
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGUAGES else request_language(request)


Lang = Annotated[str, Depends(page_language)]
Service = Annotated[AsyncIdentityService, Depends(get_identity_service)]
Account = Annotated["str | None", Depends(optional_account)]


def _had_session(request: Request) -> bool:
    # Declared before ``optional_account`` so it sees the session before a stale one is cleared.
    return bool(request.session.get(_LOGGED_IN))


HadSession = Annotated[bool, Depends(_had_session)]


def _csrf(request: Request) -> str:
    token = request.session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


class _BadForm(Exception):
    """The form's CSRF token is missing or not this session's."""


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    values = {key: value for key, value in data.items() if isinstance(value, str)}
    expected = request.session.get(_CSRF)
    sent = values.pop("csrf", "")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise _BadForm
    return values


def _local(target: str | None) -> str:
    """A redirect target that stays on this site (``/path``), else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _linkify(body: str) -> Markup:
    escaped = str(escape(body))  # every character of the letter escaped before the anchors
    linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
    return Markup(linked)  # noqa: S704 - built from escaped text only


def _violations(result: PolicyResult, lang: str, errors: dict[str, list[dict[str, str]]]) -> None:
    for violation in result.violations:
        where = "confirmation" if violation.code == "confirmation_mismatch" else "password"
        errors.setdefault(where, []).append(
            {"code": violation.code, "message": violation.message(lang)}
        )
    for hint in result.hints:
        errors.setdefault("password", []).append({"code": hint.code, "message": hint.message(lang)})


def _refusal(
    exc: Exception, lang: str, errors: dict[str, list[dict[str, str]]], *, field: str
) -> bool:
    """Put a typed error of bad input under its field; ``False`` for anything else."""
    if isinstance(exc, InvalidCodeError):
        errors.setdefault("code", []).append(
            {"code": exc.reason, "message": text(f"code_{exc.reason}", lang)}
        )
    elif isinstance(exc, ExpiredTokenError):
        errors.setdefault("", []).append(
            {"code": "expired_link", "message": text("expired_link", lang)}
        )
    elif isinstance(exc, InvalidTokenError):
        errors.setdefault("", []).append(
            {"code": "invalid_link", "message": text("invalid_link", lang)}
        )
    elif isinstance(exc, InvalidIdentifierError):
        where = exc.field if exc.field in {"email", "username"} else field
        errors.setdefault(where, []).append({"code": exc.code, "message": exc.message(lang)})
    elif isinstance(exc, InvalidPhoneError | InvalidIinError):
        errors.setdefault("phone", []).append({"code": exc.reason, "message": exc.message(lang)})
    elif isinstance(exc, InvalidPasswordError):
        errors.setdefault("password", []).append(
            {"code": "invalid_password", "message": text("fix_errors", lang)}
        )
    else:
        return False
    return True


def _limited(wait: timedelta | None, lang: str) -> dict[str, str]:
    """A rate limit's refusal: how long to wait, in whole seconds (at least 1)."""
    seconds = 1 if wait is None else max(1, math.ceil(wait.total_seconds()))
    return {"code": "rate_limited", "message": text("rate_limited", lang, seconds=str(seconds))}


def _contact_refusal(
    result: ContactChangeResult, lang: str, *, password: str, field: str
) -> tuple[int, dict[str, list[dict[str, str]]]]:
    """A refused change of e-mail or phone: the status and the errors under their fields."""
    if result.reason == "throttled":
        return 429, {"": [_limited(result.retry_after, lang)]}
    if result.reason == "wrong_password":
        return 422, {
            password: [{"code": "wrong_password", "message": text("wrong_password", lang)}]
        }
    key = "contact_conflict" if result.reason == "conflict" else result.reason
    where = field if result.reason == "unchanged" else ""
    return 422, {where: [{"code": result.reason, "message": text(key, lang)}]}


# --------------------------------------------------------------------------- pages


def _pages(app: FastAPI, templates: Jinja2Templates, config: PortalConfig) -> None:
    def show(
        request: Request,
        name: str,
        lang: str,
        *,
        status: int = 200,
        errors: dict[str, list[dict[str, str]]] | None = None,
        values: Mapping[str, str] | None = None,
        notice: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        flash = request.session.pop(_FLASH, None)
        service: AsyncIdentityService = app.state.kaspi_identity
        document = service.policy.document(lang)
        errors = errors or {}
        summary = [e for items in errors.values() for e in items]
        response = templates.TemplateResponse(
            request,
            name,
            {
                "lang": lang,
                "t": lambda key, **params: text(key, lang, **params),
                "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
                "path": request.url.path,
                "csrf": _csrf(request),
                "dev": config.dev,
                "policy_name": config.policy_name,
                "requirements": document["requirements"],
                "layout_hint": render("hint.keyboard_layout", lang),
                "mismatch": render("violation.confirmation_mismatch", lang),
                "errors": errors,
                "summary": summary,
                "values": values or {},
                "notice": notice or (text(flash, lang) if isinstance(flash, str) else None),
                **context,
            },
            status_code=status,
            headers={"Cache-Control": "no-store", "Content-Language": lang},
        )
        return response

    async def refused(
        request: Request,
        lang: str,
        page: str,
        field: str,
        ask: Callable[[], Awaitable[ResetRequestResult]],
        **context: Any,
    ) -> Response | None:
        """Run a request that answers alike for every account (a letter, an SMS).

        The page again with the reason when the input is refused (422) or the request is
        rate-limited (429); ``None`` when it was accepted.
        """
        errors: dict[str, list[dict[str, str]]] = {}
        try:
            result = await ask()
        except Exception as exc:
            if not _refusal(exc, lang, errors, field=field):
                raise
            return show(request, page, lang, status=422, errors=errors, **context)
        if not result.accepted:
            errors[""] = [_limited(result.retry_after, lang)]
            return show(request, page, lang, status=429, errors=errors, **context)
        return None

    def moved(request: Request, to: str, flash: str | None = None) -> RedirectResponse:
        if flash is not None:
            request.session[_FLASH] = flash
        return RedirectResponse(to, status_code=303)

    @app.exception_handler(_BadForm)
    async def bad_form(request: Request, exc: _BadForm) -> Response:
        lang = page_language(request)
        errors = {"": [{"code": "bad_form", "message": text("bad_form", lang)}]}
        return show(
            request, "notice.html", lang, status=400, errors=errors, title=text("portal", lang)
        )

    @app.get("/lang/{code}", include_in_schema=False)
    async def switch_language(code: str, next: str | None = None) -> Response:
        response = RedirectResponse(_local(next), status_code=303)
        if code in LANGUAGES:
            response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, samesite="lax")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request, lang: Lang, account: Account) -> Response:
        if account is not None:
            return moved(request, "/cabinet")
        return show(request, "home.html", lang)

    # -- registration ---------------------------------------------------------------------

    @app.get("/register", response_class=HTMLResponse, include_in_schema=False)
    async def register_page(request: Request, lang: Lang) -> Response:
        return show(request, "register.html", lang)

    @app.post("/register", response_class=HTMLResponse, include_in_schema=False)
    async def register(request: Request, lang: Lang, service: Service) -> Response:
        form = await _form(request)
        values = {k: form.get(k, "") for k in ("email", "username", "phone")}
        errors: dict[str, list[dict[str, str]]] = {}
        if not values["email"].strip():
            errors["email"] = [{"code": "missing", "message": text("required", lang)}]
            return show(request, "register.html", lang, status=422, errors=errors, values=values)
        try:
            result = await service.register(
                email=values["email"],
                username=values["username"].strip() or None,
                phone=values["phone"].strip() or None,
                password=form.get("password", ""),
                confirmation=form.get("confirmation", ""),
                client_key=client_address(request),
                language=lang,
            )
        except Exception as exc:
            if not _refusal(exc, lang, errors, field="email"):
                raise
            return show(request, "register.html", lang, status=422, errors=errors, values=values)
        if result.ok:
            return show(request, "registered.html", lang, email=values["email"])
        if not result.policy:
            _violations(result.policy, lang, errors)
        elif result.retry_after is not None:
            errors[""] = [_limited(result.retry_after, lang)]
        else:
            errors["username"] = [
                {"code": "username_taken", "message": text("username_taken", lang)}
            ]
        return show(request, "register.html", lang, status=422, errors=errors, values=values)

    @app.post("/register/resend", response_class=HTMLResponse, include_in_schema=False)
    async def resend(request: Request, lang: Lang, service: Service) -> Response:
        form = await _form(request)
        email = form.get("email", "")
        answer = await refused(
            request,
            lang,
            "registered.html",
            "email",
            lambda: service.resend_confirmation(email, client_key=client_address(request)),
            email=email,
        )
        if answer is not None:
            return answer
        return show(request, "registered.html", lang, email=email, notice=text("resent", lang))

    @app.get(CONFIRM_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def confirm_page(request: Request, lang: Lang) -> Response:
        if link_token(request, "confirm") is None:
            errors = {"": [{"code": "invalid_link", "message": text("invalid_link", lang)}]}
            return show(
                request,
                "notice.html",
                lang,
                status=400,
                errors=errors,
                title=text("confirm_title", lang),
            )
        return show(request, "confirm.html", lang)

    @app.post(CONFIRM_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def confirm(request: Request, lang: Lang, service: Service) -> Response:
        await _form(request)
        token = link_token(request, "confirm")
        errors: dict[str, list[dict[str, str]]] = {}
        response: Response
        try:
            if token is None:
                raise InvalidTokenError("no token")
            await service.confirm_email(token)
        except InvalidTokenError as exc:
            _refusal(exc, lang, errors, field="")
            response = show(
                request,
                "notice.html",
                lang,
                status=400,
                errors=errors,
                title=text("confirm_title", lang),
            )
        else:
            response = moved(request, "/login", flash="confirmed")
        forget_link(response, request, "confirm", path=CONFIRM_LINK)
        return response

    # -- log-in ---------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request, lang: Lang) -> Response:
        return show(request, "login.html", lang)

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login(request: Request, lang: Lang, service: Service) -> Response:
        form = await _form(request)
        identifier = form.get("identifier", "")
        values = {"identifier": identifier}
        errors: dict[str, list[dict[str, str]]] = {}
        try:
            result = await service.authenticate(
                identifier, form.get("password", ""), client_key=client_address(request)
            )
        except Exception as exc:
            if not _refusal(exc, lang, errors, field="identifier"):
                raise
            return show(request, "login.html", lang, status=422, errors=errors, values=values)
        start_session(request, result)
        if result.ok:
            request.session[_LOGGED_IN] = True
            if result.needs_password_change:
                return moved(request, "/cabinet/password", flash="must_change")
            return moved(request, "/cabinet")
        if result.reason == "password_expired":
            errors[""] = [{"code": "password_expired", "message": text("password_expired", lang)}]
        elif result.reason == "throttled" and result.account_id is None:
            errors[""] = [_limited(result.retry_after, lang)]
        else:
            errors[""] = [{"code": "login_failed", "message": text("login_failed", lang)}]
        return show(request, "login.html", lang, status=401, errors=errors, values=values)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await _form(request)
        request.session.clear()
        return moved(request, "/login", flash="logged_out")

    # -- the cabinet ----------------------------------------------------------------------

    def cabinet_account(request: Request, had: bool, account: str | None) -> str | Response:
        """The live session's account, or the way to the log-in page (saying why)."""
        if account is None:
            return moved(request, "/login", flash="session_ended" if had else None)
        return account

    async def must_change(request: Request, account: str, lang: str) -> bool:
        try:
            await current_account(request, account, lang)
        except HTTPException as exc:
            return exc.status_code == 403  # the log-in asked for a change of password first
        return False

    @app.get("/cabinet", response_class=HTMLResponse, include_in_schema=False)
    async def cabinet(request: Request, had: HadSession, lang: Lang, account: Account) -> Response:
        who = cabinet_account(request, had, account)
        if isinstance(who, Response):
            return who
        if await must_change(request, who, lang):
            return moved(request, "/cabinet/password", flash="must_change")
        return await cabinet_page(request, lang, who)

    async def cabinet_page(
        request: Request,
        lang: str,
        who: str,
        *,
        status: int = 200,
        errors: dict[str, list[dict[str, str]]] | None = None,
        values: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The cabinet with the account's address and phone, and a form for each change."""
        service: AsyncIdentityService = app.state.kaspi_identity
        record = await service.storage.accounts.get(who)
        return show(
            request, "cabinet.html", lang, status=status, errors=errors, values=values,
            account=who, me=record,
        )  # fmt: skip

    async def cabinet_form(
        request: Request, had: bool, lang: str, account: str | None
    ) -> tuple[str, dict[str, str]] | Response:
        """A cabinet form's fields, once its session is live and free to change things."""
        form = await _form(request)
        who = cabinet_account(request, had, account)
        if isinstance(who, Response):
            return who
        if await must_change(request, who, lang):
            return moved(request, "/cabinet/password", flash="must_change")
        return who, form

    async def contact_change(
        request: Request,
        lang: str,
        who: str,
        change: Callable[[], Awaitable[ContactChangeResult]],
        *,
        password: str,
        field: str,
        done: str,
        values: Mapping[str, str] | None = None,
    ) -> Response:
        """Run a change of e-mail or phone; back to the cabinet saying ``done``, or why not."""
        errors: dict[str, list[dict[str, str]]] = {}
        try:
            result = await change()
        except Exception as exc:
            if not _refusal(exc, lang, errors, field=field):
                raise
            return await cabinet_page(request, lang, who, status=422, errors=errors, values=values)
        keep_session(request, result)  # a completed change ends the other sessions only
        if result.ok:
            return moved(request, "/cabinet", flash=done)
        status, errors = _contact_refusal(result, lang, password=password, field=field)
        return await cabinet_page(request, lang, who, status=status, errors=errors, values=values)

    @app.post("/cabinet/email", response_class=HTMLResponse, include_in_schema=False)
    async def change_email(
        request: Request, had: HadSession, lang: Lang, account: Account, service: Service
    ) -> Response:
        got = await cabinet_form(request, had, lang, account)
        if isinstance(got, Response):
            return got
        who, form = got
        email = form.get("email", "")
        if not email.strip():
            errors = {"email": [{"code": "missing", "message": text("required", lang)}]}
            return await cabinet_page(request, lang, who, status=422, errors=errors)
        return await contact_change(
            request,
            lang,
            who,
            lambda: service.request_email_change(
                who, form.get("email_password", ""), email, client_key=client_address(request)
            ),
            password="email_password",
            field="email",
            done="email_change_sent",
            values={"email": email},
        )

    @app.post("/cabinet/phone", response_class=HTMLResponse, include_in_schema=False)
    async def change_phone(
        request: Request, had: HadSession, lang: Lang, account: Account, service: Service
    ) -> Response:
        got = await cabinet_form(request, had, lang, account)
        if isinstance(got, Response):
            return got
        who, form = got
        number = form.get("phone", "")
        return await contact_change(
            request,
            lang,
            who,
            lambda: service.request_phone_change(
                who, form.get("phone_password", ""), number, client_key=client_address(request)
            ),
            password="phone_password",
            field="phone",
            done="phone_code_sent",
            values={"phone": number},
        )

    @app.post("/cabinet/phone/verify", response_class=HTMLResponse, include_in_schema=False)
    async def verify_phone(
        request: Request, had: HadSession, lang: Lang, account: Account, service: Service
    ) -> Response:
        got = await cabinet_form(request, had, lang, account)
        if isinstance(got, Response):
            return got
        who, form = got
        return await contact_change(
            request,
            lang,
            who,
            lambda: service.verify_phone(who, form.get("code", "")),
            password="code",
            field="code",
            done="phone_verified",
        )

    @app.post("/cabinet/phone/remove", response_class=HTMLResponse, include_in_schema=False)
    async def remove_phone(
        request: Request, had: HadSession, lang: Lang, account: Account, service: Service
    ) -> Response:
        got = await cabinet_form(request, had, lang, account)
        if isinstance(got, Response):
            return got
        who, form = got
        return await contact_change(
            request,
            lang,
            who,
            lambda: service.remove_phone(
                who, form.get("remove_password", ""), client_key=client_address(request)
            ),
            password="remove_password",
            field="remove_password",
            done="phone_removed",
        )

    @app.get("/cabinet/password", response_class=HTMLResponse, include_in_schema=False)
    async def change_page(
        request: Request, had: HadSession, lang: Lang, account: Account
    ) -> Response:
        who = cabinet_account(request, had, account)
        if isinstance(who, Response):
            return who
        return show(request, "change.html", lang)

    @app.post("/cabinet/password", response_class=HTMLResponse, include_in_schema=False)
    async def change(
        request: Request, had: HadSession, lang: Lang, account: Account, service: Service
    ) -> Response:
        form = await _form(request)
        who = cabinet_account(request, had, account)
        if isinstance(who, Response):
            return who
        errors: dict[str, list[dict[str, str]]] = {}
        try:
            result = await service.change_password(
                who,
                form.get("current", ""),
                form.get("password", ""),
                form.get("confirmation", ""),
                client_key=client_address(request),
            )
        except Exception as exc:
            if not _refusal(exc, lang, errors, field="password"):
                raise
            return show(request, "change.html", lang, status=422, errors=errors)
        keep_session(request, result)
        if result.ok:
            return moved(request, "/cabinet", flash="password_changed")
        if result.reason == "policy":
            _violations(result.policy, lang, errors)
        elif result.reason == "throttled":
            errors[""] = [_limited(result.retry_after, lang)]
        elif result.reason in {"conflict", "locked", "too_soon"}:
            errors[""] = [{"code": result.reason, "message": text(result.reason, lang)}]
        else:
            errors["current"] = [
                {"code": "wrong_password", "message": text("wrong_password", lang)}
            ]
        return show(request, "change.html", lang, status=422, errors=errors)

    # -- forgot password: by user name or e-mail --------------------------------------------

    @app.get("/password/forgot", response_class=HTMLResponse, include_in_schema=False)
    async def forgot_page(request: Request, lang: Lang) -> Response:
        return show(request, "forgot.html", lang)

    @app.post("/password/forgot", response_class=HTMLResponse, include_in_schema=False)
    async def forgot(request: Request, lang: Lang, service: Service) -> Response:
        form = await _form(request)
        identifier = form.get("identifier", "")
        answer = await refused(
            request,
            lang,
            "forgot.html",
            "identifier",
            lambda: service.request_password_reset(identifier, client_key=client_address(request)),
            values={"identifier": identifier},
        )
        if answer is not None:
            return answer
        return show(request, "forgot.html", lang, notice=text("letter_sent", lang), sent=True)

    # -- forgot password: by phone --------------------------------------------------------

    @app.get("/password/forgot/phone", response_class=HTMLResponse, include_in_schema=False)
    async def phone_page(request: Request, lang: Lang) -> Response:
        return show(request, "phone.html", lang)

    @app.post("/password/forgot/phone", response_class=HTMLResponse, include_in_schema=False)
    async def phone(request: Request, lang: Lang, service: Service) -> Response:
        form = await _form(request)
        number = form.get("phone", "")
        answer = await refused(
            request,
            lang,
            "phone.html",
            "phone",
            lambda: service.request_sms_reset(number, client_key=client_address(request)),
            values={"phone": number},
        )
        if answer is not None:
            return answer
        return show(request, "code.html", lang, notice=text("code_sent", lang), phone=number)

    @app.post("/password/code", response_class=HTMLResponse, include_in_schema=False)
    async def code(request: Request, lang: Lang, service: Service) -> Response:
        form = await _form(request)
        number = form.get("phone", "")
        errors: dict[str, list[dict[str, str]]] = {}
        try:
            grant = await service.verify_sms_code(number, form.get("code", ""))
        except Exception as exc:
            if not _refusal(exc, lang, errors, field="code"):
                raise
            return show(request, "code.html", lang, status=422, errors=errors, phone=number)
        # The grant never travels in a URL: the next form carries it in its body.
        return show(request, "new_password.html", lang, grant=grant)

    # -- the new password (a letter's link, or an SMS grant) ---------------------------------

    @app.get(RESET_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def new_password_page(request: Request, lang: Lang) -> Response:
        if link_token(request, "reset") is None:
            errors = {"": [{"code": "invalid_link", "message": text("invalid_link", lang)}]}
            return show(
                request,
                "notice.html",
                lang,
                status=400,
                errors=errors,
                title=text("new_password_title", lang),
            )
        return show(request, "new_password.html", lang, grant=None)

    @app.post(RESET_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def new_password(request: Request, lang: Lang, service: Service) -> Response:
        form = await _form(request)
        grant = form.get("grant") or None
        token = grant or link_token(request, "reset")
        errors: dict[str, list[dict[str, str]]] = {}
        response: Response
        try:
            if token is None:
                raise InvalidTokenError("no token")
            result = await service.reset_password(
                token, form.get("password", ""), form.get("confirmation", "")
            )
        except Exception as exc:
            if not _refusal(exc, lang, errors, field="password"):
                raise
            dead = isinstance(exc, InvalidTokenError)
            name = "notice.html" if dead else "new_password.html"
            title = text("new_password_title", lang)
            response = show(
                request,
                name,
                lang,
                status=400 if dead else 422,
                errors=errors,
                grant=grant,
                title=title,
            )
            if dead:
                forget_link(response, request, "reset", path=RESET_LINK)
            return response
        if not result.ok:
            _violations(result.policy, lang, errors)
            return show(request, "new_password.html", lang, status=422, errors=errors, grant=grant)
        response = moved(request, "/login", flash="password_reset")
        forget_link(response, request, "reset", path=RESET_LINK)
        return response

    # -- a change of address: the new address's link, the old address's undo ---------------

    def link_page(
        request: Request, lang: str, kind: Any, *, title: str, lead: str, button: str
    ) -> Response:
        if link_token(request, kind) is None:
            errors = {"": [{"code": "invalid_link", "message": text("invalid_link", lang)}]}
            return show(request, "notice.html", lang, status=400, errors=errors, title=title)
        return show(request, "link.html", lang, title=title, lead=lead, button=button)

    def dead_link(request: Request, lang: str, exc: Exception, title: str) -> Response:
        errors: dict[str, list[dict[str, str]]] = {}
        _refusal(exc, lang, errors, field="")
        return show(request, "notice.html", lang, status=400, errors=errors, title=title)

    @app.get(EMAIL_CHANGE_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def email_change_page(request: Request, lang: Lang) -> Response:
        return link_page(
            request,
            lang,
            "email_change",
            title=text("email_change_title", lang),
            lead=text("email_change_lead", lang),
            button=text("confirm", lang),
        )

    @app.post(EMAIL_CHANGE_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def email_change_confirm(
        request: Request, lang: Lang, account: Account, service: Service
    ) -> Response:
        await _form(request)
        token = link_token(request, "email_change")
        title = text("email_change_title", lang)
        response: Response
        try:
            if token is None:
                raise InvalidTokenError("no token")
            result = await service.confirm_email_change(token)
        except InvalidTokenError as exc:
            response = dead_link(request, lang, exc, title)
        else:
            keep_session(request, result)  # this browser, if it is the account's, goes on
            if result.ok:
                response = moved(
                    request, "/cabinet" if account else "/login", flash="email_changed"
                )
            else:
                _, errors = _contact_refusal(result, lang, password="", field="")
                response = show(
                    request, "notice.html", lang, status=409, errors=errors, title=title
                )
        forget_link(response, request, "email_change", path=EMAIL_CHANGE_LINK)
        return response

    @app.get(EMAIL_UNDO_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def email_undo_page(request: Request, lang: Lang) -> Response:
        return link_page(
            request,
            lang,
            "email_undo",
            title=text("undo_title", lang),
            lead=text("undo_lead", lang),
            button=text("undo_button", lang),
        )

    @app.post(EMAIL_UNDO_PAGE, response_class=HTMLResponse, include_in_schema=False)
    async def email_undo(request: Request, lang: Lang, service: Service) -> Response:
        await _form(request)
        token = link_token(request, "email_undo")
        response: Response
        try:
            if token is None:
                raise InvalidTokenError("no token")
            await service.undo_email_change(token)
        except InvalidTokenError as exc:
            response = dead_link(request, lang, exc, text("undo_title", lang))
        else:
            request.session.clear()  # every session of the account has ended, this one too
            response = moved(request, "/login", flash="email_restored")
        forget_link(response, request, "email_undo", path=EMAIL_UNDO_LINK)
        return response

    # -- development: the mailbox ---------------------------------------------------------

    if config.dev:

        @app.get("/dev/mailbox", response_class=HTMLResponse, include_in_schema=False)
        async def mailbox(request: Request, lang: Lang) -> Response:
            mail: DevMailServer = app.state.portal_mail
            sms: Any = app.state.portal_sms
            letters = [
                {"to": m.to, "subject": m.subject, "body": _linkify(m.body), "at": m.received}
                for m in reversed(mail.letters)
            ]
            texts = [
                {"to": s.to, "body": s.body, "at": s.received}
                for s in reversed(getattr(sms, "texts", []))
            ]
            return show(request, "mailbox.html", lang, letters=letters, texts=texts)
