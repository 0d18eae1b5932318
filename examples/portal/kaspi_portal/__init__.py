"""The seed portals as real pages: registration, log-in, reset by link or SMS, change of password.

A small FastAPI app on ``kaspi_identity.contrib.fastapi`` with server-rendered Jinja2 pages in
kk / ru / en that work without JavaScript. Run it with ``kaspi-identity portal`` or
``python -m kaspi_portal`` (docs/portal.md); build it in code with :func:`create_app`.
"""

from kaspi_portal._app import PortalConfig, create_app
from kaspi_portal._serve import main, serve

__all__ = ["PortalConfig", "create_app", "main", "serve"]
