"""The reset of a forgotten password by an e-mail link, and its completion.

The contracts are documented on :class:`~kaspi_identity.services.IdentityService`, which
delegates to :class:`EmailReset`. :meth:`EmailReset.reset_password` also completes the
reset by SMS: it takes the grant a verified code gave (see ``_reset_sms``).
"""

from __future__ import annotations

from kaspi_identity._errors import InvalidTokenError
from kaspi_identity.policy import PolicyResult
from kaspi_identity.services._flow import Flow
from kaspi_identity.services._identifiers import require_str
from kaspi_identity.services._plumbing import user_info
from kaspi_identity.services._results import PasswordResetResult, ResetRequestResult
from kaspi_identity.storage import Account

__all__ = ["EmailReset"]


class EmailReset(Flow):
    """``request_password_reset`` and ``reset_password``."""

    def request_password_reset(self, identifier: str, *, client_key: str) -> ResetRequestResult:
        """See :meth:`IdentityService.request_password_reset`."""
        p = self.plumbing
        account, refused = p.letter_request(
            "reset", identifier, client_key, action="password_reset"
        )
        if refused is not None:
            return refused
        # Equal work: an unknown account gets a token drafted and a letter nobody will see.
        letter = p.reset_letter(account)
        return p.hand_over("password_reset", account, letter)

    def reset_password(self, token: str, new: str, confirmation: str) -> PasswordResetResult:
        """See :meth:`IdentityService.reset_password`."""
        p = self.plumbing
        require_str(new=new, confirmation=confirmation)

        def check(account: Account) -> PolicyResult:
            return self.writer.history.validate(
                p.policy, account.id, new, user=user_info(account), confirmation=confirmation
            )

        redeemed = self.tokens.redeem(token, ("reset", "sms_grant"), now=p.clock.now(), check=check)
        account, result = redeemed.account, redeemed.result
        if not redeemed.spent:
            return PasswordResetResult(False, result)
        if not self.writer.replace(account, new, letters=p.changed_notice(account, reset=True)):
            raise InvalidTokenError("invalid token")
        p.storage.accounts.clear_login_failures(account.id)
        via = "email" if redeemed.claims.purpose == "reset" else "sms"
        if via == "email" and account.email is not None and not account.email_confirmed:
            # The link reached this mailbox: that proves control of it, as a confirmation does.
            p.storage.accounts.mark_email_confirmed(
                account.id, email=account.email, now=p.clock.now()
            )
        p.emit("password_reset_completed", account.id, via=via)
        return PasswordResetResult(True, result, account.id, end_sessions=True)
