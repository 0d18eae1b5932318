"""Audit events: what happened to which account, and when — never a secret."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Protocol

__all__ = [
    "EVENT_KINDS",
    "AsyncAuditSink",
    "AuditEvent",
    "AuditSink",
    "LoggingAuditSink",
    "MemoryAuditLog",
]

#: Every kind of event the services emit.
EVENT_KINDS: Final[tuple[str, ...]] = (
    "registered",
    "registration_duplicate",
    "email_confirmed",
    "login_succeeded",
    "login_failed",
    "account_locked",
    "password_changed",
    "password_reset_requested",
    "password_reset_completed",
    "sms_reset_requested",
    "sms_code_verified",
    "sms_code_failed",
    "rate_limited",
    "delivery_failed",
    "confirmation_requested",
    "history_write_failed",
    "password_change_required",
    "email_change_requested",
    "email_changed",
    "email_change_failed",
    "email_change_undone",
    "phone_change_requested",
    "phone_code_failed",
    "phone_verified",
    "phone_removed",
    "time_zone_set",
)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened.

    ``account_id`` is ``None`` when no account is involved (an unknown identifier).
    ``details`` holds only non-secret context: a reason, a channel, the client key the host
    passed. Passwords, hashes, tokens and codes never appear in an event.
    """

    kind: str
    at: datetime
    account_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown audit event kind {self.kind!r}")
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))


class AuditSink(Protocol):
    """Receives audit events. ``emit`` must not raise: a failing sink must not break a flow."""

    def emit(self, event: AuditEvent) -> None:
        """Record ``event`` (write it to a table, a log, a queue...)."""


class AsyncAuditSink(Protocol):
    """:class:`AuditSink` for the async face: ``emit`` is a coroutine.

    The async service also takes a synchronous sink that never blocks
    (:class:`MemoryAuditLog`, :class:`LoggingAuditSink`). A sink that raises is logged and
    the flow goes on, as on the sync face.
    """

    async def emit(self, event: AuditEvent) -> None:
        """Record ``event``."""


class LoggingAuditSink:
    """Writes each event as one INFO record to the ``kaspi_identity.audit`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("kaspi_identity.audit")

    def emit(self, event: AuditEvent) -> None:
        """Log ``event`` with its kind, account id, time and details."""
        self._logger.info(
            "%s account=%s at=%s %s",
            event.kind,
            event.account_id or "-",
            event.at.isoformat(),
            " ".join(f"{k}={v}" for k, v in sorted(event.details.items())),
        )


class MemoryAuditLog:
    """Keeps events in memory (thread-safe), for tests and the demo."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[AuditEvent] = []

    def emit(self, event: AuditEvent) -> None:
        """Append ``event``."""
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[AuditEvent]:
        """A copy of the events so far, oldest first."""
        with self._lock:
            return list(self._events)

    def kinds(self) -> list[str]:
        """The kinds of the events so far, oldest first."""
        return [e.kind for e in self.events]

    def clear(self) -> None:
        """Forget every event."""
        with self._lock:
            self._events.clear()
