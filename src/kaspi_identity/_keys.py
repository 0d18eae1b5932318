"""Secret keys: validated in one place, and one derived key per use.

:func:`check_secret_keys` is the one check of a list of server keys (newest first, each at
least 32 bytes) that :class:`~kaspi_identity.tokens.TokenService`,
:class:`~kaspi_identity.history.PasswordHistory` and
:class:`~kaspi_identity.services.IdentitySettings` apply to what they are given.
:class:`KeyRing` holds the configured keys of a service and derives, per use, one key from
each, so no key serves two uses (a history fingerprint key never keys a rate limit):

=====================  =========================================  ==========================
use                    derived as                                 keys
=====================  =========================================  ==========================
``history``            HMAC(k, "kaspi-identity/derive/history")   every key, newest first
``rate-limit``         ... "/rate-limit"                          every key, newest first
``sms-code``           ... "/sms-code"                            every key, newest first
``sms-code/absent``    ... "/sms-code/absent"                     the newest key only
``token/<purpose>``    ... "/token/reset" (confirm, sms_grant)    every key, newest first
``token-state/<p>``    ... "/token-state/reset" (...)             every key, newest first
=====================  =========================================  ==========================

Every key is kept, newest first, so a code sent or a rate-limit window opened under the
previous key keeps working through a rotation.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["MIN_KEY_BYTES", "KeyRing", "check_secret_keys"]

#: The shortest secret key accepted, in bytes.
MIN_KEY_BYTES: Final = 32
_DERIVE_PREFIX: Final = b"kaspi-identity/derive/"


def check_secret_keys(keys: object, *, text: bool) -> tuple[bytes, ...]:
    """``keys`` as a tuple of ``bytes``, newest first, after checking each.

    Args:
        keys: a non-empty sequence of keys (not one ``bytes`` or ``str``).
        text: accept ``str`` keys (UTF-8 encoded); without it a ``str`` key is a
            ``TypeError``.

    Raises:
        ValueError: no keys, one key given bare, or a key shorter than 32 bytes (the
            message names no key).
        TypeError: a key that is not ``bytes`` (or ``str`` with ``text``).
    """
    if isinstance(keys, bytes | str) or not keys:
        raise ValueError("secret_keys must be a non-empty sequence of keys, newest first")
    kind = "bytes or str" if text else "bytes"
    checked: list[bytes] = []
    for key in keys:  # type: ignore[attr-defined]
        if text and isinstance(key, str):
            key = key.encode("utf-8")
        if not isinstance(key, bytes):
            raise TypeError(f"each secret key must be {kind}")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"each secret key must be at least {MIN_KEY_BYTES} bytes")
        checked.append(key)
    return tuple(checked)


class KeyRing:
    """A service's secret keys, newest first, and the key each use derives from them.

    Args:
        secret_keys: the configured keys (see :func:`check_secret_keys`; ``str`` keys are
            UTF-8 encoded).

    Raises:
        ValueError, TypeError: as :func:`check_secret_keys`.
    """

    __slots__ = ("_derived", "_keys")

    def __init__(self, secret_keys: object) -> None:
        self._keys = check_secret_keys(secret_keys, text=True)
        self._derived: dict[str, tuple[bytes, ...]] = {}

    def __repr__(self) -> str:
        return f"<KeyRing keys={len(self._keys)}>"

    @property
    def keys(self) -> tuple[bytes, ...]:
        """The configured keys themselves, newest first (only ever used to derive keys)."""
        return self._keys

    def derive(self, use: str) -> tuple[bytes, ...]:
        """One key per configured key for ``use``, newest first (made once, then kept)."""
        derived = self._derived.get(use)
        if derived is None:
            label = _DERIVE_PREFIX + use.encode("ascii")
            derived = tuple(hmac.new(k, label, hashlib.sha256).digest() for k in self._keys)
            self._derived[use] = derived
        return derived

    def newest(self, use: str) -> bytes:
        """The key for ``use`` derived from the newest configured key only."""
        return self.derive(use)[0]
