"""The two sender protocols a host implements, or fills with a bundled sender.

Common rules for both:

* ``send_*`` returns once the message is handed over (accepted by the mail server or the
  SMS gateway); it does not wait for the recipient to read it, and it does not retry.
* Every transport failure raises :class:`~kaspi_identity.delivery.DeliveryError`. Its
  message names what failed, never the text of the message (it holds a link or a code),
  a password or an API key. Nothing is logged with the text either.
* A sender is safe to call from many threads at once.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._messages import EmailMessage, SmsMessage

__all__ = ["AsyncEmailSender", "AsyncSmsSender", "EmailSender", "SmsSender"]


@runtime_checkable
class EmailSender(Protocol):
    """Hands one letter to a mail transport; raises ``DeliveryError`` if it cannot.

    Promises: one call sends ``message`` to ``message.to`` exactly as given (subject, plain
    text and, when present, the HTML alternative), or raises
    :class:`~kaspi_identity.delivery.DeliveryError` with no body, password or key in the
    exception message. Thread-safe. Bundled implementations:
    :class:`~kaspi_identity.delivery.SmtpEmailSender` (production),
    :class:`~kaspi_identity.delivery.ConsoleSender` (development),
    :class:`~kaspi_identity.delivery.Outbox` (tests).
    """

    def send_email(self, message: EmailMessage) -> None:
        """Send ``message``; raise ``DeliveryError`` when the transport fails."""
        ...


@runtime_checkable
class SmsSender(Protocol):
    """Hands one SMS to a gateway; raises ``DeliveryError`` if it cannot.

    Promises: one call sends ``message.text`` to the E.164 number ``message.to``, or raises
    :class:`~kaspi_identity.delivery.DeliveryError` with no text, code or API key in the
    exception message. Thread-safe. A host wires its gateway with one small class (see
    docs/delivery.md); bundled: :class:`~kaspi_identity.delivery.ConsoleSender`
    (development) and :class:`~kaspi_identity.delivery.Outbox` (tests).
    """

    def send_sms(self, message: SmsMessage) -> None:
        """Send ``message``; raise ``DeliveryError`` when the gateway fails."""
        ...


@runtime_checkable
class AsyncEmailSender(Protocol):
    """:class:`EmailSender` for the async face: ``send_email`` is a coroutine.

    Same promises, safe to call from many tasks at once. Bundled:
    :class:`~kaspi_identity.delivery.AsyncSmtpEmailSender`. The async service also takes a
    synchronous sender that never blocks (:class:`~kaspi_identity.delivery.Outbox`,
    :class:`~kaspi_identity.delivery.ConsoleSender`).
    """

    async def send_email(self, message: EmailMessage) -> None:
        """Send ``message``; raise ``DeliveryError`` when the transport fails."""
        ...


@runtime_checkable
class AsyncSmsSender(Protocol):
    """:class:`SmsSender` for the async face: ``send_sms`` is a coroutine (same promises)."""

    async def send_sms(self, message: SmsMessage) -> None:
        """Send ``message``; raise ``DeliveryError`` when the gateway fails."""
        ...
