"""Phone numbers: parse what a user typed into E.164, check region and type, mask for display.

:func:`parse_phone` turns the forms people type in Kazakhstan (``+7 701 123 45 67``,
``8 (701) 123-45-67``, ``87011234567``, ``7011234567``, ...) into a :class:`PhoneNumber`
holding the E.164 form (``+77011234567``), the region the number belongs to and its type.
Kazakhstan and Russia share the country code +7; the region is decided by the number itself
(``+7 701 …`` is KZ, ``+7 916 …`` is RU), and each deployment lists the regions it accepts.
By default only mobile numbers are accepted, because the number is there to receive SMS.

Every refusal is an :class:`InvalidPhoneError` (a ``ValueError``) with a stable ``reason``
code and a localised :meth:`~InvalidPhoneError.message`; input that is not a ``str`` is a
``TypeError``. Neither the exception text nor :func:`repr` of a :class:`PhoneNumber` shows the
whole number.

The `phonenumbers <https://github.com/daviddrysdale/python-phonenumbers>`_ package is
imported on first use, not when this module is imported, and only its core (parsing,
formatting, number type, region): never its geocoder, carrier or time-zone data, which cost
about 0.4 s and 97 MiB. See docs/phone.md.

Kazakh portals also log users in by their 12-digit IIN (individual identification number) or
BIN (business identification number), which no phone number can be. :func:`parse_iin` checks
one (twelve ASCII digits, the check digit, the date it encodes) and returns an :class:`Iin`
that knows its kind, an individual's birth date, a masked form, and the strings a password
must not contain; every refusal is an :class:`InvalidIinError` (a ``ValueError``) with a
stable ``reason`` and a localised message. An IIN is personal data (it encodes the birth
date): neither :func:`repr` nor :func:`str` of an :class:`Iin` shows it whole, and no error
text repeats it. This part needs no third-party package.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Final, Literal

from kaspi_identity._errors import (
    IIN_ERROR_REASONS,
    PHONE_ERROR_REASONS,
    InvalidIinError,
    InvalidPhoneError,
)

if TYPE_CHECKING:
    from phonenumbers import PhoneNumber as _ParsedNumber

__all__ = [
    "IIN_ERROR_REASONS",
    "IIN_KINDS",
    "IIN_MAX_LENGTH",
    "PHONE_ERROR_REASONS",
    "PHONE_KINDS",
    "PHONE_MAX_LENGTH",
    "Iin",
    "InvalidIinError",
    "InvalidPhoneError",
    "PhoneNumber",
    "mask_phone",
    "parse_iin",
    "parse_phone",
]

#: Longer input is refused (reason ``"too_long"``) before any parsing: real input is < 25.
PHONE_MAX_LENGTH: Final = 64

#: Every value :attr:`PhoneNumber.kind` can take (phonenumbers' ``PhoneNumberType`` names,
#: lower case).
PHONE_KINDS: Final[tuple[str, ...]] = (
    "fixed_line",
    "fixed_line_or_mobile",
    "mobile",
    "pager",
    "personal_number",
    "premium_rate",
    "shared_cost",
    "toll_free",
    "uan",
    "unknown",
    "voicemail",
    "voip",
)

# Kinds an SMS can go to. FIXED_LINE_OR_MOBILE is what phonenumbers says where the numbering
# plan does not tell the two apart (the US, Canada, ...): refusing it would refuse every
# mobile number of those countries, so it is accepted; a gateway reports the rare landline.
_SMS_KINDS: Final = frozenset({"mobile", "fixed_line_or_mobile"})

# One optional leading "+", ASCII digits, and the separators people type or paste: spaces
# (also no-break, narrow no-break, thin and figure spaces), tabs, hyphens and dashes, the
# minus sign, dots, slashes and parentheses. Anything else (letters, which phonenumbers
# would read as a keypad "vanity" number, other scripts' digits, control characters, NUL,
# lone surrogates, extensions) is refused before phonenumbers sees the text.
_SHAPE: Final = re.compile(
    "\\+?[0-9 \t\u00a0\u2007\u2009\u202f\\-\u2010-\u2015\u2212./()]*", re.ASCII
)
_NOT_DIGIT: Final = re.compile("[^0-9]")
_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_REGION: Final = re.compile(r"[A-Za-z]{2}")
# Kazakhstan and Russia share the country code +7 and its plan: ten-digit national numbers,
# the trunk prefix 8 and the international prefix 8~10.
_PLUS_SEVEN: Final = 7
_NATIONAL_DIGITS: Final = 10
_IIN_DIGITS: Final = 12
# The subscriber part of a masked number keeps its last digits only if it is this long.
_MIN_SUBSCRIBER_TO_SHOW = 5
_SHOWN_DIGITS = 2

#: Longer input is refused (reason ``"wrong_length"``) before any other work: an IIN or BIN
#: is twelve digits, and this leaves room for whitespace around them.
IIN_MAX_LENGTH: Final = 64

#: Every value :attr:`Iin.kind` can take: ``"bin"`` for a legal entity or entrepreneur,
#: ``"iin"`` for an individual.
IIN_KINDS: Final[tuple[str, ...]] = ("bin", "iin")

# A range, not \d: \d also matches fullwidth, Arabic-Indic and other scripts' digits.
_ASCII_DIGITS: Final = re.compile("[0-9]+")
# The check digit, as the Kazakh rules for forming an IIN/BIN define it: the weighted sum of
# the first eleven digits mod 11; a remainder of 10 means a second pass with the second
# weights, and 10 again means that no number is issued with those eleven digits.
_IIN_WEIGHTS: Final = ((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2))
_IIN_MODULUS: Final = 11
_NO_CHECK_DIGIT: Final = 10
# The fifth digit of a BIN is the type of the registrant (4 resident legal entity,
# 5 non-resident, 6 individual entrepreneur); in an IIN it is the tens of the birth day, 0-3.
_BIN_TYPE_DIGITS: Final = frozenset("456")
# The seventh digit of an IIN is the century of birth and the sex (odd male, even female).
_IIN_CENTURY: Final = {"1": 1800, "2": 1800, "3": 1900, "4": 1900, "5": 2000, "6": 2000}
_MONTHS: Final = range(1, 13)
# Masked form: the first four digits (year and month) and the last two stay.
_IIN_SHOWN_HEAD: Final = 4
_IIN_SHOWN_TAIL: Final = 2


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A phone number that passed :func:`parse_phone`.

    Attributes:
        e164: The number in E.164 form, ``"+77011234567"``: the form to store and compare.
        region: The ISO 3166 region the number belongs to, ``"KZ"``, ``"RU"``, ...
        kind: Its type, one of :data:`PHONE_KINDS` (``"mobile"``, ``"fixed_line"``, ...).

    ``str()`` gives :attr:`e164`; :func:`repr` shows only the :attr:`masked` form, so a
    number that reaches a log line is not disclosed whole.
    """

    e164: str
    region: str
    kind: str

    def __post_init__(self) -> None:
        for name in ("e164", "region", "kind"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"PhoneNumber.{name} must be a str, not {type(value).__name__}")
        if _E164.fullmatch(self.e164) is None:
            raise ValueError("PhoneNumber.e164 must be in E.164 form, such as '+77011234567'")
        if self.kind not in PHONE_KINDS:
            raise ValueError(f"PhoneNumber.kind must be one of {', '.join(PHONE_KINDS)}")

    @property
    def masked(self) -> str:
        """The number for display with the middle hidden: ``"+7 701 *** ** 67"``.

        See :func:`mask_phone`.
        """
        return mask_phone(self.e164)

    def __str__(self) -> str:
        return self.e164

    def __repr__(self) -> str:
        try:
            shown = self.masked
        except InvalidPhoneError:
            shown = "+" + "*" * (len(self.e164) - 1)
        return f"PhoneNumber(masked={shown!r}, region={self.region!r}, kind={self.kind!r})"


