"""``python -m kaspi_identity``: the command-line interface."""

from __future__ import annotations

import sys

from kaspi_identity.cli import main

if __name__ == "__main__":
    sys.exit(main())
