"""Signed, expiring, single-purpose tokens for e-mail links and SMS reset grants.

A token is a short binary record, authenticated with HMAC-**SHA-256** and written in
URL-safe base64 without padding: about 83 characters for the 32-hex-digit account ids of
the built-in stores, so a link fits on one line of a letter. The record holds:

==========  =======  ==============================================================
bytes       field    meaning
==========  =======  ==============================================================
1           header   format version (high four bits), account id kind, purpose
5           expiry   the last valid second, unsigned big-endian seconds since 1970
16          id       a 128-bit random token id from :mod:`secrets` -- the id the
                     single-use ledger consumes
8           state    a keyed digest of the account *state* the token is bound to
rest - 16   account  the account id: 32 hex digits as 16 bytes, a UUID as 16 bytes,
                     a decimal number as its minimal big-endian bytes, else UTF-8
16          tag      HMAC-SHA-256 of everything before it, cut to 128 bits
==========  =======  ==============================================================

Each purpose signs with its own key, derived from every configured key by the
:class:`~kaspi_identity._keys.KeyRing` (``token/<purpose>``; the state digest uses
``token-state/<purpose>``), so a confirmation token can never pass as a reset token. The
services bind reset links and SMS grants to the account's security stamp, confirmation
links to the address, so a token dies as soon as that state changes.

Keys rotate: pass them newest first; the newest signs, all verify. Every failure — bad
tag, garbage, wrong purpose, expired, stale state — raises :class:`InvalidTokenError`;
:class:`ExpiredTokenError` (a subclass) exists only so the user can be told to ask for a new
link. The ledger (``TokenLedger.consume``) makes a token single-use; the services call it.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kaspi_identity._errors import ExpiredTokenError, InvalidTokenError
from kaspi_identity._keys import KeyRing

__all__ = [
    "ACCOUNT_ID_MAX_LENGTH",
    "MAX_LIFETIME",
    "TOKEN_MAX_LENGTH",
    "UNDO_MAX_LIFETIME",
    "ExpiredTokenError",
    "InvalidTokenError",
    "LinkBuilder",
    "TokenClaims",
    "TokenPurpose",
    "TokenService",
]

#: What a token is for; each has its own key and lifetime.
TokenPurpose = Literal["reset", "confirm", "sms_grant", "email_change", "email_undo"]

#: No token lives longer than this, whatever the configuration says (but an undo link).
MAX_LIFETIME: Final = timedelta(hours=24)
#: An undo link of a change of address may live longer: its owner may read the old
#: mailbox only days later, and it can only give the address back and force a reset.
UNDO_MAX_LIFETIME: Final = timedelta(days=7)
#: The longest account id a token can carry, in characters (the storage key limit).
ACCOUNT_ID_MAX_LENGTH: Final = 256

_PURPOSES: Final[tuple[str, ...]] = ("reset", "confirm", "sms_grant", "email_change", "email_undo")
#: How long a token of each purpose lives unless configured otherwise.
_DEFAULT_LIFETIMES: Final[Mapping[str, timedelta]] = {
    "reset": timedelta(hours=1),
    "confirm": timedelta(hours=24),
    "sms_grant": timedelta(minutes=10),
    "email_change": timedelta(hours=24),
    "email_undo": timedelta(days=3),
}
_MAX_LIFETIMES: Final[Mapping[str, timedelta]] = {"email_undo": UNDO_MAX_LIFETIME}
_VERSION: Final = 1
_EXPIRY_BYTES: Final = 5
_NONCE_BYTES: Final = 16
_STATE_BYTES: Final = 8
_TAG_BYTES: Final = 16
_ID_START: Final = 1 + _EXPIRY_BYTES + _NONCE_BYTES + _STATE_BYTES
_FIXED: Final = _ID_START + _TAG_BYTES
#: Longer input is refused before any cryptography runs: the longest token there can be
#: (an account id of 256 four-byte characters); real ones are about 83 characters.
TOKEN_MAX_LENGTH: Final = -(-(_FIXED + 4 * ACCOUNT_ID_MAX_LENGTH) * 4 // 3)

# How the account id is packed (two bits of the header); each kind round-trips exactly.
_TEXT, _HEX, _DECIMAL, _UUID = 0, 1, 2, 3
_HEX_DIGITS = "0123456789abcdef"
_DIGITS = "0123456789"
_DECIMAL_MAX_DIGITS = 77
# The header byte: version (high four bits), id kind (two), purpose (low two). Four purposes
# fit in the two bits; the next four are told apart by the following version number, so the
# tokens of the first three purposes are spelled as they always were.
_PURPOSE_HEADER: Final[Mapping[str, int]] = {
    p: ((_VERSION + i // 4) << 4) | (i % 4) for i, p in enumerate(_PURPOSES)
}
_HEADER_MASK: Final = 0xF3
_UUID_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# URL-safe base64 straight through binascii (the base64 module adds a layer of calls).
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
# Where the base64 of the nonce lies in a token (its bytes start at a multiple of 3).
_NONCE_CHARS: Final = slice(4 * (1 + _EXPIRY_BYTES) // 3, 4 * (1 + _EXPIRY_BYTES) // 3 + 21)
_NONCE_LAST: Final = 1 + _EXPIRY_BYTES + _NONCE_BYTES - 1
_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_BLOCK: Final = 64  # SHA-256's block size
_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))


class _Mac:
    """HMAC-SHA-256 (RFC 2104) under one key, its padded-key states computed once.

    ``hmac.digest`` builds the key schedule and fetches the digest from OpenSSL on every
    call, which costs several times the two compressions of a short message; copying two
    ready SHA-256 states costs almost nothing. The result is exactly ``hmac.digest(key,
    message, "sha256")`` (tests/test_tokens.py checks it).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def __repr__(self) -> str:
        return "<_Mac>"

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA-256 of ``message``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _check_lifetime(lifetime: object, what: str, *, longest: timedelta = MAX_LIFETIME) -> timedelta:
    """``lifetime`` if it is a token lifetime: a positive ``timedelta`` of at most ``longest``.

    Raises:
        ValueError: anything else (the message names ``what``).
    """
    if not isinstance(lifetime, timedelta) or not timedelta(0) < lifetime <= longest:
        bound = "7 days" if longest == UNDO_MAX_LIFETIME else "24 hours"
        raise ValueError(f"{what} must be positive and at most {bound}")
    return lifetime


