"""``identity_router``: every account flow as JSON endpoints over ``AsyncIdentityService``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from kaspi_identity._errors import InvalidTokenError, KaspiIdentityError
from kaspi_identity.contrib import _web
from kaspi_identity.contrib.fastapi._models import (
    AccountAnswer,
    ChangePasswordForm,
    CodeForm,
    ConfirmForm,
    EmailChangeForm,
    GrantAnswer,
    IdentifierForm,
    LinkState,
    LoginAnswer,
    LoginForm,
    MessageAnswer,
    PasswordForm,
    PhoneChangeForm,
    PhoneCodeForm,
    PhoneForm,
    Problem,
    RegisterForm,
    ResetForm,
    TimeZoneForm,
)
from kaspi_identity.i18n import DEFAULT_LANGUAGE
from kaspi_identity.services import (
    AsyncIdentityService,
    ContactChangeResult,
    LoginResult,
    PasswordChangeResult,
)

__all__ = [
    "CurrentAccount",
    "client_address",
    "current_account",
    "forget_link",
    "get_identity_service",
    "identity_lifespan",
    "identity_router",
    "keep_session",
    "link_token",
    "optional_account",
    "request_language",
    "start_session",
]

#: Where the service lives: ``app.state.kaspi_identity``.
STATE_KEY = "kaspi_identity"


def get_identity_service(request: Request) -> AsyncIdentityService:
    """The dependency that yields the app's service, ``app.state.kaspi_identity``.

    Set it once, at start-up (in the lifespan, or right after building the app). Override
    it in tests with ``app.dependency_overrides[get_identity_service]``.

    Raises:
        RuntimeError: the app has no service.
    """
    service = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(service, AsyncIdentityService):
        raise RuntimeError(
            "set app.state.kaspi_identity = AsyncIdentityService(...) before serving requests"
        )
    return service


def identity_lifespan(
    build: Callable[[], AsyncIdentityService],
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that builds the service and closes its stores.

    At start-up ``build()`` runs inside the event loop and its service becomes
    ``app.state.kaspi_identity``; at shutdown the service's storage is closed
    (``await storage.aclose()``: files, connections, worker threads). An app with a lifespan
    of its own sets ``app.state.kaspi_identity`` there instead.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        service = build()
        if not isinstance(service, AsyncIdentityService):
            raise TypeError(
                f"build() must return an AsyncIdentityService, not {type(service).__name__}"
            )
        setattr(app.state, STATE_KEY, service)
        try:
            yield
        finally:
            await service.storage.aclose()

    return lifespan


def request_language(request: Request) -> str:
    """The dependency that negotiates the answer's language (kk/ru/en) from ``Accept-Language``.

    The fallback is the router's ``default_language`` (``"en"`` outside the router).
    """
    default = request.scope.get("kaspi_identity.default_language", DEFAULT_LANGUAGE)
    return _web.negotiate_language(request.headers.get("accept-language"), default=default)


def client_address(request: Request) -> str:
    """The client key of the rate limits: the client's IP address as the server saw it.

    Behind a reverse proxy, run the server so that it reports the client's address (for
    uvicorn ``--proxy-headers --forwarded-allow-ips=...``), never from a header any client
    can set; or pass ``client_key=`` to :func:`identity_router`.
    """
    return request.client.host if request.client else "unknown"


def _session(request: Request) -> Any:
    if "session" not in request.scope:
        raise RuntimeError(
            "add starlette.middleware.sessions.SessionMiddleware to the app: the log-in keeps"
            " the account and its security stamp in the session"
        )
    return request.session


async def optional_account(
    request: Request,
    service: Annotated[AsyncIdentityService, Depends(get_identity_service)],
) -> str | None:
    """The dependency that gives the logged-in account id, or ``None``.

    It enforces the security stamp: a session whose account changed its password (a change
    elsewhere, a reset) or e-mail since the log-in is cleared, and answers ``None``.
    """
    session = _session(request)
    held = _web.session_credentials(session)
    if held is None:
        return None
    if not await service.session_is_current(*held):
        session.clear()
        return None
    return held[0]


async def current_account(
    request: Request,
    account: Annotated[str | None, Depends(optional_account)],
    lang: Annotated[str, Depends(request_language)],
) -> str:
    """The dependency for views that need a live session: the account id, or a 401 / 403.

    A session whose log-in said the password must be changed (``needs_password_change``)
    gets a 403 ``password_change_required`` until it is changed: before anything else, as
    the log-in asked.

    Raises:
        HTTPException: 401 ``not_logged_in`` or 403 ``password_change_required``;
            ``detail`` is the :class:`Problem` body.
    """
    if account is None:
        raise HTTPException(status_code=401, detail=_web.not_logged_in(lang).body)
    if _web.pending_change(_session(request)) is not None:
        raise HTTPException(status_code=403, detail=_web.change_required(lang).body)
    return account


def start_session(request: Request, result: LoginResult) -> None:
    """Keep what a log-in's result means in the session, exactly as ``POST /login`` does.

    For a host's own log-in page (a server-rendered form, say) that calls
    ``service.authenticate`` itself: a successful log-in starts a fresh session holding the
    account and its security stamp (and a change of password the log-in asked for), so
    :func:`current_account` and :func:`optional_account` accept it; ``password_expired``
    leaves only that account's right to change its password; any other refusal leaves the
    session as it was.

    Raises:
        RuntimeError: the app has no ``SessionMiddleware``.
    """
    session = _session(request)
    if result.ok:
        _web.start_session(session, result)
    elif result.reason == "password_expired":
        _web.expired_session(session, result)


def keep_session(request: Request, result: PasswordChangeResult | ContactChangeResult) -> None:
    """After a change of password, e-mail or phone: this session takes the new stamp.

    As the router's endpoints do, after ``service.change_password``,
    ``confirm_email_change``, ``verify_phone`` or ``remove_phone``: every other session of
    the account ends (their stamp is old); a change of e-mail or phone renews only a session
    of the account changed; a refused change leaves the session as it was.

    Raises:
        RuntimeError: the app has no ``SessionMiddleware``.
    """
    _web.keep_session(_session(request), result)


def link_token(request: Request, kind: _web.LinkKind) -> str | None:
    """The token a link's page moved into its cookie, or ``None`` (for a host's own form).

    ``kind`` is ``"confirm"``, ``"reset"``, ``"email_change"`` or ``"email_undo"``. The
    cookie is limited to the path where the router serves the link (``<prefix>/confirm``,
    ``<prefix>/password/reset``, ``<prefix>/email/confirm``, ``<prefix>/email/undo``), so the
    form that sends it must post to that path or below it (``<prefix>/password/reset/new``).
    """
    return request.cookies.get(_web.link_cookie_name(kind))


def forget_link(response: Response, request: Request, kind: _web.LinkKind, *, path: str) -> None:
    """Clear the link's cookie (served at ``path``) once it is used or found dead."""
    if _web.link_cookie_name(kind) in request.cookies:
        response.delete_cookie(
            _web.link_cookie_name(kind),
            path=path,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )


