"""Exceptions raised by kaspi-identity.

Every exception derives from :class:`KaspiIdentityError`; where a builtin fits, an error
also derives from it, so both ``except KaspiIdentityError`` and idiomatic catches work::

    KaspiIdentityError
    ├── PolicyConfigError (ValueError)        a policy mapping/TOML/keyword set is invalid
    ├── UnknownLanguageError (ValueError)     a language that has no message catalog
    ├── InvalidPasswordError (ValueError)     a password that cannot be hashed (lone surrogate)
    ├── InvalidIdentifierError (ValueError)   a malformed user name, e-mail or names
    ├── InvalidTokenError (ValueError)        any failure of a link token or grant
    │   ├── ExpiredTokenError                 ...that failed only because it expired
    │   └── InvalidCodeError                  an SMS code was not accepted
    ├── HashingError
    │   ├── PasswordMismatchError             verify(): the password does not match the hash
    │   └── InvalidHashError (ValueError)     a stored hash is malformed or not argon2
    └── StorageError                          a storage adapter failed
        ├── CorruptRecordError (ValueError)   a stored row holds garbage
        ├── DuplicateAccountError (ValueError) user name / e-mail / phone already taken
        └── AccountNotFoundError (LookupError) no account with that id

Two more live with their modules and are exported from ``kaspi_identity`` too:
``InvalidPhoneError`` (``kaspi_identity.phone``, a ``ValueError`` with a localised
``message(lang)``) and ``DeliveryError`` (``kaspi_identity.delivery``).

Messages and attributes never carry a password, hash, token, code or key.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "IDENTIFIER_ERROR_CODES",
    "AccountNotFoundError",
    "CorruptRecordError",
    "DuplicateAccountError",
    "ExpiredTokenError",
    "HashingError",
    "InvalidCodeError",
    "InvalidHashError",
    "InvalidIdentifierError",
    "InvalidPasswordError",
    "InvalidTokenError",
    "KaspiIdentityError",
    "PasswordMismatchError",
    "PolicyConfigError",
    "StorageError",
    "UnknownLanguageError",
]


class KaspiIdentityError(Exception):
    """Base class of every exception this library raises on purpose."""


class PolicyConfigError(KaspiIdentityError, ValueError):
    """A password policy configuration is invalid.

    ``errors`` maps every offending key to a human-readable reason, so one exception reports
    every problem at once. The message lists them all.
    """

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors: dict[str, str] = dict(errors)
        lines = "; ".join(f"{key}: {reason}" for key, reason in self.errors.items())
        super().__init__(f"invalid password policy: {lines}")


class UnknownLanguageError(KaspiIdentityError, ValueError):
    """A language was asked for that has no message catalog.

    ``language`` is the tag that was asked for, ``supported`` the tags that exist.
    """

    def __init__(self, language: object, supported: tuple[str, ...]) -> None:
        self.language = language
        self.supported = supported
        shown = repr(language)
        if len(shown) > 40:  # a huge tag must not make a huge message
            shown = shown[:37] + "..."
        super().__init__(f"unknown language {shown}; supported: {', '.join(supported)}")


class InvalidPasswordError(KaspiIdentityError, ValueError):
    """A password cannot be processed (for example it holds a lone surrogate).

    The message says why, never what the password was.
    """


class InvalidTokenError(KaspiIdentityError, ValueError):
    """A token is not valid: bad signature, garbage, wrong purpose, expired, used, or stale.

    Callers handle every failure the same way; :class:`ExpiredTokenError` exists only so the
    user can be told to ask for a new link. The message never repeats the token.
    """


class ExpiredTokenError(InvalidTokenError):
    """A token was genuine but its lifetime is over."""


class InvalidCodeError(InvalidTokenError):
    """An SMS code was not accepted.

    ``reason`` is ``"wrong"`` (try again), ``"exhausted"`` (too many wrong codes: wait and
    ask for a new one later) or ``"expired"`` (no live code: ask for a new one).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"SMS code not accepted ({reason})")


#: The stable codes of :class:`InvalidIdentifierError` (catalog keys ``identifier.<code>``).
IDENTIFIER_ERROR_CODES: tuple[str, ...] = (
    "missing",
    "email",
    "username",
    "username_number",
    "names",
    "name_character",
)


class InvalidIdentifierError(KaspiIdentityError, ValueError):
    """A user name, e-mail address or the names given at registration are malformed.

    ``field`` names which input (``"email"``, ``"username"``, ``"names"``); ``reason`` says
    why in English (the ``str()`` of the error, for logs); ``code`` is the stable code (one
    of :data:`IDENTIFIER_ERROR_CODES`) and :meth:`message` the text for the user in kk, ru
    or en. The value is never repeated.
    """

    def __init__(self, field: str, reason: str, *, code: str) -> None:
        self.field = field
        self.reason = reason
        self.code = code
        super().__init__(f"invalid {field}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return _identifier_error, (self.field, self.reason, self.code)

    def message(self, lang: str) -> str:
        """Return the message for the end user in ``lang`` (catalog key ``identifier.<code>``).

        Raises:
            UnknownLanguageError: there is no catalog for ``lang``.
        """
        # Imported here: the catalogs raise the errors of this module.
        from kaspi_identity.i18n import get_catalog

        return get_catalog(lang).message(f"identifier.{self.code}")


def _identifier_error(field: str, reason: str, code: str) -> InvalidIdentifierError:
    return InvalidIdentifierError(field, reason, code=code)


class HashingError(KaspiIdentityError):
    """Base class of password-hashing failures."""


class PasswordMismatchError(HashingError):
    """The password does not match the stored hash."""


class InvalidHashError(HashingError, ValueError):
    """A stored hash is malformed, truncated, or not an argon2 hash this library can verify."""


class StorageError(KaspiIdentityError):
    """A storage adapter could not complete an operation; nothing was half-written."""


class CorruptRecordError(StorageError, ValueError):
    """A stored record holds data that cannot be read (garbage, truncated, unknown format)."""


class DuplicateAccountError(StorageError, ValueError):
    """An account with the same user name, e-mail or phone already exists.

    ``field`` names which one ("username", "email" or "phone"); the value is not repeated.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"an account with this {field} already exists")


class AccountNotFoundError(StorageError, LookupError):
    """No account has the given id."""
