"""``manage.py kaspi_identity_describe [--lang kk] [--json]``: the policy's requirements."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from kaspi_identity.i18n import render

from ...service import get_service
from ._common import language

__all__ = ["Command"]


class Command(BaseCommand):
    """Print the project's policy: its requirement lines, or its JSON document."""

    help = "Print the kaspi-identity policy's requirements (or its JSON document)."

    def add_arguments(self, parser: CommandParser) -> None:
        """``--lang`` and ``--json``."""
        parser.add_argument("--lang", help="kk, ru or en (default: LANGUAGE_CODE)")
        parser.add_argument("--json", action="store_true", help="print policy.document()")

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the lines or the document."""
        lang = language(options["lang"])
        policy = get_service().policy
        if options["json"]:
            self.stdout.write(json.dumps(policy.document(lang), ensure_ascii=False, indent=2))
            return
        self.stdout.write(render("cli.requirements", lang))
        for line in policy.describe(lang):
            self.stdout.write(f"  - {line}")
