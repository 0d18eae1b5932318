"""A FastAPI portal with every account flow of kaspi-identity: settings, then the glue.

Run it with ``uvicorn fastapi_portal:app`` (``pip install 'kaspi-identity[fastapi]' uvicorn``);
``test_fastapi_portal.py`` drives it end to end through FastAPI's test client.
"""

import os

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from kaspi_identity.contrib.fastapi import identity_lifespan, identity_router
from kaspi_identity.delivery import Outbox
from kaspi_identity.hashing import TESTS_ONLY, PasswordHasher
from kaspi_identity.services import AsyncIdentityService, IdentitySettings
from kaspi_identity.storage.sqlite import async_sqlite_storage

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
OUTBOX = Outbox()  # letters and SMS kept for the tests: AsyncSmtpEmailSender and a gateway live


def identity_service() -> AsyncIdentityService:
    """The portal's service, built at start-up (its stores are closed at shutdown)."""
    storage = async_sqlite_storage(os.environ.get("PORTAL_DB", "portal.sqlite3"))
    return AsyncIdentityService(
        storage,
        SETTINGS,
        email_sender=OUTBOX,
        sms_sender=OUTBOX,
        hasher=PasswordHasher(TESTS_ONLY),  # tests only: leave hasher= out in production
    )


# -- the glue ----------------------------------------------------------------------------------
app = FastAPI(lifespan=identity_lifespan(identity_service))
app.add_middleware(SessionMiddleware, secret_key=SESSION_KEY, https_only=True)
app.include_router(identity_router(), prefix="/auth")
