"""The delivery exception.

It lives here, not in :mod:`kaspi_identity._errors`, while the delivery package is new; it
is a :class:`~kaspi_identity.KaspiIdentityError` like every other error of the library::

    KaspiIdentityError
    └── DeliveryError          a letter or SMS could not be handed to the mail server/gateway
"""

from __future__ import annotations

from kaspi_identity._errors import KaspiIdentityError

__all__ = ["DeliveryError"]


class DeliveryError(KaspiIdentityError):
    """A letter or an SMS could not be handed over for delivery.

    Raised by every :class:`~kaspi_identity.delivery.EmailSender` and
    :class:`~kaspi_identity.delivery.SmsSender` for a failure of the transport: connection
    refused or timed out, TLS failure, authentication rejected, recipient refused, gateway
    error. The message names the stage and the server, never the body of the message (it may
    hold a link or a code), a password or an API key.

    ``smtp_code`` is the SMTP reply code when the server gave one (``535``, ``550``, ...),
    else ``None``. A code from 400 to 499 means the server asked to try again later.
    """

    def __init__(self, message: str, *, smtp_code: int | None = None) -> None:
        self.smtp_code = smtp_code
        super().__init__(message)
