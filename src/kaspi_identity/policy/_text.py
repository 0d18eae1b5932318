"""Text helpers for the rules: character classes, transliteration, keyboard layouts."""

from __future__ import annotations

import re
import string
from typing import Final

__all__ = [
    "ASCII_PRINTABLE",
    "CYRILLIC",
    "DIGITS",
    "LATIN_ALNUM",
    "LOWER",
    "UPPER",
    "from_russian_layout",
    "transliterate",
]

UPPER: Final = frozenset(string.ascii_uppercase)
LOWER: Final = frozenset(string.ascii_lowercase)
DIGITS: Final = frozenset(string.digits)
LATIN_ALNUM: Final = UPPER | LOWER | DIGITS
#: Printable ASCII: space through tilde.
ASCII_PRINTABLE: Final = frozenset(chr(c) for c in range(0x20, 0x7F))
#: Any Cyrillic letter (basic block plus the Kazakh letters, which live in the same block).
CYRILLIC: Final = re.compile("[\u0400-\u04ff]")

# Two common romanisations of Russian and Kazakh names: passport-style and "keyboard" style.
# Names are checked in both, so "Айгерим" is found as "aigerim" and "aygerim".
_TRANSLIT_A: Final[dict[str, str]] = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z",
    "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "iu", "я": "ia",
    "ә": "a", "ғ": "g", "қ": "q", "ң": "n", "ө": "o", "ұ": "u", "ү": "u", "һ": "h", "і": "i",
}  # fmt: skip
_TRANSLIT_B: Final[dict[str, str]] = {
    **_TRANSLIT_A,
    "й": "y", "х": "h", "ю": "yu", "я": "ya", "қ": "k", "ң": "ng", "ж": "j", "ё": "yo",
}  # fmt: skip
_TABLE_A: Final = str.maketrans(_TRANSLIT_A)
_TABLE_B: Final = str.maketrans(_TRANSLIT_B)

# The ЙЦУКЕН layout position by position over QWERTY: a word typed with the Russian layout
# switched on ("зфыыцщкв") maps back to what the user meant ("password").
_RU_LAYOUT: Final = "йцукенгшщзхъфывапролджэячсмитьбю"
_EN_LAYOUT: Final = "qwertyuiop[]asdfghjkl;'zxcvbnm,."
_LAYOUT_TABLE: Final = str.maketrans(
    _RU_LAYOUT + _RU_LAYOUT.upper() + "ё", _EN_LAYOUT + _EN_LAYOUT.upper() + "`"
)


def transliterate(text: str) -> tuple[str, ...]:
    """Latin spellings of a casefolded Cyrillic ``text`` (empty when it has no Cyrillic)."""
    if not CYRILLIC.search(text):
        return ()
    return tuple(dict.fromkeys((text.translate(_TABLE_A), text.translate(_TABLE_B))))


def from_russian_layout(text: str) -> str:
    """What ``text`` would have been had it been typed with the QWERTY layout."""
    return text.translate(_LAYOUT_TABLE)
