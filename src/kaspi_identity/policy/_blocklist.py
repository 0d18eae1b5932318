"""Lists of passwords that are too common to allow.

The built-in list is the 30,000 most common passwords that zxcvbn ships (from leaked password
corpora), plus a short list of our own of patterns common on CIS portals (``data/common-cis.txt``:
keyboard walks, the Russian word for "password", city names). Entries are compared
case-insensitively with the NFKC-normalised password, and a password typed in the Russian
keyboard layout is also compared as what it would have been in QWERTY.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from importlib import resources
from pathlib import Path

__all__ = ["BlocklistError", "builtin_blocklist", "load_blocklist"]

_lock = threading.Lock()
_builtin: frozenset[str] | None = None
_files: dict[tuple[str, int, int], frozenset[str]] = {}


class BlocklistError(Exception):
    """A blocklist file could not be read (the policy reports it as a config error)."""


def _fold(word: str) -> str:
    """Entries are compared in the password's form: NFKC, then casefolded."""
    return (word if word.isascii() else unicodedata.normalize("NFKC", word)).casefold()


def builtin_blocklist() -> frozenset[str]:
    """The built-in blocklist, loaded on first use and cached."""
    global _builtin
    if _builtin is None:
        with _lock:
            if _builtin is None:
                from zxcvbn.frequency_lists import FREQUENCY_LISTS

                ours = resources.files(__package__).joinpath("data", "common-cis.txt")
                extra = ours.read_text(encoding="utf-8").splitlines()
                _builtin = frozenset(_fold(w) for w in (*FREQUENCY_LISTS["passwords"], *extra) if w)
    return _builtin


def load_blocklist(path: str | os.PathLike[str]) -> frozenset[str]:
    """Read a file of one password per line (UTF-8), cached by path, size and mtime.

    Lines are taken whole (only the line ending is removed), so a password may start with
    ``#`` or hold spaces; empty lines are skipped.

    Raises:
        BlocklistError: the file is missing, unreadable or not UTF-8.
    """
    p = Path(path)
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        cached = _files.get(key)
        if cached is not None:
            return cached
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlocklistError("file not found") from None
    except UnicodeDecodeError:
        raise BlocklistError("file is not valid UTF-8") from None
    except OSError as exc:
        raise BlocklistError(f"cannot read file ({exc.strerror})") from None
    words = frozenset(_fold(line) for line in text.splitlines() if line)
    with _lock:
        _files[key] = words
    return words
