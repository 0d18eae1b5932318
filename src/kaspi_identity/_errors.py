"""Exceptions raised by kaspi-identity.

Every exception derives from :class:`KaspiIdentityError`; where a builtin fits, an error
also derives from it, so both ``except KaspiIdentityError`` and idiomatic catches work::

    KaspiIdentityError
    ├── PolicyConfigError (ValueError)        a policy mapping/TOML/keyword set is invalid
    ├── BreachedFilterError (ValueError)      a breached-password filter file is unusable
    ├── BreachedSourceError (ValueError)      a breach corpus line is not SHA1HEX:COUNT
    ├── BreachCheckUnavailableError           the online range API did not answer in time
    ├── UnknownLanguageError (ValueError)     a language that has no message catalog
    ├── CatalogError (ValueError)             a message catalog (.po) is malformed
    ├── InvalidPasswordError (ValueError)     a password that cannot be hashed (lone surrogate)
    ├── InvalidPhoneError (ValueError)        a phone number refused (reason, message(lang))
    ├── InvalidIinError (ValueError)          an IIN/BIN refused (reason, message(lang))
    ├── InvalidIdentifierError (ValueError)   a malformed user name, e-mail or names
    ├── InvalidTokenError (ValueError)        any failure of a link token or grant
    │   ├── ExpiredTokenError                 ...that failed only because it expired
    │   └── InvalidCodeError                  an SMS code was not accepted
    ├── HashingError
    │   ├── PasswordMismatchError             verify(): the password does not match the hash
    │   └── InvalidHashError (ValueError)     a stored hash is malformed or not argon2
    ├── DuplicateAccountError (ValueError)    user name / e-mail / phone / IIN already taken
    ├── AccountNotFoundError (LookupError)    no account with that id
    ├── DeliveryError                         a letter or SMS not handed to its transport
    └── StorageError                          a storage adapter failed: worth a retry
        └── CorruptRecordError (ValueError)   a stored row holds garbage

Every error of the library is defined here, and exported from ``kaspi_identity`` and from
the package it belongs to (``kaspi_identity.phone``, ``kaspi_identity.delivery``, ...).
``DuplicateAccountError`` and ``AccountNotFoundError`` are not storage failures: the store
answered, so a handler that retries a ``StorageError`` never retries them.

Messages and attributes never carry a password, hash, token, code or key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

__all__ = [
    "IDENTIFIER_ERROR_CODES",
    "IIN_ERROR_REASONS",
    "PHONE_ERROR_REASONS",
    "AccountNotFoundError",
    "BreachCheckUnavailableError",
    "BreachedFilterError",
    "BreachedSourceError",
    "CatalogError",
    "CorruptRecordError",
    "DeliveryError",
    "DuplicateAccountError",
    "ExpiredTokenError",
    "HashingError",
    "InvalidCodeError",
    "InvalidHashError",
    "InvalidIdentifierError",
    "InvalidIinError",
    "InvalidPasswordError",
    "InvalidPhoneError",
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


class DuplicateAccountError(KaspiIdentityError, ValueError):
    """An account with the same user name, e-mail, phone or IIN already exists.

    ``field`` names which one ("username", "email", "phone" or "iin"); the value is not
    repeated. Not a :class:`StorageError`: the store worked and said no, so a handler that
    retries storage failures must not retry this.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"an account with this {field} already exists")


class AccountNotFoundError(KaspiIdentityError, LookupError):
    """No account has the given id.

    Not a :class:`StorageError` either: the store answered, and asking again will not help.
    """


#: The stable ``reason`` codes of :class:`InvalidPhoneError`; the message key is
#: ``"phone." + reason``.
PHONE_ERROR_REASONS: Final[tuple[str, ...]] = (
    "empty",
    "invalid",
    "not_mobile",
    "region_not_allowed",
    "too_long",
    "too_short",
)

_TECHNICAL_TEXT: Final = {
    "empty": "no phone number was given",
    "invalid": "not a valid phone number",
    "not_mobile": "not a mobile phone number",
    "region_not_allowed": "phone numbers of this region are not accepted",
    "too_long": "the phone number is too long",
    "too_short": "the phone number is too short",
}


