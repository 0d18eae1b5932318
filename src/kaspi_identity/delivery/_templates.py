"""Letters and SMS texts from the message catalogs, in Kazakh, Russian and English."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from kaspi_identity.i18n import Catalog, get_catalog

from ._messages import EmailMessage, SmsMessage
from ._sms import sms_segments

__all__ = ["EMAIL_KINDS", "SMS_KINDS", "render_email", "render_sms"]


@dataclass(frozen=True, slots=True)
class _Kind:
    required: tuple[str, ...]  # parameters the caller must pass
    count: str | None  # the parameter the plural form follows
    links: tuple[str, ...] = ()  # https:// URLs that must show in the text
    optional: tuple[str, ...] = ()


_EMAIL: Mapping[str, _Kind] = {
    "confirm_email": _Kind(("link", "hours", "site"), "hours", links=("link",)),
    "already_registered": _Kind(("site", "reset_link"), None, links=("reset_link",)),
    "phone_already_registered": _Kind(("site", "reset_link"), None, links=("reset_link",)),
    "iin_already_registered": _Kind(("site", "reset_link"), None, links=("reset_link",)),
    "password_reset": _Kind(("link", "minutes", "site"), "minutes", links=("link",)),
    "password_changed": _Kind(("site", "time"), None),
    "password_was_reset": _Kind(("site", "time"), None),
    "email_change_confirm": _Kind(("link", "hours", "site"), "hours", links=("link",)),
    "email_change_taken": _Kind(("site", "reset_link"), None, links=("reset_link",)),
    "email_changed": _Kind(("site", "time", "undo_link", "days"), "days", links=("undo_link",)),
    "phone_changed": _Kind(("site", "time", "phone"), None),
    "phone_removed": _Kind(("site", "time"), None),
}
_SMS: Mapping[str, _Kind] = {
    "reset_code": _Kind(("code", "minutes"), "minutes", optional=("site",)),
    "password_changed": _Kind((), None, optional=("site",)),
    "password_was_reset": _Kind((), None, optional=("site",)),
    "phone_code": _Kind(("code", "minutes"), "minutes", optional=("site",)),
    "phone_in_use": _Kind((), None, optional=("site",)),
    "email_changed": _Kind((), None, optional=("site",)),
    "phone_changed": _Kind((), None, optional=("site",)),
    "phone_removed": _Kind((), None, optional=("site",)),
}

EMAIL_KINDS: tuple[str, ...] = tuple(_EMAIL)
"""The letters :func:`render_email` writes: ``confirm_email``, ``already_registered``,
``phone_already_registered``, ``iin_already_registered``, ``password_reset``,
``password_changed``, ``password_was_reset``, ``email_change_confirm``,
``email_change_taken``, ``email_changed``, ``phone_changed``, ``phone_removed``."""

SMS_KINDS: tuple[str, ...] = tuple(_SMS)
"""The SMS texts :func:`render_sms` writes: ``reset_code``, ``password_changed``,
``password_was_reset``, ``phone_code``, ``phone_in_use``, ``email_changed``,
``phone_changed``, ``phone_removed``."""

_LINK = re.compile(r"https://[^\s<>\"'«»]+")
# Development only (``allow_insecure_http=True``): plain http links are let through too.
_ANY_LINK = re.compile(r"https?://[^\s<>\"'«»]+")
_CODE = re.compile(r"[0-9]{6,10}")


def render_email(
    kind: str,
    lang: str,
    /,
    *,
    to: str,
    catalog: Catalog | None = None,
    allow_insecure_http: bool = False,
    **params: object,
) -> EmailMessage:
    """Write the letter ``kind`` to ``to`` in language ``lang``, plain text only.

    Subject and body come from the catalog entries ``email.<kind>.subject`` and
    ``email.<kind>.text``; a host overrides them by passing its own ``catalog`` (see
    docs/delivery.md). The parameters of each kind (all required, no others accepted):

    ============================  ==============================================
    ``confirm_email``             ``link`` (https URL), ``hours`` (int), ``site``
    ``already_registered``        ``site``, ``reset_link`` (https URL of the
                                  "Forgot password?" page)
    ``phone_already_registered``  ``site``, ``reset_link``, as for
                                  ``already_registered``; sent to the e-mail
                                  address of the account that owns a phone
                                  number someone gave at a sign-up (the new
                                  account is created without it)
    ``iin_already_registered``    ``site``, ``reset_link``, as for
                                  ``already_registered``; sent to the e-mail
                                  address of the account that owns an IIN/BIN
                                  someone gave at a sign-up (no account is
                                  created with it)
    ``password_reset``            ``link`` (https URL), ``minutes`` (int),
                                  ``site``
    ``password_changed``          ``site``, ``time`` (str, or an aware datetime,
                                  shown in its own offset:
                                  ``2026-11-23 21:00 UTC+05:00``)
    ``password_was_reset``        ``site``, ``time``, as for
                                  ``password_changed``: the notice of a reset
                                  (by a link or an SMS code)
    ``email_change_confirm``      ``link`` (https URL), ``hours`` (int), ``site``;
                                  sent to the NEW address of a change of
                                  e-mail address, which the link confirms
    ``email_change_taken``        ``site``, ``reset_link`` (https URL of the
                                  "Forgot password?" page); sent to a NEW
                                  address that already has an account of its
                                  own (nothing is changed)
    ``email_changed``             ``site``, ``time``, ``undo_link`` (https URL),
                                  ``days`` (int); sent to the OLD address once
                                  the change took effect. The undo link gives
                                  the account the old address back; the new
                                  address is never shown
    ``phone_changed``             ``site``, ``time``, ``phone`` (the new number,
                                  masked by :func:`~kaspi_identity.phone.mask_phone`:
                                  ``+7 701 *** ** 67``); a number was added or
                                  replaced the earlier one
    ``phone_removed``             ``site``, ``time``; the number was removed
    ============================  ==============================================

    ``hours``, ``minutes`` and ``days`` pick the plural form ("1 час", "2 часа",
    "5 часов"). ``phone`` must hold a ``*`` (a masked number): the full number is
    refused, so a letter never shows it.
    ``allow_insecure_http=True`` (local development only, as in
    :class:`~kaspi_identity.services.IdentitySettings`) lets ``http://`` links through.

    Raises:
        ValueError: unknown ``kind``; a link that is not ``https://`` without spaces;
            a ``phone`` that is not masked (no message repeats it); a negative count;
            ``catalog`` is of another language than ``lang``; the template does not show
            a link it must show; a subject that is not one line (header injection) or a
            ``to`` that is not one address. No message repeats a link.
        TypeError: a parameter is missing, unexpected, or of the wrong type.
        UnknownLanguageError: no shipped catalog for ``lang`` (and no ``catalog`` given).

    """
    spec = _lookup(_EMAIL, kind, "e-mail")
    values, count = _check_params(spec, kind, params, insecure=allow_insecure_http is True)
    messages = _catalog_for(lang, catalog)
    subject = messages.message(f"email.{kind}.subject", count=None, **values)
    key = f"email.{kind}.text"
    text = messages.message(key, count=count, **values)
    for name in spec.links:
        if str(values[name]) not in text:
            raise ValueError(f"the template {key!r} ({messages.language}) must show {{{name}}}")
    return EmailMessage(to=to, subject=subject, text=text, kind=kind, language=messages.language)


def render_sms(
    kind: str,
    lang: str,
    /,
    *,
    to: str,
    catalog: Catalog | None = None,
    max_segments: int | None = 1,
    **params: object,
) -> SmsMessage:
    """Write the SMS ``kind`` to the E.164 number ``to`` in language ``lang``.

    The code kinds ``reset_code`` (a password reset) and ``phone_code`` (proves a new
    number before it is added to the account) take ``code`` (a string of 6 to 10 digits),
    ``minutes`` (int, picks the plural form) and optionally ``site`` (``None`` counts as
    absent). The notices take only the optional ``site``: ``password_changed``,
    ``password_was_reset``; ``phone_in_use`` (to a number someone tried to add to another
    account; nothing changed); ``email_changed`` (to the account's phone: the e-mail
    address was changed); ``phone_changed`` (to the OLD number: it was replaced by
    another); ``phone_removed`` (to the number removed from the account). With
    ``site`` the entry
    ``sms.<kind>.text`` -- the same text with ``"{site}: "`` in front -- is used if the result
    fits ``max_segments`` SMS segments (see :func:`sms_segments`); otherwise -- or without
    ``site`` -- ``sms.<kind>.text_no_site``. The shipped ``text_no_site`` fits one segment in
    every language for every code length and any lifetime up to 999 minutes, so a valid code
    is always sent. English (160 GSM-7 characters) keeps a site name of up to 80 characters;
    Russian and Kazakh (70 UCS-2 characters) keep only a very short one (``egov.kz`` with a
    6-digit code and 5 minutes) and drop longer ones: the code, its lifetime and "do not
    share it" matter more than the name, which the gateway's sender name shows anyway. The
    same holds for ``phone_code``, and every notice fits one segment without the site.
    The measured limits are in docs/delivery.md.

    Pass ``max_segments=None`` to allow a text of any length.

    Raises:
        ValueError: unknown ``kind``; ``code`` is not 6 to 10 digits; ``catalog`` is of
            another language than ``lang``; the template does not show the code; the text
            needs more than ``max_segments`` segments (a host template too long); ``to``
            is not E.164. No message repeats the code.
        TypeError: a parameter is missing, unexpected, or of the wrong type.
        UnknownLanguageError: no shipped catalog for ``lang`` (and no ``catalog`` given).

    """
    spec = _lookup(_SMS, kind, "SMS")
    if max_segments is not None and (
        isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1
    ):
        raise ValueError("max_segments must be an int >= 1 or None")
    values, count = _check_params(spec, kind, params)
    messages = _catalog_for(lang, catalog)
    text = None
    if "site" in values:
        key = f"sms.{kind}.text"
        text = messages.message(key, count=count, **values)
        if max_segments is not None and sms_segments(text) > max_segments:
            text = None
    if text is None:
        key = f"sms.{kind}.text_no_site"
        text = messages.message(key, count=count, **values)
    if "code" in values and str(values["code"]) not in text:
        raise ValueError(f"the template {key!r} ({messages.language}) must show {{code}}")
    if max_segments is not None and (segments := sms_segments(text)) > max_segments:
        raise ValueError(
            f"the template {key!r} ({messages.language}) needs {segments} SMS segments, "
            f"more than max_segments={max_segments}; shorten it"
        )
    return SmsMessage(to=to, text=text, kind=kind, language=messages.language)


def _lookup(kinds: Mapping[str, _Kind], kind: object, what: str) -> _Kind:
    if not isinstance(kind, str) or kind not in kinds:
        raise ValueError(f"unknown {what} kind {kind!r}; known: {', '.join(kinds)}")
    return kinds[kind]


def _check_params(
    spec: _Kind, kind: str, params: Mapping[str, object], *, insecure: bool = False
) -> tuple[dict[str, object], int | None]:
    """Return the parameters, checked and ready for the catalog, and the plural count."""
    params = {
        name: value
        for name, value in params.items()
        if not (name in spec.optional and value is None)
    }
    missing = [name for name in spec.required if name not in params]
    unexpected = sorted(set(params) - set(spec.required) - set(spec.optional))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        raise TypeError(f"{kind!r} parameters: {'; '.join(parts)}")
    values: dict[str, object] = {}
    count: int | None = None
    for name, value in params.items():
        if name == spec.count:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            count = value
        elif name == "time" and isinstance(value, datetime):
            value = _format_time(value)
        elif not isinstance(value, str):
            raise TypeError(f"{name} must be str, not {type(value).__name__}")
        elif not value.strip():
            raise ValueError(f"{name} must not be empty")
        elif name in spec.links and not (_ANY_LINK if insecure else _LINK).fullmatch(value):
            raise ValueError(f"{name} must be an https:// URL without spaces or quotes")
        elif name == "code" and not _CODE.fullmatch(value):
            raise ValueError("code must be a string of 6 to 10 digits")
        elif name == "phone" and "*" not in value:
            # The value is not quoted: it is the full number the letter must not show.
            raise ValueError("phone must be masked (see kaspi_identity.phone.mask_phone)")
        values[name] = value
    return values, count


def _format_time(moment: datetime) -> str:
    """Format an aware datetime in its own offset: ``2026-11-23 21:00 UTC+05:00``."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("time must be a timezone-aware datetime (or a str)")
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return f"{moment:%Y-%m-%d %H:%M} UTC"
    sign = "+" if minutes > 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{moment:%Y-%m-%d %H:%M} UTC{sign}{hours:02d}:{minutes:02d}"


def _catalog_for(lang: str, catalog: Catalog | None) -> Catalog:
    if catalog is None:
        return get_catalog(lang)
    if not isinstance(catalog, Catalog):
        raise TypeError(f"catalog must be a Catalog, not {type(catalog).__name__}")
    if not isinstance(lang, str) or re.split(r"[-_.@]", lang)[0].lower() != catalog.language:
        raise ValueError(
            f"lang {lang!r} does not match the language of the catalog ({catalog.language!r})"
        )
    return catalog
