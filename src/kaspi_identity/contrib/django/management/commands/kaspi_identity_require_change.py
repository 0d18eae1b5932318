"""``manage.py kaspi_identity_require_change LOGIN [--clear]``: ask for a new password.

``IdentityService.require_password_change``: the account's next log-in succeeds and sends
the user to the change-of-password page first. Sessions are left alone (reset the password
instead when the account may be in someone else's hands).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...service import get_service
from ._common import find_user

__all__ = ["Command"]


class Command(BaseCommand):
    """Set (or with ``--clear``, clear) the account's must-change-password flag."""

    help = "Make a kaspi-identity account choose a new password at its next log-in."

    def add_arguments(self, parser: CommandParser) -> None:
        """The login, and ``--clear``."""
        parser.add_argument("login", help="a user name, e-mail, phone or IIN")
        parser.add_argument("--clear", action="store_true", help="no longer ask for it")

    def handle(self, *args: Any, **options: Any) -> None:
        """Set or clear the flag."""
        user = find_user(options["login"])
        get_service().require_password_change(str(user.pk), required=not options["clear"])
        state = "no longer needs" if options["clear"] else "must choose"
        self.stdout.write(f"user {user.pk} {state} a new password at the next log-in")
