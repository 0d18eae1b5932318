"""``python -m kaspi_portal``: the portal on SQLite with the dev mailbox (see ``--help``)."""

import sys

from kaspi_portal._serve import main

sys.exit(main())
