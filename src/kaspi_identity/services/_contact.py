"""Changes of contact details: the e-mail address, the phone, the time zone of letters.

The contracts are documented on :class:`~kaspi_identity.services.IdentityService`, which
delegates to :class:`ContactChange`. Every change is one compare-and-set of the account's
contact details on its security stamp (:meth:`~kaspi_identity.storage.AccountStore.update_contact`),
with the notices to the channels the account had before it enqueued in the same step when the
storage has an outbox. The steps::

    request_email_change   password proven -> pending_email, link to the new address
    confirm_email_change   the link -> the address changes (new stamp); the old one gets
                           a notice with an undo link, the verified phone an SMS
    undo_email_change      the undo link -> the old address back, the password removed,
                           the phone unverified (new stamp); a reset link to the address
    request_phone_change   password proven -> pending_phone, a code to the new number
    verify_phone           the code -> the number is the account's, verified (new stamp)
    remove_phone           password proven -> no phone (new stamp)

A change of address or number that belongs to another account is refused without saying
so: the answer and the work are those of a free one, and the address's or number's owner
is told instead of sent a link or code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from kaspi_identity._errors import (
    AccountNotFoundError,
    DuplicateAccountError,
    InvalidCodeError,
    InvalidTokenError,
    KaspiIdentityError,
)
from kaspi_identity._keys import KeyRing
from kaspi_identity.phone import mask_phone
from kaspi_identity.services._flow import Flow
from kaspi_identity.services._identifiers import clean_email, clean_time_zone, require_str
from kaspi_identity.services._letters import Letter, TokenLink
from kaspi_identity.services._login import LogIn, Refusal
from kaspi_identity.services._reset_sms import SmsReset
from kaspi_identity.services._results import ContactChangeResult
from kaspi_identity.storage import Account, CodeAttempt, Contact

__all__ = ["ContactChange"]

#: How often a change is tried again when a concurrent write (a log-in's rehash, another
#: tab) replaced the stamp between the read and the compare-and-set.
_ATTEMPTS = 3


def _refused(refusal: Refusal) -> ContactChangeResult:
    return ContactChangeResult(False, refusal.reason, retry_after=refusal.retry_after)


@dataclass(eq=False)
class ContactChange(Flow):
    """The e-mail, phone and time-zone flows (see the module docstring)."""

    login: LogIn = field(kw_only=True)
    keys: KeyRing = field(kw_only=True)

    def __post_init__(self) -> None:
        self.code_keys = self.keys.derive("phone-code")
        self.absent_code_key = self.keys.newest("phone-code/absent")

    # -- the shared steps -------------------------------------------------------------------

    def _write(
        self,
        account: Account,
        contact: Contact,
        *,
        rotate_stamp: bool = True,
        clear_password: bool = False,
        letters: Sequence[Letter] = (),
    ) -> Account | None:
        """Compare-and-set ``contact`` on ``account``'s stamp; its notices with it.

        Queued in the same step when the unit of work takes messages, else posted after a
        won write. ``None`` when the stamp changed meanwhile.

        Raises:
            DuplicateAccountError: the address or number is another account's now.
        """
        p = self.plumbing
        queued = p.for_unit(letters)
        unit = p.storage.with_history
        if queued is not None and unit is not None:
            return unit.update_contact(
                account.id,
                expected_stamp=account.security_stamp,
                contact=contact,
                rotate_stamp=rotate_stamp,
                clear_password=clear_password,
                messages=queued,
            )
        written = p.storage.accounts.update_contact(
            account.id,
            expected_stamp=account.security_stamp,
            contact=contact,
            rotate_stamp=rotate_stamp,
            clear_password=clear_password,
        )
        if written is not None and letters:
            p.post(*letters)
        return written

    def _set_pending(self, account: Account, **pending: str) -> Account | None:
        """Write a change asked for (``pending_email`` / ``pending_phone``), stamp kept.

        Read again and retried when a concurrent write (a rehash, another tab) replaced the
        stamp; ``None`` if it kept changing.
        """
        for _ in range(_ATTEMPTS):
            contact = replace(account.contact, **pending)  # type: ignore[arg-type]
            written = self._write(account, contact, rotate_stamp=False)
            if written is not None:
                return written
            account = self._account(account.id)
        return None

    def _account(self, account_id: str) -> Account:
        account = self.plumbing.storage.accounts.get(account_id)
        if account is None:
            raise AccountNotFoundError("no account with this id")
        return account

    def _done(self, account: Account) -> ContactChangeResult:
        return ContactChangeResult(
            True,
            "ok",
            end_other_sessions=True,
            security_stamp=account.security_stamp,
            account_id=account.id,
        )

    # -- e-mail ------------------------------------------------------------------------------

    def request_email_change(
        self, account_id: str, password: str, new_email: str, *, client_key: str
    ) -> ContactChangeResult:
        """See :meth:`IdentityService.request_email_change`."""
        p = self.plumbing
        require_str(
            account_id=account_id, password=password, new_email=new_email, client_key=client_key
        )
        email = clean_email(new_email)
        assert email is not None  # a str was given; not a security check
        if p.settings.email_undo_url is None:
            # Without a page of its own the undo link would open the reset page, which
            # cannot take it: the old address would get a way back that does not work.
            raise KaspiIdentityError(
                "a change of address needs IdentitySettings.email_undo_url, the page the"
                " undo link sent to the old address opens"
            )
        proven = self.login.prove(
            account_id, password, client_key=client_key, action="email_change"
        )
        if isinstance(proven, Refusal):
            return _refused(proven)
        account = proven
        if account.email is not None and account.email.casefold() == email.casefold():
            return ContactChangeResult(False, "unchanged")
        s = p.settings
        # Per account, and per address asked for: nobody floods a mailbox with these letters.
        wait = p.first_limited(
            ("email-change-account", f"id:{account.id}", s.reset_per_identifier),
            ("email-change-to", email.casefold(), s.reset_per_identifier),
        )
        if wait is not None:
            p.emit("rate_limited", account.id, action="email_change")
            return ContactChangeResult(False, "throttled", retry_after=wait)
        owner = p.storage.accounts.find_by_login("email", email)
        # The same write whether or not the address is free: the answer, the work and the
        # stored state tell nothing; a taken one can never be confirmed.
        written = self._set_pending(account, pending_email=email)
        if written is None:
            return ContactChangeResult(False, "conflict")
        if owner is None:
            letter = p.letter(
                "email_change_confirm",
                email,
                account.language,
                account.id,
                link=TokenLink(
                    "email_change", "email_change", self.tokens.draft("email_change", written)
                ),
                hours=self.tokens.hours("email_change"),
            )
        else:
            # To the address as its owner stored it, never to the typed spelling.
            letter = p.letter(
                "email_change_taken",
                owner.email or email,
                owner.language,
                owner.id,
                reset_link=p.reset_link(owner),
            )
        p.post(letter)
        p.emit("email_change_requested", account.id)
        return ContactChangeResult(True, "ok", account_id=account.id)

    def confirm_email_change(self, token: str) -> ContactChangeResult:
        """See :meth:`IdentityService.confirm_email_change`."""
        p = self.plumbing
        now = p.clock.now()
        account = self.tokens.redeem(token, ("email_change",), now=now).account
        new = account.pending_email
        assert new is not None  # the token is bound to it; not a security check
        previous, changed_at = self._undo_target(account, now)
        contact = replace(
            account.contact,
            email=new,
            email_confirmed=True,
            pending_email=None,
            previous_email=previous,
            email_changed_at=changed_at,
        )
        letters = self._email_notices(account, contact)
        try:
            written = self._write(account, contact, letters=letters)
        except DuplicateAccountError:
            # Taken by a sign-up since the request: nobody's link may move it.
            p.emit("email_change_failed", account.id, reason="taken")
            return ContactChangeResult(False, "conflict", account_id=account.id)
        if written is None:  # the stamp changed: the token is bound to the old one
            raise InvalidTokenError("invalid token")
        p.emit("email_changed", account.id)
        return self._done(written)

    def _undo_target(self, account: Account, now: datetime) -> tuple[str | None, datetime | None]:
        """The address an undo link gives back, and when its window opened.

        The first address replaced stays the one to give back while its window is open: a
        hijacker who changes the address twice must not make his own first one the way back.
        """
        window = self.plumbing.settings.email_undo_lifetime
        previous, changed = account.previous_email, account.email_changed_at
        if previous is not None and changed is not None and now < changed + window:
            return previous, changed
        if account.email is None:
            return None, None
        return account.email, now

    def _email_notices(self, account: Account, contact: Contact) -> list[Letter]:
        """The notices of a new address: to the old one (with an undo link), SMS to the phone."""
        p = self.plumbing
        letters = p.notices("email_changed", account, email=False)
        if account.email is not None and contact.previous_email is not None:
            after = replace(
                account,
                previous_email=contact.previous_email,
                email_changed_at=contact.email_changed_at,
            )
            undo = TokenLink("email_undo", "email_undo", self.tokens.draft("email_undo", after))
            letters.insert(
                0,
                p.letter(
                    "email_changed",
                    account.email,
                    account.language,
                    account.id,
                    time_zone=account.time_zone,
                    time=p.clock.now(),
                    undo_link=undo,
                    days=self.tokens.days("email_undo"),
                ),
            )
        return letters

    def undo_email_change(self, token: str) -> ContactChangeResult:
        """See :meth:`IdentityService.undo_email_change`."""
        p = self.plumbing
        redeemed = self.tokens.redeem(token, ("email_undo",), now=p.clock.now())
        account = redeemed.account
        bound = (account.previous_email, account.email_changed_at)
        for _ in range(_ATTEMPTS):
            if (account.previous_email, account.email_changed_at) != bound:
                break
            restored = self._restore(account)
            if restored is not None:
                p.emit("email_change_undone", account.id)
                if restored.email is not None:
                    p.post(p.reset_letter(restored))
                return self._done(restored)
            account = self._account(account.id)
        raise InvalidTokenError("invalid token")

    def _restore(self, account: Account) -> Account | None:
        """Give the previous address back, remove the password, unverify the phone.

        Whoever changed the address may know the password and may have proven a phone of
        his: both stop working, so only the owner of the address can get back in (by the
        reset link sent to it). If the old address is another account's by now, none is
        kept: the hijacker's must not stay the way in.
        """
        base = replace(
            account.contact,
            email=account.previous_email,
            email_confirmed=True,
            pending_email=None,
            previous_email=None,
            email_changed_at=None,
            phone_verified=False,
            pending_phone=None,
        )
        try:
            return self._write(account, base, clear_password=True)
        except DuplicateAccountError:
            self.plumbing.emit("email_change_failed", account.id, reason="taken")
            bare = replace(base, email=None, email_confirmed=False)
            return self._write(account, bare, clear_password=True)

    # -- phone -------------------------------------------------------------------------------

    @staticmethod
    def _code_key(account_id: str) -> str:
        """Where an account's phone code is stored: one code per account, not per number."""
        digest = hashlib.sha256(account_id.encode("utf-8", "surrogatepass")).hexdigest()
        return f"phone-change:{digest[:40]}"

    @staticmethod
    def _code_subject(account_id: str, e164: str) -> str:
        # A code proves one number for one account: a new request for another number, or
        # another account's code, never matches.
        return f"{account_id}\x00{e164}"

    def request_phone_change(
        self, account_id: str, password: str, phone: str, *, client_key: str
    ) -> ContactChangeResult:
        """See :meth:`IdentityService.request_phone_change`."""
        p = self.plumbing
        require_str(account_id=account_id, password=password, phone=phone, client_key=client_key)
        number = p.parse_phone(phone)
        if p.sms_sender is None:
            raise KaspiIdentityError("no SMS sender is configured")
        proven = self.login.prove(
            account_id, password, client_key=client_key, action="phone_change"
        )
        if isinstance(proven, Refusal):
            return _refused(proven)
        account = proven
        if account.phone == number.e164 and account.phone_verified:
            return ContactChangeResult(False, "unchanged")
        wait = p.sms_limited(number.e164, client_key, action="phone_change")
        if wait is not None:
            return ContactChangeResult(False, "throttled", retry_after=wait)
        owner = p.storage.accounts.find_by_login("phone", number.e164)
        # A number another account holds unproven does not block one who can prove it: it
        # may be a typo, or squatted to keep its owner out. Only a verified one is taken.
        taken = owner is not None and owner.id != account.id and owner.phone_verified
        written = self._set_pending(account, pending_phone=number.e164)
        if written is None:
            return ContactChangeResult(False, "conflict")
        account = written
        s, now = p.settings, p.clock.now()
        # A code is made and stored either way; another account's number gets one under a
        # key no attempt is hashed with, so it can never be right, and its owner is told.
        code, text = p.letters.new_code(s.sms_code_digits)
        key = self.absent_code_key if taken else self.code_keys[0]
        p.storage.codes.put(
            self._code_key(account.id),
            SmsReset.code_hash(key, self._code_subject(account.id, number.e164), code),
            expires_at=now + s.sms_code_lifetime,
            now=now,
            failure_window=s.sms_failure_window,
        )
        if taken:
            assert owner is not None
            letter = p.letter("phone_in_use", number.e164, owner.language, owner.id, sms=True)
        else:
            letter = p.letter(
                "phone_code",
                number.e164,
                account.language,
                account.id,
                sms=True,
                code=text,
                minutes=max(1, int(s.sms_code_lifetime.total_seconds() // 60)),
            )
        p.post(letter)
        p.emit("phone_change_requested", account.id)
        return ContactChangeResult(True, "ok", account_id=account.id)

    def verify_phone(self, account_id: str, code: str) -> ContactChangeResult:
        """See :meth:`IdentityService.verify_phone`."""
        p = self.plumbing
        require_str(account_id=account_id, code=code)
        account = self._account(account_id)
        pending = account.pending_phone
        if pending is None:
            p.emit("phone_code_failed", account.id, reason="expired")
            raise InvalidCodeError("expired")
        s = p.settings
        candidate = code.strip()[:16] if len(code) <= 64 else "-"
        subject = self._code_subject(account.id, pending)
        outcome = p.storage.codes.attempt(
            self._code_key(account.id),
            [SmsReset.code_hash(key, subject, candidate) for key in self.code_keys],
            now=p.clock.now(),
            max_attempts=s.sms_max_attempts,
        )
        if outcome is not CodeAttempt.OK:
            reason = {
                CodeAttempt.MISMATCH: "wrong",
                CodeAttempt.EXHAUSTED: "exhausted",
            }.get(outcome, "expired")
            p.emit("phone_code_failed", account.id, reason=reason)
            raise InvalidCodeError(reason)
        for _ in range(_ATTEMPTS):
            if account.pending_phone != pending:
                break  # a newer request replaced the number this code proves
            contact = replace(
                account.contact, phone=pending, phone_verified=True, pending_phone=None
            )
            letters: list[Letter] = []
            if account.phone != pending:
                letters = p.notices("phone_changed", account, phone=mask_phone(pending))
            try:
                written = self._write(account, contact, letters=letters)
            except DuplicateAccountError:
                if not self._release_unproven(pending):
                    p.emit("phone_code_failed", account.id, reason="taken")
                    return ContactChangeResult(False, "conflict", account_id=account.id)
                written = None  # the number is free now: write again
            if written is not None:
                p.emit("phone_verified", account.id, changed="yes" if letters else "no")
                return self._done(written)
            account = self._account(account.id)
        return ContactChangeResult(False, "conflict", account_id=account.id)

    def _release_unproven(self, e164: str) -> bool:
        """Take ``e164`` off the account that holds it unproven; whether it is free now.

        The code just proved the number belongs to whoever verified it, so an account that
        only typed it (at sign-up, never proven) loses it; its address is told. A verified
        holder keeps it.
        """
        p = self.plumbing
        for _ in range(_ATTEMPTS):
            holder = p.storage.accounts.find_by_login("phone", e164)
            if holder is None:
                return True
            if holder.phone_verified:
                return False
            contact = replace(holder.contact, phone=None, phone_verified=False)
            letters = p.notices("phone_removed", holder, sms=False)
            if self._write(holder, contact, letters=letters) is not None:
                p.emit("phone_removed", holder.id, reason="proven_elsewhere")
                return True
        return False

    def remove_phone(
        self, account_id: str, password: str, *, client_key: str
    ) -> ContactChangeResult:
        """See :meth:`IdentityService.remove_phone`."""
        p = self.plumbing
        require_str(account_id=account_id, password=password, client_key=client_key)
        proven = self.login.prove(
            account_id, password, client_key=client_key, action="phone_removal"
        )
        if isinstance(proven, Refusal):
            return _refused(proven)
        account = proven
        for _ in range(_ATTEMPTS):
            if account.phone is None and account.pending_phone is None:
                return ContactChangeResult(False, "no_phone", account_id=account.id)
            contact = replace(account.contact, phone=None, phone_verified=False, pending_phone=None)
            letters = [] if account.phone is None else p.notices("phone_removed", account)
            written = self._write(account, contact, letters=letters)
            if written is not None:
                p.emit("phone_removed", account.id)
                return self._done(written)
            account = self._account(account.id)
        return ContactChangeResult(False, "conflict", account_id=account.id)

    # -- time zone ---------------------------------------------------------------------------

    def set_time_zone(self, account_id: str, time_zone: str | None) -> None:
        """See :meth:`IdentityService.set_time_zone`."""
        require_str(account_id=account_id)
        time_zone = clean_time_zone(time_zone)
        account = self._account(account_id)
        for _ in range(_ATTEMPTS):
            contact = replace(account.contact, time_zone=time_zone)
            if self._write(account, contact, rotate_stamp=False) is not None:
                self.plumbing.emit("time_zone_set", account.id)
                return
            account = self._account(account.id)
        raise KaspiIdentityError("the account kept changing; try again")
