"""Flask integration: the ``KaspiIdentity`` extension, its blueprint and the session check.

``pip install 'kaspi-identity[flask]'``; docs/flask.md shows a whole portal in a few lines::

    app = Flask(__name__)
    app.config["SECRET_KEY"] = ...
    KaspiIdentity(app, service=IdentityService(storage, settings, ...))
"""

from __future__ import annotations

try:
    import flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kaspi_identity.contrib.flask needs Flask: pip install 'kaspi-identity[flask]'"
    ) from exc

from kaspi_identity.contrib.flask._extension import (
    CONFIG_DEFAULTS,
    KaspiIdentity,
    current_account,
    login_required,
)

__all__ = ["CONFIG_DEFAULTS", "KaspiIdentity", "current_account", "login_required"]