#: The stable ``reason`` codes of :class:`InvalidIinError`; the message key is
#: ``"iin." + reason``.
IIN_ERROR_REASONS: Final[tuple[str, ...]] = (
    "bad_date",
    "check_digit",
    "empty",
    "not_digits",
    "wrong_length",
)

_IIN_TECHNICAL_TEXT: Final = {
    "bad_date": "the date in the IIN/BIN is not a real date",
    "check_digit": "the IIN/BIN check digit does not match",
    "empty": "no IIN/BIN was given",
    "not_digits": "an IIN/BIN holds only ASCII digits",
    "wrong_length": "an IIN/BIN has exactly 12 digits",
}


class InvalidPhoneError(KaspiIdentityError, ValueError):
    """A phone number was refused: malformed, of the wrong type, or from a region not allowed.

    ``reason`` is one of :data:`PHONE_ERROR_REASONS` (stable; a front end may map it):

    - ``"empty"`` — nothing but whitespace;
    - ``"invalid"`` — letters or other characters a number cannot hold, or digits that are
      not a number of any known plan;
    - ``"too_short"`` / ``"too_long"`` — too few or too many digits (``"too_long"`` also for
      input longer than :data:`PHONE_MAX_LENGTH` characters);
    - ``"region_not_allowed"`` — a valid number of a region not in the allow-list;
    - ``"not_mobile"`` — a valid number that cannot receive SMS (a landline, toll-free, ...).

    ``region`` and ``kind`` are the number's region and :data:`PHONE_KINDS` value when they
    are known (for the last two reasons), ``allowed_regions`` the allow-list that refused it.
    The message never contains the number.
    """

    def __init__(
        self,
        reason: str,
        *,
        region: str | None = None,
        kind: str | None = None,
        allowed_regions: Collection[str] = (),
    ) -> None:
        if reason not in _TECHNICAL_TEXT:
            raise ValueError(
                f"unknown reason {reason!r}; expected one of {', '.join(PHONE_ERROR_REASONS)}"
            )
        self.reason = reason
        self.region = region
        self.kind = kind
        self.allowed_regions: tuple[str, ...] = tuple(allowed_regions)
        text = _TECHNICAL_TEXT[reason]
        details = [
            f"{name}={value}" for name, value in (("region", region), ("kind", kind)) if value
        ]
        if reason == "region_not_allowed":
            details.append(f"allowed={','.join(self.allowed_regions)}")
        super().__init__(f"{text} ({'; '.join([reason, *details])})")

    def message(self, lang: str) -> str:
        """Return the message for the end user in ``lang`` (``"kk"``, ``"ru"`` or ``"en"``).

        The text comes from the message catalog, key ``"phone." + reason``. For
        ``"region_not_allowed"`` it names the allowed countries in ``lang`` ("Қазақстан,
        Ресей", "Казахстан, Россия", "Kazakhstan, Russia") from the ``country.<ISO code>``
        entries; when one of them has no entry, the message says only that the country is not
        accepted (``phone.region_not_allowed_unnamed``) -- never an ISO code.

        Raises:
            UnknownLanguageError: there is no catalog for ``lang``.

        """
        from kaspi_identity.i18n import get_catalog

        catalog = get_catalog(lang)
        if self.reason == "region_not_allowed":
            keys = [f"country.{region}" for region in self.allowed_regions]
            if not keys or not set(keys) <= catalog.keys():
                return catalog.message("phone.region_not_allowed_unnamed")
            names = ", ".join(catalog.message(key) for key in keys)
            return catalog.message("phone.region_not_allowed", regions=names)
        return catalog.message(f"phone.{self.reason}")


