"""The tokens the flows hand out and take back: a table of purposes and one redeem step.

=============  ===========================  =========================================
purpose        lifetime (settings)          bound to (dies when it changes)
=============  ===========================  =========================================
``reset``      ``reset_link_lifetime``      the account's security stamp
``confirm``    ``confirm_link_lifetime``    the e-mail address (casefolded)
``sms_grant``  ``sms_grant_lifetime``       the account's security stamp
``email_change`` ``email_change_link_lifetime`` the stamp and the pending address
``email_undo`` ``email_undo_lifetime``      the previous address and when it was replaced
=============  ===========================  =========================================

An undo link is bound to the address a change replaced, not to the stamp: a hijacker who
changed the address and then the password must not be able to kill the owner's undo link.

The store replaces the security stamp with a fresh random one on every change of password
or e-mail and never reuses one, so a reset link or grant dies at the first change and stays
dead even if the password or the address later comes back to what it was.

:meth:`Tokens.redeem` is the one way a flow takes a token back: verify its signature,
purpose and expiry; load the account and check the token is bound to its current state;
then consume it in the single-use ledger — exactly once, even under concurrent redemption.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from kaspi_identity._errors import ExpiredTokenError, InvalidTokenError
from kaspi_identity.policy import PolicyResult
from kaspi_identity.services._clock import Clock
from kaspi_identity.services._settings import IdentitySettings
from kaspi_identity.storage import Account, Storage
from kaspi_identity.tokens import TokenClaims, TokenPurpose, TokenService

__all__ = ["PURPOSES", "Purpose", "Redemption", "Tokens", "bound_state", "token_service"]


def _stamp(account: Account) -> str:
    return account.security_stamp


def _address(account: Account) -> str | None:
    return None if account.email is None else account.email.casefold()


def _pending_address(account: Account) -> str | None:
    pending = account.pending_email
    return None if pending is None else f"{account.security_stamp}\x00{pending.casefold()}"


def _previous_address(account: Account) -> str | None:
    previous, changed = account.previous_email, account.email_changed_at
    if previous is None or changed is None:
        return None
    return f"{previous.casefold()}\x00{changed.isoformat()}"


@dataclass(frozen=True, slots=True)
class Purpose:
    """What a token of one purpose lives and what account state it is bound to."""

    lifetime: Callable[[IdentitySettings], timedelta]
    #: The state a token is bound to; ``None`` when the account cannot hold such a token.
    bound_to: Callable[[Account], str | None]


#: Every purpose a flow issues a token for.
PURPOSES: Final[Mapping[str, Purpose]] = {
    "reset": Purpose(lambda s: s.reset_link_lifetime, _stamp),
    "confirm": Purpose(lambda s: s.confirm_link_lifetime, _address),
    "sms_grant": Purpose(lambda s: s.sms_grant_lifetime, _stamp),
    "email_change": Purpose(lambda s: s.email_change_link_lifetime, _pending_address),
    "email_undo": Purpose(lambda s: s.email_undo_lifetime, _previous_address),
}


def token_service(settings: IdentitySettings) -> TokenService:
    """The token issuer a service builds from its settings (keys and lifetimes)."""
    return TokenService(
        settings.secret_keys,
        lifetimes={name: purpose.lifetime(settings) for name, purpose in PURPOSES.items()},
    )


def bound_state(purpose: str, account: Account) -> str | None:
    """What a token of ``purpose`` for ``account`` is bound to (``None``: it cannot have one)."""
    return PURPOSES[purpose].bound_to(account)


@dataclass(frozen=True, slots=True)
class Redemption:
    """A token taken back: its claims, the account, and whether it was consumed.

    ``result`` is what the ``check`` given to :meth:`Tokens.redeem` answered; when it is
    falsy the token was **not** consumed (so the form can be shown again).
    """

    claims: TokenClaims
    account: Account
    result: PolicyResult

    @property
    def spent(self) -> bool:
        """Whether the token was consumed."""
        return bool(self.result)


_ACCEPTED: Final = PolicyResult()


class Tokens:
    """Issues tokens bound to an account's state and redeems them, through ``issuer``.

    Args:
        issuer: signs and verifies (the service's ``tokens`` attribute).
        storage: the accounts and the single-use ledger.
        clock: the time of issue and redemption.
    """

    def __init__(self, issuer: TokenService, storage: Storage, clock: Clock) -> None:
        self.issuer = issuer
        self._storage = storage
        self._clock = clock

    def issue(self, purpose: TokenPurpose, account: Account | None) -> str:
        """A token of ``purpose`` bound to ``account``'s state.

        For ``None`` (or an account that cannot hold one, e.g. a confirmation for an
        account without an address) a token for nobody is signed, so an unknown account
        costs the same work as a known one.
        """
        account_id, state = self._bound(purpose, account)
        return self.issuer.issue(purpose, account_id, state=state, now=self._clock.now())

    def draft(self, purpose: TokenPurpose, account: Account | None) -> dict[str, str | int]:
        """The unsigned body of :meth:`issue`'s token, to be sealed when the letter is written.

        The same work for ``None`` as for an account, as :meth:`issue`.
        """
        account_id, state = self._bound(purpose, account)
        return self.issuer.draft(purpose, account_id, state=state, now=self._clock.now())

    @staticmethod
    def _bound(purpose: TokenPurpose, account: Account | None) -> tuple[str, str]:
        """The account id and state a token is bound to; a placeholder for nobody."""
        state = None if account is None else bound_state(purpose, account)
        if account is None or state is None:
            return "unknown", "-"
        return account.id, state

    def minutes(self, purpose: TokenPurpose) -> int:
        """The lifetime of ``purpose`` in whole minutes (at least 1), for a letter."""
        return max(1, int(self.issuer.lifetime(purpose).total_seconds() // 60))

    def days(self, purpose: TokenPurpose) -> int:
        """The lifetime of ``purpose`` in whole days (at least 1), for a letter."""
        return max(1, int(self.issuer.lifetime(purpose).total_seconds() // 86400))

    def hours(self, purpose: TokenPurpose) -> int:
        """The lifetime of ``purpose`` in whole hours (at least 1), for a letter."""
        return max(1, int(self.issuer.lifetime(purpose).total_seconds() // 3600))

    def redeem(
        self,
        token: str,
        purposes: tuple[TokenPurpose, ...],
        *,
        now: datetime,
        check: Callable[[Account], PolicyResult] | None = None,
    ) -> Redemption:
        """Verify ``token``, check what it is bound to, run ``check``, then consume it.

        ``token`` may be of any of ``purposes``, tried in order (an expired token of an
        earlier purpose is reported as expired). When ``check`` answers falsy the token is
        not consumed; it is checked once more against the account as it is now, so a token
        a concurrent redemption used is reported dead rather than the check's answer.

        Raises:
            InvalidTokenError: the token is invalid, used, stale or expired
                (:class:`ExpiredTokenError`), or its account is gone.
        """
        claims = self._verify(token, purposes, now)
        account = self._bound_account(claims)
        result = _ACCEPTED if check is None else check(account)
        if not result:
            self._bound_account(claims)
            return Redemption(claims, account, result)
        if not self._storage.ledger.consume(claims.token_id, claims.dies_at, now=self._clock.now()):
            raise InvalidTokenError("invalid token")
        return Redemption(claims, account, result)

    def _verify(self, token: str, purposes: tuple[TokenPurpose, ...], now: datetime) -> TokenClaims:
        *earlier, last = purposes
        for purpose in earlier:
            try:
                return self.issuer.verify(token, purpose, now=now)
            except ExpiredTokenError:
                raise
            except InvalidTokenError:
                pass
        # Verified outside any ``except`` block, so no exception chain rides along.
        return self.issuer.verify(token, last, now=now)

    def _bound_account(self, claims: TokenClaims) -> Account:
        """The token's account, if the token is still bound to its current state."""
        account = self._storage.accounts.get(claims.account_id)
        state = None if account is None else bound_state(claims.purpose, account)
        if account is None or state is None:
            raise InvalidTokenError("invalid token")
        self.issuer.check_state(claims, state)
        return account