def parse_phone(
    text: str,
    *,
    region: str = "KZ",
    allowed_regions: Collection[str] = ("KZ",),
    mobile_only: bool = True,
) -> PhoneNumber:
    """Parse a phone number as a user typed it and return it in E.164 form.

    ``region`` says how to read a number typed without ``+``: for ``"KZ"``, ``87011234567``
    (trunk prefix 8), ``7011234567`` (the ten-digit national number) and ``77011234567``
    (the country code without ``+``) are all ``+77011234567``, and ``79161234567`` is the
    Russian ``+79161234567``: from a region of +7 (KZ, RU), eleven digits starting with 7
    are the country code and the ten-digit national number, while twelve digits (the length
    of an IIN/BIN) are no +7 number and are refused as ``"too_long"``. Surrounding
    whitespace is ignored; inside, spaces (also no-break), hyphens, dashes, dots, slashes
    and parentheses may separate the ASCII digits.

    The number must be valid in its country's numbering plan, belong to one of
    ``allowed_regions`` — decided by the number, so ``+7 701 …`` is KZ and ``+7 916 …`` is
    RU — and, with ``mobile_only`` (the default), be able to receive SMS: ``"mobile"``, or
    ``"fixed_line_or_mobile"`` where the plan does not tell the two apart.

    Args:
        text: What the user typed.
        region: ISO 3166 code of the region a number without ``+`` is read in.
        allowed_regions: ISO 3166 codes of the regions whose numbers are accepted.
        mobile_only: Refuse numbers that cannot receive SMS (landlines, toll-free, ...).

    Returns:
        The number, its region and its kind.

    Raises:
        InvalidPhoneError: the number is refused; ``reason`` says why.
        TypeError: ``text`` is not a ``str``, or ``allowed_regions`` is a single ``str``.
        ValueError: ``region`` or an allowed region is not a region phonenumbers knows
            (a configuration error).

    """
    if not isinstance(text, str):
        raise TypeError(f"phone number must be a str, not {type(text).__name__}")
    default_region = _check_region(region, "region")
    allowed = _check_allowed_regions(allowed_regions)
    if len(text) > PHONE_MAX_LENGTH:
        raise InvalidPhoneError("too_long")
    typed = text.strip()
    if not typed:
        raise InvalidPhoneError("empty")
    if _SHAPE.fullmatch(typed) is None:
        raise InvalidPhoneError("invalid")
    # Separators carry no meaning, and phonenumbers does not know all of them (U+202F).
    digits = _NOT_DIGIT.sub("", typed)
    if not digits:
        raise InvalidPhoneError("invalid")

    import phonenumbers

    international = typed[0] == "+"
    in_plus_seven = phonenumbers.country_code_for_region(default_region) == _PLUS_SEVEN
    if not international and in_plus_seven and len(digits) == _NATIONAL_DIGITS + 1:
        # A national number of +7 has ten digits, so eleven starting with 7 are the country
        # code typed without its "+". phonenumbers strips such a 7 only when the rest is a
        # number of the default region, which would make 79161234567 "too long" from KZ.
        international = digits[0] == "7"
    if (
        in_plus_seven
        and not international
        and len(digits) == _IIN_DIGITS
        and not digits.startswith("810")
    ):
        # Twelve digits are no +7 number (10 national, 11 with the 8 or 7 in front); only
        # after the international prefix 8~10 can they be a foreign one. phonenumbers would
        # read 787000000000 as +7, then the trunk prefix 8, then +77000000000.
        raise InvalidPhoneError("too_long")
    reason: str | None
    try:
        number = phonenumbers.parse(("+" if international else "") + digits, default_region)
    except phonenumbers.NumberParseException as exc:
        reason = _parse_failure_reason(exc.error_type)
    else:
        reason = None if phonenumbers.is_valid_number(number) else _length_reason(number)
    if reason is not None:
        if in_plus_seven and not international and len(digits) == _IIN_DIGITS:
            # Twelve digits are no +7 number however typed (10 national, 11 with the 8 or 7
            # in front, 14 after 8~10 7); they are an IIN/BIN. Without this, 810101300123
            # (born 1981) is read after the international prefix 8~10 and is "too short".
            reason = "too_long"
        raise InvalidPhoneError(reason)
    number_region = phonenumbers.region_code_for_number(number)
    if number_region not in allowed:
        raise InvalidPhoneError("region_not_allowed", region=number_region, allowed_regions=allowed)
    kind = _kind(number)
    if mobile_only and kind not in _SMS_KINDS:
        raise InvalidPhoneError("not_mobile", region=number_region, kind=kind)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return PhoneNumber(e164=e164, region=number_region, kind=kind)


