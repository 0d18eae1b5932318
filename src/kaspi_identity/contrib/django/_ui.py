"""The texts of the app's pages in kk, ru and en, read with the library's own catalog code.

The letters, SMS and the policy's messages come from :mod:`kaspi_identity.i18n`; the page
texts (labels, headings, notices) are in ``locale/<lang>.po`` beside this module, parsed by
:meth:`~kaspi_identity.i18n.Catalog.from_po_text`.
"""

from __future__ import annotations

import functools
from importlib import resources

from django.utils.functional import lazy

from kaspi_identity.i18n import Catalog

from .validators import active_language

__all__ = ["page_catalog", "text", "text_lazy"]


@functools.cache
def page_catalog(lang: str) -> Catalog:
    """The page texts of ``lang`` (kk, ru or en)."""
    source = resources.files(__package__).joinpath("locale", f"{lang}.po")
    return Catalog.from_po_text(source.read_text("utf-8"), source=f"contrib/django/{lang}.po")


def text(key: str, lang: str | None = None) -> str:
    """The page text ``key`` in ``lang`` (default: the active Django language)."""
    return page_catalog(lang or active_language()).message(key)


#: :func:`text` evaluated when shown, for form labels defined at import time.
text_lazy = lazy(text, str)
