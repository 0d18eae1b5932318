"""Every flow as a Django page, each a thin view over ``IdentityService``, plus the policy JSON.

The views collect a form, call one service method, and turn its answer into a page: the
policy's violations and the identifier errors become form errors in the active language, a
rate limit is a ``429`` with ``Retry-After``, a bad link a ``400``. A token never stays in a
URL a browser would send again: the reset and confirmation pages take it from the link's
``?token=`` and redirect to the bare page at once (as Django's own
``PasswordResetConfirmView`` does), and the grant of a verified SMS code never enters a URL.
Either is kept split between the session and a cookie for that one page (``_stash``), so no
stored session row holds it in clear. Templates live in ``kaspi_identity/`` and can be
overridden (docs/django.md).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout, update_session_auth_hash
from django.contrib.auth.views import redirect_to_login
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.debug import sensitive_post_parameters

from kaspi_identity._errors import (
    ExpiredTokenError,
    InvalidCodeError,
    InvalidIdentifierError,
    InvalidIinError,
    InvalidPhoneError,
    InvalidTokenError,
    UnknownLanguageError,
)
from kaspi_identity.i18n import normalize_language
from kaspi_identity.policy import PolicyResult
from kaspi_identity.services import ContactChangeResult, IdentityService

from .._web import token_refusal
from . import _stash
from ._ui import text
from .backends import client_key
from .forms import (
    ChangePasswordForm,
    CodeForm,
    ConfirmForm,
    EmailChangeForm,
    IdentifierForm,
    LoginForm,
    NewPasswordForm,
    PasswordForm,
    PhoneChangeForm,
    PhoneForm,
    RegisterForm,
)
from .middleware import MUST_CHANGE_KEY, remember_stamp
from .service import get_service
from .validators import active_language

__all__ = [
    "ChangePasswordView",
    "ConfirmEmailView",
    "EmailChangeView",
    "EmailConfirmView",
    "EmailUndoView",
    "ForgotPasswordView",
    "LoginView",
    "PhoneChangeView",
    "PhoneRemoveView",
    "PhoneVerifyView",
    "PolicyView",
    "RegisterView",
    "ResetPasswordView",
    "SmsForgotView",
    "SmsVerifyView",
]

#: Session keys: the token of a reset or confirmation link (or an SMS grant), the phone
#: an SMS code was sent to.
RESET_TOKEN_KEY = "_kaspi_identity_reset_token"  # noqa: S105 - a session key's name
CONFIRM_TOKEN_KEY = "_kaspi_identity_confirm_token"  # noqa: S105 - a session key's name
EMAIL_CHANGE_TOKEN_KEY = "_kaspi_identity_email_change_token"  # noqa: S105 - a session key
EMAIL_UNDO_TOKEN_KEY = "_kaspi_identity_email_undo_token"  # noqa: S105 - a session key
SMS_PHONE_KEY = "_kaspi_identity_sms_phone"
#: The account whose log-in was refused with an expired password: it may change it.
EXPIRED_ACCOUNT_KEY = "_kaspi_identity_expired_account"

_sensitive = method_decorator(
    sensitive_post_parameters("password", "confirmation", "current", "code"), name="dispatch"
)


def _seconds(wait: timedelta | None) -> int:
    return max(1, math.ceil(wait.total_seconds())) if wait is not None else 1


def _add_policy_errors(form: forms.Form, result: PolicyResult, lang: str) -> None:
    for line in result.messages(lang):
        form.add_error("password", line)


class _Page(View):
    """Renders a form page or a notice with the app's templates."""

    template_name = "kaspi_identity/form.html"
    notice_template_name = "kaspi_identity/notice.html"
    form_class: type[forms.Form] = forms.Form
    title = ""
    button = ""
    show_requirements = False
    #: Links under the form: (URL name, page text key).
    links: tuple[tuple[str, str], ...] = ()

    @property
    def service(self) -> IdentityService:
        """The project's service."""
        return get_service()

    def page(
        self, form: forms.Form | None = None, *, status: int = 200, **extra: Any
    ) -> HttpResponse:
        """The form page with ``form`` (a fresh one when ``None``)."""
        context = {
            "form": form if form is not None else self.form_class(),
            "title": text(self.title),
            "button": text(self.button),
            "requirements": (
                self.service.policy.describe(active_language()) if self.show_requirements else []
            ),
            "links": [(reverse(name), text(key)) for name, key in self.links],
            **extra,
        }
        return render(self.request, self.template_name, context, status=status)

    def notice(self, key: str, *, status: int = 200, title: str | None = None) -> HttpResponse:
        """A page that says ``key``'s text."""
        context = {"title": text(title or self.title), "notice": text(key)}
        return render(self.request, self.notice_template_name, context, status=status)

    def throttled(self, wait: timedelta | None, form: forms.Form | None = None) -> HttpResponse:
        """``429 Too Many Requests`` with ``Retry-After``."""
        if form is None:
            response = self.notice("web.rate_limited", status=429)
        else:
            form.add_error(None, text("web.rate_limited"))
            response = self.page(form, status=429)
        response["Retry-After"] = str(_seconds(wait))
        return response

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Show the empty form."""
        return self.page()


def _token_from_link(request: HttpRequest, key: str) -> HttpResponse | None:
    """Move a link's ``?token=`` out of the URL; the redirect to the bare page, or ``None``.

    The token is kept split between the session and a cookie for this page (``_stash``).
    """
    token = request.GET.get("token")
    if token is None:
        return None
    response = HttpResponseRedirect(request.path)
    response["Referrer-Policy"] = "no-referrer"
    _stash.keep(request, response, key, token, path=request.path)
    return response


@method_decorator(sensitive_post_parameters("password", "confirmation"), name="dispatch")
class RegisterView(_Page):
    """Registration: the account is created unconfirmed and the confirmation letter sent."""

    form_class = RegisterForm
    title = "page.register.title"
    button = "page.register.button"
    show_requirements = True

    def post(self, request: HttpRequest) -> HttpResponse:
        """Register with the service; the same answer whether the e-mail was new or not."""
        form = RegisterForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        data, lang = form.cleaned_data, active_language()
        try:
            result = self.service.register(
                email=data["email"],
                username=data["username"] or None,
                phone=data["phone"] or None,
                password=data["password"],
                confirmation=data["confirmation"],
                client_key=client_key(request),
                language=lang,
            )
        except InvalidIdentifierError as exc:
            field = exc.field if exc.field in form.fields else None
            form.add_error(field, exc.message(lang))
            return self.page(form)
        except InvalidPhoneError as exc:
            form.add_error("phone", exc.message(lang))
            return self.page(form)
        except InvalidIinError:
            return self.page(form)
        if result.retry_after is not None:
            return self.throttled(result.retry_after, form)
        if result.username_taken:
            form.add_error("username", text("web.username_taken"))
            return self.page(form)
        if not result.ok:
            _add_policy_errors(form, result.policy, lang)
            return self.page(form)
        return self.notice("web.registered")


class ConfirmEmailView(_Page):
    """The confirmation link: its token to the session, then a button that confirms."""

    form_class = ConfirmForm
    title = "page.confirm.title"
    button = "page.confirm.button"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Take the token out of the URL, or show the button."""
        moved = _token_from_link(request, CONFIRM_TOKEN_KEY)
        if moved is not None:
            return moved
        if _stash.peek(request, CONFIRM_TOKEN_KEY) is None:
            return self.notice("web.invalid_link", status=400)
        return self.page()

    def post(self, request: HttpRequest) -> HttpResponse:
        """Confirm the address the link was sent to."""
        token = _stash.peek(request, CONFIRM_TOKEN_KEY)
        try:
            if token is None:
                raise InvalidTokenError("no token")
            try:
                self.service.confirm_email(token)
            except InvalidTokenError as first:  # perhaps a new address's link on this page
                try:
                    result = self.service.confirm_email_change(token)
                except InvalidTokenError as second:
                    raise token_refusal(first, second) from None
                response = _email_changed(request, result, self)
            else:
                response = self.notice("web.confirmed")
        except InvalidTokenError as exc:
            response = _dead_link(self, exc)
        _stash.drop(request, response, CONFIRM_TOKEN_KEY, path=request.path)
        return response