def mask_phone(e164: str) -> str:
    """Return an E.164 number for display with its middle digits hidden.

    The country code, the operator or area code and the last two digits stay, the rest of
    the subscriber number becomes ``*`` in groups of two from the right (three in front where
    one digit would be left alone): ``"+77011234567"`` → ``"+7 701 *** ** 67"``,
    ``"+77172123456"`` (Astana, area code 7172) → ``"+7 7172 ** ** 56"``. Where the operator
    code is unknown, only the last two digits are shown.

    The number need not be mobile nor of an allowed region (it is typically one already
    stored), but it must be in E.164 form.

    Raises:
        InvalidPhoneError: ``e164`` is not an E.164 number (reason ``"invalid"``).
        TypeError: ``e164`` is not a ``str``.

    """
    if not isinstance(e164, str):
        raise TypeError(f"phone number must be a str, not {type(e164).__name__}")
    if _E164.fullmatch(e164) is None:
        raise InvalidPhoneError("invalid")

    import phonenumbers

    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneError("invalid") from None
    national = phonenumbers.national_significant_number(number)
    code_length = phonenumbers.length_of_national_destination_code(number)
    code, subscriber = national[:code_length], national[code_length:]
    if len(subscriber) >= _MIN_SUBSCRIBER_TO_SHOW:
        hidden = "*" * (len(subscriber) - _SHOWN_DIGITS) + subscriber[-_SHOWN_DIGITS:]
    else:
        hidden = "*" * len(subscriber)
    parts = [f"+{number.country_code}", code, *_pairs(hidden)]
    return " ".join(part for part in parts if part)


