"""Sending letters and SMS: sender protocols, a test outbox, a console and an SMTP sender.

The services write a letter with :func:`render_email` (or an SMS with :func:`render_sms`)
and hand it to an :class:`EmailSender` (or :class:`SmsSender`)::

    from kaspi_identity.delivery import SmtpEmailSender, render_email

    sender = SmtpEmailSender(
        "smtp.example.kz", 587, sender="Portal <noreply@example.kz>",
        username="noreply@example.kz", password=smtp_password,
    )
    sender.send_email(render_email(
        "password_reset", "kk", to="aliya@example.kz",
        link=reset_url, minutes=60, site="portal.example.kz",
    ))

:class:`AsyncSmtpEmailSender` is the same SMTP sender for ``async`` code (the ``async``
extra; aiosmtplib is imported only when it is first used). :class:`Outbox` is the sender
for tests, :class:`ConsoleSender` the one for development (it prints links and codes:
never in production). See docs/delivery.md.
"""

from __future__ import annotations

import typing as _typing

from kaspi_identity._errors import DeliveryError

from ._console import ConsoleSender
from ._messages import EmailMessage, SmsMessage
from ._outbox import Outbox, extract_code, extract_link
from ._protocols import AsyncEmailSender, AsyncSmsSender, EmailSender, SmsSender
from ._sms import sms_encoding, sms_segments
from ._templates import EMAIL_KINDS, SMS_KINDS, render_email, render_sms

if _typing.TYPE_CHECKING:
    from ._smtp import SmtpEmailSender, SmtpSecurity
    from ._smtp_async import AsyncSmtpEmailSender

__all__ = [
    "EMAIL_KINDS",
    "SMS_KINDS",
    "AsyncEmailSender",
    "AsyncSmsSender",
    "AsyncSmtpEmailSender",
    "ConsoleSender",
    "DeliveryError",
    "EmailMessage",
    "EmailSender",
    "Outbox",
    "SmsMessage",
    "SmsSender",
    "SmtpEmailSender",
    "SmtpSecurity",
    "extract_code",
    "extract_link",
    "render_email",
    "render_sms",
    "sms_encoding",
    "sms_segments",
]


def __getattr__(name: str) -> _typing.Any:
    # The SMTP senders are loaded when first named: smtplib, ssl, socket and the email
    # package cost more to import than the rest of the package, and most processes that
    # import it never send a letter. The async one also needs aiosmtplib and greenlet (the
    # ``async`` extra).
    if name in ("SmtpEmailSender", "SmtpSecurity"):
        from . import _smtp

        return getattr(_smtp, name)
    if name == "AsyncSmtpEmailSender":
        from ._smtp_async import AsyncSmtpEmailSender

        return AsyncSmtpEmailSender
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
