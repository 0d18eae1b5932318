"""FastAPI integration: every account flow as JSON endpoints over ``AsyncIdentityService``.

``pip install 'kaspi-identity[fastapi]'``; docs/fastapi.md shows a whole portal in a few
lines::

    app = FastAPI(lifespan=identity_lifespan(build_the_service))
    app.add_middleware(SessionMiddleware, secret_key=..., https_only=True)
    app.include_router(identity_router(), prefix="/auth")
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import greenlet  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"kaspi_identity.contrib.fastapi needs {exc.name}: pip install 'kaspi-identity[fastapi]'"
    ) from exc

from kaspi_identity.contrib.fastapi._models import (
    AccountAnswer,
    ChangePasswordForm,
    CodeForm,
    ConfirmForm,
    EmailChangeForm,
    GrantAnswer,
    HintOut,
    IdentifierForm,
    LinkState,
    LoginAnswer,
    LoginForm,
    MessageAnswer,
    PasswordForm,
    PasswordState,
    PhoneChangeForm,
    PhoneCodeForm,
    PhoneForm,
    Problem,
    RegisterForm,
    ResetForm,
    TimeZoneForm,
    ViolationOut,
)
from kaspi_identity.contrib.fastapi._router import (
    CurrentAccount,
    client_address,
    current_account,
    forget_link,
    get_identity_service,
    identity_lifespan,
    identity_router,
    keep_session,
    link_token,
    optional_account,
    request_language,
    start_session,
)

__all__ = [
    "AccountAnswer",
    "ChangePasswordForm",
    "CodeForm",
    "ConfirmForm",
    "CurrentAccount",
    "EmailChangeForm",
    "GrantAnswer",
    "HintOut",
    "IdentifierForm",
    "LinkState",
    "LoginAnswer",
    "LoginForm",
    "MessageAnswer",
    "PasswordForm",
    "PasswordState",
    "PhoneChangeForm",
    "PhoneCodeForm",
    "PhoneForm",
    "Problem",
    "RegisterForm",
    "ResetForm",
    "TimeZoneForm",
    "ViolationOut",
    "client_address",
    "current_account",
    "forget_link",
    "get_identity_service",
    "identity_lifespan",
    "identity_router",
    "keep_session",
    "link_token",
    "optional_account",
    "request_language",
    "start_session",
]