def _pairs(digits: str) -> list[str]:
    """Split into groups of two from the right; a lone leading digit joins the next group."""
    groups = [digits[max(0, end - 2) : end] for end in range(len(digits), 0, -2)][::-1]
    if len(groups) > 1 and len(groups[0]) == 1:
        groups[:2] = [groups[0] + groups[1]]
    return groups


def _check_region(region: object, name: str) -> str:
    """Return ``region`` upper-cased if phonenumbers knows it; a bad one is a config error."""
    if not isinstance(region, str):
        raise TypeError(f"{name} must be a str such as 'KZ', not {type(region).__name__}")
    import phonenumbers

    code = region.upper()
    if _REGION.fullmatch(region) is None or code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{name}: {region!r} is not a region code phonenumbers knows")
    return code


def _check_allowed_regions(allowed_regions: Collection[str]) -> tuple[str, ...]:
    if isinstance(allowed_regions, str):
        raise TypeError(
            "allowed_regions must be a collection of region codes such as ('KZ',), not a str"
        )
    allowed = tuple(dict.fromkeys(_check_region(r, "allowed_regions") for r in allowed_regions))
    if not allowed:
        raise ValueError("allowed_regions must name at least one region")
    return allowed


def _parse_failure_reason(error_type: int) -> str:
    import phonenumbers

    failure = phonenumbers.NumberParseException
    if error_type in (failure.TOO_SHORT_NSN, failure.TOO_SHORT_AFTER_IDD):
        return "too_short"
    if error_type == failure.TOO_LONG:
        return "too_long"
    return "invalid"


def _length_reason(number: _ParsedNumber) -> str:
    """Why a parsed number is not valid: too few digits, too many, or just not a number."""
    import phonenumbers

    result = phonenumbers.ValidationResult
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == result.INVALID_LENGTH:
        # Between two lengths the plan allows, such as 11 digits after +7 (10 for a mobile
        # or landline number, 14 for some toll-free ones): measure against a mobile number.
        possible = phonenumbers.is_possible_number_for_type_with_reason(
            number, phonenumbers.PhoneNumberType.MOBILE
        )
    # IS_POSSIBLE_LOCAL_ONLY: a local number without its area code, such as 7 digits in KZ.
    if possible in (result.TOO_SHORT, result.IS_POSSIBLE_LOCAL_ONLY):
        return "too_short"
    if possible == result.TOO_LONG:
        return "too_long"
    return "invalid"


def _kind(number: _ParsedNumber) -> str:
    import phonenumbers

    number_type = phonenumbers.number_type(number)
    for kind in PHONE_KINDS:
        if getattr(phonenumbers.PhoneNumberType, kind.upper()) == number_type:
            return kind
    return "unknown"


