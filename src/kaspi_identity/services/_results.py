"""What the services return to the host."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from kaspi_identity.policy import PolicyResult

__all__ = [
    "LoginResult",
    "PasswordChangeResult",
    "PasswordResetResult",
    "RegistrationResult",
    "ResetRequestResult",
]


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """The outcome of :meth:`IdentityService.register`.

    ``ok`` is true when the form was acceptable; the user is then told to check their e-mail.
    It is the same whether the e-mail (or phone) was new or already had an account — the
    owner of an existing account gets an "already registered" letter instead, so the answer
    reveals nothing. ``policy`` holds the password's violations when ``ok`` is false;
    ``username_taken`` is true when the chosen user name belongs to someone else (user
    names are public, so saying so reveals nothing private). ``retry_after`` is set when
    the registration was refused by a rate limit (per client or per identifier).
    """

    ok: bool
    policy: PolicyResult
    username_taken: bool = False
    retry_after: timedelta | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The outcome of :meth:`IdentityService.authenticate`.

    ``reason`` is ``"ok"``, ``"invalid"`` (unknown account or wrong password — one answer for
    both), ``"throttled"`` (too many attempts from this client or for this identifier, or
    the account is backing off after failures: try again after ``retry_after``) or
    ``"locked"`` (the account must be recovered with a password reset). Show the user one
    generic message for every failure. ``email_confirmed`` lets the host decide what an
    unconfirmed account may do. ``rehashed`` tells that the stored hash was upgraded.

    ``security_stamp`` (set on success; left out of the repr) is what the host keeps in the
    session beside ``account_id`` and checks on later requests with
    :meth:`IdentityService.session_is_current`: it changes with every password, reset or
    e-mail change, which ends every session that holds the old one.
    """

    ok: bool
    reason: Literal["ok", "invalid", "throttled", "locked"]
    account_id: str | None = None
    email_confirmed: bool = False
    retry_after: timedelta | None = None
    rehashed: bool = False
    security_stamp: str | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class PasswordChangeResult:
    """The outcome of :meth:`IdentityService.change_password`.

    ``reason``: ``"ok"``, ``"policy"`` (see ``policy`` for the violations),
    ``"wrong_password"`` (the current password did not verify; it counts as a failed
    log-in), ``"throttled"`` (too many failures: retry after ``retry_after``), ``"locked"``
    (the account must be recovered with a password reset) or ``"conflict"`` (the password
    changed meanwhile; ask again). When ``end_other_sessions`` is true, the host must end
    every other session of the account: the change gave the account a new
    ``security_stamp`` (here; left out of the repr), so storing it in the current session
    keeps that one alive while :meth:`IdentityService.session_is_current` refuses the rest.
    """

    ok: bool
    reason: Literal["ok", "policy", "wrong_password", "throttled", "locked", "conflict"]
    policy: PolicyResult
    end_other_sessions: bool = False
    retry_after: timedelta | None = None
    security_stamp: str | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class ResetRequestResult:
    """The outcome of a reset request: the same whether or not an account exists.

    ``accepted`` is false only when the request was rate-limited (the limits apply to
    identifiers and clients alike, known or not); ``retry_after`` then says when to retry.
    """

    accepted: bool
    retry_after: timedelta | None = None

    def __bool__(self) -> bool:
        return self.accepted


@dataclass(frozen=True, slots=True)
class PasswordResetResult:
    """The outcome of :meth:`IdentityService.reset_password`.

    ``ok`` false means the new password broke the policy (``policy`` says how); the link
    still works, so the form can be shown again. On success the user is **not** logged in,
    and ``end_sessions`` tells the host to end every session of ``account_id``.
    """

    ok: bool
    policy: PolicyResult
    account_id: str | None = None
    end_sessions: bool = False

    def __bool__(self) -> bool:
        return self.ok
