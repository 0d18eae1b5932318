"""``{% load kaspi_identity %}``: ``{% kaspi_text "page.login.title" %}`` and the policy's lines."""

from __future__ import annotations

from django import template

from .._ui import text
from ..service import get_service
from ..validators import active_language

__all__ = ["kaspi_requirements", "kaspi_text"]

register = template.Library()


@register.simple_tag
def kaspi_text(key: str) -> str:
    """The page text ``key`` in the active language (escaped by the template engine)."""
    return text(key)


@register.simple_tag
def kaspi_requirements() -> list[str]:
    """The service policy's requirement lines in the active language."""
    return get_service().policy.describe(active_language())
