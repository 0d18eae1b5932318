"""``manage.py kaspi_identity_backfill``: identities for users made before the app was added.

Users created after the app is installed get theirs when they are saved; a project that
adds the app to a database with users runs this once after ``migrate``. Idempotent.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from ..._signals import ensure_identity
from ...models import Identity

__all__ = ["Command"]


class Command(BaseCommand):
    """Create the missing identities, from each user's own fields."""

    help = "Create kaspi-identity identities for users that have none."

    def add_arguments(self, parser: CommandParser) -> None:
        """``--database``."""
        parser.add_argument("--database", default="default", help="the database alias")

    def handle(self, *args: Any, **options: Any) -> None:
        """Create them and say how many."""
        using = options["database"]
        users = get_user_model()._default_manager.db_manager(using)
        have = Identity.objects.using(using).values("pk")
        made = 0
        for user in users.exclude(pk__in=have).iterator():
            ensure_identity(user, using=using)
            made += 1
        self.stdout.write(f"{made} identities created")
