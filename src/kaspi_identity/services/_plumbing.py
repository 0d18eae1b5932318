"""What every flow shares: its collaborators, the rate limits, equal work, letters and audit.

A flow module (registration, log-in, change, reset by e-mail, reset by SMS) holds one
:class:`Plumbing` and asks it to count a hit, to cost an unknown account what a known one
costs, to render and deliver a message, or to report an event. Nothing here holds a lock:
on the async face every store, sender and hasher call is awaited, and a threading lock
held across one would stop the event loop for a second flow.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from kaspi_identity._errors import InvalidHashError, PasswordMismatchError
from kaspi_identity._keys import KeyRing
from kaspi_identity.delivery import (
    DeliveryError,
    EmailMessage,
    EmailSender,
    SmsMessage,
    SmsSender,
    render_email,
)
from kaspi_identity.hashing import PasswordHasher
from kaspi_identity.i18n import Catalog
from kaspi_identity.phone import PhoneNumber
from kaspi_identity.policy import PasswordPolicy, UserInfo
from kaspi_identity.services._audit import AuditEvent, AuditSink
from kaspi_identity.services._clock import Clock
from kaspi_identity.services._identifiers import (
    Resolved,
    limit_value,
    parse_mobile,
    require_str,
    resolve,
)
from kaspi_identity.services._letters import Letter, Letters, TokenLink, UnrenderableError
from kaspi_identity.services._results import ResetRequestResult
from kaspi_identity.services._settings import IdentitySettings, RateLimit
from kaspi_identity.services._tokens import Tokens
from kaspi_identity.storage import Account, OutboxMessage, Storage
from kaspi_identity.storage._protocols import enqueues_together
from kaspi_identity.tokens import LinkBuilder

__all__ = ["ABSENT_ADDRESS", "NullAudit", "Plumbing", "check_letters"]

_log = logging.getLogger("kaspi_identity.services")

#: Where the letters an unknown account would have received are rendered to (never sent).
ABSENT_ADDRESS: Final = "absent@kaspi-identity.invalid"
# What a rate-limit key is made of at most: a client key (an IP address or a device id
# the host passes) or a normalised identifier (at most ``IDENTIFIER_MAX`` plus a prefix).
_CLIENT_KEY_MAX: Final = 512
# The one hit an unknown identifier costs, in place of the known path's reserved attempt.
_ABSENT_RULE: Final = RateLimit(1_000_000, timedelta(minutes=1))


class NullAudit:
    """The audit sink of a service given none: it drops every event."""

    def emit(self, event: AuditEvent) -> None:
        """Drop ``event``."""


def check_letters(settings: IdentitySettings, catalog: Catalog | None) -> None:
    """Refuse settings (and a catalog) with which the flows could not write their letters.

    Every letter is rendered once with the configured links (a few hundred microseconds),
    cached per configuration with the built-in catalog, so a host building a service per
    request pays it once.

    Raises:
        ValueError: a letter cannot be written (the message says which and why).
    """
    s = settings
    check = _check_letters if catalog is None else _check_letters.__wrapped__
    check(
        s.site_name,
        s.confirm_url,
        s.reset_url,
        s.email_change_url or s.confirm_url,
        s.email_undo_url or s.reset_url,
        s.allow_insecure_http,
        catalog,
    )


@functools.lru_cache(maxsize=64)
def _check_letters(
    site: str,
    confirm_url: str,
    reset_url: str,
    change_url: str,
    undo_url: str,
    insecure: bool,
    catalog: Catalog | None,
) -> None:
    sample = "x" * 43
    confirm = LinkBuilder(confirm_url, allow_insecure_http=insecure).link(sample)
    reset = LinkBuilder(reset_url, allow_insecure_http=insecure).link(sample)
    change = LinkBuilder(change_url, allow_insecure_http=insecure).link(sample)
    undo = LinkBuilder(undo_url, allow_insecure_http=insecure).link(sample)
    letters: dict[str, dict[str, Any]] = {
        "confirm_email": {"link": confirm, "hours": 24},
        "password_reset": {"link": reset, "minutes": 60},
        "already_registered": {"reset_link": reset},
        "phone_already_registered": {"reset_link": reset},
        "iin_already_registered": {"reset_link": reset},
        "password_changed": {"time": "2026-01-01 09:00 UTC"},
        "password_was_reset": {"time": "2026-01-01 09:00 UTC"},
        "email_change_confirm": {"link": change, "hours": 24},
        "email_change_taken": {"reset_link": reset},
        "email_changed": {"time": "2026-01-01 09:00 UTC", "undo_link": undo, "days": 3},
        "phone_changed": {"time": "2026-01-01 09:00 UTC", "phone": "+7 701 *** ** 67"},
        "phone_removed": {"time": "2026-01-01 09:00 UTC"},
    }
    for kind, params in letters.items():
        try:
            render_email(
                kind,
                "en",
                to=ABSENT_ADDRESS,
                catalog=catalog,
                site=site,
                allow_insecure_http=insecure,
                **params,
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


def user_info(account: Account) -> UserInfo:
    """The personal data a new password is checked against: the same as at sign-up."""
    return UserInfo(
        username=account.username,
        email=account.email,
        phone=account.phone,
        names=account.names,
        iin=account.iin,
    )


class Plumbing:
    """The collaborators of one service and the steps every flow takes with them.

    Args:
        storage, settings, policy, hasher, clock, audit: as the service was given them.
        keys: the service's key ring (the rate limits derive their keys from it).
        tokens: the flows' token issuer (links are drafted here, sealed when written).
        email_sender, sms_sender: where rendered messages go.
        catalog: the catalog letters and SMS are written from (``None``: the built-in one).
    """

    def __init__(
        self,
        storage: Storage,
        settings: IdentitySettings,
        *,
        keys: KeyRing,
        tokens: Tokens,
        policy: PasswordPolicy,
        hasher: PasswordHasher,
        clock: Clock,
        audit: AuditSink,
        email_sender: EmailSender,
        sms_sender: SmsSender | None,
        catalog: Catalog | None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.policy = policy
        self.hasher = hasher
        self.clock = clock
        self.audit = audit
        self.email_sender = email_sender
        self.sms_sender = sms_sender
        self.catalog = catalog
        self.tokens = tokens
        self.letters = Letters(settings, keys=keys, issuer=tokens.issuer, catalog=catalog)
        # Every configured key, newest first: a rate-limit window opened under the previous
        # key keeps counting through a key rotation.
        self.limit_keys = keys.derive("rate-limit")
        # Made on first use, not here: a host may build a service per request. Only the very
        # first unknown-account log-in of a process pays one extra hash for it.
        self._dummy_hash: str | None = None

    # -- audit ----------------------------------------------------------------------------

    def emit(self, kind: str, account_id: str | None = None, **details: str) -> None:
        """Report an event; a failing audit sink is logged, never raised."""
        try:
            self.audit.emit(AuditEvent(kind, self.clock.now(), account_id, details))
        except Exception:  # a broken audit sink must not break a flow
            _log.exception("audit sink failed on %s", kind)

    # -- equal work for unknown accounts ----------------------------------------------------

    def _dummy(self) -> str:
        """A hash of a random password, so unknown accounts cost one verification too."""
        # No lock: on the async face the hash is awaited, and a threading lock held across
        # it would stop the event loop for a second flow. Two first callers racing make two
        # hashes, once per service; either serves.
        dummy = self._dummy_hash
        if dummy is None:
            dummy = self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(24))
        return dummy

    def burn_verification(self, password: str) -> None:
        """One argon2 verification that cannot succeed: what a known account would cost."""
        with contextlib.suppress(PasswordMismatchError, InvalidHashError):
            self.hasher.verify(self._dummy(), password)

    def absent_work(self, value: str) -> None:
        """The one storage write an unknown identifier costs.

        A known account's attempt writes once more than the limits (the reserved log-in
        attempt, or a per-account limit); an unknown one writes this hit instead, so both
        paths do the same number of writes and take the same time.
        """
        rule, digest = _ABSENT_RULE, _limit_digest(self.limit_keys[0], value)
        self.storage.rate_limits.hit(
            f"absent:{digest}", limit=rule.limit, window=rule.window, now=self.clock.now()
        )

    # -- rate limits -----------------------------------------------------------------------

    def limited(self, scope: str, value: str, rule: RateLimit) -> timedelta | None:
        """Count one hit; the wait when over the limit, else ``None``.

        Keys are keyed hashes of ``value``, so the limiter's store holds no e-mail, phone
        or IP address. The hit is counted under every configured key and refused when any
        count is over: a key rotation neither restarts a window nor lets a refused client
        in (the count under the previous key goes on until that key is dropped).
        """
        now = self.clock.now()
        wait: timedelta | None = None
        for key in self.limit_keys:
            result = self.storage.rate_limits.hit(
                f"{scope}:{_limit_digest(key, value)}",
                limit=rule.limit,
                window=rule.window,
                now=now,
            )
            if not result.allowed:
                wait = result.retry_after if wait is None else max(wait, result.retry_after)
        return wait

    def sms_limited(self, e164: str, client_key: str, *, action: str) -> timedelta | None:
        """The limits of every SMS a request sends: a cooldown and daily caps.

        Counted per ``client_key`` and per number, whichever flow sends (a reset code, a
        code for a new number), so no number gets more than ``sms_per_phone_daily`` texts a
        day from all of them. The wait when one refuses (reported as ``rate_limited`` with
        ``action``), else ``None``.
        """
        s, day = self.settings, timedelta(days=1)
        for scope, value, rule in (
            ("sms-client", client_key, RateLimit(s.sms_per_client_daily, day)),
            ("sms-cooldown", e164, RateLimit(1, s.sms_cooldown)),
            ("sms-phone", e164, RateLimit(s.sms_per_phone_daily, day)),
        ):
            wait = self.limited(scope, value, rule)
            if wait is not None:
                self.emit("rate_limited", None, action=action, limit=scope)
                return wait
        return None

    def first_limited(self, *checks: tuple[str, str, RateLimit]) -> timedelta | None:
        """Apply ``(scope, value, rule)`` limits in order; the first wait, else ``None``."""
        for scope, value, rule in checks:
            wait = self.limited(scope, value, rule)
            if wait is not None:
                return wait
        return None

    # -- identifiers and accounts ----------------------------------------------------------

    def resolve(self, identifier: str) -> Resolved:
        """:func:`~kaspi_identity.services._identifiers.resolve` with this deployment's regions."""
        return resolve(identifier, self.settings)

    def parse_phone(self, text: str) -> PhoneNumber:
        """A mobile number of a region the deployment serves (``InvalidPhoneError`` if not)."""
        return parse_mobile(self.settings, text)

    def lookup(self, resolved: Resolved) -> Account | None:
        """The account that has the resolved login, if any."""
        if resolved is None:
            return None
        return self.storage.accounts.find_by_login(*resolved)

    def letter_request(
        self, scope: str, identifier: str, client_key: str, *, action: str
    ) -> tuple[Account | None, ResetRequestResult | None]:
        """The limits and the lookup of a request for a letter (reset, confirmation).

        Counted per client, per normalised identifier and per account found (an unknown
        identifier makes the same hit under its own name), each with the reset limits'
        sizes and counts of ``scope``'s own. Returns the account that has an address to
        write to (else ``None``) and, when a limit refuses, the answer to give (reported
        as ``rate_limited`` with ``action``).

        Raises:
            TypeError: ``identifier`` or ``client_key`` is not a ``str``.
        """
        require_str(identifier=identifier, client_key=client_key)
        s = self.settings
        resolved = self.resolve(identifier)
        value = limit_value(resolved, identifier)
        wait = self.first_limited(
            (f"{scope}-client", client_key, s.reset_per_client),
            (f"{scope}-id", value, s.reset_per_identifier),
        )
        account = None
        if wait is None:
            found = self.lookup(resolved)
            account = found if found is not None and found.email is not None else None
            per_account = f"id:{account.id}" if account is not None else f"absent:{value}"
            wait = self.limited(f"{scope}-account", per_account, s.reset_per_identifier)
        if wait is not None:
            self.emit("rate_limited", None, action=action)
            return None, ResetRequestResult(False, retry_after=wait)
        return account, None

    def hand_over(
        self,
        kind: str,
        account: Account | None,
        letter: Letter,
        *,
        requested: str = "password_reset_requested",
    ) -> ResetRequestResult:
        """Post a requested letter: a known account's is sent, an unknown one's twin is not.

        The twin (``deliver=False``) is rendered, or queued as ``void``, so both paths do the
        same work. The event ``requested`` is reported either way (``found`` says which);
        the answer is the same.
        """
        self.post(letter)
        if account is None:
            self.emit(requested, None, found="no")
        else:
            self.emit(requested, account.id, found="yes")
        return ResetRequestResult(True)

    # -- letters and SMS -------------------------------------------------------------------

    def letter(
        self,
        kind: str,
        to: str,
        lang: str,
        account_id: str | None,
        *,
        sms: bool = False,
        deliver: bool = True,
        time_zone: str | None = None,
        **params: object,
    ) -> Letter:
        """The letter (or, with ``sms``, the SMS) ``kind`` to ``to``, not yet written.

        ``time_zone`` is the recipient account's (its times are written in it).
        """
        return Letter(
            kind=kind,
            channel="sms" if sms else "email",
            to=to,
            language=lang,
            account_id=account_id,
            params=params,
            deliver=deliver,
            time_zone=time_zone,
        )

    def reset_link(self, account: Account | None) -> TokenLink:
        """A reset link for ``account`` (for nobody when ``None``), written at send time."""
        return TokenLink("reset", "reset", self.tokens.draft("reset", account))

    def reset_letter(self, account: Account | None) -> Letter:
        """The ``password_reset`` letter to ``account``'s stored address, or its twin.

        For ``None`` (or an account without an address) a letter to nobody is drafted and
        never sent, so an unknown account costs the same work.
        """
        to, lang = ABSENT_ADDRESS, "en"
        if account is not None and account.email is not None:
            to, lang = account.email, account.language
        return self.letter(
            "password_reset",
            to,
            lang,
            None if account is None else account.id,
            deliver=to != ABSENT_ADDRESS,
            link=self.reset_link(account),
            minutes=self.tokens.minutes("reset"),
        )

    def confirm_link(self, account: Account | None) -> TokenLink:
        """A confirmation link for ``account``'s address, written at send time."""
        return TokenLink("confirm", "confirm", self.tokens.draft("confirm", account))

    @property
    def queued(self) -> bool:
        """Whether letters go through the durable outbox (the storage has one)."""
        return self.storage.outbox is not None

    def post(self, *letters: Letter) -> None:
        """Send ``letters`` now, or queue them for the worker when the storage has an outbox.

        Sent now, a failure to write or send one is logged and audited, never raised;
        queued, a failing outbox raises :class:`~kaspi_identity.StorageError` (the letter
        must not be lost silently).
        """
        queue = self.storage.outbox
        if queue is not None:
            now = self.clock.now()
            for letter in letters:
                queue.enqueue(Letters.queued(letter, now), now=now)
            return
        for letter in letters:
            self.send_now(letter)

    def for_unit(self, letters: Sequence[Letter]) -> list[OutboxMessage] | None:
        """``letters`` queued for a unit of work that enqueues them with its change.

        ``None`` when they must be posted after the change instead: nothing to queue, no
        outbox, or a ``with_history`` that does not enqueue into the bundle's outbox.
        """
        if not letters or not enqueues_together(self.storage):
            return None
        now = self.clock.now()
        return [Letters.queued(letter, now) for letter in letters]

    def send_now(self, letter: Letter, *, key: str | None = None) -> None:
        """Write ``letter`` and hand it to its sender (a twin is written, not sent).

        A letter that cannot be written or sent is logged and audited, never raised.
        """
        what = "SMS" if letter.channel == "sms" else "letter"
        try:
            message = self.letters.render(letter, key=key)
        except UnrenderableError as exc:
            _log.warning("could not render %s %s: %s", letter.kind, what, type(exc).__name__)
            message = None
        if not letter.deliver:
            return
        try:
            if message is None:
                raise ValueError("not rendered")
            self.transmit(message)
        except (DeliveryError, ValueError) as exc:
            _log.warning("could not deliver %s: %s", letter.kind, type(exc).__name__)
            if letter.channel == "sms":
                self.emit("delivery_failed", letter.account_id, sms=letter.kind)
            else:
                self.emit("delivery_failed", letter.account_id, letter=letter.kind)

    def transmit(self, message: EmailMessage | SmsMessage) -> None:
        """Hand a written message to its sender; raise what the sender raises."""
        if isinstance(message, SmsMessage):
            if self.sms_sender is None:  # checked by the SMS flow; not a security check
                raise DeliveryError("no SMS sender")
            self.sms_sender.send_sms(message)
        else:
            self.email_sender.send_email(message)

    def changed_notice(self, account: Account, *, reset: bool = False) -> list[Letter]:
        """The notices of a new password, to every channel ``account`` has (ASVS, NIST).

        ``account`` is as it was before the change. ``reset`` picks the notice of a reset
        (``password_was_reset``) over that of a change.
        """
        return self.notices("password_was_reset" if reset else "password_changed", account)

    def notices(
        self,
        kind: str,
        account: Account,
        *,
        sms_kind: str | None = None,
        email: bool = True,
        sms: bool = True,
        **params: object,
    ) -> list[Letter]:
        """The notice ``kind`` of a change, to the channels ``account`` had before it.

        A letter to its address (with ``time``, now, in the account's zone, and ``params``)
        and, with an SMS sender, an SMS (``sms_kind``, default ``kind``) to its phone -- only
        a verified one: an unproven number may be a stranger's. ``email`` / ``sms`` leave a
        channel out (the caller writes that one itself).
        """
        letters: list[Letter] = []
        if email and account.email is not None:
            letters.append(
                Letter(
                    kind=kind,
                    channel="email",
                    to=account.email,
                    language=account.language,
                    account_id=account.id,
                    params={"time": self.clock.now(), **params},
                    time_zone=account.time_zone,
                )
            )
        if (
            sms
            and account.phone is not None
            and account.phone_verified
            and self.sms_sender is not None
        ):
            letters.append(
                self.letter(sms_kind or kind, account.phone, account.language, account.id, sms=True)
            )
        return letters
