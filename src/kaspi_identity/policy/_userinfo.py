"""What the policy knows about the person choosing a password."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UserInfo"]


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Personal data a password must not contain (and zxcvbn's extra dictionary).

    Args:
        username: the login name.
        email: the e-mail address; its local part and the parts of it are checked.
        phone: the phone number in any format; its digits are checked.
        names: given name, family name, patronymic, company name... Cyrillic names are also
            checked in their Latin transliteration ("Айгерим" → "aigerim").
    """

    username: str | None = None
    email: str | None = None
    phone: str | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("username", "email", "phone"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"UserInfo.{name} must be str or None")
        if isinstance(self.names, str):
            # A single name passed as a string would otherwise be split into letters.
            object.__setattr__(self, "names", (self.names,))
        if not all(isinstance(n, str) for n in self.names):
            raise TypeError("UserInfo.names must be a tuple of str")
        object.__setattr__(self, "names", tuple(self.names))