@_sensitive
class LoginView(_Page):
    """Log-in by user name, e-mail or phone; the session keeps the account's stamp."""

    form_class = LoginForm
    title = "page.login.title"
    button = "page.login.button"
    links = (
        ("kaspi_identity:forgot", "page.login.forgot"),
        ("kaspi_identity:sms_forgot", "page.sms.title"),
        ("kaspi_identity:register", "page.register.title"),
    )

    def post(self, request: HttpRequest) -> HttpResponse:
        """Authenticate with the service and log the user in with Django's ``login``."""
        form = LoginForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        data = form.cleaned_data
        result = self.service.authenticate(
            data["identifier"], data["password"], client_key=client_key(request)
        )
        if result.reason == "throttled":
            return self.throttled(result.retry_after, form)
        lang = active_language()
        if result.reason == "password_expired" and result.account_id is not None:
            # The right password, expired, no grace log-in left: choose a new one here.
            request.session[EXPIRED_ACCOUNT_KEY] = result.account_id
            request.session[MUST_CHANGE_KEY] = result.password_change_message(lang)
            return HttpResponseRedirect(reverse("kaspi_identity:change"))
        user = None
        if result.ok and result.account_id is not None:
            user = get_user_model()._default_manager.filter(pk=result.account_id).first()
        if user is None or not getattr(user, "is_active", True):
            # One answer for an unknown account, a wrong password and a locked account.
            form.add_error(None, text("web.login_failed"))
            return self.page(form)
        backend = settings.AUTHENTICATION_BACKENDS[0]
        login(request, user, backend=backend)
        remember_stamp(request, result.security_stamp)
        notice = result.password_change_message(lang)
        if result.needs_password_change:
            request.session[MUST_CHANGE_KEY] = notice
            return HttpResponseRedirect(reverse("kaspi_identity:change"))
        if notice is not None:  # expiring soon: said once, on the next page
            messages.info(request, notice, fail_silently=True)
        return HttpResponseRedirect(self._next(request))

    @staticmethod
    def _next(request: HttpRequest) -> str:
        target = request.POST.get("next") or request.GET.get("next") or ""
        if target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return target
        return str(settings.LOGIN_REDIRECT_URL)


