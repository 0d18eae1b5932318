"""What the user types: reading log-in identifiers and cleaning what registration is given.

Every text is bounded where it is read (before it is stripped, normalised, hashed or looked
up). The kinds of login cannot overlap, so an identifier names at most one account: an
e-mail address holds ``@``; exactly 12 digits are an IIN/BIN (no KZ or RU phone number has
12 digits); what phone numbers are written with is a phone; anything else is a user name —
and registration refuses a user name that looks like a phone number or an IIN.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Final

from kaspi_identity._errors import InvalidIdentifierError
from kaspi_identity.delivery._messages import is_deliverable_address
from kaspi_identity.phone import InvalidPhoneError, PhoneNumber, parse_phone
from kaspi_identity.services._settings import IdentitySettings, _zone
from kaspi_identity.storage import LoginKind
from kaspi_identity.storage._checks import is_storable_text
from kaspi_identity.storage._records import MAX_NAMES, NAME_MAX_LENGTH

__all__ = [
    "IDENTIFIER_MAX",
    "Resolved",
    "clean_email",
    "clean_names",
    "clean_time_zone",
    "clean_username",
    "limit_value",
    "parse_mobile",
    "registration_value",
    "require_str",
    "resolve",
]

#: The longest identifier (stripped) that can name an account.
IDENTIFIER_MAX: Final = 320
_USERNAME_RE: Final = re.compile(r"[^\W_][\w.\-]{1,62}[^\W_]?", re.UNICODE)
# A login identifier made of what phone numbers are written with: read as a phone number.
_PHONE_LIKE: Final = re.compile(r"\+?[\d\s().\-]{7,24}")
# Exactly what an IIN/BIN is: 12 ASCII digits.
_IIN_LIKE: Final = re.compile(r"[0-9]{12}")
_USERNAME_RULE: Final = "use 2 to 64 letters, digits, '.', '_' or '-'"

#: Which login an identifier names, normalised; ``None`` for one no account can have.
Resolved = tuple[LoginKind, str] | None


def require_str(**values: object) -> None:
    """``TypeError`` for a non-``str``.

    Every text is bounded where it is read (identifiers, codes, client keys by the rate
    limits, passwords by the policy and the hasher), before it is stripped, normalised,
    hashed or looked up.
    """
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be str, not {type(value).__name__}")


def parse_mobile(settings: IdentitySettings, text: str, *, mobile_only: bool = True) -> PhoneNumber:
    """``text`` read as a phone number of a region the deployment serves.

    Raises:
        InvalidPhoneError: malformed, not a mobile (with ``mobile_only``), or from a region
            not allowed.
    """
    return parse_phone(
        text,
        region=settings.phone_region,
        allowed_regions=settings.phone_regions,
        mobile_only=mobile_only,
    )


def resolve(identifier: str, settings: IdentitySettings) -> Resolved:
    """Which login an identifier names, normalised, or ``None`` for one no account has.

    A phone number is read into E.164, so every spelling of one number is one identifier.
    """
    if len(identifier) > 2 * IDENTIFIER_MAX:  # bounded before it is even stripped
        return None
    text = identifier.strip()
    if not text or len(text) > IDENTIFIER_MAX:
        return None
    if "@" in text:
        return "email", text
    if _IIN_LIKE.fullmatch(text):
        return "iin", text
    if _PHONE_LIKE.fullmatch(text):
        try:
            return "phone", parse_mobile(settings, text, mobile_only=False).e164
        except InvalidPhoneError:
            pass  # an account registered before user names were kept apart
    return "username", text


def limit_value(resolved: Resolved, identifier: str) -> str:
    """What per-identifier limits count: the normalised identifier, whoever has it."""
    if resolved is None:
        return "?" + identifier[: 2 * IDENTIFIER_MAX].strip()[:IDENTIFIER_MAX].casefold()
    kind, value = resolved
    return f"{kind}:{value if kind in ('phone', 'iin') else value.casefold()}"


def registration_value(
    *, email: str | None, phone: str | None, iin: str | None, username: str | None
) -> str:
    """What ``register_per_identifier`` counts: the e-mail, else phone, else IIN, else name."""
    if email is not None:
        return f"email:{email.casefold()}"
    if phone is not None:
        return f"phone:{phone}"
    if iin is not None:
        return f"iin:{iin}"
    return f"username:{(username or '').casefold()}"


def clean_email(email: str | None) -> str | None:
    """The stripped address, or ``None`` for none.

    Raises:
        TypeError: not a ``str``.
        InvalidIdentifierError: not an address mail can be delivered to.
    """
    if email is None:
        return None
    if not isinstance(email, str):
        raise TypeError("email must be str")
    if len(email) > 2 * IDENTIFIER_MAX:  # before any scan of it
        raise InvalidIdentifierError("email", "not an e-mail address", code="email")
    email = email.strip()
    local = email.rpartition("@")[0]
    surrogate = any("\ud800" <= c <= "\udfff" for c in email)  # no UTF-8 form: unstorable
    if len(local) > 64 or surrogate or not is_deliverable_address(email):
        raise InvalidIdentifierError("email", "not an e-mail address", code="email")
    return email


def clean_username(username: str | None) -> str | None:
    """The stripped user name, or ``None`` for none.

    Raises:
        TypeError: not a ``str``.
        InvalidIdentifierError: malformed, or made like a phone number or an IIN.
    """
    if username is None:
        return None
    if not isinstance(username, str):
        raise TypeError("username must be str")
    if len(username) > 2 * IDENTIFIER_MAX:  # before any scan of it
        raise InvalidIdentifierError("username", _USERNAME_RULE, code="username")
    username = username.strip()
    if not 2 <= len(username) <= 64 or not _USERNAME_RE.fullmatch(username):
        raise InvalidIdentifierError("username", _USERNAME_RULE, code="username")
    if _PHONE_LIKE.fullmatch(username) or _IIN_LIKE.fullmatch(username):
        # Log-in reads such a login as a phone number or an IIN, so it would find the
        # account of whoever has that number: a user name must hold a letter.
        raise InvalidIdentifierError(
            "username",
            "a user name needs a letter; give a phone or an IIN in its own field",
            code="username_number",
        )
    return username


def clean_names(names: Sequence[str]) -> tuple[str, ...]:
    """The non-blank names, stripped.

    Raises:
        TypeError: not a sequence of ``str`` (one ``str`` is refused).
        InvalidIdentifierError: too many or too long names, or an unstorable character.
    """
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


def clean_time_zone(time_zone: str | None) -> str | None:
    """``time_zone`` if it is ``None`` or an IANA zone this system knows.

    Raises:
        TypeError: neither a ``str`` nor ``None``.
        ValueError: no zone of that name (the message names ``time_zone``).
    """
    if time_zone is None:
        return None
    if not isinstance(time_zone, str):
        raise TypeError(f"time_zone must be str or None, not {type(time_zone).__name__}")
    _zone(time_zone)
    return time_zone
