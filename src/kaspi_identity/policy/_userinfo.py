"""What the policy knows about the person choosing a password."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["USERINFO_LIMITS", "UserInfo"]

#: The longest value :class:`UserInfo` accepts per field, in code points (``names``: each
#: name), and ``"names_count"``: how many names. Personal data longer than this is not a
#: name, an address or a phone number; refusing it at construction keeps every check over
#: a :class:`UserInfo` at bounded cost (its fragments are NFKC-normalised, split and
#: transliterated, and zxcvbn gets them as a dictionary).
USERINFO_LIMITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "username": 254,
        "email": 320,  # RFC 3696 (errata): 64 for the local part, @, 255 for the domain
        "phone": 64,
        "iin": 64,
        "names": 256,
        "names_count": 16,
    }
)


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Personal data a password must not contain (and zxcvbn's extra dictionary).

    Args:
        username: the login name.
        email: the e-mail address; its local part and the parts of it are checked.
        phone: the phone number in any format; its digits are checked.
        iin: a Kazakh IIN/BIN (12 digits). The password may not hold it, nor, for an IIN,
            the birth date it encodes as YYMMDD, DDMMYY or DDMMYYYY.
        names: given name, family name, patronymic, company name... Cyrillic names are also
            checked in their Latin transliteration ("Айгерим" → "aigerim").

    Raises:
        TypeError: a field is not a ``str`` (``names``: not a sequence of ``str``).
        ValueError: a field is longer than :data:`USERINFO_LIMITS` allows, or there are more
            names than it allows; the message names the field, never its value.
    """

    username: str | None = None
    email: str | None = None
    phone: str | None = None
    names: tuple[str, ...] = ()
    iin: str | None = None

    def __post_init__(self) -> None:
        for name in ("username", "email", "phone", "iin"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"UserInfo.{name} must be str or None")
            if value is not None and len(value) > USERINFO_LIMITS[name]:
                raise ValueError(
                    f"UserInfo.{name} is longer than {USERINFO_LIMITS[name]} characters"
                )
        names = self.names
        if isinstance(names, str):
            # A single name passed as a string would otherwise be split into letters.
            names = (names,)
        limit = USERINFO_LIMITS["names_count"]
        try:
            # At most one name past the limit is read, so a huge iterable is never copied.
            names = tuple(itertools.islice(names, limit + 1))
        except TypeError:
            raise TypeError("UserInfo.names must be a tuple of str") from None
        if len(names) > limit:
            raise ValueError(f"UserInfo.names holds more than {limit} names")
        if not all(isinstance(n, str) for n in names):
            raise TypeError("UserInfo.names must be a tuple of str")
        for index, value in enumerate(names):
            if len(value) > USERINFO_LIMITS["names"]:
                raise ValueError(
                    f"UserInfo.names[{index}] is longer than {USERINFO_LIMITS['names']} characters"
                )
        object.__setattr__(self, "names", names)
