"""What a flow asks to send: a :class:`Letter`, rendered now or by the outbox worker later.

A flow never writes a link or a code into a letter itself. It names the letter (kind,
recipient, language) and gives its parameters; a link is given as a :class:`TokenLink`
(the unsigned body of the token, see :meth:`~kaspi_identity.tokens.TokenService.draft`),
a code as a :class:`CodeText` (the code masked with a one-time pad made from a random nonce
and a key of the key ring). :class:`Letters` turns such a letter into the finished
:class:`~kaspi_identity.delivery.EmailMessage` or
:class:`~kaspi_identity.delivery.SmsMessage` -- in the request when the storage has no
outbox, in the worker when it has one -- and encodes it as the JSON payload of an
:class:`~kaspi_identity.storage.OutboxMessage`, which therefore holds no secret in clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any, Final, Literal, cast

from kaspi_identity._keys import KeyRing
from kaspi_identity.delivery import EmailMessage, SmsMessage, render_email, render_sms
from kaspi_identity.i18n import Catalog
from kaspi_identity.services._settings import IdentitySettings
from kaspi_identity.storage import OutboxMessage
from kaspi_identity.tokens import LinkBuilder, TokenPurpose, TokenService

__all__ = ["CodeText", "Letter", "Letters", "TokenLink", "UnrenderableError"]

_PAYLOAD_VERSION: Final = 1
_NONCE_BYTES: Final = 16
_CODE_USE: Final = "sms-text"


class UnrenderableError(ValueError):
    """A queued letter cannot be written (a key rotated out, a template refused a value).

    Permanent: the worker moves the message to ``dead`` at once instead of retrying. The
    message names what failed, never a value.
    """


@dataclass(frozen=True, slots=True)
class TokenLink:
    """A link to write at send time: the page it opens and the unsigned token body."""

    page: Literal["confirm", "reset", "email_change", "email_undo"]
    purpose: TokenPurpose
    body: Mapping[str, str | int] = field(repr=False)


@dataclass(frozen=True, slots=True)
class CodeText:
    """A code to write at send time: ``masked`` less a pad made from ``nonce`` and a key."""

    key_id: str
    nonce: str = field(repr=False)
    masked: str = field(repr=False)
    digits: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Letter:
    """A letter (or, with ``channel="sms"``, an SMS) a flow asks to send.

    ``params`` are the template's parameters: ``str``, ``int``, aware ``datetime``,
    :class:`TokenLink` or :class:`CodeText`. ``deliver=False`` is an unknown account's twin:
    written (or queued) like a real one so both paths cost the same, never sent.
    ``time_zone`` is the recipient account's IANA zone, the times are written in (``None``,
    or a zone this machine does not know: the site's).
    """

    kind: str
    channel: Literal["email", "sms"]
    to: str = field(repr=False)
    language: str
    account_id: str | None
    params: Mapping[str, object] = field(repr=False)
    deliver: bool = True
    time_zone: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Letters:
    """Writes letters: the code and link they carry, their text, their queued form.

    Args:
        settings: the site name, link URLs and SMS code length.
        keys: the key ring (codes are derived with keys made for ``sms-text``).
        issuer: seals token bodies into tokens.
        catalog: the message catalog (``None``: the built-in one).
    """

    def __init__(
        self,
        settings: IdentitySettings,
        *,
        keys: KeyRing,
        issuer: TokenService,
        catalog: Catalog | None,
    ) -> None:
        self.settings = settings
        self.issuer = issuer
        self.catalog = catalog
        insecure = settings.allow_insecure_http
        self.pages = {
            "confirm": LinkBuilder(settings.confirm_url, allow_insecure_http=insecure),
            "reset": LinkBuilder(settings.reset_url, allow_insecure_http=insecure),
            "email_change": LinkBuilder(
                settings.email_change_url or settings.confirm_url, allow_insecure_http=insecure
            ),
            "email_undo": LinkBuilder(
                settings.email_undo_url or settings.reset_url, allow_insecure_http=insecure
            ),
        }
        # Every configured key, newest first, each with a short public name: a code queued
        # just before a key rotation is still written with the key it was made with.
        self._code_keys = {
            hmac.new(key, b"kaspi-identity/key-id", hashlib.sha256).hexdigest()[:12]: key
            for key in keys.derive(_CODE_USE)
        }
        self._newest_code_key = next(iter(self._code_keys))

    # -- codes -----------------------------------------------------------------------------

    def new_code(self, digits: int) -> tuple[str, CodeText]:
        """A fresh random code of ``digits`` digits and what a queued SMS stores of it.

        The code comes from :func:`secrets.randbelow`; the SMS stores it masked: plus a pad
        of as many digits, an HMAC of 128 random bits (the nonce) under a key of the ring,
        modulo ``10**digits``. Without the key the stored digits say nothing of the code
        (a one-time pad); the worker takes the pad off at send time.
        """
        code = secrets.randbelow(10**digits)
        nonce = _b64(secrets.token_bytes(_NONCE_BYTES))
        pad = self._pad(self._code_keys[self._newest_code_key], nonce, digits)
        masked = f"{(code + pad) % 10**digits:0{digits}d}"
        return f"{code:0{digits}d}", CodeText(self._newest_code_key, nonce, masked, digits)

    @staticmethod
    def _pad(key: bytes, nonce: str, digits: int) -> int:
        try:
            raw = _unb64(nonce)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != _NONCE_BYTES or not 4 <= digits <= 10:
            raise UnrenderableError("a stored code is malformed")
        digest = hmac.new(key, b"kaspi-identity/sms-text\x00" + raw, hashlib.sha256).digest()
        return int(int.from_bytes(digest, "big") % 10**digits)

    def code_of(self, text: CodeText) -> str:
        """The code ``text`` stands for.

        Raises:
            UnrenderableError: its key is no longer configured, or it is malformed.
        """
        key = self._code_keys.get(text.key_id)
        if key is None:
            raise UnrenderableError("the key this code was masked with is no longer configured")
        pad = self._pad(key, text.nonce, text.digits)
        if (
            len(text.masked) != text.digits
            or not text.masked.isdigit()
            or not text.masked.isascii()
        ):
            raise UnrenderableError("a stored code is malformed")
        return f"{(int(text.masked) - pad) % 10**text.digits:0{text.digits}d}"

    # -- links -----------------------------------------------------------------------------

    def link_of(self, link: TokenLink) -> str:
        """The URL ``link`` stands for: its body sealed into a token, on its page.

        Raises:
            UnrenderableError: the body is not a token draft of its purpose.
        """
        page = self.pages.get(link.page)
        try:
            token = self.issuer.seal(link.purpose, link.body)
        except (TypeError, ValueError):
            token = None
        if page is None or token is None:
            raise UnrenderableError("a stored link is malformed")
        return page.link(token)

    # -- rendering -------------------------------------------------------------------------

    def zone_of(self, letter: Letter) -> tzinfo:
        """The zone ``letter``'s times are written in: its account's, else the site's."""
        if letter.time_zone is not None:
            try:
                return zoneinfo.ZoneInfo(letter.time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass  # a zone this machine's data lacks: the site's zone still tells the time
        return self.settings.zone

    def render(self, letter: Letter, *, key: str | None = None) -> EmailMessage | SmsMessage:
        """The finished message of ``letter``; ``key`` becomes its idempotency key.

        Raises:
            UnrenderableError: a link, code or template parameter cannot be written.
        """
        params: dict[str, Any] = {}
        zone = self.zone_of(letter)
        for name, value in letter.params.items():
            if isinstance(value, TokenLink):
                params[name] = self.link_of(value)
            elif isinstance(value, CodeText):
                params[name] = self.code_of(value)
            elif isinstance(value, datetime):
                # Letters tell the time where the users live, not in UTC.
                params[name] = value.astimezone(zone)
            else:
                params[name] = value
        s = self.settings
        try:
            if letter.channel == "sms":
                message: EmailMessage | SmsMessage = render_sms(
                    letter.kind,
                    letter.language,
                    to=letter.to,
                    catalog=self.catalog,
                    max_segments=1,
                    site=s.site_name,
                    **params,
                )
            else:
                message = render_email(
                    letter.kind,
                    letter.language,
                    to=letter.to,
                    catalog=self.catalog,
                    site=s.site_name,
                    allow_insecure_http=s.allow_insecure_http,
                    **params,
                )
        except (TypeError, ValueError) as exc:
            raise UnrenderableError(f"the {letter.kind!r} message: {type(exc).__name__}") from None
        if key is None:
            return message
        if isinstance(message, SmsMessage):
            return SmsMessage(
                to=message.to,
                text=message.text,
                kind=message.kind,
                language=message.language,
                idempotency_key=key,
            )
        return EmailMessage(
            to=message.to,
            subject=message.subject,
            text=message.text,
            html=message.html,
            kind=message.kind,
            language=message.language,
            idempotency_key=key,
        )

    # -- the queued form -------------------------------------------------------------------

    @staticmethod
    def queued(letter: Letter, now: datetime) -> OutboxMessage:
        """``letter`` as an outbox message: no link or code in it, only what makes them."""
        params: dict[str, object] = {}
        for name, value in letter.params.items():
            if isinstance(value, TokenLink):
                params[name] = {"link": value.page, "purpose": value.purpose, "body": value.body}
            elif isinstance(value, CodeText):
                params[name] = {
                    "code": value.key_id,
                    "nonce": value.nonce,
                    "masked": value.masked,
                    "digits": value.digits,
                }
            elif isinstance(value, datetime):
                params[name] = {"time": value.astimezone(timezone.utc).isoformat()}
            elif isinstance(value, bool) or not isinstance(value, str | int):
                raise TypeError(f"parameter {name!r} cannot be queued")
            else:
                params[name] = {"value": value}
        body: dict[str, object] = {"v": _PAYLOAD_VERSION, "params": params}
        if letter.time_zone is not None:
            body["tz"] = letter.time_zone
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        return OutboxMessage(
            id=secrets.token_hex(16),
            channel=letter.channel,
            kind=letter.kind,
            to=letter.to,
            language=letter.language,
            payload=payload,
            account_id=letter.account_id,
            created_at=now,
            deliver=letter.deliver,
        )

    @staticmethod
    def unqueued(message: OutboxMessage) -> Letter:
        """The letter an outbox message was made from.

        Raises:
            UnrenderableError: the payload is not one :meth:`queued` writes.
        """
        try:
            decoded = json.loads(message.payload)
            if decoded.get("v") != _PAYLOAD_VERSION:
                raise UnrenderableError("the payload has an unknown version")
            params: dict[str, object] = {}
            for name, value in cast(dict[str, dict[str, Any]], decoded["params"]).items():
                if "link" in value:
                    params[name] = TokenLink(value["link"], value["purpose"], value["body"])
                elif "code" in value:
                    params[name] = CodeText(
                        value["code"], value["nonce"], str(value["masked"]), int(value["digits"])
                    )
                elif "time" in value:
                    params[name] = datetime.fromisoformat(value["time"])
                else:
                    params[name] = value["value"]
            zone = decoded.get("tz")
            if zone is not None and not isinstance(zone, str):
                raise UnrenderableError("the payload is malformed")
        except UnrenderableError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError):
            raise UnrenderableError("the payload is malformed") from None
        return Letter(
            kind=message.kind,
            channel=message.channel,
            to=message.to,
            language=message.language,
            account_id=message.account_id,
            params=params,
            deliver=message.deliver,
            time_zone=zone,
        )