#: ``account_id: CurrentAccount`` in a view's parameters: the live session's account, or 401.
CurrentAccount = Annotated[str, Depends(current_account)]

Service = Annotated[AsyncIdentityService, Depends(get_identity_service)]
Language = Annotated[str, Depends(request_language)]
Live = Annotated[str | None, Depends(optional_account)]


def _send(answer: _web.Answer, lang: str | None = None) -> JSONResponse:
    headers = {"Cache-Control": "no-store", **answer.headers}
    if lang is not None:
        headers["Content-Language"] = lang
        headers["Vary"] = "Accept-Language"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "The link, grant or code is invalid, used or expired (`invalid_link`, "
        "`expired_link`, `invalid_code` with `reason`).",
        401: "Not logged in, or (log-in) one answer for every failure: `login_failed`.",
        403: "`password_expired` (log-in: change it now), `wrong_password`, `locked` (the"
        " account must be reset), `too_soon` (with `retry_after`), `password_change_required`.",
        409: "`username_taken`; `conflict` (the account changed meanwhile); `unchanged` (the"
        " account has that address or verified number already); `no_phone`.",
        422: "`invalid_request` (a field missing or not text: `field`); `password_policy` with"
        " `violations` (codes, params, messages) and `hints`; `invalid_identifier`,"
        " `invalid_phone`, `invalid_iin`, `invalid_time_zone`.",
        429: "`rate_limited`: try again after the `Retry-After` header's seconds.",
    }
    return {
        status: {
            "model": Problem,
            "description": described[status],
            **(
                {"headers": {"Retry-After": {"schema": {"type": "integer"}}}}
                if status == 429
                else {}
            ),
        }
        for status in statuses
    }


