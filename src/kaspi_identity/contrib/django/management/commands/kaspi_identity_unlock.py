"""``manage.py kaspi_identity_unlock LOGIN``: clear an account's failed log-ins (a lockout).

The same write a password reset makes when it recovers a locked account
(``AccountStore.clear_login_failures``); the password and the sessions are left alone.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...service import get_service
from ._common import find_user

__all__ = ["Command"]


class Command(BaseCommand):
    """Reset the consecutive failed log-ins of one account to zero."""

    help = "Unlock a kaspi-identity account locked by failed log-ins."

    def add_arguments(self, parser: CommandParser) -> None:
        """The account's user name, e-mail, phone or IIN."""
        parser.add_argument("login", help="a user name, e-mail, phone or IIN")

    def handle(self, *args: Any, **options: Any) -> None:
        """Clear the failures and say how many there were."""
        user = find_user(options["login"])
        accounts = get_service().storage.accounts
        account = accounts.get(str(user.pk))
        before = 0 if account is None else account.failed_logins
        accounts.clear_login_failures(str(user.pk))
        self.stdout.write(f"user {user.pk}: {before} failed log-ins cleared")