@_sensitive
class ChangePasswordView(_Page):
    """Change of password; this session lives on, every other one ends.

    Open to a logged-in user, and to the visitor whose log-in was refused with an expired
    password (who types the current one here, and logs in with the new one after).
    """

    form_class = ChangePasswordForm
    title = "page.change.title"
    button = "page.change.button"
    show_requirements = True

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Log-in first, unless the log-in said the password has expired."""
        if not request.user.is_authenticated and EXPIRED_ACCOUNT_KEY not in request.session:
            return redirect_to_login(request.get_full_path())
        return super().dispatch(request, *args, **kwargs)

    def page(
        self, form: forms.Form | None = None, *, status: int = 200, **extra: Any
    ) -> HttpResponse:
        """The form, with the log-in's word on why the password must change."""
        notice = self.request.session.get(MUST_CHANGE_KEY)
        if isinstance(notice, str):
            extra.setdefault("notice", notice)
        return super().page(form, status=status, **extra)

    def post(self, request: HttpRequest) -> HttpResponse:
        """Change the password through the service."""
        form = ChangePasswordForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        data, user = form.cleaned_data, cast(Any, request.user)
        expired = None if user.is_authenticated else request.session.get(EXPIRED_ACCOUNT_KEY)
        result = self.service.change_password(
            str(user.pk) if expired is None else str(expired),
            data["current"],
            data["password"],
            data["confirmation"],
            client_key=client_key(request),
        )
        if result.reason in ("throttled", "locked"):
            return self.throttled(result.retry_after, form)
        if result.reason in ("wrong_password", "conflict"):
            form.add_error("current", text("web.wrong_password"))
            return self.page(form)
        if result.reason == "too_soon":
            form.add_error(None, result.too_soon_message(active_language()) or "")
            return self.page(form)
        if not result.ok:
            _add_policy_errors(form, result.policy, active_language())
            return self.page(form)
        request.session.pop(MUST_CHANGE_KEY, None)
        if expired is not None:  # not logged in: log in with the new password now
            request.session.pop(EXPIRED_ACCOUNT_KEY, None)
            return self.notice("web.password_reset")
        user.refresh_from_db()
        update_session_auth_hash(request, user)
        remember_stamp(request, result.security_stamp)
        return self.notice("web.password_changed")


