"""The Django app: ``INSTALLED_APPS = [..., "kaspi_identity.contrib.django"]``."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["KaspiIdentityConfig"]


class KaspiIdentityConfig(AppConfig):
    """The app's configuration: its label, and the signals it connects when Django starts."""

    name = "kaspi_identity.contrib.django"
    label = "kaspi_identity"
    verbose_name = "kaspi-identity"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the user model's signals (identities, stamps, history)."""
        from django.core import checks

        from . import _signals
        from .checks import check_setup

        _signals.connect()
        checks.register(check_setup, "kaspi_identity")