def _draft_bytes(body: object) -> bytes | None:
    """The unsigned token bytes of a :meth:`TokenService.draft` body, or ``None``."""
    if not isinstance(body, Mapping) or set(body) != {"body"}:
        return None
    text = body["body"]
    if not isinstance(text, str) or not text.isascii() or len(text) > TOKEN_MAX_LENGTH:
        return None
    spelled = text.encode("ascii")
    try:
        raw = binascii.a2b_base64(spelled.translate(_FROM_URLSAFE) + b"=" * (-len(spelled) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) <= _ID_START or _b64(raw) != spelled:
        return None
    return raw


def _b64(data: bytes) -> bytes:
    """``data`` in URL-safe base64 without padding."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _aware(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment


def _pack_id(account_id: str) -> tuple[int, bytes]:
    """The kind and bytes of ``account_id`` (the shortest of the forms that fit it)."""
    # ``not text.strip(chars)``: every character of ``text`` is one of ``chars``.
    if (
        not account_id.strip(_DIGITS)
        and len(account_id) <= _DECIMAL_MAX_DIGITS
        and (account_id[0] != "0" or account_id == "0")
    ):
        number = int(account_id)
        return _DECIMAL, number.to_bytes(max(1, -(-number.bit_length() // 8)), "big")
    if not account_id.strip(_HEX_DIGITS) and len(account_id) % 2 == 0:
        return _HEX, bytes.fromhex(account_id)
    if _UUID_ID.fullmatch(account_id):
        return _UUID, bytes.fromhex(account_id.replace("-", ""))
    return _TEXT, account_id.encode("utf-8")


def _unpack_id(kind: int, raw: bytes) -> str | None:
    """The account id packed as ``raw``, or ``None`` if it is not a canonical packing."""
    if not raw:
        return None
    if kind == _HEX:
        return raw.hex()
    if kind == _UUID:
        if len(raw) != 16:
            return None
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if kind == _DECIMAL:
        if len(raw) > 1 and raw[0] == 0:
            return None
        return str(int.from_bytes(raw, "big"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # A text id that fits another kind is always packed as that kind.
    return text if _pack_id(text)[0] == _TEXT else None


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says. ``token_id`` is what the single-use ledger consumes."""

    purpose: str
    account_id: str
    token_id: str = field(repr=False)
    expires_at: datetime
    state_digest: bytes = field(repr=False)

    @property
    def dies_at(self) -> datetime:
        """The first moment the token no longer verifies: one second after ``expires_at``.

        A token is valid up to and including its expiry second; the single-use ledger keeps
        its id until this moment.
        """
        return self.expires_at + timedelta(seconds=1)


class TokenService:
    """Issues and verifies tokens for every purpose.

    Args:
        secret_keys: signing keys, **newest first**, each at least 32 bytes (``str`` keys are
            UTF-8 encoded). The first signs; all verify, so a key can be rotated out after the
            longest lifetime has passed.
        lifetimes: per-purpose lifetimes overriding the defaults (reset 1 hour, confirm
            24 hours, sms_grant 10 minutes, email_change 24 hours, email_undo 3 days); each
            must be positive and at most 24 hours (email_undo: at most 7 days).

    Raises:
        ValueError: no keys, a short key, or a lifetime out of range.
        TypeError: a key that is neither ``bytes`` nor ``str``.
    """

    def __init__(
        self,
        secret_keys: Sequence[bytes | str],
        *,
        lifetimes: Mapping[str, timedelta] | None = None,
    ) -> None:
        self._keyring = KeyRing(secret_keys)
        merged = dict(_DEFAULT_LIFETIMES)
        for purpose, lifetime in (lifetimes or {}).items():
            if purpose not in _PURPOSES:
                raise ValueError(f"unknown token purpose {purpose!r}")
            merged[purpose] = _check_lifetime(
                lifetime,
                f"lifetime of {purpose!r}",
                longest=_MAX_LIFETIMES.get(purpose, MAX_LIFETIME),
            )
        self._lifetimes: Mapping[str, timedelta] = merged
        # Per purpose, one key per configured key, newest first: the first signs.
        self._signing = {p: self._macs(f"token/{p}") for p in _PURPOSES}
        self._state_keys = {p: self._macs(f"token-state/{p}") for p in _PURPOSES}

    def _macs(self, use: str) -> tuple[_Mac, ...]:
        return tuple(_Mac(key) for key in self._keyring.derive(use))

    def __repr__(self) -> str:
        return f"<TokenService keys={len(self._keyring.keys)}>"

    def lifetime(self, purpose: TokenPurpose) -> timedelta:
        """How long a token of ``purpose`` stays valid."""
        return self._lifetimes[self._purpose(purpose)]

    @staticmethod
    def _purpose(purpose: str) -> str:
        if purpose not in _PURPOSES:
            raise ValueError(f"unknown token purpose {purpose!r}")
        return purpose

    @staticmethod
    def _state_digest(mac: _Mac, account_id: bytes, state: str) -> bytes:
        message = b"".join(
            (
                len(account_id).to_bytes(2, "big"),
                account_id,
                state.encode("utf-8", "surrogatepass"),
            )
        )
        return mac.digest(message)[:_STATE_BYTES]

    def issue(self, purpose: TokenPurpose, account_id: str, *, state: str, now: datetime) -> str:
        """A new token for ``account_id``, bound to ``state`` (e.g. the security stamp).

        The same token :meth:`seal` makes of a :meth:`draft`, without the round trip
        through the draft's text.

        Raises:
            ValueError: unknown purpose, empty account id, naive ``now``.
        """
        name = self._purpose(purpose)
        body = self._body(name, account_id, state, now)
        return _b64(body + self._signing[name][0].digest(body)[:_TAG_BYTES]).decode("ascii")

    def draft(
        self, purpose: TokenPurpose, account_id: str, *, state: str, now: datetime
    ) -> dict[str, str | int]:
        """The unsigned body of a new token: what :meth:`seal` signs into the token.

        The body is no secret: without the signature, which only the keys can make, it
        opens nothing. The durable outbox stores it, and the worker seals it at send time,
        so no link lies in the queue in clear. Sealing one body always gives the same
        token while the newest key is the same.

        Raises:
            ValueError: unknown purpose, empty account id or one over
                :data:`ACCOUNT_ID_MAX_LENGTH` characters or with a lone surrogate, naive
                ``now``, or an expiry before 1970.
            TypeError: ``state`` is not a ``str``.
        """
        name = self._purpose(purpose)
        return {"body": _b64(self._body(name, account_id, state, now)).decode("ascii")}

    def _body(self, name: str, account_id: object, state: object, now: datetime) -> bytes:
        """The unsigned bytes of a new token of purpose ``name`` (checked as :meth:`draft`)."""
        if (
            not isinstance(account_id, str)
            or not account_id
            or len(account_id) > ACCOUNT_ID_MAX_LENGTH
        ):
            raise ValueError(
                f"account_id must be a non-empty string of at most {ACCOUNT_ID_MAX_LENGTH}"
                " characters"
            )
        if not isinstance(state, str):
            raise TypeError("state must be a string")
        try:
            kind, packed = _pack_id(account_id)
            text_id = account_id.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("account_id must be valid Unicode text") from None
        expiry = int((_aware(now, "now") + self._lifetimes[name]).timestamp())
        if not 0 <= expiry < 1 << (8 * _EXPIRY_BYTES):
            raise ValueError("now is outside the range a token can express")
        return b"".join(
            (
                bytes((_PURPOSE_HEADER[name] | (kind << 2),)),
                expiry.to_bytes(_EXPIRY_BYTES, "big"),
                secrets.token_bytes(_NONCE_BYTES),
                self._state_digest(self._state_keys[name][0], text_id, state),
                packed,
            )
        )

    def seal(self, purpose: TokenPurpose, body: Mapping[str, object]) -> str:
        """Sign a :meth:`draft` body of ``purpose`` into the token (with the newest key).

        Raises:
            ValueError: unknown purpose, or ``body`` is not a draft of ``purpose``.
        """
        name = self._purpose(purpose)
        raw = _draft_bytes(body)
        if raw is None or raw[0] & _HEADER_MASK != _PURPOSE_HEADER[name]:
            raise ValueError(f"body is not a token draft of purpose {name!r}")
        if _unpack_id((raw[0] >> 2) & 3, raw[_ID_START:]) is None:
            raise ValueError(f"body is not a token draft of purpose {name!r}")
        tag = self._signing[name][0].digest(raw)[:_TAG_BYTES]
        return _b64(raw + tag).decode("ascii")

    def verify(self, token: object, purpose: TokenPurpose, *, now: datetime) -> TokenClaims:
        """Check a token's tag, purpose and expiry; return its claims.

        The token stays valid up to and including its expiry second. Binding to account
        state is checked separately with :meth:`check_state`, once the account is loaded.

        Raises:
            ExpiredTokenError: the token is genuine but expired.
            InvalidTokenError: anything else wrong with it (including non-``str`` input).
        """
        name = self._purpose(purpose)
        moment = _aware(now, "now").timestamp()
        found = self._claims(token, name)
        if found is None:
            # Raised outside any ``except`` block: no exception chain rides along.
            raise InvalidTokenError("invalid token")
        claims, expiry = found
        if moment >= expiry + 1:  # claims.dies_at, as a number
            raise ExpiredTokenError("token expired")
        return claims

    def _claims(self, token: object, purpose: str) -> tuple[TokenClaims, int] | None:
        """The claims of a genuine token of ``purpose`` and its expiry second, or ``None``."""
        if not isinstance(token, str) or not token or len(token) > TOKEN_MAX_LENGTH:
            return None
        if not token.isascii():
            return None
        spelled = token.encode("ascii")
        try:
            raw = binascii.a2b_base64(spelled.translate(_FROM_URLSAFE) + b"=" * (-len(spelled) % 4))
        except (binascii.Error, ValueError):
            return None
        # Decoding skips characters outside the alphabet, and the last character may carry
        # ignored bits: accept only the canonical spelling, so a token has one valid form.
        if len(raw) <= _FIXED or _b64(raw) != spelled:
            return None
        header = raw[0]
        if header & _HEADER_MASK != _PURPOSE_HEADER[purpose]:
            return None
        body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        for mac in self._signing[purpose]:
            if hmac.compare_digest(mac.digest(body)[:_TAG_BYTES], tag):
                break
        else:
            return None
        account_id = _unpack_id((header >> 2) & 3, body[_ID_START:])
        if account_id is None:
            return None
        expiry = int.from_bytes(raw[1 : 1 + _EXPIRY_BYTES], "big")
        try:
            # Exactly datetime.fromtimestamp(expiry, timezone.utc), at half its cost.
            expires_at = _EPOCH + timedelta(seconds=expiry)
        except OverflowError:
            return None
        # The id is the nonce in base64, which the token already spells from its 9th
        # character (the nonce starts on a 3-byte boundary): 21 characters hold all but the
        # low 2 bits of its last byte, which alone end the id's 22nd character.
        token_id = token[_NONCE_CHARS] + _ALPHABET[(raw[_NONCE_LAST] & 3) << 4]
        claims = TokenClaims(
            purpose, account_id, token_id, expires_at, raw[_ID_START - _STATE_BYTES : _ID_START]
        )
        return claims, expiry

    def check_state(self, claims: TokenClaims, state: str) -> None:
        """Raise unless the token was issued for the account in exactly this ``state``.

        Raises:
            InvalidTokenError: the state changed since the token was issued (e.g. the
                password or e-mail changed), or it was never this account's.
        """
        account_id = claims.account_id.encode("utf-8")
        match = False
        for mac in self._state_keys[self._purpose(claims.purpose)]:
            match |= hmac.compare_digest(
                self._state_digest(mac, account_id, state), claims.state_digest
            )
        if not match:
            raise InvalidTokenError("invalid token")


class LinkBuilder:
    """Builds the links put in letters from a configured base URL — never from a request.

    Taking the host from a request's ``Host`` header would let an attacker send a victim a
    genuine reset letter pointing at the attacker's site. The token goes in the ``token``
    query parameter; the page that opens it should move it out of the URL at once (see
    docs/recovery.md).

    Args:
        base_url: an absolute ``https://`` URL, e.g. ``"https://portal.example.kz/reset"``.
        allow_insecure_http: allow ``http://`` for local development only.

    Raises:
        ValueError: the URL is not absolute https (or http with the escape hatch).
    """

    def __init__(self, base_url: str, *, allow_insecure_http: bool = False) -> None:
        if not isinstance(base_url, str):
            raise TypeError("base_url must be a string")
        parts = urlsplit(base_url)
        schemes = ("https", "http") if allow_insecure_http else ("https",)
        if parts.scheme not in schemes or not parts.hostname or parts.fragment:
            raise ValueError("base_url must be an absolute https:// URL without a fragment")
        self._parts = parts

    @property
    def base_url(self) -> str:
        """The configured base URL."""
        return urlunsplit(self._parts)

    def __repr__(self) -> str:
        return f"LinkBuilder({self.base_url!r})"

    def link(self, token: str) -> str:
        """The base URL with ``token`` added as its ``token`` query parameter."""
        query = [(k, v) for k, v in parse_qsl(self._parts.query, keep_blank_values=True)]
        query = [(k, v) for k, v in query if k != "token"] + [("token", token)]
        return urlunsplit(self._parts._replace(query=urlencode(query)))