class _IdentityRoute(APIRoute):
    """A body that is not the model gets the ``invalid_request`` answer of both frameworks.

    FastAPI's own 422 (``{"detail": [...]}``) is set per app; this keeps the router's
    answers one shape (a :class:`Problem`) without touching the host's other routes.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                lang = request_language(request)
                return _send(_web.invalid_request(_field_of(exc), lang), lang)

        return route


def _field_of(exc: RequestValidationError) -> str:
    """The first field a validation error names (``"body"`` for a body that is no object)."""
    for error in exc.errors():
        names = [part for part in error.get("loc", ()) if isinstance(part, str)]
        if names and names[-1] != "body":
            return names[-1]
    return "body"


def identity_router(
    *,
    default_language: str = DEFAULT_LANGUAGE,
    confirm_page: str | None = None,
    reset_page: str | None = None,
    email_change_page: str | None = None,
    email_undo_page: str | None = None,
    client_key: Callable[[Request], str] = client_address,
    tags: Sequence[str] = ("identity",),
) -> APIRouter:
    """An :class:`~fastapi.APIRouter` with every account flow as a JSON endpoint.

    Include it with a prefix (``app.include_router(identity_router(), prefix="/auth")``) and
    point :class:`IdentitySettings` ``confirm_url`` at ``<prefix>/confirm``, ``reset_url``
    at ``<prefix>/password/reset``, ``email_change_url`` at ``<prefix>/email/confirm`` and
    ``email_undo_url`` at ``<prefix>/email/undo``. The service comes from
    :func:`get_identity_service`; the log-in needs Starlette's ``SessionMiddleware``.

    Args:
        default_language: the language of answers when ``Accept-Language`` names none of
            kk/ru/en.
        confirm_page: where a confirmation link's page sends the browser once the token is
            in a cookie: the host's page with the "Confirm" button, which posts to
            ``<prefix>/confirm``. Default: the same path, whose ``GET`` answers
            :class:`LinkState`.
        reset_page: likewise for a reset link: the host's page with the two password fields,
            which posts to ``<prefix>/password/reset``.
        email_change_page: likewise for the link that confirms a new address (posts to
            ``<prefix>/email/confirm``).
        email_undo_page: likewise for the undo link sent to the old address (posts to
            ``<prefix>/email/undo``).
        client_key: who is asking, for the rate limits (default :func:`client_address`).
        tags: the OpenAPI tags of the endpoints.

    Raises:
        UnknownLanguageError: ``default_language`` has no catalog.
    """
    default = _web.negotiate_language(None, default=default_language)

    async def with_default(request: Request) -> None:
        request.scope["kaspi_identity.default_language"] = default

    router = APIRouter(
        tags=list(tags), dependencies=[Depends(with_default)], route_class=_IdentityRoute
    )

    async def run(lang: str, call: Callable[[], Awaitable[_web.Answer]]) -> JSONResponse:
        try:
            answer = await call()
        except KaspiIdentityError as exc:
            refused = _web.error_answer(exc, lang)
            if refused is None:
                raise
            answer = refused
        return _send(answer, lang)

    def landing(kind: _web.LinkKind, page: str | None) -> Any:
        async def open_link(
            request: Request, service: Service, token: str | None = None
        ) -> Response:
            cookie = _web.link_cookie(kind, request.url.path, service.settings)
            if token is None:
                state = LinkState(link=kind, pending=cookie.name in request.cookies)
                return JSONResponse(state.model_dump(), headers=dict(_web.LINK_HEADERS))
            moved = RedirectResponse(page or request.url.path, status_code=303)
            moved.headers.update(_web.LINK_HEADERS)
            if len(token) <= _web.TOKEN_COOKIE_LIMIT:  # garbage too long for a cookie
                moved.set_cookie(
                    cookie.name,
                    token,
                    max_age=cookie.max_age,
                    path=cookie.path,
                    secure=cookie.secure,
                    httponly=cookie.httponly,
                    samesite=cookie.samesite,
                )
            return moved

        return open_link

    def drop(response: Response, request: Request, kind: _web.LinkKind) -> None:
        forget_link(response, request, kind, path=request.url.path)

    link_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": LinkState},
        303: {"description": "The token is now in a cookie; the browser goes on to the page."},
        **_problems(422),
    }

    router.add_api_route(
        "/confirm",
        landing("confirm", confirm_page),
        methods=["GET"],
        summary="Open a confirmation link (moves its token out of the URL)",
        responses=link_responses,
        response_model=None,
    )
    router.add_api_route(
        "/password/reset",
        landing("reset", reset_page),
        methods=["GET"],
        summary="Open a reset link (moves its token out of the URL)",
        responses=link_responses,
        response_model=None,
    )

    @router.get(
        "/policy",
        summary="The password policy, for a live sign-up checklist",
        response_model=None,
        responses={200: {"description": "`PasswordPolicy.document(lang)`: see the policy page."}},
    )
    async def policy(service: Service, lang: Language) -> Response:
        """The active policy's document (docs/policy.schema.json) in the negotiated language."""
        return _send(_web.policy_answer(service.policy, lang), lang)

    @router.post(
        "/register",
        status_code=202,
        response_model=MessageAnswer,
        responses=_problems(409, 422, 429),
        summary="Register; a confirmation letter follows",
    )
    async def register(
        form: RegisterForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """The same 202 for a new and an already registered address (its owner is told)."""

        async def call() -> _web.Answer:
            result = await service.register(
                email=form.email,
                username=form.username,
                phone=form.phone,
                iin=form.iin,
                names=form.names,
                password=form.password,
                confirmation=form.confirmation,
                client_key=client_key(request),
                language=lang,
            )
            return _web.registration_answer(result, lang)

        return await run(lang, call)

    @router.post(
        "/confirm",
        response_model=AccountAnswer,
        responses=_problems(400, 409, 422),
        summary="Confirm the e-mail address (or a new address, as POST /email/confirm)",
    )
    async def confirm(
        form: ConfirmForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """The token from the body, or from the cookie the link's page set.

        A change-of-address link works here too (``email_change_url`` defaults to
        ``confirm_url``): it answers as ``POST /email/confirm``.
        """
        token = form.token or link_token(request, "confirm")
        if token is None:
            return _send(_web.no_link(lang), lang)

        async def call() -> _web.Answer:
            try:
                account_id = await service.confirm_email(token)
            except InvalidTokenError as first:  # perhaps a new address's link on this page
                try:
                    result = await service.confirm_email_change(token)
                except InvalidTokenError as second:
                    raise _web.token_refusal(first, second) from None
                keep_session(request, result)
                return _web.contact_answer(result, lang, done="email_changed", with_account=True)
            return _web.confirm_answer(account_id, lang)

        response = await run(lang, call)
        drop(response, request, "confirm")
        return response

    @router.post(
        "/confirm/resend",
        status_code=202,
        response_model=MessageAnswer,
        responses=_problems(422, 429),
        summary="Send the confirmation letter again",
    )
    async def resend(
        form: IdentifierForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """The same 202 whether or not an account has the identifier."""

        async def call() -> _web.Answer:
            result = await service.resend_confirmation(
                form.identifier, client_key=client_key(request)
            )
            return _web.request_answer(result, lang)

        return await run(lang, call)

    @router.post(
        "/login",
        response_model=LoginAnswer,
        responses=_problems(401, 403, 422, 429),
        summary="Log in; the session keeps the security stamp",
    )
    async def login(
        form: LoginForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """A fresh session on success; one 401 for every failure."""
        _session(request)

        async def call() -> _web.Answer:
            result = await service.authenticate(
                form.identifier, form.password, client_key=client_key(request)
            )
            start_session(request, result)
            return _web.login_answer(result, lang)

        return await run(lang, call)

    @router.post("/logout", response_model=MessageAnswer, summary="End this session")
    async def logout(request: Request, lang: Language) -> Response:
        """Clears the session."""
        _session(request).clear()
        return _send(_web.logged_out(lang), lang)

    @router.get(
        "/me",
        response_model=AccountAnswer,
        responses=_problems(401),
        summary="The logged-in account (the session's stamp is checked)",
    )
    async def me(
        request: Request,
        account: Annotated[str | None, Depends(optional_account)],
        lang: Language,
    ) -> Response:
        """401 when the session ended, or its account's password or e-mail changed since."""
        if account is None:
            return _send(_web.not_logged_in(lang), lang)
        change = _web.pending_change(_session(request))
        return _send(_web.account_answer(account, lang, change=change), lang)

    @router.post(
        "/password/change",
        response_model=MessageAnswer,
        responses=_problems(401, 403, 409, 422, 429),
        summary="Change the password (also an expired one); every other session ends",
    )
    async def change(
        form: ChangePasswordForm,
        request: Request,
        service: Service,
        lang: Language,
        account: Annotated[str | None, Depends(optional_account)],
    ) -> Response:
        """This session takes the new security stamp and lives on."""
        session = _session(request)
        account = account or _web.expired_account(session)  # after password_expired
        if account is None:
            return _send(_web.not_logged_in(lang), lang)

        async def call() -> _web.Answer:
            result = await service.change_password(
                account,
                form.current,
                form.password,
                form.confirmation,
                client_key=client_key(request),
            )
            keep_session(request, result)
            return _web.change_answer(result, lang)

        return await run(lang, call)

    @router.post(
        "/password/forgot",
        status_code=202,
        response_model=MessageAnswer,
        responses=_problems(422, 429),
        summary="Send a reset link by e-mail",
    )
    async def forgot(
        form: IdentifierForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """The same 202 whether or not an account has the identifier."""

        async def call() -> _web.Answer:
            result = await service.request_password_reset(
                form.identifier, client_key=client_key(request)
            )
            return _web.request_answer(result, lang)

        return await run(lang, call)

    @router.post(
        "/password/forgot/sms",
        status_code=202,
        response_model=MessageAnswer,
        responses=_problems(422, 429),
        summary="Send a reset code by SMS",
    )
    async def forgot_sms(
        form: PhoneForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """The same 202 whether or not the number belongs to an account."""

        async def call() -> _web.Answer:
            result = await service.request_sms_reset(form.phone, client_key=client_key(request))
            return _web.request_answer(result, lang, sms=True)

        return await run(lang, call)

    @router.post(
        "/password/verify-code",
        response_model=GrantAnswer,
        responses=_problems(400, 422),
        summary="Check an SMS code; its grant resets the password",
    )
    async def verify_code(form: CodeForm, service: Service, lang: Language) -> Response:
        """The grant goes in the body of ``POST /password/reset``, never in a URL."""

        async def call() -> _web.Answer:
            return _web.code_answer(await service.verify_sms_code(form.phone, form.code), lang)

        return await run(lang, call)

    @router.post(
        "/password/reset",
        response_model=MessageAnswer,
        responses=_problems(400, 422),
        summary="Set a new password with a link's token or an SMS grant",
    )
    async def reset(
        form: ResetForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """A refused password leaves the link usable; success ends every session."""
        token = form.token or link_token(request, "reset")
        if token is None:
            return _send(_web.no_link(lang), lang)
        done = False

        async def call() -> _web.Answer:
            nonlocal done
            try:
                result = await service.reset_password(token, form.password, form.confirmation)
            except InvalidTokenError:
                done = True
                raise
            done = result.ok
            return _web.reset_answer(result, lang)

        response = await run(lang, call)
        if done:
            drop(response, request, "reset")
        return response

    def live(request: Request, account: str | None, lang: str) -> str | _web.Answer:
        return _web.live_account(_session(request), account, lang)

    @router.post(
        "/email/change",
        status_code=202,
        response_model=MessageAnswer,
        responses=_problems(401, 403, 409, 422, 429),
        summary="Ask to change the e-mail address; a link goes to the new one",
    )
    async def email_change(
        form: EmailChangeForm, request: Request, service: Service, lang: Language, account: Live
    ) -> Response:
        """Nothing changes until the link is opened; a taken address gets the same 202."""
        who = live(request, account, lang)
        if isinstance(who, _web.Answer):
            return _send(who, lang)

        async def call() -> _web.Answer:
            result = await service.request_email_change(
                who, form.password, form.email, client_key=client_key(request)
            )
            return _web.contact_answer(result, lang, done="email_change_sent", status=202)

        return await run(lang, call)

    router.add_api_route(
        "/email/confirm",
        landing("email_change", email_change_page),
        methods=["GET"],
        summary="Open the link that confirms a new address (moves its token out of the URL)",
        responses=link_responses,
        response_model=None,
    )

    @router.post(
        "/email/confirm",
        response_model=AccountAnswer,
        responses=_problems(400, 409, 422),
        summary="Confirm the new address; every other session ends",
    )
    async def email_confirm(
        form: ConfirmForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """The token from the body or the link's cookie; this browser's session lives on."""
        token = form.token or link_token(request, "email_change")
        if token is None:
            return _send(_web.no_link(lang), lang)

        async def call() -> _web.Answer:
            result = await service.confirm_email_change(token)
            keep_session(request, result)
            return _web.contact_answer(result, lang, done="email_changed", with_account=True)

        response = await run(lang, call)
        drop(response, request, "email_change")
        return response

    router.add_api_route(
        "/email/undo",
        landing("email_undo", email_undo_page),
        methods=["GET"],
        summary="Open the undo link sent to the old address (moves its token out of the URL)",
        responses=link_responses,
        response_model=None,
    )

    @router.post(
        "/email/undo",
        response_model=AccountAnswer,
        responses=_problems(400, 422),
        summary="Give the account its old address back; every session ends",
    )
    async def email_undo(
        form: ConfirmForm, request: Request, service: Service, lang: Language
    ) -> Response:
        """The password is removed and a reset link goes to the old address; no session is left."""
        token = form.token or link_token(request, "email_undo")
        if token is None:
            return _send(_web.no_link(lang), lang)

        async def call() -> _web.Answer:
            result = await service.undo_email_change(token)
            if result.ok:
                _session(request).clear()
            return _web.undone_answer(result, lang)

        response = await run(lang, call)
        drop(response, request, "email_undo")
        return response

    @router.post(
        "/phone",
        status_code=202,
        response_model=MessageAnswer,
        responses=_problems(401, 403, 409, 422, 429),
        summary="Add, change or prove the phone; a code goes to the number",
    )
    async def phone_change(
        form: PhoneChangeForm, request: Request, service: Service, lang: Language, account: Live
    ) -> Response:
        """The number waits until ``POST /phone/verify`` gets the code."""
        who = live(request, account, lang)
        if isinstance(who, _web.Answer):
            return _send(who, lang)

        async def call() -> _web.Answer:
            result = await service.request_phone_change(
                who, form.password, form.phone, client_key=client_key(request)
            )
            return _web.contact_answer(result, lang, done="phone_code_sent", status=202)

        return await run(lang, call)

    @router.post(
        "/phone/verify",
        response_model=MessageAnswer,
        responses=_problems(400, 401, 403, 409, 422),
        summary="Check the phone's code; the number is the account's, verified",
    )
    async def phone_verify(
        form: PhoneCodeForm, request: Request, service: Service, lang: Language, account: Live
    ) -> Response:
        """This session takes the new security stamp; every other one ends."""
        who = live(request, account, lang)
        if isinstance(who, _web.Answer):
            return _send(who, lang)

        async def call() -> _web.Answer:
            result = await service.verify_phone(who, form.code)
            keep_session(request, result)
            return _web.contact_answer(result, lang, done="phone_verified")

        return await run(lang, call)

    @router.post(
        "/phone/remove",
        response_model=MessageAnswer,
        responses=_problems(401, 403, 409, 422, 429),
        summary="Remove the phone; every other session ends",
    )
    async def phone_remove(
        form: PasswordForm, request: Request, service: Service, lang: Language, account: Live
    ) -> Response:
        """This session takes the new security stamp; every other one ends."""
        who = live(request, account, lang)
        if isinstance(who, _web.Answer):
            return _send(who, lang)

        async def call() -> _web.Answer:
            result = await service.remove_phone(who, form.password, client_key=client_key(request))
            keep_session(request, result)
            return _web.contact_answer(result, lang, done="phone_removed")

        return await run(lang, call)

    @router.post(
        "/time-zone",
        response_model=MessageAnswer,
        responses=_problems(401, 403, 422),
        summary="Set the time zone of the account's letters (null: the site's)",
    )
    async def time_zone(
        form: TimeZoneForm, request: Request, service: Service, lang: Language, account: Live
    ) -> Response:
        """Not a security change: every session and link lives on."""
        who = live(request, account, lang)
        if isinstance(who, _web.Answer):
            return _send(who, lang)

        async def call() -> _web.Answer:
            try:
                await service.set_time_zone(who, form.time_zone)
            except ValueError as exc:
                if isinstance(exc, KaspiIdentityError):
                    raise
                return _web.invalid_time_zone(lang)
            return _web.time_zone_answer(lang)

        return await run(lang, call)

    return router
