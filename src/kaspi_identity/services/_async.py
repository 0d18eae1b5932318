"""``AsyncIdentityService``: the flows of :class:`IdentityService`, as coroutines.

Not a second implementation: each method runs the synchronous flow itself through
:func:`kaspi_identity._bridge.run_flow`, with the asynchronous stores, senders and audit
sink behind synchronous faces that await them, and argon2 on a bounded pool of threads.
docs/async.md says why this mechanism and what it costs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from kaspi_identity._bridge import Awaiting, run_flow
from kaspi_identity.delivery import AsyncEmailSender, AsyncSmsSender, EmailSender, SmsSender
from kaspi_identity.hashing import PasswordHasher, _OffLoop
from kaspi_identity.i18n import Catalog
from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.policy._breached import RangeSource
from kaspi_identity.policy._policy import online_client
from kaspi_identity.services._audit import AsyncAuditSink, AuditSink
from kaspi_identity.services._clock import Clock
from kaspi_identity.services._service import IdentityService
from kaspi_identity.services._settings import IdentitySettings
from kaspi_identity.storage import AsyncStorage
from kaspi_identity.tokens import TokenService

__all__ = ["AsyncIdentityService"]

P = ParamSpec("P")
T = TypeVar("T")


def _flow(
    method: Callable[Concatenate[IdentityService, P], T],
) -> Callable[Concatenate[AsyncIdentityService, P], Coroutine[Any, Any, T]]:
    """The coroutine face of one :class:`IdentityService` method: same name, arguments, result."""

    @functools.wraps(method)
    async def call(self: AsyncIdentityService, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_flow(method, self._core, *args, **kwargs)

    call.__doc__ = f"Coroutine: {method.__doc__}"
    return call


def _awaiting_online(policy: PasswordPolicy) -> PasswordPolicy:
    """``policy`` with its online breached-password source awaited on the event loop.

    The flows call the source's synchronous ``range``; here it is a face that awaits an
    :class:`~kaspi_identity.hibp.AsyncRangeClient` through the bridge, as the stores are.
    """

    def make(settings: Mapping[str, Any]) -> RangeSource:
        return cast(RangeSource, Awaiting(online_client(settings, asynchronous=True)))

    return policy._with_online(make)


class AsyncIdentityService:
    """:class:`IdentityService` for ``async def`` views: the same flows, as coroutines.

    Args:
        storage: the asynchronous stores (``async_memory_storage()``,
            ``async_sqlite_storage(path)``, ``async_redis_storage(...)``,
            ``async_sqlalchemy_storage(async_engine)``, or a host's own).
        settings, policy, hasher, clock, tokens, catalog: as for :class:`IdentityService`.
        email_sender: an :class:`~kaspi_identity.delivery.AsyncEmailSender`, or a
            synchronous sender that never blocks (Outbox, ConsoleSender).
        sms_sender: likewise for SMS.
        audit: an :class:`AsyncAuditSink`, or a synchronous sink that never blocks.

    Every method has the name, arguments, result and errors of its synchronous namesake:
    it *is* that method, run so that each store, sender or sink call is awaited and each
    argon2 computation runs on a pool of ``hasher.max_concurrency`` threads.
    """

    def __init__(
        self,
        storage: AsyncStorage,
        settings: IdentitySettings,
        *,
        email_sender: AsyncEmailSender | EmailSender,
        policy: PasswordPolicy | None = None,
        hasher: PasswordHasher | None = None,
        clock: Clock | None = None,
        audit: AsyncAuditSink | AuditSink | None = None,
        sms_sender: AsyncSmsSender | SmsSender | None = None,
        tokens: TokenService | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if not isinstance(storage, AsyncStorage):
            raise TypeError(
                f"storage must be an AsyncStorage, not {type(storage).__name__}"
                " (the synchronous Storage goes with IdentityService)"
            )
        self.storage = storage
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self.audit = audit
        self._core = IdentityService(
            storage._bridged(),
            settings,
            email_sender=cast(EmailSender, Awaiting(email_sender)),
            policy=None if policy is None else _awaiting_online(policy),
            hasher=_OffLoop(self.hasher),
            clock=clock,
            audit=None if audit is None else cast(AuditSink, Awaiting(audit)),
            sms_sender=None if sms_sender is None else cast(SmsSender, Awaiting(sms_sender)),
            tokens=tokens,
            catalog=catalog,
        )
        self.settings = self._core.settings
        # The caller's policy (its online source blocks); the flows use the awaiting copy.
        self.policy = policy if policy is not None else self._core.policy
        self.clock = self._core.clock
        self.tokens = self._core.tokens

    def __repr__(self) -> str:
        return f"<AsyncIdentityService site={self.settings.site_name!r} policy={self.policy!r}>"

    register = _flow(IdentityService.register)
    confirm_email = _flow(IdentityService.confirm_email)
    resend_confirmation = _flow(IdentityService.resend_confirmation)
    authenticate = _flow(IdentityService.authenticate)
    session_is_current = _flow(IdentityService.session_is_current)
    change_password = _flow(IdentityService.change_password)
    require_password_change = _flow(IdentityService.require_password_change)
    request_password_reset = _flow(IdentityService.request_password_reset)
    reset_password = _flow(IdentityService.reset_password)
    request_sms_reset = _flow(IdentityService.request_sms_reset)
    verify_sms_code = _flow(IdentityService.verify_sms_code)
    request_email_change = _flow(IdentityService.request_email_change)
    confirm_email_change = _flow(IdentityService.confirm_email_change)
    undo_email_change = _flow(IdentityService.undo_email_change)
    request_phone_change = _flow(IdentityService.request_phone_change)
    verify_phone = _flow(IdentityService.verify_phone)
    remove_phone = _flow(IdentityService.remove_phone)
    set_time_zone = _flow(IdentityService.set_time_zone)
