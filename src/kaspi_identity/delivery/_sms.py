"""How many SMS segments a text costs: GSM 03.38 7-bit alphabet or UCS-2."""

from __future__ import annotations

from typing import Literal

__all__ = ["sms_encoding", "sms_segments"]

# 3GPP TS 23.038, the GSM 7-bit default alphabet (one septet each; 0x1B, the escape to the
# extension table, is left out) and the characters of its extension table (two septets:
# the escape and the character).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")
_GSM7 = _GSM7_BASIC | _GSM7_EXTENDED

# Capacity of a single SMS and of each part of a concatenated one (the rest of the part
# carries the 6-byte user data header that joins the parts).
_GSM7_SINGLE, _GSM7_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67


def sms_encoding(text: str) -> Literal["GSM-7", "UCS-2"]:
    """Return the encoding a phone network uses for ``text``.

    ``"GSM-7"`` when every character is in the GSM 03.38 default alphabet or its extension
    table (Latin text: 160 characters per SMS), otherwise ``"UCS-2"`` (any Cyrillic letter,
    emoji, curly quote or dash: 70 characters per SMS).

    Raises:
        TypeError: ``text`` is not a ``str``.

    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    return "GSM-7" if _GSM7.issuperset(text) else "UCS-2"


def sms_segments(text: str) -> int:
    r"""Return how many SMS segments ``text`` is sent as (1 for a single SMS).

    GSM-7 text fits 160 septets in one SMS, where each extension character
    (``{ } [ ] ~ ^ | € \`` and form feed) costs two; longer text is split into parts of 153
    septets, never between an escape and its character. UCS-2 text fits 70 UTF-16 code
    units in one SMS (a character outside the Basic Multilingual Plane, such as an emoji,
    costs two); longer text is split into parts of 67, never inside a surrogate pair. An
    empty text is still one SMS.

    Raises:
        TypeError: ``text`` is not a ``str``.

    """
    if sms_encoding(text) == "GSM-7":
        costs = [2 if char in _GSM7_EXTENDED else 1 for char in text]
        single, part = _GSM7_SINGLE, _GSM7_PART
    else:
        costs = [2 if ord(char) > 0xFFFF else 1 for char in text]
        single, part = _UCS2_SINGLE, _UCS2_PART
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments += 1
            used = 0
        used += cost
    return segments