class ForgotPasswordView(_Page):
    """The reset by e-mail: the same answer whether or not the account exists."""

    form_class = IdentifierForm
    title = "page.forgot.title"
    button = "page.forgot.button"

    def post(self, request: HttpRequest) -> HttpResponse:
        """Ask the service for a reset letter."""
        form = IdentifierForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        result = self.service.request_password_reset(
            form.cleaned_data["identifier"], client_key=client_key(request)
        )
        if not result:
            return self.throttled(result.retry_after)
        return self.notice("web.letter_sent")


@_sensitive
class ResetPasswordView(_Page):
    """The new password for a reset link's token or a verified SMS code's grant."""

    form_class = NewPasswordForm
    title = "page.reset.title"
    button = "page.reset.button"
    show_requirements = True

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Take the token out of the URL, or show the form."""
        moved = _token_from_link(request, RESET_TOKEN_KEY)
        if moved is not None:
            return moved
        if _stash.peek(request, RESET_TOKEN_KEY) is None:
            return self.notice("web.invalid_link", status=400)
        return self.page()

    def post(self, request: HttpRequest) -> HttpResponse:
        """Set the new password; every session of the account ends."""
        token = _stash.peek(request, RESET_TOKEN_KEY)
        if token is None:
            return self.notice("web.invalid_link", status=400)
        form = NewPasswordForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        data = form.cleaned_data
        try:
            result = self.service.reset_password(token, data["password"], data["confirmation"])
        except InvalidTokenError:
            response = self.notice("web.invalid_link", status=400)
            _stash.drop(request, response, RESET_TOKEN_KEY, path=request.path)
            return response
        if not result.ok:
            _add_policy_errors(form, result.policy, active_language())
            return self.page(form)
        response = self.notice("web.password_reset")
        _stash.drop(request, response, RESET_TOKEN_KEY, path=request.path)
        return response


class SmsForgotView(_Page):
    """The reset by SMS: a code to the phone given at registration."""

    form_class = PhoneForm
    title = "page.sms.title"
    button = "page.sms.button"

    def post(self, request: HttpRequest) -> HttpResponse:
        """Ask the service for a code, then go to the page that takes it."""
        form = PhoneForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        phone = form.cleaned_data["phone"]
        try:
            result = self.service.request_sms_reset(phone, client_key=client_key(request))
        except InvalidPhoneError as exc:
            form.add_error("phone", exc.message(active_language()))
            return self.page(form)
        if not result:
            return self.throttled(result.retry_after, form)
        request.session[SMS_PHONE_KEY] = phone
        return HttpResponseRedirect(reverse("kaspi_identity:sms_verify"))


@method_decorator(sensitive_post_parameters("code"), name="dispatch")
class SmsVerifyView(_Page):
    """The code of the SMS; a right one leads to the new-password page."""

    form_class = CodeForm
    title = "page.sms.verify_title"
    button = "page.sms.verify_button"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Show the code form (after a code was asked for)."""
        if SMS_PHONE_KEY not in request.session:
            return HttpResponseRedirect(reverse("kaspi_identity:sms_forgot"))
        return self.page(notice=text("web.sms_sent"))

    def post(self, request: HttpRequest) -> HttpResponse:
        """Verify the code; its grant goes into the session, never into a URL."""
        phone = request.session.get(SMS_PHONE_KEY)
        if not isinstance(phone, str):
            return HttpResponseRedirect(reverse("kaspi_identity:sms_forgot"))
        form = CodeForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        try:
            grant = self.service.verify_sms_code(phone, form.cleaned_data["code"])
        except InvalidCodeError as exc:
            form.add_error("code", text(f"web.code_{exc.reason}"))
            return self.page(form)
        except InvalidPhoneError:
            return HttpResponseRedirect(reverse("kaspi_identity:sms_forgot"))
        del request.session[SMS_PHONE_KEY]
        reset_page = reverse("kaspi_identity:reset")
        response = HttpResponseRedirect(reset_page)
        _stash.keep(request, response, RESET_TOKEN_KEY, grant, path=reset_page)
        return response


