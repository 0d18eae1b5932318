"""A Flask portal with every account flow of kaspi-identity: settings, then the glue.

Run it with ``flask --app flask_portal run`` (``pip install 'kaspi-identity[flask]'``);
``test_flask_portal.py`` drives it end to end through Flask's test client.
"""

import os

from flask import Flask

from kaspi_identity.contrib.flask import KaspiIdentity
from kaspi_identity.delivery import Outbox
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import IdentityService, IdentitySettings
from kaspi_identity.storage.sqlite import sqlite_storage

# -- settings: what a deployment keeps in its environment -------------------------------------
SETTINGS = IdentitySettings(
    secret_keys=(os.environ.get("PORTAL_SECRET_KEY", "dev-only-key-0123456789abcdef012").encode(),),
    site_name="portal.example.kz",
    confirm_url="https://portal.example.kz/auth/confirm",
    reset_url="https://portal.example.kz/auth/password/reset",
    email_change_url="https://portal.example.kz/auth/email/confirm",
    email_undo_url="https://portal.example.kz/auth/email/undo",
)
SESSION_KEY = os.environ.get("PORTAL_SESSION_KEY", "dev-only-session-key")
OUTBOX = Outbox()  # letters and SMS kept for the tests: SmtpEmailSender and a gateway live


def identity_service() -> IdentityService:
    """The portal's service over its SQLite file."""
    storage = sqlite_storage(os.environ.get("PORTAL_DB", "portal.sqlite3"))
    return IdentityService(
        storage,
        SETTINGS,
        email_sender=OUTBOX,
        sms_sender=OUTBOX,
        hasher=PasswordHasher(TESTS_ONLY),  # tests only: leave hasher= out in production
    )


# -- the glue ----------------------------------------------------------------------------------
identity = KaspiIdentity()


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SESSION_KEY, SESSION_COOKIE_SECURE=True)
    identity.init_app(app, service=identity_service())
    return app
