"""User-facing messages in English, Russian and Kazakh.

Every message has a stable key (``"violation.too_short"``, ``"requirement.digit"``, ...) and is
rendered per language with its parameters and the language's plural rule::

    >>> from kaspi_identity.i18n import render
    >>> render("requirement.min_length", "ru", count=8, min_length=8)
    'Минимум 8 символов'

The catalogs are gettext ``.po`` files shipped inside the package; see docs/i18n.md.
"""

from __future__ import annotations

from kaspi_identity.i18n._catalog import (
    DEFAULT_LANGUAGE,
    SUPPORTED_LANGUAGES,
    Catalog,
    get_catalog,
    normalize_language,
    render,
)
from kaspi_identity.i18n._po import CatalogError

__all__ = [
    "DEFAULT_LANGUAGE",
    "SUPPORTED_LANGUAGES",
    "Catalog",
    "CatalogError",
    "get_catalog",
    "normalize_language",
    "render",
]