def _dead_link(page: _Page, exc: InvalidTokenError) -> HttpResponse:
    """The notice of a link refused: expired, or invalid (garbage, used, stale)."""
    key = "web.expired_link" if isinstance(exc, ExpiredTokenError) else "web.invalid_link"
    return page.notice(key, status=400)


def _email_changed(request: HttpRequest, result: ContactChangeResult, page: _Page) -> HttpResponse:
    """After a new address's link: this browser's session of the account lives on."""
    if not result.ok:
        return page.notice("web.contact_conflict", status=409)
    user = cast(Any, request.user)
    if user.is_authenticated and str(user.pk) == result.account_id:
        remember_stamp(request, result.security_stamp)
    return page.notice("web.email_changed")


class _Cabinet(_Page):
    """A page of the logged-in user's own account: log-in first."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Send a visitor without a session to the log-in page."""
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return super().dispatch(request, *args, **kwargs)

    @property
    def account_id(self) -> str:
        """The logged-in account's id."""
        return str(cast(Any, self.request.user).pk)

    def refused(self, form: forms.Form, result: ContactChangeResult, field: str) -> HttpResponse:
        """A refused change on its form: the wrong password under the password, and so on."""
        if result.reason == "throttled":
            return self.throttled(result.retry_after, form)
        where: dict[str, str | None] = {
            "wrong_password": "password",
            "locked": None,
            "unchanged": field,
            "no_phone": None,
        }
        key = "web.contact_conflict" if result.reason == "conflict" else f"web.{result.reason}"
        form.add_error(where.get(result.reason), text(key))
        return self.page(form)

    def done(self, result: ContactChangeResult, key: str) -> HttpResponse:
        """A change done: this session takes the new stamp, every other one ends."""
        remember_stamp(self.request, result.security_stamp)
        return self.notice(key)


@_sensitive
class EmailChangeView(_Cabinet):
    """A new e-mail address: a link goes to it; nothing changes until it is opened."""

    form_class = EmailChangeForm
    title = "page.email_change.title"
    button = "page.email_change.button"

    def post(self, request: HttpRequest) -> HttpResponse:
        """Ask the service; a taken address gets the same answer as a free one."""
        form = EmailChangeForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        data, lang = form.cleaned_data, active_language()
        try:
            result = self.service.request_email_change(
                self.account_id, data["password"], data["email"], client_key=client_key(request)
            )
        except InvalidIdentifierError as exc:
            form.add_error("email", exc.message(lang))
            return self.page(form)
        if not result.ok:
            return self.refused(form, result, "email")
        return self.notice("web.email_change_sent")


class EmailConfirmView(_Page):
    """The new address's link: its token out of the URL, then a button that confirms."""

    form_class = ConfirmForm
    title = "page.email_confirm.title"
    button = "page.confirm.button"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Take the token out of the URL, or show the button."""
        moved = _token_from_link(request, EMAIL_CHANGE_TOKEN_KEY)
        if moved is not None:
            return moved
        if _stash.peek(request, EMAIL_CHANGE_TOKEN_KEY) is None:
            return self.notice("web.invalid_link", status=400)
        return self.page()

    def post(self, request: HttpRequest) -> HttpResponse:
        """Make the address the account's; every other session of the account ends."""
        token = _stash.peek(request, EMAIL_CHANGE_TOKEN_KEY)
        try:
            if token is None:
                raise InvalidTokenError("no token")
            response = _email_changed(request, self.service.confirm_email_change(token), self)
        except InvalidTokenError as exc:
            response = _dead_link(self, exc)
        _stash.drop(request, response, EMAIL_CHANGE_TOKEN_KEY, path=request.path)
        return response