class InvalidIinError(KaspiIdentityError, ValueError):
    """An IIN or BIN was refused: not twelve digits, a wrong check digit, or an impossible date.

    ``reason`` is one of :data:`IIN_ERROR_REASONS` (stable; a front end may map it):

    - ``"empty"`` — nothing but whitespace;
    - ``"not_digits"`` — a character other than the ASCII digits ``0``–``9`` (a letter, a
      space or hyphen inside, a fullwidth or other script's digit, NUL, a lone surrogate);
    - ``"wrong_length"`` — digits only, but not twelve of them (also for input longer than
      :data:`IIN_MAX_LENGTH` characters);
    - ``"check_digit"`` — the twelfth digit is not the check digit of the first eleven, or
      no check digit exists for them (such a number is never issued): usually a typo;
    - ``"bad_date"`` — the check digit is right but the number encodes no real date: an
      IIN's birth date (``YYMMDD``) does not exist or its century digit (the seventh) is not
      1–6, or a BIN's month of registration is not 01–12. An IIN's fifth digit, the tens of
      the birth day, is 0–3, and 4–6 mark a BIN, so a fifth digit 7–9 is ``"bad_date"`` too.

    The message and the exception's arguments never contain the number, nor any part of it.
    """

    def __init__(self, reason: str) -> None:
        if reason not in _IIN_TECHNICAL_TEXT:
            raise ValueError(
                f"unknown reason {reason!r}; expected one of {', '.join(IIN_ERROR_REASONS)}"
            )
        self.reason = reason
        super().__init__(f"{_IIN_TECHNICAL_TEXT[reason]} ({reason})")

    def __reduce__(self) -> tuple[type[InvalidIinError], tuple[str]]:
        # The default would call the class with the message text, which is not a reason.
        return type(self), (self.reason,)

    def message(self, lang: str) -> str:
        """Return the message for the end user in ``lang`` (``"kk"``, ``"ru"`` or ``"en"``).

        The text comes from the message catalog, key ``"iin." + reason``.

        Raises:
            UnknownLanguageError: there is no catalog for ``lang``.

        """
        from kaspi_identity.i18n import get_catalog

        return get_catalog(lang).message(f"iin.{self.reason}")


class DeliveryError(KaspiIdentityError):
    """A letter or an SMS could not be handed over for delivery.

    Raised by every :class:`~kaspi_identity.delivery.EmailSender` and
    :class:`~kaspi_identity.delivery.SmsSender` for a failure of the transport: connection
    refused or timed out, TLS failure, authentication rejected, recipient refused, gateway
    error. The message names the stage and the server, never the body of the message (it may
    hold a link or a code), a password or an API key.

    ``smtp_code`` is the SMTP reply code when the server gave one (``535``, ``550``, ...),
    else ``None``. A code from 400 to 499 means the server asked to try again later.
    """

    def __init__(self, message: str, *, smtp_code: int | None = None) -> None:
        self.smtp_code = smtp_code
        super().__init__(message)


class CatalogError(KaspiIdentityError, ValueError):
    """A message catalog is malformed: bad ``.po`` syntax, a bad header or a bad message.

    ``source`` names the file (or the label given for text), ``line`` is the 1-based line the
    problem was found on, or ``None`` when it concerns the catalog as a whole.
    """

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {reason}")


class BreachedFilterError(KaspiIdentityError, ValueError):
    """A breached-password filter file cannot be used.

    It is missing, not a filter, of another format version, truncated or corrupt. ``path``
    is the file, ``reason`` what is wrong with it. A policy naming such a file reports it as
    a :class:`PolicyConfigError` under the key ``breached``.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class BreachedSourceError(KaspiIdentityError, ValueError):
    """A file given to the filter builder is not in Have I Been Pwned's ``SHA1HEX:COUNT`` form.

    ``source`` names the file and ``line`` the 1-based line (``None`` for the file as a
    whole). The line itself is never quoted: a mistaken source may be a file of plain
    passwords.
    """

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {reason}")


class BreachCheckUnavailableError(KaspiIdentityError):
    """The online breached-password range API did not give a usable answer.

    A timeout, a refused connection, an HTTP error status or a malformed body. The message
    says which, and never holds the password, its hash or even the hash prefix asked for.
    A policy with ``fail = "open"`` treats the password as not known to be breached; with
    ``fail = "closed"`` it reports the ``breached`` violation with ``reason="unavailable"``.
    """
