"""Set-up helpers for tests that need an account in a given state."""

from __future__ import annotations

from dataclasses import replace

from kaspi_identity._errors import AccountNotFoundError, KaspiIdentityError
from kaspi_identity.storage import Account, AccountStore

__all__ = ["mark_phone_verified"]


def mark_phone_verified(accounts: AccountStore, account_id: str) -> Account:
    """Mark the account's phone verified in the store, as a proven code would.

    For the set-up of a test of the SMS reset (only a verified phone receives reset codes)
    that does not walk :meth:`~kaspi_identity.services.IdentityService.request_phone_change`
    and :meth:`~kaspi_identity.services.IdentityService.verify_phone` first. The security
    stamp is kept, so sessions and links made before stay valid. Returns the account as
    stored.

    Raises:
        AccountNotFoundError: no account has id ``account_id``.
        KaspiIdentityError: the account has no phone, or kept changing under the call.
    """
    for _ in range(3):
        account = accounts.get(account_id)
        if account is None:
            raise AccountNotFoundError("no account with this id")
        if account.phone is None:
            raise KaspiIdentityError("the account has no phone to mark verified")
        written = accounts.update_contact(
            account.id,
            expected_stamp=account.security_stamp,
            contact=replace(account.contact, phone_verified=True),
            rotate_stamp=False,
        )
        if written is not None:
            return written
    raise KaspiIdentityError("the account kept changing; try again")
