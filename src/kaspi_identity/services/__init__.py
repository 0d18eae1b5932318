"""Account and recovery flows: register, confirm, log in, change and reset passwords.

:class:`IdentityService` is the one entry point; it is written against the storage and
delivery protocols only. See docs/recovery.md for the flows. :class:`OutboxWorker` delivers
what the flows queued when the storage has an outbox (docs/delivery.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kaspi_identity._errors import (
    IDENTIFIER_ERROR_CODES,
    InvalidCodeError,
    InvalidIdentifierError,
)
from kaspi_identity.services._audit import (
    EVENT_KINDS,
    AsyncAuditSink,
    AuditEvent,
    AuditSink,
    LoggingAuditSink,
    MemoryAuditLog,
)
from kaspi_identity.services._clock import Clock, ManualClock, SystemClock
from kaspi_identity.services._results import (
    PASSWORD_CHANGE_REASONS,
    ContactChangeResult,
    LoginResult,
    PasswordChangeResult,
    PasswordResetResult,
    RegistrationResult,
    ResetRequestResult,
)
from kaspi_identity.services._service import IdentityService
from kaspi_identity.services._settings import IdentitySettings, RateLimit
from kaspi_identity.services._worker import AsyncOutboxWorker, OutboxWorker, RetryPolicy, WorkerRun

if TYPE_CHECKING:
    from kaspi_identity.services._async import AsyncIdentityService

__all__ = [
    "EVENT_KINDS",
    "IDENTIFIER_ERROR_CODES",
    "PASSWORD_CHANGE_REASONS",
    "AsyncAuditSink",
    "AsyncIdentityService",
    "AsyncOutboxWorker",
    "AuditEvent",
    "AuditSink",
    "Clock",
    "ContactChangeResult",
    "IdentityService",
    "IdentitySettings",
    "InvalidCodeError",
    "InvalidIdentifierError",
    "LoggingAuditSink",
    "LoginResult",
    "ManualClock",
    "MemoryAuditLog",
    "OutboxWorker",
    "PasswordChangeResult",
    "PasswordResetResult",
    "RateLimit",
    "RegistrationResult",
    "ResetRequestResult",
    "RetryPolicy",
    "SystemClock",
    "WorkerRun",
]


def __getattr__(name: str) -> Any:
    # The async face needs greenlet (the ``async`` extra); importing the sync one must not.
    if name == "AsyncIdentityService":
        from kaspi_identity.services._async import AsyncIdentityService

        return AsyncIdentityService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
