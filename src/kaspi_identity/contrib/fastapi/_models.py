"""The Pydantic models of every request and answer of :func:`identity_router`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AccountAnswer",
    "ChangePasswordForm",
    "CodeForm",
    "ConfirmForm",
    "EmailChangeForm",
    "GrantAnswer",
    "HintOut",
    "IdentifierForm",
    "LinkState",
    "LoginAnswer",
    "LoginForm",
    "MessageAnswer",
    "PasswordForm",
    "PasswordState",
    "PhoneChangeForm",
    "PhoneCodeForm",
    "PhoneForm",
    "Problem",
    "RegisterForm",
    "ResetForm",
    "TimeZoneForm",
    "ViolationOut",
]

_FORM = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterForm(BaseModel):
    """``POST /register``: an e-mail, user name, phone or IIN, and the password twice."""

    model_config = _FORM
    email: str | None = None
    username: str | None = None
    phone: str | None = None
    iin: str | None = None
    names: list[str] = Field(default_factory=list)
    password: str
    confirmation: str


class ConfirmForm(BaseModel):
    """``POST /confirm``: the token, unless the link's page moved it into a cookie."""

    model_config = _FORM
    token: str | None = None


class IdentifierForm(BaseModel):
    """``POST /confirm/resend`` and ``POST /password/forgot``: a user name, e-mail or phone."""

    model_config = _FORM
    identifier: str


class LoginForm(BaseModel):
    """``POST /login``: a user name, e-mail, phone or IIN and the password."""

    model_config = _FORM
    identifier: str
    password: str


class ChangePasswordForm(BaseModel):
    """``POST /password/change``: the current password and the new one twice."""

    model_config = _FORM
    current: str
    password: str
    confirmation: str


class PhoneForm(BaseModel):
    """``POST /password/forgot/sms``: the phone number given at registration."""

    model_config = _FORM
    phone: str


class CodeForm(BaseModel):
    """``POST /password/verify-code``: the phone and the code from the SMS."""

    model_config = _FORM
    phone: str
    code: str


class ResetForm(BaseModel):
    """``POST /password/reset``: a grant from a verified code (or the cookie a link's page set)."""

    model_config = _FORM
    token: str | None = None
    password: str
    confirmation: str


class EmailChangeForm(BaseModel):
    """``POST /email/change``: the password, and the new address (a link goes to it)."""

    model_config = _FORM
    password: str
    email: str


class PhoneChangeForm(BaseModel):
    """``POST /phone``: the password, and the number to add, change to or prove (gets a code)."""

    model_config = _FORM
    password: str
    phone: str


class PhoneCodeForm(BaseModel):
    """``POST /phone/verify``: the code from the SMS ``POST /phone`` sent."""

    model_config = _FORM
    code: str


class PasswordForm(BaseModel):
    """``POST /phone/remove``: the password."""

    model_config = _FORM
    password: str


class TimeZoneForm(BaseModel):
    """``POST /time-zone``: an IANA zone name (``"Asia/Almaty"``), or ``null`` for the site's."""

    model_config = _FORM
    time_zone: str | None


class MessageAnswer(BaseModel):
    """A success: ``ok`` true, ``error`` null and a ``message`` in the negotiated language."""

    ok: bool
    error: str | None
    message: str


class PasswordState(BaseModel):
    """The password's state at log-in (docs/policy.md, "Password age").

    ``needs_password_change``: send the user to the change of password before anything
    else; ``password_change_reason`` says why (``must_change``, ``expired``, ``breached``,
    ``policy``, or ``expiring``: advice only); ``password_expires_at`` (ISO 8601) when a
    maximum age applies; ``grace_logins_left``; ``password_violations`` (the codes a
    tightened policy finds); ``password_message``, the line to show, localised.
    """

    needs_password_change: bool = False
    password_change_reason: str | None = None
    password_expires_at: str | None = None
    grace_logins_left: int | None = None
    password_violations: list[str] = Field(default_factory=list)
    password_message: str | None = None


class LoginAnswer(MessageAnswer, PasswordState):
    """``POST /login`` succeeded: the session now holds the account and its security stamp."""

    account_id: str
    email_confirmed: bool


class AccountAnswer(MessageAnswer):
    """``POST /confirm``, ``POST /email/confirm``, ``POST /email/undo`` or ``GET /me``: the account.

    For ``GET /me``, ``needs_password_change`` and ``password_change_reason`` repeat what the
    log-in said until the password is changed.
    """

    account_id: str
    needs_password_change: bool = False
    password_change_reason: str | None = None


class GrantAnswer(MessageAnswer):
    """``POST /password/verify-code``: the grant ``POST /password/reset`` takes as ``token``."""

    grant: str


class ViolationOut(BaseModel):
    """One broken password rule: the stable ``code``, its ``params`` and its ``message``."""

    code: str
    params: dict[str, Any]
    message: str


class HintOut(BaseModel):
    """Advice after the violations (``keyboard_layout``)."""

    code: str
    message: str


class Problem(PasswordState):
    """Every refusal: ``ok`` false, a stable ``error`` code and a localised ``message``.

    ``violations`` and ``hints`` for ``password_policy``; ``retry_after`` (seconds, as in the
    ``Retry-After`` header) for ``rate_limited`` and ``too_soon``; ``field`` and ``code`` for
    ``invalid_identifier`` and ``invalid_request`` (``field`` also for
    ``invalid_time_zone``); ``reason`` for ``invalid_code``, ``invalid_phone`` and
    ``invalid_iin``; the :class:`PasswordState` fields for ``password_expired``.
    """

    ok: bool = False
    error: str
    message: str
    violations: list[ViolationOut] = Field(default_factory=list)
    hints: list[HintOut] = Field(default_factory=list)
    retry_after: int | None = None
    field: str | None = None
    code: str | None = None
    reason: str | None = None


class LinkState(BaseModel):
    """A link's page without a token: is a link's token waiting in its cookie?

    ``GET /confirm``, ``/password/reset``, ``/email/confirm``, ``/email/undo``; ``link`` is
    ``confirm``, ``reset``, ``email_change`` or ``email_undo``.
    """

    link: str
    pending: bool