class EmailUndoView(_Page):
    """The undo link sent to the old address: the address back, every session ended."""

    form_class = ConfirmForm
    title = "page.email_undo.title"
    button = "page.email_undo.button"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Take the token out of the URL, or show the button."""
        moved = _token_from_link(request, EMAIL_UNDO_TOKEN_KEY)
        if moved is not None:
            return moved
        if _stash.peek(request, EMAIL_UNDO_TOKEN_KEY) is None:
            return self.notice("web.invalid_link", status=400)
        return self.page()

    def post(self, request: HttpRequest) -> HttpResponse:
        """Give the address back; the password is removed and a reset link sent to it."""
        token = _stash.peek(request, EMAIL_UNDO_TOKEN_KEY)
        try:
            if token is None:
                raise InvalidTokenError("no token")
            self.service.undo_email_change(token)
        except InvalidTokenError as exc:
            response = _dead_link(self, exc)
        else:
            logout(request)  # every session of the account has ended, this one too
            response = self.notice("web.email_restored")
        _stash.drop(request, response, EMAIL_UNDO_TOKEN_KEY, path=request.path)
        return response


@_sensitive
class PhoneChangeView(_Cabinet):
    """Add, change or prove the phone: a code goes to the number."""

    form_class = PhoneChangeForm
    title = "page.phone.title"
    button = "page.sms.button"

    def post(self, request: HttpRequest) -> HttpResponse:
        """Ask the service for a code, then go to the page that takes it."""
        form = PhoneChangeForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        data = form.cleaned_data
        try:
            result = self.service.request_phone_change(
                self.account_id, data["password"], data["phone"], client_key=client_key(request)
            )
        except InvalidPhoneError as exc:
            form.add_error("phone", exc.message(active_language()))
            return self.page(form)
        if not result.ok:
            return self.refused(form, result, "phone")
        return HttpResponseRedirect(reverse("kaspi_identity:phone_verify"))


@method_decorator(sensitive_post_parameters("code"), name="dispatch")
class PhoneVerifyView(_Cabinet):
    """The code sent to the number; a right one makes it the account's, verified."""

    form_class = CodeForm
    title = "page.sms.verify_title"
    button = "page.phone_verify.button"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Show the code form."""
        return self.page(notice=text("web.phone_code_sent"))

    def post(self, request: HttpRequest) -> HttpResponse:
        """Verify the code; this session lives on, every other one ends."""
        form = CodeForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        try:
            result = self.service.verify_phone(self.account_id, form.cleaned_data["code"])
        except InvalidCodeError as exc:
            form.add_error("code", text(f"web.code_{exc.reason}"))
            return self.page(form)
        if not result.ok:
            return self.refused(form, result, "code")
        return self.done(result, "web.phone_verified")


@_sensitive
class PhoneRemoveView(_Cabinet):
    """Remove the phone, with the password."""

    form_class = PasswordForm
    title = "page.phone_remove.title"
    button = "page.phone_remove.button"

    def post(self, request: HttpRequest) -> HttpResponse:
        """Remove it; this session lives on, every other one ends."""
        form = PasswordForm(request.POST)
        if not form.is_valid():
            return self.page(form)
        result = self.service.remove_phone(
            self.account_id, form.cleaned_data["password"], client_key=client_key(request)
        )
        if not result.ok:
            return self.refused(form, result, "password")
        return self.done(result, "web.phone_removed")


class PolicyView(View):
    """The active policy as JSON: ``PasswordPolicy.document(lang)`` (docs/policy.schema.json).

    The language is ``?lang=`` (kk, ru, en), else the active Django language
    (``LocaleMiddleware`` reads ``Accept-Language``); an unknown ``?lang=`` is a ``400``.
    """

    def get(self, request: HttpRequest) -> HttpResponse:
        """Serve the policy document."""
        asked = request.GET.get("lang")
        try:
            lang = normalize_language(asked) if asked is not None else active_language()
        except UnknownLanguageError:
            return JsonResponse(
                {"error": "unknown_language", "languages": ["kk", "ru", "en"]}, status=400
            )
        response = JsonResponse(
            get_service().policy.document(lang), json_dumps_params={"ensure_ascii": False}
        )
        response["Content-Language"] = lang
        patch_vary_headers(response, ["Accept-Language"])
        patch_cache_control(response, public=True, max_age=300)
        return response
