"""Log-in, and whether a session may go on.

The methods' contracts are documented on :class:`~kaspi_identity.services.IdentityService`,
which delegates to :class:`LogIn`. The reservation of an attempt (:meth:`LogIn.reserve`)
and the verdict on a wrong password (:meth:`LogIn.failed`) serve the change of password too.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kaspi_identity._errors import AccountNotFoundError, InvalidHashError, PasswordMismatchError
from kaspi_identity.services._age import age_of
from kaspi_identity.services._flow import Flow
from kaspi_identity.services._identifiers import limit_value, require_str
from kaspi_identity.services._plumbing import user_info
from kaspi_identity.services._results import LoginResult, PasswordChangeReason
from kaspi_identity.services._settings import RateLimit
from kaspi_identity.storage import Account

__all__ = ["LogIn", "Refusal"]

_log = logging.getLogger("kaspi_identity.services")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why :meth:`LogIn.prove` did not accept a password, and when to try again."""

    reason: Literal["wrong_password", "locked", "throttled"]
    retry_after: timedelta | None = None


class LogIn(Flow):
    """``authenticate`` and ``session_is_current``; :meth:`prove` for the other flows."""

    def prove(
        self, account_id: str, password: str, *, client_key: str, action: str
    ) -> Account | Refusal:
        """Check the password of a logged-in account before a sensitive change.

        A log-in attempt in all but name: counted against ``login_per_client`` and
        ``login_per_identifier`` (per account), reserved on the account before argon2 runs
        (the same back-off and lockout), and a wrong password is a failed log-in. Returns
        the account as read once the password is proven (its failures cleared), else the
        :class:`Refusal`. ``action`` names the flow in the events.

        Raises:
            AccountNotFoundError: no account has id ``account_id``.
        """
        p = self.plumbing
        account = p.storage.accounts.get(account_id)
        if account is None:
            raise AccountNotFoundError("no account with this id")
        s, now = p.settings, p.clock.now()
        wait = p.first_limited(
            ("login-client", client_key, s.login_per_client),
            ("login-id", f"account:{account.id}", s.login_per_identifier),
        )
        if wait is not None:
            p.emit("rate_limited", account.id, action=action)
            return Refusal("throttled", wait)
        if account.password_hash is None:
            p.burn_verification(password)
            return Refusal("wrong_password")
        reserved = self.reserve(account, password, now)
        if isinstance(reserved, LoginResult):
            if reserved.reason in ("locked", "throttled"):
                return Refusal(
                    "locked" if reserved.reason == "locked" else "throttled",
                    reserved.retry_after,
                )
            return Refusal("wrong_password")
        account, failures = reserved
        try:
            if account.password_hash is None:
                raise PasswordMismatchError
            p.hasher.verify(account.password_hash, password)
        except (PasswordMismatchError, InvalidHashError):
            failed = self.failed(account, failures, reason=action)
            return Refusal("locked" if failed.reason == "locked" else "wrong_password")
        # The password is proven: the attempt reserved for it is no failure.
        p.storage.accounts.clear_login_failures(account.id)
        return account

    def authenticate(self, identifier: str, password: str, *, client_key: str) -> LoginResult:
        """See :meth:`IdentityService.authenticate`."""
        p = self.plumbing
        require_str(identifier=identifier, password=password, client_key=client_key)
        s = p.settings
        resolved = p.resolve(identifier)
        value = limit_value(resolved, identifier)
        wait = p.first_limited(
            ("login-client", client_key, s.login_per_client),
            ("login-id", value, s.login_per_identifier),
        )
        if wait is not None:
            p.emit("rate_limited", None, action="login")
            return LoginResult(False, "throttled", retry_after=wait)
        now = p.clock.now()
        account = p.lookup(resolved)
        if account is None or account.password_hash is None:
            p.absent_work(value)
            p.burn_verification(password)
            p.emit("login_failed", account.id if account else None, reason="unknown")
            return LoginResult(False, "invalid")
        reserved = self.reserve(account, password, now)
        if isinstance(reserved, LoginResult):
            return reserved
        account, failures = reserved
        assert account.password_hash is not None  # checked by reserve; not a security check
        try:
            ok, new_hash = p.hasher.verify_and_update(account.password_hash, password)
        except InvalidHashError:
            _log.error("account %s has a malformed password hash", account.id)
            ok, new_hash = False, None
        if not ok:
            return self.failed(account, failures, reason="password")
        rehashed = bool(new_hash and self.writer.rehash(account, new_hash))
        state = self._password_state(account, password, now)
        if isinstance(state, LoginResult):
            return state
        p.storage.accounts.record_login_success(account.id, now=now)
        reason = state["password_change_reason"]
        if reason is None:
            p.emit("login_succeeded", account.id)
        else:
            p.emit("login_succeeded", account.id, password_change=reason)
        return LoginResult(
            True,
            "ok",
            account.id,
            email_confirmed=account.email_confirmed,
            rehashed=rehashed,
            security_stamp=account.security_stamp,
            **state,
        )

    def _password_state(
        self, account: Account, password: str, now: datetime
    ) -> dict[str, Any] | LoginResult:
        """What a verified log-in says of the password: its age, a required change, its fit.

        Runs once the password is proven, the only time its plaintext is at hand. An expired
        password spends one grace log-in (a compare-and-set on the count, so racing log-ins
        never spend more than the policy grants); with none left the log-in is refused as
        ``password_expired`` -- the failure reserved for this attempt is cleared, as the
        password was right. Otherwise the fields of :class:`LoginResult` to add.
        """
        p = self.plumbing
        policy, accounts = p.policy, p.storage.accounts
        age = age_of(policy, account, now)
        grace_left: int | None = None
        # Each lost compare-and-set means a racing log-in spent a grace log-in, so the loop
        # reaches "none left" within grace_logins + 1 rounds.
        for _ in range((policy.grace_logins or 0) + 1):
            if not age.expired or age.grace_left == 0:
                break
            if accounts.use_grace_login(account.id, expected=account.grace_logins_used):
                grace_left = age.grace_left - 1
                break
            fresh = accounts.get(account.id)
            if fresh is None:
                return LoginResult(False, "invalid")
            account, age = fresh, age_of(policy, fresh, now)
        if age.expired and grace_left is None:
            accounts.clear_login_failures(account.id)
            p.emit("login_failed", account.id, reason="password_expired")
            return LoginResult(
                False,
                "password_expired",
                account.id,
                email_confirmed=account.email_confirmed,
                needs_password_change=True,
                password_change_reason="expired",  # noqa: S106 - a reason, not a password
                password_expires_at=age.expires_at,
                grace_logins_left=0,
            )
        # The stateless rules only: the breach sources are asked below, at most once per
        # interval, and an outage of an online source must not read as a policy violation.
        result = policy.check(password, user=user_info(account), breached=False)
        violations = tuple(v.code for v in result.violations)
        breached = self._breached(account, password)
        reason: PasswordChangeReason | None = None
        if account.must_change_password:
            reason = "must_change"
        elif age.expired:
            reason = "expired"
        elif breached:
            reason = "breached"
        elif violations:
            reason = "policy"
        elif age.expiring:
            reason = "expiring"
        return {
            "needs_password_change": reason not in (None, "expiring"),
            "password_change_reason": reason,
            "password_expires_at": age.expires_at,
            "grace_logins_left": grace_left,
            "password_violations": violations,
        }

    def session_is_current(self, account_id: str, security_stamp: str) -> bool:
        """See :meth:`IdentityService.session_is_current`."""
        if not isinstance(account_id, str) or not isinstance(security_stamp, str):
            return False
        account = self.plumbing.storage.accounts.get(account_id)
        stored = "" if account is None else account.security_stamp
        return account is not None and hmac.compare_digest(
            stored.encode("utf-8", "surrogatepass"),
            security_stamp.encode("utf-8", "surrogatepass"),
        )

    def _breached(self, account: Account, password: str) -> bool:
        """Whether the proven password is now known from a breach (asked once per interval).

        The interval is a rate limit of one per ``breach_recheck_interval`` and account, so
        every app server shares it. An unavailable source answers "not found": failing
        closed is for choosing a new password, not for forcing a change during an outage.
        """
        p = self.plumbing
        if p.policy.breached is None:
            return False
        interval = RateLimit(1, p.settings.breach_recheck_interval)
        if p.limited("breach-recheck", account.id, interval) is not None:
            return False
        return p.policy.check_breached(password).breached

    def reserve(
        self, account: Account, password: str, now: datetime
    ) -> tuple[Account, int] | LoginResult:
        """Count this attempt on the account before its password is verified.

        Returns the account as reserved and its new failure count, or the refusal (locked,
        backing off, or gone) after equal work. The reservation is a compare-and-set on the
        failure count read with the account: when another attempt got in first, the account
        is read again and the back-off and lockout are judged on the fresh count, so the
        limits hold however many attempts race. Each lost race means another attempt was
        counted, so the loop ends by lockout at the latest.
        """
        p = self.plumbing
        accounts = p.storage.accounts
        for _ in range(p.settings.lockout_after + 1):
            blocked = self._blocked(account, password, now)
            if blocked is not None:
                return blocked
            expected = account.failed_logins
            if accounts.reserve_login_attempt(account.id, expected_failures=expected, now=now):
                return account, expected + 1
            fresh = accounts.get(account.id)
            if fresh is None or fresh.password_hash is None:
                p.burn_verification(password)
                return LoginResult(False, "invalid")
            account = fresh
        # Successes kept resetting the count under this attempt: refuse it like a back-off.
        p.burn_verification(password)
        p.emit("login_failed", account.id, reason="throttled")
        return LoginResult(False, "throttled", account.id, retry_after=p.settings.backoff_base)

    def _blocked(self, account: Account, password: str, now: datetime) -> LoginResult | None:
        """The refusal for a locked or backing-off account (after equal work), else ``None``."""
        p = self.plumbing
        s = p.settings
        reason: Literal["locked", "throttled"] | None = None
        retry_after = None
        last = account.last_failed_login_at
        wait = s.backoff(account.failed_logins)
        if account.failed_logins >= s.lockout_after:
            reason = "locked"
        elif wait and last is not None and now < last + wait:
            reason, retry_after = "throttled", last + wait - now
        if reason is None:
            return None
        p.burn_verification(password)
        p.emit("login_failed", account.id, reason=reason)
        return LoginResult(False, reason, account.id, retry_after=retry_after)

    def failed(self, account: Account, failures: int, *, reason: str) -> LoginResult:
        """A wrong password (already counted by the reservation); ``locked`` at the threshold."""
        p = self.plumbing
        p.emit("login_failed", account.id, reason=reason)
        if failures >= p.settings.lockout_after:
            p.emit("account_locked", account.id)
            return LoginResult(False, "locked", account.id)
        return LoginResult(False, "invalid")
