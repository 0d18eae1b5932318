"""What the services return to the host."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from kaspi_identity.i18n import render
from kaspi_identity.policy import PolicyResult

__all__ = [
    "PASSWORD_CHANGE_REASONS",
    "ContactChangeResult",
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


#: Why :attr:`LoginResult.password_change_reason` asks for a new password, most urgent
#: first: an operator's flag, an expired password, a password found in a breach, one that no
#: longer meets a tightened policy, and (advisory only) one that expires soon.
PASSWORD_CHANGE_REASONS: tuple[str, ...] = (
    "must_change",
    "expired",
    "breached",
    "policy",
    "expiring",
)
PasswordChangeReason = Literal["must_change", "expired", "breached", "policy", "expiring"]


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

    The password's state (docs/policy.md "Password age"): ``needs_password_change`` says
    the host must send the user to the change-of-password form before anything else, and
    ``password_change_reason`` (one of :data:`PASSWORD_CHANGE_REASONS`) why: ``"must_change"``
    (an operator asked for it), ``"expired"`` (past ``max_age_days``; ``grace_logins_left``
    more log-ins are allowed with it), ``"breached"``, or ``"policy"`` (the password no
    longer meets the policy, which was tightened since it was set; ``password_violations``
    holds the codes). ``"expiring"`` (inside ``expiry_warning_days``) is advice: the log-in
    goes on and ``needs_password_change`` stays false. ``password_expires_at`` is set
    whenever a maximum age applies. ``reason="password_expired"`` refuses a log-in whose
    password was right but expired with no grace log-in left: change it with
    :meth:`IdentityService.change_password` (``account_id`` is set for that) or reset it.
    """

    ok: bool
    reason: Literal["ok", "invalid", "throttled", "locked", "password_expired"]
    account_id: str | None = None
    email_confirmed: bool = False
    retry_after: timedelta | None = None
    rehashed: bool = False
    security_stamp: str | None = field(default=None, repr=False, compare=False)
    needs_password_change: bool = False
    password_change_reason: PasswordChangeReason | None = None
    password_expires_at: datetime | None = None
    grace_logins_left: int | None = None
    password_violations: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok

    def password_change_message(
        self, lang: str = "en", *, now: datetime | None = None
    ) -> str | None:
        """What to tell the user about the password's state, in ``lang``; ``None`` if nothing.

        ``now`` (aware; default: the current time) counts the days left of an expiring
        password, rounded up.

        Raises:
            UnknownLanguageError: ``lang`` has no catalog.

        """
        reason = self.password_change_reason
        if self.reason == "password_expired":
            return render("password_change.expired", lang)
        if reason is None:
            return None
        if reason == "expired" and self.grace_logins_left:
            left = self.grace_logins_left
            return render("password_change.expired_grace", lang, count=left, grace_logins_left=left)
        if reason == "expiring" and self.password_expires_at is not None:
            moment = datetime.now(self.password_expires_at.tzinfo) if now is None else now
            seconds = (self.password_expires_at - moment).total_seconds()
            days = max(math.ceil(seconds / 86_400), 1)
            return render("password_change.expiring", lang, count=days, days_left=days)
        return render(f"password_change.{reason}", lang)


@dataclass(frozen=True, slots=True)
class PasswordChangeResult:
    """The outcome of :meth:`IdentityService.change_password`.

    ``reason``: ``"ok"``, ``"policy"`` (see ``policy`` for the violations), ``"too_soon"``
    (the password was changed less than the policy's ``min_age_hours`` ago; retry after
    ``retry_after``, and :meth:`too_soon_message` says so),
    ``"wrong_password"`` (the current password did not verify; it counts as a failed
    log-in), ``"throttled"`` (too many failures: retry after ``retry_after``), ``"locked"``
    (the account must be recovered with a password reset) or ``"conflict"`` (the password
    changed meanwhile; ask again). When ``end_other_sessions`` is true, the host must end
    every other session of the account: the change gave the account a new
    ``security_stamp`` (here; left out of the repr), so storing it in the current session
    keeps that one alive while :meth:`IdentityService.session_is_current` refuses the rest.
    """

    ok: bool
    reason: Literal["ok", "policy", "wrong_password", "throttled", "locked", "conflict", "too_soon"]
    policy: PolicyResult
    end_other_sessions: bool = False
    retry_after: timedelta | None = None
    security_stamp: str | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.ok

    def too_soon_message(self, lang: str = "en") -> str | None:
        """For ``reason="too_soon"``, the hours until a change is allowed, in ``lang``.

        ``None`` for every other reason.

        Raises:
            UnknownLanguageError: ``lang`` has no catalog.

        """
        if self.reason != "too_soon" or self.retry_after is None:
            return None
        hours = max(math.ceil(self.retry_after.total_seconds() / 3600), 1)
        return render("password_change.too_soon", lang, count=hours, hours_left=hours)


@dataclass(frozen=True, slots=True)
class ContactChangeResult:
    """The outcome of a change of e-mail address, phone or time zone.

    ``reason``:

    * ``"ok"`` -- done, or (for a request) the letter or code is on its way. A request for
      an address or number that belongs to another account answers ``"ok"`` too (its owner
      is told instead), so the answer tells nobody whose it is.
    * ``"unchanged"`` -- the account already has that address (or that verified number).
    * ``"wrong_password"`` -- the password did not verify; it counts as a failed log-in.
    * ``"throttled"`` -- a rate limit or the log-in back-off refused; retry after
      ``retry_after``.
    * ``"locked"`` -- the account must be recovered with a password reset.
    * ``"no_phone"`` -- there is no phone to remove, or no change of number waits for a code.
    * ``"conflict"`` -- the account changed meanwhile (another tab, another device); ask again.

    When the change took effect and ended the other sessions (``end_other_sessions``), the
    account has a new ``security_stamp`` (here; left out of the repr): store it in the
    current session to keep that one alive. ``account_id`` names the account (for the
    flows a link or code completes, where the host may not know it yet).
    """

    ok: bool
    reason: Literal[
        "ok", "unchanged", "wrong_password", "throttled", "locked", "no_phone", "conflict"
    ]
    retry_after: timedelta | None = None
    end_other_sessions: bool = False
    security_stamp: str | None = field(default=None, repr=False, compare=False)
    account_id: str | None = None

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
