"""The texts of the app's pages in kk, ru and en, from the web integrations' one catalog.

The letters, SMS and the policy's messages come from :mod:`kaspi_identity.i18n`; what the
pages say (notices such as ``web.letter_sent``, shared with the FastAPI and Flask
integrations, and the labels, headings and buttons under ``page.``) is in
``kaspi_identity/contrib/locale/<lang>.po``, read by the library's own catalog code.
"""

from __future__ import annotations

from django.utils.functional import lazy

from .._web import _catalog
from .validators import active_language

__all__ = ["text", "text_lazy"]


def text(key: str, lang: str | None = None) -> str:
    """The text ``key`` (``"web.letter_sent"``, ``"page.login.title"``) in ``lang``.

    ``lang`` defaults to the active Django language.
    """
    return _catalog(lang or active_language()).message(key)


#: :func:`text` evaluated when shown, for form labels defined at import time.
text_lazy = lazy(text, str)
