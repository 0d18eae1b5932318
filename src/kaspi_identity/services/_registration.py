"""Registration and the confirmation of its e-mail address.

The methods' contracts are documented on :class:`~kaspi_identity.services.IdentityService`,
which delegates to :class:`Registration`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from kaspi_identity._errors import DuplicateAccountError, InvalidIdentifierError, InvalidTokenError
from kaspi_identity.i18n import normalize_language
from kaspi_identity.phone import parse_iin
from kaspi_identity.policy import UserInfo
from kaspi_identity.services._flow import Flow
from kaspi_identity.services._identifiers import (
    clean_email,
    clean_names,
    clean_time_zone,
    clean_username,
    registration_value,
    require_str,
)
from kaspi_identity.services._letters import Letter
from kaspi_identity.services._plumbing import ABSENT_ADDRESS
from kaspi_identity.services._results import RegistrationResult, ResetRequestResult
from kaspi_identity.storage import Account, LoginKind, NewAccount

__all__ = ["Registration"]

# The identifiers whose clash at registration answers like a new account, by field name.
_CLASH_KINDS: Final[dict[str, LoginKind]] = {"email": "email", "phone": "phone", "iin": "iin"}
# Which letter tells the owner of a taken identifier that someone registered with it.
_TAKEN_LETTERS: Final[dict[str, str]] = {
    "email": "already_registered",
    "phone": "phone_already_registered",
    "iin": "iin_already_registered",
}


class Registration(Flow):
    """``register``, ``confirm_email`` and ``resend_confirmation``."""

    def register(
        self,
        *,
        password: str,
        confirmation: str,
        client_key: str,
        email: str | None,
        username: str | None,
        phone: str | None,
        iin: str | None,
        names: Sequence[str],
        language: str,
        time_zone: str | None = None,
    ) -> RegistrationResult:
        """See :meth:`IdentityService.register`."""
        p = self.plumbing
        require_str(password=password, confirmation=confirmation, client_key=client_key)
        lang = normalize_language(language)
        email = clean_email(email)
        username = clean_username(username)
        if phone is not None:
            phone = p.parse_phone(phone).e164
        if iin is not None:
            iin = parse_iin(iin).value
        if email is None and username is None and phone is None and iin is None:
            raise InvalidIdentifierError(
                "email", "an e-mail, user name, phone or IIN is required", code="missing"
            )
        kept = clean_names(names)
        time_zone = clean_time_zone(time_zone)
        user = UserInfo(username=username, email=email, phone=phone, names=kept, iin=iin)
        result = p.policy.check(password, user=user, confirmation=confirmation)
        if not result:
            return RegistrationResult(False, result)
        s = p.settings
        wanted = registration_value(email=email, phone=phone, iin=iin, username=username)
        wait = p.first_limited(
            ("register-client", client_key, s.register_per_client),
            ("register-id", wanted, s.register_per_identifier),
        )
        if wait is not None:
            p.emit("rate_limited", None, action="register")
            return RegistrationResult(False, result, retry_after=wait)
        # Hash before looking anything up, so both answers below cost the same work.
        new = NewAccount(
            username=username,
            email=email,
            phone=phone,
            password_hash=self.writer.hash(password),
            language=lang,
            iin=iin,
            names=kept,
            time_zone=time_zone,
        )
        while True:
            try:
                account, pending = self.writer.create(new, password, letters=self._confirmations)
            except DuplicateAccountError as exc:
                if exc.field == "username":
                    return RegistrationResult(False, result, username_taken=True)
                kind = _CLASH_KINDS.get(exc.field)
                if kind is None:
                    raise  # a clash the protocol does not name: the store is at fault
                if kind != "email" and new.email is not None:
                    # Someone else's number: tell its owner, and register without it.
                    self._existing_registration(kind, getattr(new, kind))
                    new = replace(new, phone=None) if kind == "phone" else replace(new, iin=None)
                    continue
                self._existing_registration(kind, getattr(new, kind))
                return RegistrationResult(True, result)
            break
        p.emit("registered", account.id)
        p.post(*pending)
        self.writer.record_first(account, password)
        return RegistrationResult(True, result)

    def _existing_registration(self, field: LoginKind, value: str | None) -> None:
        p = self.plumbing
        existing = p.storage.accounts.find_by_login(field, value) if value is not None else None
        p.emit("registration_duplicate", existing.id if existing else None, field=field)
        if existing is None or existing.email is None:
            return
        # Repeated sign-ups with someone's address must not flood their inbox: these letters
        # have a limit of their own (the size of the reset limit, but a separate count, so
        # the sign-ups cannot use up the owner's reset requests either).
        limit = p.settings.reset_per_identifier
        if p.limited("registered-letter", f"id:{existing.id}", limit) is not None:
            p.emit("rate_limited", existing.id, action="already_registered_letter")
            return
        p.post(
            p.letter(
                _TAKEN_LETTERS[field],
                existing.email,
                existing.language,
                existing.id,
                reset_link=p.reset_link(existing),
            )
        )

    def _confirmations(self, account: Account) -> list[Letter]:
        """The confirmation letter a new account gets (none without an address)."""
        return [] if account.email is None else [self._confirmation_letter(account)]

    def _confirmation_letter(self, account: Account | None, *, deliver: bool = True) -> Letter:
        """The confirmation letter for ``account``, or a twin nobody will get."""
        if account is None or account.email is None:
            to, lang, deliver = ABSENT_ADDRESS, "en", False
        else:
            to, lang = account.email, account.language
        return self.plumbing.letter(
            "confirm_email",
            to,
            lang,
            None if account is None else account.id,
            deliver=deliver,
            link=self.plumbing.confirm_link(account),
            hours=self.tokens.hours("confirm"),
        )

    def confirm_email(self, token: str) -> str:
        """See :meth:`IdentityService.confirm_email`."""
        p = self.plumbing
        now = p.clock.now()
        account = self.tokens.redeem(token, ("confirm",), now=now).account
        assert account.email is not None  # the token is bound to it; not a security check
        # A compare-and-set on the address: if it changed since the check above, the new
        # address is not confirmed by a link sent to the old one.
        if not p.storage.accounts.mark_email_confirmed(account.id, email=account.email, now=now):
            raise InvalidTokenError("invalid token")
        p.emit("email_confirmed", account.id)
        return account.id

    def resend_confirmation(self, identifier: str, *, client_key: str) -> ResetRequestResult:
        """See :meth:`IdentityService.resend_confirmation`."""
        p = self.plumbing
        account, refused = p.letter_request(
            "confirm", identifier, client_key, action="resend_confirmation"
        )
        if refused is not None:
            return refused
        # A token is drafted and a letter posted either way; it goes out only when pending.
        pending = account is not None and not account.email_confirmed
        p.post(self._confirmation_letter(account, deliver=pending))
        if pending:
            assert account is not None
            p.emit("confirmation_requested", account.id, sent="yes")
        else:
            p.emit("confirmation_requested", None if account is None else account.id, sent="no")
        return ResetRequestResult(True)
