"""The reset of a forgotten password by an SMS code.

The contracts are documented on :class:`~kaspi_identity.services.IdentityService`, which
delegates to :class:`SmsReset`. A verified code gives an ``sms_grant`` token; the password
is then set by :meth:`~kaspi_identity.services._reset_email.EmailReset.reset_password`.
A code is stored only as an HMAC keyed with a key derived for ``sms-code`` (every
configured key is tried, so a code sent before a key rotation still works).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from kaspi_identity._errors import InvalidCodeError, KaspiIdentityError
from kaspi_identity._keys import KeyRing
from kaspi_identity.services._flow import Flow
from kaspi_identity.services._identifiers import require_str
from kaspi_identity.services._results import ResetRequestResult
from kaspi_identity.storage import Account, CodeAttempt

__all__ = ["SmsReset"]


@dataclass(eq=False)
class SmsReset(Flow):
    """``request_sms_reset`` and ``verify_sms_code``.

    ``code_keys`` are the keys codes are hashed with, newest first; ``absent_code_key``
    the key an unknown number's code is stored under, which no attempt is hashed with.
    """

    keys: KeyRing = field(kw_only=True)

    def __post_init__(self) -> None:
        self.code_keys = self.keys.derive("sms-code")
        self.absent_code_key = self.keys.newest("sms-code/absent")

    @staticmethod
    def code_hash(key: bytes, e164: str, code: str) -> bytes:
        """What is stored of a code sent to ``e164``: its HMAC under ``key``."""
        message = f"kaspi-identity/sms-code\x00{e164}\x00{code}".encode("utf-8", "surrogatepass")
        return hmac.new(key, message, hashlib.sha256).digest()

    def request_sms_reset(self, phone: str, *, client_key: str) -> ResetRequestResult:
        """See :meth:`IdentityService.request_sms_reset`."""
        p = self.plumbing
        require_str(phone=phone, client_key=client_key)
        number = p.parse_phone(phone)
        if p.sms_sender is None:
            raise KaspiIdentityError("no SMS sender is configured")
        s = p.settings
        wait = p.sms_limited(number.e164, client_key, action="sms_reset")
        if wait is not None:
            return ResetRequestResult(False, retry_after=wait)
        now = p.clock.now()
        # The code is derived from a random nonce with a key of the ring, so a queued SMS
        # stores the nonce, never the code (see Letters.new_code).
        code, text = p.letters.new_code(s.sms_code_digits)
        account = self._recovering(number.e164)
        # An unknown number (or one never proven by a code) gets a code too, stored under a
        # key no attempt is hashed with: it can never be right, but wrong tries, exhaustion
        # and expiry answer exactly as for a registered number, so the answers of
        # verify_sms_code tell nothing.
        key = self.code_keys[0] if account is not None else self.absent_code_key
        p.storage.codes.put(
            number.e164,
            self.code_hash(key, number.e164, code),
            expires_at=now + s.sms_code_lifetime,
            now=now,
            failure_window=s.sms_failure_window,
        )
        letter = p.letter(
            "reset_code",
            number.e164,
            account.language if account is not None else "en",
            None if account is None else account.id,
            sms=True,
            deliver=account is not None,
            code=text,
            minutes=max(1, int(s.sms_code_lifetime.total_seconds() // 60)),
        )
        return p.hand_over("reset_code", account, letter, requested="sms_reset_requested")

    def _recovering(self, e164: str) -> Account | None:
        """The account a reset code to ``e164`` may recover: only one that proved the number.

        An unverified number may be a typo or a stranger's: it receives no code, and the
        answers are those of an unknown number.
        """
        account = self.plumbing.storage.accounts.find_by_login("phone", e164)
        return account if account is not None and account.phone_verified else None

    def verify_sms_code(self, phone: str, code: str) -> str:
        """See :meth:`IdentityService.verify_sms_code`."""
        p = self.plumbing
        require_str(phone=phone, code=code)
        number = p.parse_phone(phone)
        s, now = p.settings, p.clock.now()
        # A code is 6 to 8 digits; anything much longer is simply wrong (and never scanned).
        candidate = code.strip()[:16] if len(code) <= 64 else "-"
        outcome = p.storage.codes.attempt(
            number.e164,
            [self.code_hash(key, number.e164, candidate) for key in self.code_keys],
            now=now,
            max_attempts=s.sms_max_attempts,
        )
        account = self._recovering(number.e164) if outcome is CodeAttempt.OK else None
        if account is None:
            reason = {
                CodeAttempt.MISMATCH: "wrong",
                CodeAttempt.EXHAUSTED: "exhausted",
            }.get(outcome, "expired")
            p.emit("sms_code_failed", None, reason=reason)
            raise InvalidCodeError(reason)
        p.emit("sms_code_verified", account.id)
        return self.tokens.issue("sms_grant", account)
