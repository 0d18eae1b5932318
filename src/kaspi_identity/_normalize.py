"""Password normalisation shared by the policy engine and the hasher."""

from __future__ import annotations

import unicodedata

__all__ = ["normalize_password"]


def normalize_password(password: object) -> str:
    """Return ``password`` in Unicode NFKC form, as NIST SP 800-63B asks.

    The policy checks and the hasher both see this form, so a password typed with a
    compatibility character (a full-width digit, a ligature) hashes and verifies the same as
    its plain form.

    Raises:
        TypeError: ``password`` is not a ``str`` (bytes included: decode them first).
    """
    if not isinstance(password, str):
        raise TypeError(f"password must be str, not {type(password).__name__}")
    if password.isascii():
        return password
    return unicodedata.normalize("NFKC", password)
