"""Signed, expiring, single-purpose tokens for e-mail links and SMS reset grants.

A token is an itsdangerous ``URLSafeSerializer`` payload signed with HMAC-**SHA-256** (not
itsdangerous's SHA-1 default), with a distinct salt per purpose, so a confirmation token can
never pass as a reset token. The payload holds:

- the purpose and the account id;
- a 128-bit random token id from :mod:`secrets` — the id the single-use ledger consumes;
- the expiry time (whole seconds; valid up to and including that second);
- a keyed digest of the account *state* the token is bound to (the services bind reset
  links and SMS grants to the account's security stamp, confirmation links to the
  address), so the token dies as soon as that state changes.

Keys rotate: pass them newest first; the newest signs, all verify. Every failure — bad
signature, garbage, wrong purpose, expired, stale state — raises :class:`InvalidTokenError`;
:class:`ExpiredTokenError` (a subclass) exists only so the user can be told to ask for a new
link. The ledger (``TokenLedger.consume``) makes a token single-use; the services call it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from itsdangerous import BadData, URLSafeSerializer

from kaspi_identity._errors import ExpiredTokenError, InvalidTokenError
from kaspi_identity._keys import check_secret_keys

__all__ = [
    "MAX_LIFETIME",
    "TOKEN_MAX_LENGTH",
    "ExpiredTokenError",
    "InvalidTokenError",
    "LinkBuilder",
    "TokenClaims",
    "TokenPurpose",
    "TokenService",
]

#: What a token is for; each has its own salt and lifetime.
TokenPurpose = Literal["reset", "confirm", "sms_grant"]

#: No token lives longer than this, whatever the configuration says.
MAX_LIFETIME: Final = timedelta(hours=24)
#: Longer input is refused before any cryptography runs (real tokens are ~200 characters).
TOKEN_MAX_LENGTH: Final = 1024

_PURPOSES: Final[tuple[str, ...]] = ("reset", "confirm", "sms_grant")
#: How long a token of each purpose lives unless configured otherwise.
_DEFAULT_LIFETIMES: Final[Mapping[str, timedelta]] = {
    "reset": timedelta(hours=1),
    "confirm": timedelta(hours=24),
    "sms_grant": timedelta(minutes=10),
}
_NONCE_BYTES: Final = 16
_STATE_BYTES: Final = 16
_SALT_PREFIX: Final = "kaspi-identity.token."
#: What :meth:`TokenService._load` returns for a token that does not verify.
_INVALID: Final = object()


def _check_lifetime(lifetime: object, what: str) -> timedelta:
    """``lifetime`` if it is a token lifetime: a positive ``timedelta`` of at most 24 hours.

    Raises:
        ValueError: anything else (the message names ``what``).
    """
    if not isinstance(lifetime, timedelta) or not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"{what} must be positive and at most 24 hours")
    return lifetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(timezone.utc)


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
            24 hours, sms_grant 10 minutes); each must be positive and at most 24 hours.

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
        self._keys = check_secret_keys(secret_keys, text=True)
        merged = dict(_DEFAULT_LIFETIMES)
        for purpose, lifetime in (lifetimes or {}).items():
            if purpose not in _PURPOSES:
                raise ValueError(f"unknown token purpose {purpose!r}")
            merged[purpose] = _check_lifetime(lifetime, f"lifetime of {purpose!r}")
        self._lifetimes: Mapping[str, timedelta] = merged
        # itsdangerous signs with the *last* key of its list, so reverse ours (newest first).
        self._serializers = {
            purpose: URLSafeSerializer(
                list(reversed(self._keys)),
                salt=_SALT_PREFIX + purpose,
                signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"},
            )
            for purpose in _PURPOSES
        }

    def __repr__(self) -> str:
        return f"<TokenService keys={len(self._keys)}>"

    def lifetime(self, purpose: TokenPurpose) -> timedelta:
        """How long a token of ``purpose`` stays valid."""
        return self._lifetimes[self._purpose(purpose)]

    @staticmethod
    def _purpose(purpose: str) -> str:
        if purpose not in _PURPOSES:
            raise ValueError(f"unknown token purpose {purpose!r}")
        return purpose

    def _state_digest(self, key: bytes, purpose: str, account_id: str, state: str) -> bytes:
        message = "\x00".join((purpose, account_id, state)).encode("utf-8", "surrogatepass")
        return hmac.new(key, b"kaspi-identity.token-state\x00" + message, hashlib.sha256).digest()[
            :_STATE_BYTES
        ]

    def issue(self, purpose: TokenPurpose, account_id: str, *, state: str, now: datetime) -> str:
        """A new token for ``account_id``, bound to ``state`` (e.g. password hash + e-mail).

        The same as :meth:`seal` of :meth:`draft`.

        Raises:
            ValueError: unknown purpose, empty account id, naive ``now``.
        """
        return self.seal(purpose, self.draft(purpose, account_id, state=state, now=now))

    def draft(
        self, purpose: TokenPurpose, account_id: str, *, state: str, now: datetime
    ) -> dict[str, str | int]:
        """The unsigned body of a new token: what :meth:`seal` signs into the token.

        The body is no secret: without the signature, which only the keys can make, it
        opens nothing. The durable outbox stores it, and the worker seals it at send time,
        so no link lies in the queue in clear. Sealing one body always gives the same
        token while the newest key is the same.

        Raises:
            ValueError: unknown purpose, empty account id, naive ``now``.
        """
        name = self._purpose(purpose)
        if not isinstance(account_id, str) or not account_id:
            raise ValueError("account_id must be a non-empty string")
        if not isinstance(state, str):
            raise TypeError("state must be a string")
        expires = _utc(now, "now") + self._lifetimes[name]
        return {
            "p": name,
            "a": account_id,
            "n": _b64(secrets.token_bytes(_NONCE_BYTES)),
            "e": int(expires.timestamp()),
            "s": _b64(self._state_digest(self._keys[0], name, account_id, state)),
        }

    def seal(self, purpose: TokenPurpose, body: Mapping[str, object]) -> str:
        """Sign a :meth:`draft` body of ``purpose`` into the token (with the newest key).

        Raises:
            ValueError: unknown purpose, or ``body`` is not a draft of ``purpose``.
        """
        name = self._purpose(purpose)
        if (
            not isinstance(body, Mapping)
            or set(body) != {"p", "a", "n", "e", "s"}
            or self._claims(dict(body), name) is None
        ):
            raise ValueError(f"body is not a token draft of purpose {name!r}")
        token = self._serializers[name].dumps(dict(body))
        return token if isinstance(token, str) else token.decode("ascii")

    def verify(self, token: object, purpose: TokenPurpose, *, now: datetime) -> TokenClaims:
        """Check a token's signature, purpose and expiry; return its claims.

        The token stays valid up to and including its expiry second. Binding to account
        state is checked separately with :meth:`check_state`, once the account is loaded.

        Raises:
            ExpiredTokenError: the token is genuine but expired.
            InvalidTokenError: anything else wrong with it (including non-``str`` input).
        """
        name = self._purpose(purpose)
        moment = _utc(now, "now")
        if not isinstance(token, str) or not token or len(token) > TOKEN_MAX_LENGTH:
            raise InvalidTokenError("invalid token")
        if not token.isascii():
            raise InvalidTokenError("invalid token")
        payload = self._load(name, token)
        if payload is _INVALID:
            # Raised here, outside any ``except`` block, so neither ``__cause__`` nor
            # ``__context__`` holds itsdangerous's exception (which carries the signature).
            raise InvalidTokenError("invalid token")
        claims = self._claims(payload, name)
        if claims is None:
            raise InvalidTokenError("invalid token")
        if moment >= claims.dies_at:
            raise ExpiredTokenError("token expired")
        return claims

    def _load(self, purpose: str, token: str) -> Any:
        """The token's payload, or :data:`_INVALID` for a bad signature or a bad spelling."""
        try:
            payload: Any = self._serializers[purpose].loads(token)
            # base64 lets the last character of the signature carry two ignored bits; accept
            # only the canonical spelling, so a token has exactly one valid form.
            signature = token.rpartition(".")[2]
            if _b64(_unb64(signature)) != signature:
                return _INVALID
        except (BadData, UnicodeError, ValueError, binascii.Error):
            return _INVALID
        return payload

    @staticmethod
    def _claims(payload: Any, purpose: str) -> TokenClaims | None:
        """The claims of a genuine payload, or ``None`` if it is malformed or for another use."""
        try:
            if not isinstance(payload, dict) or payload.get("p") != purpose:
                return None
            account_id, nonce, expiry, state = (
                payload["a"],
                payload["n"],
                payload["e"],
                payload["s"],
            )
            if not (
                isinstance(account_id, str)
                and account_id
                and isinstance(nonce, str)
                and isinstance(state, str)
                and isinstance(expiry, int)
                and not isinstance(expiry, bool)
            ):
                return None
            digest = _unb64(state)
            if len(_unb64(nonce)) != _NONCE_BYTES or len(digest) != _STATE_BYTES:
                return None
            expires_at = datetime.fromtimestamp(expiry, tz=timezone.utc)
        except (KeyError, binascii.Error, ValueError, OverflowError, OSError):
            return None
        return TokenClaims(purpose, account_id, nonce, expires_at, digest)

    def check_state(self, claims: TokenClaims, state: str) -> None:
        """Raise unless the token was issued for the account in exactly this ``state``.

        Raises:
            InvalidTokenError: the state changed since the token was issued (e.g. the
                password or e-mail changed), or it was never this account's.
        """
        match = False
        for key in self._keys:
            expected = self._state_digest(key, claims.purpose, claims.account_id, state)
            match |= hmac.compare_digest(expected, claims.state_digest)
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
