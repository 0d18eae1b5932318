"""``IdentityService``: registration, log-in, change of password and recovery.

A thin facade: it builds the collaborators once and each method delegates to the module
that owns its flow (see docs/architecture.md)::

    _registration   register, confirm_email, resend_confirmation
    _login          authenticate, session_is_current
    _change         change_password
    _reset_email    request_password_reset, reset_password (a link or an SMS grant)
    _reset_sms      request_sms_reset, verify_sms_code
    _contact        request_email_change, confirm_email_change, undo_email_change,
                    request_phone_change, verify_phone, remove_phone, set_time_zone

Written against the storage and delivery protocols only, so the same flows run on the memory,
SQLite, Redis or PostgreSQL adapters and on a host's own tables, and (through the greenlet
bridge of ``_async``) on their asynchronous faces.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from kaspi_identity._keys import KeyRing
from kaspi_identity.delivery import EmailSender, SmsSender
from kaspi_identity.hashing import PasswordHasher
from kaspi_identity.history import PasswordHistory
from kaspi_identity.i18n import Catalog
from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.services._audit import AuditSink
from kaspi_identity.services._change import PasswordChange
from kaspi_identity.services._clock import Clock, SystemClock
from kaspi_identity.services._contact import ContactChange
from kaspi_identity.services._login import LogIn
from kaspi_identity.services._passwords import PasswordWriter
from kaspi_identity.services._plumbing import NullAudit, Plumbing, check_letters
from kaspi_identity.services._registration import Registration
from kaspi_identity.services._reset_email import EmailReset
from kaspi_identity.services._reset_sms import SmsReset
from kaspi_identity.services._results import (
    ContactChangeResult,
    LoginResult,
    PasswordChangeResult,
    PasswordResetResult,
    RegistrationResult,
    ResetRequestResult,
)
from kaspi_identity.services._settings import IdentitySettings
from kaspi_identity.services._tokens import Tokens, token_service
from kaspi_identity.storage import Storage
from kaspi_identity.tokens import TokenService

__all__ = ["IdentityService"]


def _refuse_async(storage: object, email_sender: object, sms_sender: object, audit: object) -> None:
    """``TypeError`` for an asynchronous collaborator: the sync face would never await it.

    An async sender's coroutine would be dropped unawaited (nothing sent, the answer still
    "sent"), an async store's would be read as a truthy result.
    """
    calls = [
        (getattr(storage, "accounts", None), "find_by_login"),
        (email_sender, "send_email"),
        (sms_sender, "send_sms"),
        (audit, "emit"),
    ]
    for collaborator, method in calls:
        if collaborator is not None and inspect.iscoroutinefunction(
            getattr(collaborator, method, None)
        ):
            raise TypeError(
                f"{type(collaborator).__name__}.{method} is a coroutine function: give"
                " asynchronous stores, senders and sinks to AsyncIdentityService"
            )


class IdentityService:
    """The account and recovery flows a portal calls from its views.

    Args:
        storage: the stores (accounts, history, token ledger, codes, rate limits).
        settings: keys, link URLs, throttling and rate limits.
        email_sender: delivers letters.
        policy: the password rules (default ``PasswordPolicy()``).
        hasher: argon2id hasher (default profile ``OWASP_MINIMUM``).
        clock: where the time comes from (default: the system clock).
        audit: receives an :class:`AuditEvent` for everything that happens.
        sms_sender: delivers SMS codes; needed only for the reset by SMS.
        tokens: signs and verifies link tokens and SMS grants (default: a
            :class:`~kaspi_identity.tokens.TokenService` with ``settings.secret_keys`` and
            the lifetimes the settings give).
        catalog: the message catalog letters and SMS are written from (default: the
            built-in kk/ru/en one; see docs/delivery.md).

    Every method takes and returns plain values; none raises for a wrong password or an
    unknown account. Bad input (non-``str``, malformed identifiers) raises a typed error
    before anything is written.

    Raises:
        ValueError: a letter cannot be written with these settings (and catalog).
    """

    def __init__(
        self,
        storage: Storage,
        settings: IdentitySettings,
        *,
        email_sender: EmailSender,
        policy: PasswordPolicy | None = None,
        hasher: PasswordHasher | None = None,
        clock: Clock | None = None,
        audit: AuditSink | None = None,
        sms_sender: SmsSender | None = None,
        tokens: TokenService | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        _refuse_async(storage, email_sender, sms_sender, audit)
        self.storage = storage
        self.settings = settings
        self.policy = policy if policy is not None else PasswordPolicy()
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.audit: AuditSink = audit if audit is not None else NullAudit()
        self.tokens = tokens if tokens is not None else token_service(settings)
        keys = KeyRing(settings.secret_keys)
        self.history = PasswordHistory(
            storage.history, secret_keys=keys.derive("history"), hasher=self.hasher
        )
        # A service that would report success while sending nothing must not be built.
        check_letters(settings, catalog)
        tokens_ = Tokens(self.tokens, storage, self.clock)
        plumbing = self._plumbing = Plumbing(
            storage,
            settings,
            keys=keys,
            tokens=tokens_,
            policy=self.policy,
            hasher=self.hasher,
            clock=self.clock,
            audit=self.audit,
            email_sender=email_sender,
            sms_sender=sms_sender,
            catalog=catalog,
        )
        parts = (plumbing, tokens_, PasswordWriter(plumbing, self.history))
        self._registration = Registration(*parts)
        self._login = LogIn(*parts)
        self._change = PasswordChange(*parts, login=self._login)
        self._email_reset = EmailReset(*parts)
        self._sms_reset = SmsReset(*parts, keys=keys)
        self._contact = ContactChange(*parts, login=self._login, keys=keys)

    def __repr__(self) -> str:
        return f"<IdentityService site={self.settings.site_name!r} policy={self.policy!r}>"

    # -- registration --------------------------------------------------------------------------

    def register(
        self,
        *,
        password: str,
        confirmation: str,
        client_key: str,
        email: str | None = None,
        username: str | None = None,
        phone: str | None = None,
        iin: str | None = None,
        names: Sequence[str] = (),
        language: str = "en",
        time_zone: str | None = None,
    ) -> RegistrationResult:
        """Create an unconfirmed account and send the confirmation letter.

        The password is checked against the policy with the user's own data as personal
        information. An e-mail address (or phone) that already has an account gets the same
        answer as a new one; its owner receives an "already registered" letter instead.
        A phone number or IIN/BIN that belongs to another account is left off the new account
        (its owner is told by e-mail), and the registration goes on exactly as with a free
        one: the same answer and the same confirmation letter, so neither tells whose it is.
        An acceptable form is counted against ``register_per_client`` and
        ``register_per_identifier`` (the normalised e-mail, else phone, else user name); over
        a limit, the answer is not ``ok`` and ``retry_after`` says when to try again.

        Args:
            password: the chosen password.
            confirmation: the same password, typed again.
            client_key: who is asking (e.g. the client's IP address), for the rate limits.
            email: the e-mail address (the login on many portals); a confirmation link is
                sent to it.
            username: a public login name (letters, digits, ``.``, ``_``, ``-``; 2–64).
            phone: a mobile number in any common format ("8 701 123 45 67"); stored in E.164.
            iin: a Kazakh IIN/BIN (12 digits, check digit verified): a login of its own, and
                personal data (it and the birth date it encodes may not be in the password).
            names: the user's names, kept on the account for the personal-information rule
                of every later change of password.
            language: the account's language for letters ("en", "ru", "kk", or a tag).
            time_zone: the IANA zone times in the account's letters are written in
                (``None``: the site's ``time_zone``).

        A phone given here is not yet proven: it is a login, but receives reset codes only
        once :meth:`request_phone_change` and :meth:`verify_phone` have proven it.

        Raises:
            TypeError: a password or identifier is not a ``str``.
            InvalidIdentifierError: a malformed e-mail or user name (one that looks like a
                phone number or an IIN is refused too: those have fields of their own), or
                too many or too long names; nothing is written.
            InvalidIinError: a malformed IIN/BIN (``reason``, localised ``message(lang)``).
            InvalidPhoneError: a malformed phone, not a mobile, or from a region not allowed
                (its ``message(lang)`` says which, localised); nothing is written.
            UnknownLanguageError: ``language`` has no catalog.
            ValueError: ``time_zone`` is no IANA zone this system knows.
        """
        return self._registration.register(
            password=password,
            confirmation=confirmation,
            client_key=client_key,
            email=email,
            username=username,
            phone=phone,
            iin=iin,
            names=names,
            language=language,
            time_zone=time_zone,
        )

    def confirm_email(self, token: str) -> str:
        """Confirm the e-mail address a confirmation link was sent to; return the account id.

        The link works once, and only while the account still has that address.

        Raises:
            InvalidTokenError: the link is invalid, used, expired (:class:`ExpiredTokenError`)
                or the address changed since.
        """
        return self._registration.confirm_email(token)

    def resend_confirmation(self, identifier: str, *, client_key: str) -> ResetRequestResult:
        """Send the confirmation letter again, to the address stored on the account.

        For a lost or expired letter: ``identifier`` is the user name, e-mail address or
        phone the account was registered with. The answer is the same whether or not an
        account exists and whether or not its address is already confirmed, and so is the
        work (a token is signed and a letter rendered either way); the letter goes out only
        to an unconfirmed address. Limited like the reset requests (per ``client_key``, per
        normalised identifier and per account), with counts of its own.

        Raises:
            TypeError: ``identifier`` or ``client_key`` is not a ``str``.
        """
        return self._registration.resend_confirmation(identifier, client_key=client_key)

    # -- log-in --------------------------------------------------------------------------------

    def authenticate(self, identifier: str, password: str, *, client_key: str) -> LoginResult:
        """Log in with a user name, e-mail address or phone number and a password.

        Every attempt is first counted against ``login_per_client`` (``client_key``, e.g.
        the client's IP address) and ``login_per_identifier`` (the normalised identifier,
        whether or not an account has it); over a limit the answer is ``"throttled"``
        with ``retry_after``, and no password is verified. Then the attempt is **reserved**
        on the account (a compare-and-set on its failure count) before the password is
        verified, so however many requests arrive at once, at most ``lockout_after``
        verifications run for one account between two successes, and the back-off holds
        under concurrency. Unknown accounts cost the same storage writes and one argon2
        verification like known ones, and get the same ``"invalid"`` answer. After
        ``backoff_after`` consecutive failures each attempt must wait (doubling, up to
        ``backoff_max``); after ``lockout_after`` the account can only be recovered by a
        password reset. On success a hash made with old parameters is replaced
        (compare-and-set, so a concurrent change of password wins; the security stamp is
        kept, so sessions and links live on).

        Raises:
            TypeError: ``identifier``, ``password`` or ``client_key`` is not a ``str``.
        """
        return self._login.authenticate(identifier, password, client_key=client_key)

    def session_is_current(self, account_id: str, security_stamp: str) -> bool:
        """Whether a session that holds ``account_id`` and ``security_stamp`` may go on.

        A host keeps :attr:`LoginResult.security_stamp` in the session at log-in and asks
        this on each request (or every few minutes): after any change of password, reset or
        change of e-mail the account has a new stamp and every older session answers
        ``False``. The comparison is constant-time; a non-``str`` value answers ``False``.
        """
        return self._login.session_is_current(account_id, security_stamp)

    # -- change of password --------------------------------------------------------------------

    def change_password(
        self, account_id: str, current: str, new: str, confirmation: str, *, client_key: str
    ) -> PasswordChangeResult:
        """Change the password of a logged-in account; the current password is required.

        Checking the current password obeys the log-in rules: it is counted against
        ``login_per_client`` and ``login_per_identifier`` (per account) and reserved on the
        account before it is verified, with the same back-off and lockout. The new password
        goes through the full policy and history (including a direct similarity check
        against ``current``); the hash is replaced by compare-and-set, which gives the
        account a new security stamp (returned, for the current session); the history gains
        the new entry; a "password changed" letter goes to the stored address. If storing
        the history fails after the hash changed, the old hash is put back, so the old
        password keeps working and the history is unchanged.

        Raises:
            TypeError: a password, ``account_id`` or ``client_key`` is not a ``str``.
            AccountNotFoundError: no account has id ``account_id``.
        """
        return self._change.change_password(
            account_id, current, new, confirmation, client_key=client_key
        )

    def require_password_change(self, account_id: str, *, required: bool = True) -> None:
        """Make the account's next log-in ask for a new password (or, ``required=False``, not).

        For an operator who suspects the password, or gave the user a temporary one: the
        next :meth:`authenticate` still succeeds, with ``needs_password_change`` and
        ``password_change_reason="must_change"``, and the host sends the user to the
        change-of-password form. Any new password (a change or a reset) clears the flag.
        Sessions are left alone; end them by resetting the password instead when the account
        may be in someone else's hands. An event ``password_change_required`` is emitted.

        Raises:
            TypeError: ``account_id`` is not a ``str`` or ``required`` not a ``bool``.
            AccountNotFoundError: no account has id ``account_id``.
        """
        self._change.require_password_change(account_id, required=required)

    # -- reset by e-mail link ------------------------------------------------------------------

    def request_password_reset(self, identifier: str, *, client_key: str) -> ResetRequestResult:
        """Send a reset link to the address stored on the account named by ``identifier``.

        ``identifier`` is a user name, an e-mail address or a phone number. The answer is
        the same whether or not an account exists, and so is the work done: a token is
        signed and the letter rendered either way, and both paths make the same storage
        writes; the letter is handed to the sender only for a real account, and goes only
        to the address **stored** on it, never to the typed string. A failing e-mail sender
        does not change the answer. Requests are rate-limited per ``client_key`` (e.g. the
        client's IP address), per normalised identifier (every spelling of one phone number
        counts as one) and per account found (its user name, e-mail and phone share one
        count).

        Raises:
            TypeError: ``identifier`` or ``client_key`` is not a ``str``.
        """
        return self._email_reset.request_password_reset(identifier, client_key=client_key)

    def reset_password(self, token: str, new: str, confirmation: str) -> PasswordResetResult:
        """Set a new password with a reset link's token, or the grant of a verified SMS code.

        The token must be genuine, unexpired, for this purpose, and bound to the account's
        current security stamp (it dies at any change of password or e-mail, for good). A
        password that breaks the policy or history is refused without using the link up, so
        the form can be shown again. Otherwise the token is consumed through the single-use
        ledger — exactly once, even under concurrent redemption — the hash replaced (a new
        stamp), the failure counter cleared, and a "password changed" letter sent. The user
        is not logged in.

        Raises:
            InvalidTokenError: the token is invalid, used, stale or expired
                (:class:`ExpiredTokenError`).
            TypeError: a password is not a ``str``.
        """
        return self._email_reset.reset_password(token, new, confirmation)

    # -- reset by SMS code ---------------------------------------------------------------------

    def request_sms_reset(self, phone: str, *, client_key: str) -> ResetRequestResult:
        """Send a reset code by SMS to the phone number given at registration.

        The answer is the same whether or not the number belongs to an account, and so is
        the work (a code is made and hashed either way). The code is ``sms_code_digits``
        digits from :mod:`secrets`, stored only as an HMAC keyed with a server secret, and
        lives ``sms_code_lifetime``. A new code replaces the previous one but does not reset
        the count of wrong attempts. Requests are limited by a cooldown per phone and daily
        caps per phone and per ``client_key``.

        Raises:
            TypeError: ``phone`` or ``client_key`` is not a ``str``.
            InvalidPhoneError: the number is malformed, not a mobile, or from a region the
                deployment does not serve (``message(lang)`` is localised).
            KaspiIdentityError: the service has no SMS sender.
        """
        return self._sms_reset.request_sms_reset(phone, client_key=client_key)

    def verify_sms_code(self, phone: str, code: str) -> str:
        """Check an SMS code; on success return a short-lived grant for :meth:`reset_password`.

        The attempt is counted **before** the comparison, atomically, so parallel guesses
        cannot exceed ``sms_max_attempts``; after that many wrong codes the code is dead, and
        a new code does not reset the count. A right code works once.

        Raises:
            InvalidCodeError: wrong, expired or used code, or too many attempts
                (``reason`` says which, for the message).
            InvalidPhoneError: the number is malformed.
            TypeError: ``phone`` or ``code`` is not a ``str``.
        """
        return self._sms_reset.verify_sms_code(phone, code)

    # -- contact details -----------------------------------------------------------------------

    def request_email_change(
        self, account_id: str, password: str, new_email: str, *, client_key: str
    ) -> ContactChangeResult:
        """Ask to change the account's address; a confirmation link goes to the new one.

        The password is proven as at :meth:`change_password` (the log-in limits, back-off
        and lockout). Nothing changes until the link is opened
        (:meth:`confirm_email_change`); the address waits as ``pending_email`` and a newer
        request replaces it (and kills the older link). An address that already belongs to
        another account gets the same answer (``ok``) and the same work; its owner receives
        an ``email_change_taken`` letter instead of a link. Limited per account and per
        address asked for (``reset_per_identifier``). Events ``email_change_requested``.

        Raises:
            TypeError: an argument is not a ``str``.
            InvalidIdentifierError: ``new_email`` is not an address; nothing is written.
            AccountNotFoundError: no account has id ``account_id``.
            KaspiIdentityError: the settings have no ``email_undo_url``.
        """
        return self._contact.request_email_change(
            account_id, password, new_email, client_key=client_key
        )

    def confirm_email_change(self, token: str) -> ContactChangeResult:
        """Make the address a change-of-address link was sent to the account's (confirmed).

        The link works once, only while the account still waits for that address and has
        the security stamp it had at the request. The change gives the account a new stamp
        (other sessions end; ``security_stamp`` is the new one). The old address receives an
        ``email_changed`` notice with an undo link (:meth:`undo_email_change`, valid
        ``email_undo_lifetime``), and a verified phone an SMS. ``conflict`` when the address
        was taken by a sign-up since the request. Event ``email_changed``.

        Raises:
            InvalidTokenError: the link is invalid, used, stale or expired
                (:class:`ExpiredTokenError`).
        """
        return self._contact.confirm_email_change(token)

    def undo_email_change(self, token: str) -> ContactChangeResult:
        """Give the account its previous address back, from the undo link sent there.

        For an owner whose address someone else changed: the previous address comes back
        (confirmed), the password is removed and the phone made unverified (whoever made the
        change may know the one and have proven the other), every session ends (a new
        stamp), and a reset link goes to the restored address. A change confirmed within
        the window of an earlier one keeps the earliest address as the one to give back.
        If that address belongs to another account by now, the account is left without one
        (the owner then needs the site's support). The link works once, within
        ``email_undo_lifetime`` of the first change, whatever happened to the password
        since. Event ``email_change_undone``.

        Raises:
            InvalidTokenError: the link is invalid, used or expired.
        """
        return self._contact.undo_email_change(token)

    def request_phone_change(
        self, account_id: str, password: str, phone: str, *, client_key: str
    ) -> ContactChangeResult:
        """Ask to add or change the account's phone, or prove its current one: a code is sent.

        The password is proven as at :meth:`change_password`. The number is parsed as at
        :meth:`register` and waits as ``pending_phone`` until :meth:`verify_phone` gets the
        code; only then is it the account's, verified, and able to receive reset codes. A
        number of another account gets the same answer and work: the code stored can never
        be right, and the number receives a ``phone_in_use`` SMS instead. The SMS limits are
        those of :meth:`request_sms_reset` (a cooldown and daily caps per number and per
        ``client_key``, shared with it). Event ``phone_change_requested``.

        Raises:
            TypeError: an argument is not a ``str``.
            InvalidPhoneError: the number is malformed, not a mobile, or of a region not
                served; nothing is written.
            AccountNotFoundError: no account has id ``account_id``.
            KaspiIdentityError: the service has no SMS sender.
        """
        return self._contact.request_phone_change(
            account_id, password, phone, client_key=client_key
        )

    def verify_phone(self, account_id: str, code: str) -> ContactChangeResult:
        """Check the code sent by :meth:`request_phone_change`; on success the number is set.

        Attempts are counted before the comparison, as at :meth:`verify_sms_code`
        (``sms_max_attempts``). The number becomes the account's, verified; the account gets
        a new stamp (``security_stamp``), and when the number changed, a ``phone_changed``
        notice goes to the address and to the old verified phone. ``conflict`` when the
        number was taken by another account meanwhile. Event ``phone_verified``.

        Raises:
            InvalidCodeError: wrong, expired or used code, no change waiting, or too many
                attempts (``reason``).
            TypeError: an argument is not a ``str``.
            AccountNotFoundError: no account has id ``account_id``.
        """
        return self._contact.verify_phone(account_id, code)

    def remove_phone(
        self, account_id: str, password: str, *, client_key: str
    ) -> ContactChangeResult:
        """Remove the account's phone (and any change waiting for a code); needs the password.

        The password is proven as at :meth:`change_password`. The account gets a new stamp;
        a ``phone_removed`` notice goes to the address and the removed (verified) phone.
        ``no_phone`` when there is none. Event ``phone_removed``.

        Raises:
            TypeError: an argument is not a ``str``.
            AccountNotFoundError: no account has id ``account_id``.
        """
        return self._contact.remove_phone(account_id, password, client_key=client_key)

    def set_time_zone(self, account_id: str, time_zone: str | None) -> None:
        """Set the IANA zone times in the account's letters are written in (``None``: the site's).

        Not a security change: sessions and links live on. Event ``time_zone_set``.

        Raises:
            TypeError: ``account_id`` is not a ``str``, or ``time_zone`` neither ``str`` nor None.
            ValueError: ``time_zone`` is no IANA zone this system knows.
            AccountNotFoundError: no account has id ``account_id``.
        """
        self._contact.set_time_zone(account_id, time_zone)