@dataclass(frozen=True, slots=True)
class Iin:
    """A valid Kazakh IIN (individual) or BIN (business identification number).

    Build one with :func:`parse_iin` from what a user typed, or as ``Iin("880101300123")``
    from a stored value: the constructor checks the value exactly as :func:`parse_iin` does
    (except that it strips nothing) and derives :attr:`kind` and :attr:`birth_date` from it,
    so an :class:`Iin` that exists is always valid and consistent.

    Attributes:
        value: The twelve digits, ``"880101300123"``: the form to store and compare.
        kind: ``"iin"`` for an individual, ``"bin"`` for a legal entity, branch or
            entrepreneur registered as one (the fifth digit is 4, 5 or 6).
        birth_date: An individual's date of birth, from the first six digits (``YYMMDD``)
            and the century in the seventh; ``None`` for a BIN.

    An IIN is personal data: it encodes the birth date. :func:`repr` and :func:`str` both
    show only the :attr:`masked` form and the kind (``Iin(masked='8801******23',
    kind='iin')``), so an IIN that reaches a log line or an f-string is not disclosed; read
    :attr:`value` where the number itself is meant.

    Raises:
        InvalidIinError: ``value`` is not a valid IIN or BIN; ``reason`` says why.
        TypeError: ``value`` is not a ``str``.

    """

    value: str
    kind: Literal["iin", "bin"] = field(init=False)
    birth_date: date | None = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise TypeError(f"Iin.value must be a str, not {type(self.value).__name__}")
        kind, birth_date = _decode_iin(self.value)
        # Derived once here, so a value and its kind or birth date can never disagree.
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "birth_date", birth_date)

    @property
    def masked(self) -> str:
        """The number for display with the middle hidden: ``"8801******23"``.

        The first four digits (the year and month of birth or registration) and the last two
        stay; the six between become ``*``.
        """
        hidden = "*" * (_IIN_DIGITS - _IIN_SHOWN_HEAD - _IIN_SHOWN_TAIL)
        return self.value[:_IIN_SHOWN_HEAD] + hidden + self.value[-_IIN_SHOWN_TAIL:]

    def personal_strings(self) -> tuple[str, ...]:
        """Return the strings a password of this person must not contain.

        For an IIN: the twelve digits, then the birth date as ``YYMMDD``, ``DDMMYY`` and
        ``DDMMYYYY`` (born 1 February 1988: ``"880201"``, ``"010288"``, ``"01021988"``);
        for a BIN, the twelve digits only. A form that coincides with an earlier one (born
        1 January 2001: ``YYMMDD`` and ``DDMMYY`` are both ``"010101"``) is given once.
        """
        if self.birth_date is None:
            return (self.value,)
        born = self.birth_date
        yy, mm, dd = f"{born.year % 100:02d}", f"{born.month:02d}", f"{born.day:02d}"
        forms = (self.value, yy + mm + dd, dd + mm + yy, f"{dd}{mm}{born.year:04d}")
        return tuple(dict.fromkeys(forms))

    def __repr__(self) -> str:
        return f"Iin(masked={self.masked!r}, kind={self.kind!r})"

    # Spelled out: a dataclass leaves __str__ to object, which would use repr anyway, and
    # str() must never become the plain number by accident.
    __str__ = __repr__


def parse_iin(text: str) -> Iin:
    """Parse an IIN or BIN as a user typed it.

    Surrounding whitespace is ignored; what remains must be exactly twelve ASCII digits,
    with nothing between them (no spaces, hyphens, fullwidth or other scripts' digits). The
    twelfth digit must be the check digit of the first eleven, and the date the number
    encodes must exist: for an IIN the birth date (``YYMMDD``, the century from the seventh
    digit: 1–2 the 1800s, 3–4 the 1900s, 5–6 the 2000s), for a BIN the month of registration
    (the third and fourth digits). Input longer than :data:`IIN_MAX_LENGTH` characters is
    refused before anything else is looked at.

    Args:
        text: What the user typed.

    Returns:
        The number, its kind and, for an individual, the birth date.

    Raises:
        InvalidIinError: the number is refused; ``reason`` says why (see
            :class:`InvalidIinError`).
        TypeError: ``text`` is not a ``str``.

    """
    if not isinstance(text, str):
        raise TypeError(f"IIN/BIN must be a str, not {type(text).__name__}")
    if len(text) > IIN_MAX_LENGTH:
        raise InvalidIinError("wrong_length")
    return Iin(text.strip())


def _decode_iin(value: str) -> tuple[Literal["iin", "bin"], date | None]:
    """Check twelve digits as an IIN or BIN and return its kind and birth date."""
    if not value:
        raise InvalidIinError("empty")
    if len(value) > IIN_MAX_LENGTH:
        raise InvalidIinError("wrong_length")
    if _ASCII_DIGITS.fullmatch(value) is None:
        raise InvalidIinError("not_digits")
    if len(value) != _IIN_DIGITS:
        raise InvalidIinError("wrong_length")
    # The check digit first: a typo is by far the likeliest fault, and its message says so.
    if _iin_check_digit(value[:-1]) != int(value[-1]):
        raise InvalidIinError("check_digit")
    month = int(value[2:4])
    if value[4] in _BIN_TYPE_DIGITS:
        if month not in _MONTHS:
            raise InvalidIinError("bad_date")
        return "bin", None
    century = _IIN_CENTURY.get(value[6])
    if century is None:
        raise InvalidIinError("bad_date")
    try:
        born = date(century + int(value[:2]), month, int(value[4:6]))
    except ValueError:
        raise InvalidIinError("bad_date") from None
    return "iin", born


def _iin_check_digit(first_eleven: str) -> int | None:
    """The twelfth digit that makes these eleven a valid number, or None if none does."""
    digits = [int(char) for char in first_eleven]
    for weights in _IIN_WEIGHTS:
        remainder = sum(d * w for d, w in zip(digits, weights, strict=True)) % _IIN_MODULUS
        if remainder != _NO_CHECK_DIGIT:
            return remainder
    return None
