"""``IdentityService``: registration, log-in, change of password and recovery by e-mail.

Written against the storage and delivery protocols only, so the same flows run on the memory,
SQLite, Redis or PostgreSQL adapters and on a host's own tables.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import itertools
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from kaspi_identity._errors import (
    AccountNotFoundError,
    DuplicateAccountError,
    ExpiredTokenError,
    InvalidCodeError,
    InvalidHashError,
    InvalidIdentifierError,
    InvalidTokenError,
    KaspiIdentityError,
    PasswordMismatchError,
    StorageError,
)
from kaspi_identity.delivery import (
    DeliveryError,
    EmailMessage,
    EmailSender,
    SmsMessage,
    SmsSender,
    render_email,
    render_sms,
)
from kaspi_identity.delivery._messages import is_deliverable_address
from kaspi_identity.hashing import PasswordHasher
from kaspi_identity.history import PasswordHistory
from kaspi_identity.i18n import normalize_language
from kaspi_identity.phone import InvalidPhoneError, PhoneNumber, parse_iin, parse_phone
from kaspi_identity.policy import PasswordPolicy, PolicyResult, UserInfo
from kaspi_identity.services._audit import AuditEvent, AuditSink
from kaspi_identity.services._clock import Clock, SystemClock
from kaspi_identity.services._results import (
    LoginResult,
    PasswordChangeResult,
    PasswordResetResult,
    RegistrationResult,
    ResetRequestResult,
)
from kaspi_identity.services._settings import IdentitySettings, RateLimit
from kaspi_identity.storage import (
    Account,
    CodeAttempt,
    HistoryEntry,
    LoginKind,
    NewAccount,
    Storage,
)
from kaspi_identity.storage._checks import is_storable_text
from kaspi_identity.storage._records import MAX_NAMES, NAME_MAX_LENGTH
from kaspi_identity.tokens import LinkBuilder, TokenClaims, TokenService

__all__ = ["IdentityService"]

_log = logging.getLogger("kaspi_identity.services")

_USERNAME_RE = re.compile(r"[^\W_][\w.\-]{1,62}[^\W_]?", re.UNICODE)
_IDENTIFIER_MAX = 320
# What a rate-limit key is made of at most: a client key (an IP address or a device id
# the host passes) or a normalised identifier (at most ``_IDENTIFIER_MAX`` plus a prefix).
_CLIENT_KEY_MAX = 512
# Where the letters an unknown account would have received are rendered to (never sent).
_ABSENT_ADDRESS = "absent@kaspi-identity.invalid"
# The one hit an unknown identifier costs, in place of the known path's reserved attempt.
_ABSENT_RULE = RateLimit(1_000_000, timedelta(minutes=1))
# A login identifier made of what phone numbers are written with: read as a phone number.
_PHONE_LIKE = re.compile(r"\+?[\d\s().\-]{7,24}")
# Exactly what an IIN/BIN is: 12 ASCII digits.
_IIN_LIKE = re.compile(r"[0-9]{12}")
# The identifiers whose clash at registration answers like a new account, by field name.
_CLASH_KINDS: dict[str, LoginKind] = {"email": "email", "phone": "phone", "iin": "iin"}
# Which letter tells the owner of a taken identifier that someone registered with it.
_TAKEN_LETTERS: dict[str, str] = {
    "email": "already_registered",
    "phone": "phone_already_registered",
    "iin": "iin_already_registered",
}


class _NullAudit:
    def emit(self, event: AuditEvent) -> None:
        pass


def _ledger_expiry(claims: TokenClaims) -> datetime:
    """When a token dies, for the ledger (dead once ``now >= expiry``).

    A token verifies up to and including its expiry second, so it dies one second later.
    """
    return claims.expires_at + timedelta(seconds=1)


@functools.lru_cache(maxsize=64)
def _check_letters(site: str, confirm_url: str, reset_url: str, insecure: bool) -> None:
    """Refuse settings with which the flows could not write their letters.

    Every letter is rendered once with the configured links (a few hundred microseconds).

    Raises:
        ValueError: a letter cannot be written (the message says which and why).
    """
    sample = "x" * 43
    confirm = LinkBuilder(confirm_url, allow_insecure_http=insecure).link(sample)
    reset = LinkBuilder(reset_url, allow_insecure_http=insecure).link(sample)
    letters: dict[str, dict[str, Any]] = {
        "confirm_email": {"link": confirm, "hours": 24},
        "password_reset": {"link": reset, "minutes": 60},
        "already_registered": {"reset_link": reset},
        "phone_already_registered": {"reset_link": reset},
        "iin_already_registered": {"reset_link": reset},
        "password_changed": {"time": "2026-01-01 09:00 UTC"},
    }
    for kind, params in letters.items():
        try:
            render_email(
                kind, "en", to=_ABSENT_ADDRESS, site=site, allow_insecure_http=insecure, **params
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the service cannot write its {kind!r} letter: {exc}") from None


def _limit_digest(key: bytes, value: str) -> str:
    """The rate-limit key of ``value`` under ``key``: a keyed hash, so no e-mail or IP is stored.

    A value longer than any IP address, device id or normalised identifier is cut, not
    hashed whole: the values it would merge with are as long and as odd.
    """
    data = value[:_CLIENT_KEY_MAX].encode("utf-8", "surrogatepass")
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:32]


def _derive(keys: Sequence[bytes], label: bytes) -> list[bytes]:
    """One key per configured key, separated by purpose (so no key serves two uses)."""
    return [hmac.new(k, b"kaspi-identity/derive/" + label, hashlib.sha256).digest() for k in keys]


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

    Every method takes and returns plain values; none raises for a wrong password or an
    unknown account. Bad input (non-``str``, malformed identifiers) raises a typed error
    before anything is written.
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
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.policy = policy if policy is not None else PasswordPolicy()
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.audit: AuditSink = audit if audit is not None else _NullAudit()
        self._email = email_sender
        self.tokens = TokenService(
            settings.secret_keys,
            lifetimes={
                "reset": settings.reset_link_lifetime,
                "confirm": settings.confirm_link_lifetime,
                "sms_grant": settings.sms_grant_lifetime,
            },
        )
        self._sms = sms_sender
        # Every configured key, newest first: a code sent or a rate-limit window opened
        # under the previous key keeps working through a key rotation.
        self._code_keys = _derive(settings.secret_keys, b"sms-code")
        self._absent_code_key = _derive(settings.secret_keys[:1], b"sms-code/absent")[0]
        self.history = PasswordHistory(
            storage.history,
            secret_keys=_derive(settings.secret_keys, b"history"),
            hasher=self.hasher,
        )
        self._limit_keys = _derive(settings.secret_keys, b"rate-limit")
        insecure = settings.allow_insecure_http
        self._confirm_links = LinkBuilder(settings.confirm_url, allow_insecure_http=insecure)
        self._reset_links = LinkBuilder(settings.reset_url, allow_insecure_http=insecure)
        # Made on first use, not here: a host may build a service per request. Only the very
        # first unknown-account log-in of a process pays one extra hash for it.
        self._dummy_hash: str | None = None
        # A service that would report success while sending nothing must not be built.
        # Cached per configuration, so a host building a service per request pays it once.
        _check_letters(settings.site_name, settings.confirm_url, settings.reset_url, insecure)

    def __repr__(self) -> str:
        return f"<IdentityService site={self.settings.site_name!r} policy={self.policy!r}>"

    # -- helpers ----------------------------------------------------------------------------

    def _emit(self, kind: str, account_id: str | None = None, **details: str) -> None:
        try:
            self.audit.emit(AuditEvent(kind, self.clock.now(), account_id, details))
        except Exception:  # a broken audit sink must not break a flow
            _log.exception("audit sink failed on %s", kind)

    def _dummy(self) -> str:
        """A hash of a random password, so unknown accounts cost one verification too."""
        # No lock: on the async face the hash is awaited, and a threading lock held across
        # it would stop the event loop for a second flow. Two first callers racing make two
        # hashes, once per service; either serves.
        dummy = self._dummy_hash
        if dummy is None:
            dummy = self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(24))
        return dummy

    def _burn_verification(self, password: str) -> None:
        with contextlib.suppress(PasswordMismatchError, InvalidHashError):
            self.hasher.verify(self._dummy(), password)

    @staticmethod
    def _state(account: Account) -> str:
        """What reset links and SMS grants are bound to: the account's security stamp.

        The store replaces the stamp with a fresh random one on every change of password or
        e-mail and never reuses one, so a link dies at the first change and stays dead even
        if the password or the address later comes back to what it was.
        """
        return account.security_stamp

    @staticmethod
    def _user_info(account: Account) -> UserInfo:
        """The personal data a new password is checked against: the same as at sign-up."""
        return UserInfo(
            username=account.username,
            email=account.email,
            phone=account.phone,
            names=account.names,
            iin=account.iin,
        )

    def _send(
        self, kind: str, account_id: str | None, to: str, lang: str, **params: object
    ) -> None:
        """Render and deliver a letter; a failure is logged and audited, never raised."""
        self._deliver(kind, account_id, self._render(kind, to, lang, **params))

    def _render(self, kind: str, to: str, lang: str, **params: object) -> EmailMessage | None:
        try:
            return render_email(
                kind,
                lang,
                to=to,
                catalog=None,
                site=self.settings.site_name,
                allow_insecure_http=self.settings.allow_insecure_http,
                **params,
            )
        except ValueError as exc:
            _log.warning("could not render %s letter: %s", kind, type(exc).__name__)
            return None

    def _deliver(
        self, kind: str, account_id: str | None, message: EmailMessage | SmsMessage | None
    ) -> None:
        """Hand a rendered message to its sender; a failing sender is logged, never raised."""
        try:
            if message is None:
                raise ValueError("not rendered")
            if isinstance(message, SmsMessage):
                if self._sms is None:  # checked by the SMS flow; not a security check
                    raise DeliveryError("no SMS sender")
                self._sms.send_sms(message)
            else:
                self._email.send_email(message)
        except (DeliveryError, ValueError) as exc:
            _log.warning("could not deliver %s: %s", kind, type(exc).__name__)
            if isinstance(message, SmsMessage):
                self._emit("delivery_failed", account_id, sms=kind)
            else:
                self._emit("delivery_failed", account_id, letter=kind)

    def _limited(self, scope: str, value: str, rule: RateLimit) -> timedelta | None:
        """Count one hit; the wait when over the limit, else ``None``.

        Keys are keyed hashes of ``value``, so the limiter's store holds no e-mail, phone
        or IP address. The hit is counted under every configured key and refused when any
        count is over: a key rotation neither restarts a window nor lets a refused client
        in (the count under the previous key goes on until that key is dropped).
        """
        now = self.clock.now()
        wait: timedelta | None = None
        for key in self._limit_keys:
            result = self.storage.rate_limits.hit(
                f"{scope}:{_limit_digest(key, value)}",
                limit=rule.limit,
                window=rule.window,
                now=now,
            )
            if not result.allowed:
                wait = result.retry_after if wait is None else max(wait, result.retry_after)
        return wait

    def _first_limited(self, *checks: tuple[str, str, RateLimit]) -> timedelta | None:
        """Apply ``(scope, value, rule)`` limits in order; the first wait, else ``None``."""
        for scope, value, rule in checks:
            wait = self._limited(scope, value, rule)
            if wait is not None:
                return wait
        return None

    def _absent_work(self, value: str) -> None:
        """The one storage write an unknown identifier costs.

        A known account's attempt writes once more than the limits (the reserved log-in
        attempt, or a per-account limit); an unknown one writes this hit instead, so both
        paths do the same number of writes and take the same time.
        """
        rule, digest = _ABSENT_RULE, _limit_digest(self._limit_keys[0], value)
        self.storage.rate_limits.hit(
            f"absent:{digest}", limit=rule.limit, window=rule.window, now=self.clock.now()
        )

    def _resolve(self, identifier: str) -> tuple[LoginKind, str] | None:
        """Which login an identifier names, normalised, or ``None`` for one no account has.

        The kinds cannot overlap, so an identifier names at most one account: an e-mail
        address holds ``@``; exactly 12 digits are an IIN/BIN (no KZ or RU phone number has
        12 digits); what phone numbers are written with is a phone, read into E.164 so every
        spelling of one number is one identifier; anything else is a user name (which
        registration refuses to look like a phone number or an IIN).
        """
        if len(identifier) > 2 * _IDENTIFIER_MAX:  # bounded before it is even stripped
            return None
        text = identifier.strip()
        if not text or len(text) > _IDENTIFIER_MAX:
            return None
        if "@" in text:
            return "email", text
        if _IIN_LIKE.fullmatch(text):
            return "iin", text
        if _PHONE_LIKE.fullmatch(text):
            try:
                return "phone", self._parse_phone(text, mobile_only=False).e164
            except InvalidPhoneError:
                pass  # an account registered before user names were kept apart
        return "username", text

    @staticmethod
    def _limit_value(resolved: tuple[LoginKind, str] | None, identifier: str) -> str:
        """What per-identifier limits count: the normalised identifier, whoever has it."""
        if resolved is None:
            return "?" + identifier[: 2 * _IDENTIFIER_MAX].strip()[:_IDENTIFIER_MAX].casefold()
        kind, value = resolved
        return f"{kind}:{value if kind in ('phone', 'iin') else value.casefold()}"

    def _letter_request(
        self, scope: str, identifier: str, client_key: str
    ) -> tuple[Account | None, ResetRequestResult | None]:
        """The limits and the lookup of a request for a letter (reset, confirmation).

        Counted per client, per normalised identifier and per account found (an unknown
        identifier makes the same hit under its own name), each with the reset limits'
        sizes and counts of ``scope``'s own. Returns the account that has an address to
        write to (else ``None``) and, when a limit refuses, the answer to give.
        """
        s = self.settings
        resolved = self._resolve(identifier)
        value = self._limit_value(resolved, identifier)
        wait = self._first_limited(
            (f"{scope}-client", client_key, s.reset_per_client),
            (f"{scope}-id", value, s.reset_per_identifier),
        )
        account = None
        if wait is None:
            found = self._lookup(resolved)
            account = found if found is not None and found.email is not None else None
            per_account = f"id:{account.id}" if account is not None else f"absent:{value}"
            wait = self._limited(f"{scope}-account", per_account, s.reset_per_identifier)
        if wait is not None:
            return None, ResetRequestResult(False, retry_after=wait)
        return account, None

    def _lookup(self, resolved: tuple[LoginKind, str] | None) -> Account | None:
        if resolved is None:
            return None
        return self.storage.accounts.find_by_login(*resolved)

    def _parse_phone(self, text: str, *, mobile_only: bool = True) -> PhoneNumber:
        s = self.settings
        return parse_phone(
            text, region=s.phone_region, allowed_regions=s.phone_regions, mobile_only=mobile_only
        )

    @staticmethod
    def _require_str(**values: object) -> None:
        """``TypeError`` for a non-``str``.

        Every text is bounded where it is read (identifiers, codes, client keys in
        :meth:`_limited`, passwords by the policy and the hasher), before it is stripped,
        normalised, hashed or looked up.
        """
        for name, value in values.items():
            if not isinstance(value, str):
                raise TypeError(f"{name} must be str, not {type(value).__name__}")

    def _history_keep(self) -> int:
        return max(self.policy.history or 0, 1)

    # -- registration -------------------------------------------------------------------------

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

        Raises:
            TypeError: a password or identifier is not a ``str``.
            InvalidIdentifierError: a malformed e-mail or user name (one that looks like a
                phone number or an IIN is refused too: those have fields of their own), or
                too many or too long names; nothing is written.
            InvalidIinError: a malformed IIN/BIN (``reason``, localised ``message(lang)``).
            InvalidPhoneError: a malformed phone, not a mobile, or from a region not allowed
                (its ``message(lang)`` says which, localised); nothing is written.
            UnknownLanguageError: ``language`` has no catalog.
        """
        self._require_str(password=password, confirmation=confirmation, client_key=client_key)
        lang = normalize_language(language)
        email = self._clean_email(email)
        username = self._clean_username(username)
        if phone is not None:
            phone = self._parse_phone(phone).e164
        if iin is not None:
            iin = parse_iin(iin).value
        if email is None and username is None and phone is None and iin is None:
            raise InvalidIdentifierError(
                "email", "an e-mail, user name, phone or IIN is required", code="missing"
            )
        kept = self._clean_names(names)
        user = UserInfo(username=username, email=email, phone=phone, names=kept, iin=iin)
        result = self.policy.check(password, user=user, confirmation=confirmation)
        if not result:
            return RegistrationResult(False, result)
        s = self.settings
        if email is not None:
            wanted = f"email:{email.casefold()}"
        elif phone is not None:
            wanted = f"phone:{phone}"
        elif iin is not None:
            wanted = f"iin:{iin}"
        else:
            wanted = f"username:{(username or '').casefold()}"
        wait = self._first_limited(
            ("register-client", client_key, s.register_per_client),
            ("register-id", wanted, s.register_per_identifier),
        )
        if wait is not None:
            self._emit("rate_limited", None, action="register")
            return RegistrationResult(False, result, retry_after=wait)
        # Hash before looking anything up, so both answers below cost the same work.
        password_hash = self.hasher.hash(password)
        new = NewAccount(
            username=username,
            email=email,
            phone=phone,
            password_hash=password_hash,
            language=lang,
            iin=iin,
            names=kept,
        )
        while True:
            try:
                account = self._create(new, password)
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
        self._emit("registered", account.id)
        if account.email is not None:
            self._send_confirmation(account)
        if self.storage.with_history is None and self.policy.history:
            self._record_after_create(account, password)
        return RegistrationResult(True, result)

    def _create(self, new: NewAccount, password: str) -> Account:
        """Create the account, with its first history entry in the same transaction.

        Where accounts and history share a database (``Storage.with_history``) a failure
        leaves nothing behind, so registering again starts afresh. Otherwise the account is
        created here and its entry appended after the confirmation letter went out
        (:meth:`_record_after_create`), so a failing history store cannot leave a
        half-made account that nobody can confirm.
        """
        together = self.storage.with_history
        now = self.clock.now()
        if together is None:
            return self.storage.accounts.create(new, now=now)
        password_hash = new.password_hash or ""

        def first_entry(account: Account) -> HistoryEntry:
            return self.history.entry(
                password, password_hash, account_id=account.id, now=account.created_at
            )

        return together.create_with_history(
            new,
            now=now,
            entry=first_entry if self.policy.history else None,
            keep=self._history_keep(),
        )

    def _record_after_create(self, account: Account, password: str) -> None:
        """Split stores: append the first entry; a failure is logged, not raised.

        The account already exists and its confirmation letter is on its way; all a lost
        entry costs is that the first password is missing from the history.
        """
        try:
            self.history.record(
                account.id,
                password,
                account.password_hash or "",
                keep=self._history_keep(),
                now=account.created_at,
            )
        except StorageError as exc:
            _log.warning("first history entry not stored: %s", type(exc).__name__)
            self._emit("history_write_failed", account.id)

    def _existing_registration(self, field: LoginKind, value: str | None) -> None:
        existing = self.storage.accounts.find_by_login(field, value) if value is not None else None
        self._emit("registration_duplicate", existing.id if existing else None, field=field)
        if existing is None or existing.email is None:
            return
        # Repeated sign-ups with someone's address must not flood their inbox: these letters
        # have a limit of their own (the size of the reset limit, but a separate count, so
        # the sign-ups cannot use up the owner's reset requests either).
        limit = self.settings.reset_per_identifier
        if self._limited("registered-letter", f"id:{existing.id}", limit) is not None:
            self._emit("rate_limited", existing.id, action="already_registered_letter")
            return
        token = self.tokens.issue(
            "reset", existing.id, state=self._state(existing), now=self.clock.now()
        )
        self._send(
            _TAKEN_LETTERS[field],
            existing.id,
            existing.email,
            existing.language,
            reset_link=self._reset_links.link(token),
        )

    def _send_confirmation(self, account: Account) -> None:
        self._deliver("confirm_email", account.id, self._confirmation_letter(account))

    def _confirmation_letter(self, account: Account | None) -> EmailMessage | None:
        """The confirmation letter for ``account``, or (``None``) one nobody will get."""
        if account is None or account.email is None:
            account_id, email, to, lang = "unknown", "-", _ABSENT_ADDRESS, "en"
        else:
            account_id, email, to, lang = account.id, account.email, account.email, account.language
        token = self.tokens.issue(
            "confirm", account_id, state=email.casefold(), now=self.clock.now()
        )
        hours = max(1, int(self.tokens.lifetime("confirm").total_seconds() // 3600))
        return self._render(
            "confirm_email", to, lang, link=self._confirm_links.link(token), hours=hours
        )

    @staticmethod
    def _clean_email(email: str | None) -> str | None:
        if email is None:
            return None
        if not isinstance(email, str):
            raise TypeError("email must be str")
        if len(email) > 2 * _IDENTIFIER_MAX:  # before any scan of it
            raise InvalidIdentifierError("email", "not an e-mail address", code="email")
        email = email.strip()
        local = email.rpartition("@")[0]
        surrogate = any("\ud800" <= c <= "\udfff" for c in email)  # no UTF-8 form: unstorable
        if len(local) > 64 or surrogate or not is_deliverable_address(email):
            raise InvalidIdentifierError("email", "not an e-mail address", code="email")
        return email

    @staticmethod
    def _clean_username(username: str | None) -> str | None:
        if username is None:
            return None
        if not isinstance(username, str):
            raise TypeError("username must be str")
        if len(username) > 2 * _IDENTIFIER_MAX:  # before any scan of it
            raise InvalidIdentifierError(
                "username", "use 2 to 64 letters, digits, '.', '_' or '-'", code="username"
            )
        username = username.strip()
        if not 2 <= len(username) <= 64 or not _USERNAME_RE.fullmatch(username):
            raise InvalidIdentifierError(
                "username", "use 2 to 64 letters, digits, '.', '_' or '-'", code="username"
            )
        if _PHONE_LIKE.fullmatch(username) or _IIN_LIKE.fullmatch(username):
            # Log-in reads such a login as a phone number or an IIN, so it would find the
            # account of whoever has that number: a user name must hold a letter.
            raise InvalidIdentifierError(
                "username",
                "a user name needs a letter; give a phone or an IIN in its own field",
                code="username_number",
            )
        return username

    @staticmethod
    def _clean_names(names: Sequence[str]) -> tuple[str, ...]:
        if isinstance(names, str):
            raise TypeError("names must be a sequence of str, not one str")
        kept = tuple(itertools.islice(names, MAX_NAMES + 1))
        if not all(isinstance(name, str) for name in kept):
            raise TypeError("names must be a sequence of str")
        if len(kept) > MAX_NAMES or any(len(name) > NAME_MAX_LENGTH for name in kept):
            raise InvalidIdentifierError(
                "names",
                f"at most {MAX_NAMES} names of at most {NAME_MAX_LENGTH} characters",
                code="names",
            )
        kept = tuple(name.strip() for name in kept if name.strip())
        if not all(is_storable_text(name) for name in kept):
            raise InvalidIdentifierError(
                "names", "a name holds a character that cannot be stored", code="name_character"
            )
        return kept

    def confirm_email(self, token: str) -> str:
        """Confirm the e-mail address a confirmation link was sent to; return the account id.

        The link works once, and only while the account still has that address.

        Raises:
            InvalidTokenError: the link is invalid, used, expired (:class:`ExpiredTokenError`)
                or the address changed since.
        """
        now = self.clock.now()
        claims = self.tokens.verify(token, "confirm", now=now)
        account = self.storage.accounts.get(claims.account_id)
        if account is None or account.email is None:
            raise InvalidTokenError("invalid token")
        self.tokens.check_state(claims, account.email.casefold())
        if not self.storage.tokens.consume(claims.token_id, _ledger_expiry(claims), now=now):
            raise InvalidTokenError("invalid token")
        # A compare-and-set on the address: if it changed since the check above, the new
        # address is not confirmed by a link sent to the old one.
        if not self.storage.accounts.mark_email_confirmed(account.id, email=account.email, now=now):
            raise InvalidTokenError("invalid token")
        self._emit("email_confirmed", account.id)
        return account.id

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
        self._require_str(identifier=identifier, client_key=client_key)
        account, refused = self._letter_request("confirm", identifier, client_key)
        if refused is not None:
            self._emit("rate_limited", None, action="resend_confirmation")
            return refused
        message = self._confirmation_letter(account)
        pending = account is not None and not account.email_confirmed
        if pending and account is not None:
            self._deliver("confirm_email", account.id, message)
        self._emit(
            "confirmation_requested",
            account.id if account is not None else None,
            sent="yes" if pending else "no",
        )
        return ResetRequestResult(True)

    # -- log-in -------------------------------------------------------------------------------

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
        self._require_str(identifier=identifier, password=password, client_key=client_key)
        s = self.settings
        resolved = self._resolve(identifier)
        value = self._limit_value(resolved, identifier)
        wait = self._first_limited(
            ("login-client", client_key, s.login_per_client),
            ("login-id", value, s.login_per_identifier),
        )
        if wait is not None:
            self._emit("rate_limited", None, action="login")
            return LoginResult(False, "throttled", retry_after=wait)
        now = self.clock.now()
        account = self._lookup(resolved)
        if account is None or account.password_hash is None:
            self._absent_work(value)
            self._burn_verification(password)
            self._emit("login_failed", account.id if account else None, reason="unknown")
            return LoginResult(False, "invalid")
        reserved = self._reserve(account, password, now)
        if isinstance(reserved, LoginResult):
            return reserved
        account, failures = reserved
        assert account.password_hash is not None  # checked by _reserve; not a security check
        try:
            ok, new_hash = self.hasher.verify_and_update(account.password_hash, password)
        except InvalidHashError:
            _log.error("account %s has a malformed password hash", account.id)
            ok, new_hash = False, None
        if not ok:
            return self._failed(account, failures, reason="password")
        rehashed = bool(
            new_hash
            and self.storage.accounts.set_password_hash(
                account.id, expected=account.password_hash, new=new_hash, rotate_stamp=False
            )
        )
        self.storage.accounts.record_login_success(account.id, now=now)
        self._emit("login_succeeded", account.id)
        return LoginResult(
            True,
            "ok",
            account.id,
            email_confirmed=account.email_confirmed,
            rehashed=rehashed,
            security_stamp=account.security_stamp,
        )

    def session_is_current(self, account_id: str, security_stamp: str) -> bool:
        """Whether a session that holds ``account_id`` and ``security_stamp`` may go on.

        A host keeps :attr:`LoginResult.security_stamp` in the session at log-in and asks
        this on each request (or every few minutes): after any change of password, reset or
        change of e-mail the account has a new stamp and every older session answers
        ``False``. The comparison is constant-time; a non-``str`` value answers ``False``.
        """
        if not isinstance(account_id, str) or not isinstance(security_stamp, str):
            return False
        account = self.storage.accounts.get(account_id)
        stored = "" if account is None else account.security_stamp
        return account is not None and hmac.compare_digest(
            stored.encode("utf-8", "surrogatepass"),
            security_stamp.encode("utf-8", "surrogatepass"),
        )

    def _reserve(
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
        accounts = self.storage.accounts
        for _ in range(self.settings.lockout_after + 1):
            blocked = self._blocked(account, password, now)
            if blocked is not None:
                return blocked
            expected = account.failed_logins
            if accounts.reserve_login_attempt(account.id, expected_failures=expected, now=now):
                return account, expected + 1
            fresh = accounts.get(account.id)
            if fresh is None or fresh.password_hash is None:
                self._burn_verification(password)
                return LoginResult(False, "invalid")
            account = fresh
        # Successes kept resetting the count under this attempt: refuse it like a back-off.
        self._burn_verification(password)
        self._emit("login_failed", account.id, reason="throttled")
        return LoginResult(False, "throttled", account.id, retry_after=self.settings.backoff_base)

    def _blocked(self, account: Account, password: str, now: datetime) -> LoginResult | None:
        """The refusal for a locked or backing-off account (after equal work), else ``None``."""
        s = self.settings
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
        self._burn_verification(password)
        self._emit("login_failed", account.id, reason=reason)
        return LoginResult(False, reason, account.id, retry_after=retry_after)

    def _failed(self, account: Account, failures: int, *, reason: str) -> LoginResult:
        """A wrong password (already counted by the reservation); ``locked`` at the threshold."""
        self._emit("login_failed", account.id, reason=reason)
        if failures >= self.settings.lockout_after:
            self._emit("account_locked", account.id)
            return LoginResult(False, "locked", account.id)
        return LoginResult(False, "invalid")

    # -- change of password ---------------------------------------------------------------------

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
        self._require_str(
            account_id=account_id,
            current=current,
            new=new,
            confirmation=confirmation,
            client_key=client_key,
        )
        account = self.storage.accounts.get(account_id)
        if account is None:
            raise AccountNotFoundError("no account with this id")
        s, empty, now = self.settings, PolicyResult(), self.clock.now()
        wait = self._first_limited(
            ("login-client", client_key, s.login_per_client),
            ("login-id", f"account:{account.id}", s.login_per_identifier),
        )
        if wait is not None:
            self._emit("rate_limited", account.id, action="change_password")
            return PasswordChangeResult(False, "throttled", empty, retry_after=wait)
        if account.password_hash is None:
            self._burn_verification(current)
            return PasswordChangeResult(False, "wrong_password", empty)
        reserved = self._reserve(account, current, now)
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
            self.hasher.verify(account.password_hash, current)
        except (PasswordMismatchError, InvalidHashError):
            failed = self._failed(account, failures, reason="change_password")
            reason: Literal["wrong_password", "locked"] = (
                "locked" if failed.reason == "locked" else "wrong_password"
            )
            return PasswordChangeResult(False, reason, empty)
        # The current password is proven: the attempt reserved for it is no failure.
        self.storage.accounts.clear_login_failures(account.id)
        result = self.history.validate(
            self.policy,
            account.id,
            new,
            user=self._user_info(account),
            confirmation=confirmation,
            current_password=current,
        )
        if not result:
            if self._password_changed_since(account):
                # A concurrent change won; its new entry is what tripped the history check.
                return PasswordChangeResult(False, "conflict", result)
            return PasswordChangeResult(False, "policy", result)
        if not self._replace_password(account, new):
            return PasswordChangeResult(False, "conflict", result)
        self._emit("password_changed", account.id, via="change")
        if account.email is not None:
            self._send_changed_notice(account)
        changed = self.storage.accounts.get(account.id)
        return PasswordChangeResult(
            True,
            "ok",
            result,
            end_other_sessions=True,
            security_stamp=None if changed is None else changed.security_stamp,
        )

    def _password_changed_since(self, account: Account) -> bool:
        fresh = self.storage.accounts.get(account.id)
        return fresh is None or fresh.password_hash != account.password_hash

    def _replace_password(self, account: Account, password: str) -> bool:
        """Hash, then set the hash and record its history entry as one unit of work.

        Returns ``False`` (nothing changed) when a concurrent change won the compare-and-set.
        With ``Storage.with_history`` both writes are one transaction. With stores in
        different backends the entry is appended **first**: if setting the hash then fails,
        the old password still works, and the only trace is a spare entry (a password that
        never went live is remembered as used).
        """
        new_hash = self.hasher.hash(password)
        entry = (
            self.history.entry(password, new_hash, account_id=account.id, now=self.clock.now())
            if self.policy.history
            else None
        )
        keep, together = self._history_keep(), self.storage.with_history
        if together is not None:
            return together.replace_password(
                account.id, expected=account.password_hash, new=new_hash, entry=entry, keep=keep
            )
        if entry is not None:
            self.storage.history.append(account.id, entry, keep=keep)
        return self.storage.accounts.set_password_hash(
            account.id, expected=account.password_hash, new=new_hash
        )

    def _send_changed_notice(self, account: Account) -> None:
        assert account.email is not None  # checked by the caller; not a security check
        self._send(
            "password_changed",
            account.id,
            account.email,
            account.language,
            time=self.clock.now(),
        )

    # -- reset by e-mail link -------------------------------------------------------------------

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
        self._require_str(identifier=identifier, client_key=client_key)
        account, refused = self._letter_request("reset", identifier, client_key)
        if refused is not None:
            self._emit("rate_limited", None, action="password_reset")
            return refused
        now = self.clock.now()
        minutes = max(1, int(self.tokens.lifetime("reset").total_seconds() // 60))
        if account is None:
            # Equal work: sign a token and write a letter nobody will see.
            token = self.tokens.issue("reset", "unknown", state="-", now=now)
            self._render(
                "password_reset",
                _ABSENT_ADDRESS,
                "en",
                link=self._reset_links.link(token),
                minutes=minutes,
            )
            self._emit("password_reset_requested", None, found="no")
            return ResetRequestResult(True)
        assert account.email is not None  # checked above; not a security check
        token = self.tokens.issue("reset", account.id, state=self._state(account), now=now)
        message = self._render(
            "password_reset",
            account.email,
            account.language,
            link=self._reset_links.link(token),
            minutes=minutes,
        )
        self._deliver("password_reset", account.id, message)
        self._emit("password_reset_requested", account.id, found="yes")
        return ResetRequestResult(True)

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
        self._require_str(new=new, confirmation=confirmation)
        now = self.clock.now()
        claims: TokenClaims | None = None
        try:
            claims = self.tokens.verify(token, "reset", now=now)
        except ExpiredTokenError:
            raise
        except InvalidTokenError:
            pass
        if claims is None:
            # Not a reset link: perhaps the grant a verified SMS code gave (its own salt).
            # Verified outside the ``except`` block, so no exception chain rides along.
            claims = self.tokens.verify(token, "sms_grant", now=now)
        via = "email" if claims.purpose == "reset" else "sms"
        return self._complete_reset(claims.account_id, claims, new, confirmation, via=via)

    def _complete_reset(
        self, account_id: str, claims: TokenClaims, new: str, confirmation: str, *, via: str
    ) -> PasswordResetResult:
        account = self.storage.accounts.get(account_id)
        if account is None:
            raise InvalidTokenError("invalid token")
        self.tokens.check_state(claims, self._state(account))
        result = self.history.validate(
            self.policy, account.id, new, user=self._user_info(account), confirmation=confirmation
        )
        if not result:
            # A concurrent redemption may have changed the password meanwhile (its new entry
            # then fails this one as reused/similar): report the dead token, not the policy.
            current = self.storage.accounts.get(account.id)
            if current is None:
                raise InvalidTokenError("invalid token")
            self.tokens.check_state(claims, self._state(current))
            return PasswordResetResult(False, result)
        now = self.clock.now()
        if not self.storage.tokens.consume(claims.token_id, _ledger_expiry(claims), now=now):
            raise InvalidTokenError("invalid token")
        if not self._replace_password(account, new):
            raise InvalidTokenError("invalid token")
        self.storage.accounts.clear_login_failures(account.id)
        if via == "email" and account.email is not None and not account.email_confirmed:
            # The link reached this mailbox: that proves control of it, as a confirmation does.
            self.storage.accounts.mark_email_confirmed(account.id, email=account.email, now=now)
        self._emit("password_reset_completed", account.id, via=via)
        if account.email is not None:
            self._send_changed_notice(account)
        return PasswordResetResult(True, result, account.id, end_sessions=True)

    # -- reset by SMS code ----------------------------------------------------------------------

    @staticmethod
    def _code_hash(key: bytes, e164: str, code: str) -> bytes:
        message = f"kaspi-identity/sms-code\x00{e164}\x00{code}".encode("utf-8", "surrogatepass")
        return hmac.new(key, message, hashlib.sha256).digest()

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
        self._require_str(phone=phone, client_key=client_key)
        number = self._parse_phone(phone)
        if self._sms is None:
            raise KaspiIdentityError("no SMS sender is configured")
        s, day = self.settings, timedelta(days=1)
        for scope, value, rule in (
            ("sms-client", client_key, RateLimit(s.sms_per_client_daily, day)),
            ("sms-cooldown", number.e164, RateLimit(1, s.sms_cooldown)),
            ("sms-phone", number.e164, RateLimit(s.sms_per_phone_daily, day)),
        ):
            wait = self._limited(scope, value, rule)
            if wait is not None:
                self._emit("rate_limited", None, action="sms_reset", limit=scope)
                return ResetRequestResult(False, retry_after=wait)
        now = self.clock.now()
        code = f"{secrets.randbelow(10**s.sms_code_digits):0{s.sms_code_digits}d}"
        account = self.storage.accounts.find_by_login("phone", number.e164)
        # An unknown number gets a code too, stored under a key no attempt is hashed with:
        # it can never be right, but wrong tries, exhaustion and expiry answer exactly as
        # for a registered number, so the answers of verify_sms_code tell nothing.
        key = self._code_keys[0] if account is not None else self._absent_code_key
        self.storage.codes.put(
            number.e164,
            self._code_hash(key, number.e164, code),
            expires_at=now + s.sms_code_lifetime,
            now=now,
            failure_window=s.sms_failure_window,
        )
        minutes = max(1, int(s.sms_code_lifetime.total_seconds() // 60))
        try:
            message: SmsMessage | None = render_sms(
                "reset_code",
                account.language if account is not None else "en",
                to=number.e164,
                catalog=None,
                code=code,
                minutes=minutes,
                site=s.site_name,
            )
        except ValueError as exc:
            _log.warning("could not render the reset SMS: %s", type(exc).__name__)
            message = None
        if account is None:
            self._emit("sms_reset_requested", None, found="no")
            return ResetRequestResult(True)
        self._deliver("reset_code", account.id, message)
        self._emit("sms_reset_requested", account.id, found="yes")
        return ResetRequestResult(True)

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
        self._require_str(phone=phone, code=code)
        number = self._parse_phone(phone)
        s, now = self.settings, self.clock.now()
        # A code is 6 to 8 digits; anything much longer is simply wrong (and never scanned).
        candidate = code.strip()[:16] if len(code) <= 64 else "-"
        outcome = self.storage.codes.attempt(
            number.e164,
            [self._code_hash(key, number.e164, candidate) for key in self._code_keys],
            now=now,
            max_attempts=s.sms_max_attempts,
        )
        account = (
            self.storage.accounts.find_by_login("phone", number.e164)
            if outcome is CodeAttempt.OK
            else None
        )
        if account is None:
            reason = {
                CodeAttempt.MISMATCH: "wrong",
                CodeAttempt.EXHAUSTED: "exhausted",
            }.get(outcome, "expired")
            self._emit("sms_code_failed", None, reason=reason)
            raise InvalidCodeError(reason)
        self._emit("sms_code_verified", account.id)
        return self.tokens.issue("sms_grant", account.id, state=self._state(account), now=now)
