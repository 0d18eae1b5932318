"""The change of password of a logged-in account.

The contract is documented on :meth:`~kaspi_identity.services.IdentityService.change_password`,
which delegates to :class:`PasswordChange`. Checking the current password is a log-in
attempt: it is reserved and judged by :class:`~kaspi_identity.services._login.LogIn`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kaspi_identity.policy import PolicyResult
from kaspi_identity.services._age import changeable_at
from kaspi_identity.services._flow import Flow
from kaspi_identity.services._identifiers import require_str
from kaspi_identity.services._login import LogIn, Refusal
from kaspi_identity.services._plumbing import user_info
from kaspi_identity.services._results import PasswordChangeResult
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
        empty, now = PolicyResult(), p.clock.now()
        proven = self.login.prove(
            account_id, current, client_key=client_key, action="change_password"
        )
        if isinstance(proven, Refusal):
            return PasswordChangeResult(False, proven.reason, empty, retry_after=proven.retry_after)
        account = proven
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
        if not self.writer.replace(account, new, letters=p.changed_notice(account)):
            return PasswordChangeResult(False, "conflict", result)
        p.emit("password_changed", account.id, via="change")
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
