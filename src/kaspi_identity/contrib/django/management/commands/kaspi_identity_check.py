"""``manage.py kaspi_identity_check [--user LOGIN]``: check a password against the policy.

The password is read from a no-echo prompt (or one line of standard input), never from
the command line. With ``--user`` the user's personal data and password history count too.
Exits 0 when the password is accepted, 1 when it is not.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kaspi_identity.i18n import render

from ...service import get_service
from ...validators import user_info
from ._common import find_user, language

__all__ = ["Command"]


class Command(BaseCommand):
    """Check a password against the project's policy (and a user's history)."""

    help = "Check a password (read from a prompt or stdin) against the kaspi-identity policy."

    def add_arguments(self, parser: CommandParser) -> None:
        """``--user`` and ``--lang``."""
        parser.add_argument("--user", help="a user name, e-mail, phone or IIN")
        parser.add_argument("--lang", help="kk, ru or en (default: LANGUAGE_CODE)")

    def handle(self, *args: Any, **options: Any) -> None:
        """Read the password, check it, print the verdict and every violation."""
        lang = language(options["lang"])
        user = find_user(options["user"]) if options["user"] else None
        if sys.stdin.isatty():
            password = getpass.getpass(render("cli.prompt_password", lang) + " ")
        else:
            line = sys.stdin.readline()
            if not line:
                raise CommandError("no password on standard input")
            password = line.removesuffix("\n")
        service = get_service()
        if user is not None and service.policy.history:
            result = service.history.validate(
                service.policy, str(user.pk), password, user=user_info(user)
            )
        else:
            result = service.policy.check(password, user=user_info(user))
        if result:
            self.stdout.write(render("cli.accepted", lang))
            return
        self.stdout.write(render("cli.rejected", lang))
        for message in result.messages(lang):
            self.stdout.write(f"  - {message}")
        raise SystemExit(1)
