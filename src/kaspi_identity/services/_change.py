"""The change of password of a logged-in account.

The contract is documented on :meth:`~kaspi_identity.services.IdentityService.change_password`,
which delegates to :class:`PasswordChange`. Checking the current password is a log-in
attempt: it is reserved and judged by :class:`~kaspi_identity.services._login.LogIn`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kaspi_identity._errors import AccountNotFoundError, InvalidHashError, PasswordMismatchError
from kaspi_identity.policy import PolicyResult
from kaspi_identity.services._age import changeable_at
from kaspi_identity.services._flow import Flow
from kaspi_identity.services._identifiers import require_str
from kaspi_identity.services._login import LogIn
from kaspi_identity.services._plumbing import user_info
from kaspi_identity.services._results import LoginResult, PasswordChangeResult
from kaspi_identity.storage import Account

__all__ = ["PasswordChange"]


@dataclass(eq=False)
class PasswordChange(Flow):
    """``change_password`` and ``require_password_change``."""

    login: LogIn = field(kw_only=True)

    def change_password(
        self, account_id: str, current: str, new: str, confirmation: str, *, client_key: str
    ) -> PasswordChangeResult:
        """See :meth:`IdentityService.change_password`."""
        p = self.plumbing
        require_str(
            account_id=account_id,
            current=current,
            new=new,
            confirmation=confirmation,
            client_key=client_key,
        )
        account = p.storage.accounts.get(account_id)
        if account is None:
            raise AccountNotFoundError("no account with this id")
        s, empty, now = p.settings, PolicyResult(), p.clock.now()
        wait = p.first_limited(
            ("login-client", client_key, s.login_per_client),
            ("login-id", f"account:{account.id}", s.login_per_identifier),
        )
        if wait is not None:
            p.emit("rate_limited", account.id, action="change_password")
            return PasswordChangeResult(False, "throttled", empty, retry_after=wait)
        if account.password_hash is None:
            p.burn_verification(current)
            return PasswordChangeResult(False, "wrong_password", empty)
        reserved = self.login.reserve(account, current, now)
        if isinstance(reserved, LoginResult):
            if reserved.reason in ("locked", "throttled"):
                return PasswordChangeResult(
                    False, reserved.reason, empty, retry_after=reserved.retry_after
                )
            return PasswordChangeResult(False, "wrong_password", empty)
        account, failures = reserved
        try:
            if account.password_hash is None:
                raise PasswordMismatchError
            p.hasher.verify(account.password_hash, current)
        except (PasswordMismatchError, InvalidHashError):
            failed = self.login.failed(account, failures, reason="change_password")
            reason: Literal["wrong_password", "locked"] = (
                "locked" if failed.reason == "locked" else "wrong_password"
            )
            return PasswordChangeResult(False, reason, empty)
        # The current password is proven: the attempt reserved for it is no failure.
        p.storage.accounts.clear_login_failures(account.id)
        until = changeable_at(p.policy, account, now)
        if until is not None:
            return PasswordChangeResult(False, "too_soon", empty, retry_after=until - now)
        result = self.writer.history.validate(
            p.policy,
            account.id,
            new,
            user=user_info(account),
            confirmation=confirmation,
            current_password=current,
        )
        if not result:
            if self._changed_since(account):
                # A concurrent change won; its new entry is what tripped the history check.
                return PasswordChangeResult(False, "conflict", result)
            return PasswordChangeResult(False, "policy", result)
        if not self.writer.replace(account, new):
            return PasswordChangeResult(False, "conflict", result)
        p.emit("password_changed", account.id, via="change")
        p.send_changed_notice(account)
        changed = p.storage.accounts.get(account.id)
        return PasswordChangeResult(
            True,
            "ok",
            result,
            end_other_sessions=True,
            security_stamp=None if changed is None else changed.security_stamp,
        )

    def require_password_change(self, account_id: str, *, required: bool) -> None:
        """See :meth:`IdentityService.require_password_change`."""
        require_str(account_id=account_id)
        if not isinstance(required, bool):
            raise TypeError(f"required must be bool, not {type(required).__name__}")
        p = self.plumbing
        p.storage.accounts.set_must_change_password(account_id, required)
        p.emit("password_change_required", account_id, required="yes" if required else "no")

    def _changed_since(self, account: Account) -> bool:
        fresh = self.plumbing.storage.accounts.get(account.id)
        return fresh is None or fresh.password_hash != account.password_hash
