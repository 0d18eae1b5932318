"""The ``IdentityService`` of a Django project, built once from the ``KASPI_IDENTITY`` setting.

::

    KASPI_IDENTITY = {
        "SITE_URL": "https://portal.example.kz",   # links in letters point here
        "SITE_NAME": "Portal",
        "POLICY": "kz-procurement",                # a preset, a TOML path or a mapping
    }

Every key (docs/django.md has the table): ``SECRET_KEYS`` (default ``SECRET_KEY`` then
``SECRET_KEY_FALLBACKS``), ``SITE_URL`` or ``CONFIRM_URL`` and ``RESET_URL``, ``SITE_NAME``,
``POLICY``, ``HASH_PROFILE``, ``DATABASE``, ``EMAIL_SENDER``, ``SMS_SENDER``,
``ALLOW_INSECURE_HTTP`` and ``SETTINGS`` (more :class:`~kaspi_identity.services
.IdentitySettings` fields by name). :func:`get_service` builds the service at its first call
and again after ``override_settings`` changes the setting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.core.signals import setting_changed
from django.urls import reverse
from django.utils.module_loading import import_string

from kaspi_identity._keys import KeyRing
from kaspi_identity.delivery import DeliveryError, EmailMessage, EmailSender, SmsSender
from kaspi_identity.hashing import HashProfile
from kaspi_identity.history import PasswordHistory
from kaspi_identity.policy import PasswordPolicy
from kaspi_identity.services import IdentityService, IdentitySettings

from .hashers import DjangoCompatibleHasher
from .storage import DjangoPasswordHistoryStore, django_storage

__all__ = [
    "DjangoEmailSender",
    "get_service",
    "load_policy",
    "password_hasher",
    "password_history",
    "sms_sender",
]

_KNOWN = frozenset(
    {
        "SECRET_KEYS",
        "SITE_URL",
        "CONFIRM_URL",
        "RESET_URL",
        "SITE_NAME",
        "POLICY",
        "HASH_PROFILE",
        "DATABASE",
        "EMAIL_SENDER",
        "SMS_SENDER",
        "ALLOW_INSECURE_HTTP",
        "SETTINGS",
    }
)
_lock = threading.RLock()
_built: dict[str, Any] = {}


class DjangoEmailSender:
    """An :class:`~kaspi_identity.delivery.EmailSender` through Django's ``EMAIL_BACKEND``.

    The letter goes out from ``DEFAULT_FROM_EMAIL`` with the HTML alternative when it has
    one; in tests Django's ``locmem`` backend keeps it in ``django.core.mail.outbox``.
    Whatever the backend raises becomes :class:`~kaspi_identity.delivery.DeliveryError`
    naming only the exception's type (its message could quote the letter), so the flows log
    the failure and answer as always.
    """

    def send_email(self, message: EmailMessage) -> None:
        """Send ``message`` with Django's mail backend.

        Raises:
            DeliveryError: the backend failed (or sent nothing).

        """
        letter = EmailMultiAlternatives(message.subject, message.text, to=[message.to])
        if message.html is not None:
            letter.attach_alternative(message.html, "text/html")
        try:
            sent = letter.send()
        except Exception as exc:  # any backend's failure, SMTP or not
            raise DeliveryError(f"Django's mail backend failed ({type(exc).__name__})") from None
        if sent != 1:
            raise DeliveryError("Django's mail backend sent nothing")


def load_policy(value: object) -> PasswordPolicy:
    """A policy from a setting: a preset name, a ``.toml`` path, a mapping or a policy.

    Raises:
        ImproperlyConfigured: ``value`` is none of these, or the policy is invalid.

    """
    try:
        if value is None:
            return PasswordPolicy()
        if isinstance(value, PasswordPolicy):
            return value
        if isinstance(value, Mapping):
            if set(value) == {"preset"}:
                return PasswordPolicy.preset(str(value["preset"]))
            return PasswordPolicy.from_mapping(dict(value))
        if isinstance(value, str | os.PathLike):
            text = os.fspath(value)
            if text.endswith(".toml"):
                return PasswordPolicy.from_toml(text)
            return PasswordPolicy.preset(text)
    except (ValueError, TypeError, OSError) as exc:
        raise ImproperlyConfigured(f"the kaspi-identity password policy is invalid: {exc}") from exc
    raise ImproperlyConfigured(
        "a kaspi-identity policy is a preset name, a .toml path or a mapping,"
        f" not {type(value).__name__}"
    )


def _config() -> dict[str, Any]:
    config = getattr(settings, "KASPI_IDENTITY", {})
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured("KASPI_IDENTITY must be a dict")
    unknown = sorted(set(config) - _KNOWN)
    if unknown:
        raise ImproperlyConfigured(f"KASPI_IDENTITY has unknown keys: {', '.join(unknown)}")
    return dict(config)


def _keys(config: Mapping[str, Any]) -> tuple[bytes, ...]:
    keys = config.get("SECRET_KEYS")
    if keys is None:
        keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if isinstance(keys, str | bytes):
        keys = [keys]
    return tuple(k.encode("utf-8") if isinstance(k, str) else k for k in keys)


def _urls(config: Mapping[str, Any]) -> tuple[str, str]:
    confirm, reset = config.get("CONFIRM_URL"), config.get("RESET_URL")
    site = config.get("SITE_URL")
    if confirm is None or reset is None:
        if not isinstance(site, str) or not site:
            raise ImproperlyConfigured(
                "KASPI_IDENTITY needs SITE_URL (or both CONFIRM_URL and RESET_URL):"
                " the links in letters are built from it, never from a request's Host"
            )
        base = site.rstrip("/")
        confirm = confirm or base + reverse("kaspi_identity:confirm")
        reset = reset or base + reverse("kaspi_identity:reset")
    return str(confirm), str(reset)


def _instance(path: object, what: str) -> Any:
    if not isinstance(path, str):
        return path  # an object given directly
    try:
        target = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"KASPI_IDENTITY {what} {path!r} cannot be imported") from exc
    return target() if isinstance(target, type) else target


def _hasher(config: Mapping[str, Any]) -> DjangoCompatibleHasher:
    profile = config.get("HASH_PROFILE")
    if profile is None:
        return DjangoCompatibleHasher()
    try:
        return DjangoCompatibleHasher(
            profile if isinstance(profile, HashProfile) else HashProfile.named(profile)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"KASPI_IDENTITY HASH_PROFILE: {exc}") from exc


def _build() -> dict[str, Any]:
    config = _config()
    confirm_url, reset_url = _urls(config)
    more = dict(config.get("SETTINGS", {}))
    site = config.get("SITE_URL")
    if isinstance(site, str) and site:  # the app's own pages of the change-of-address links
        base = site.rstrip("/")
        more.setdefault("email_change_url", base + reverse("kaspi_identity:email_confirm"))
        more.setdefault("email_undo_url", base + reverse("kaspi_identity:email_undo"))
    try:
        identity_settings = IdentitySettings(
            secret_keys=_keys(config),
            confirm_url=confirm_url,
            reset_url=reset_url,
            site_name=config.get("SITE_NAME", "kaspi-identity"),
            allow_insecure_http=bool(config.get("ALLOW_INSECURE_HTTP", False)),
            **more,
        )
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"KASPI_IDENTITY is invalid: {exc}") from exc
    hasher = password_hasher()
    email: EmailSender = _instance(config.get("EMAIL_SENDER"), "EMAIL_SENDER") or (
        DjangoEmailSender()
    )
    sms: SmsSender | None = _instance(config.get("SMS_SENDER"), "SMS_SENDER")
    service = IdentityService(
        django_storage(config.get("DATABASE", "default")),
        identity_settings,
        email_sender=email,
        sms_sender=sms,
        policy=load_policy(config.get("POLICY")),
        hasher=hasher,
    )
    return {"service": service, "sms": sms}


def _current() -> dict[str, Any]:
    with _lock:
        if "service" not in _built:
            _built.update(_build())
        return _built


def get_service() -> IdentityService:
    """The project's :class:`~kaspi_identity.services.IdentityService` (built once).

    Raises:
        ImproperlyConfigured: ``KASPI_IDENTITY`` is missing something or invalid.

    """
    service: IdentityService = _current()["service"]
    return service


def sms_sender() -> SmsSender | None:
    """The SMS sender the service was built with (an ``Outbox`` in tests), or ``None``."""
    sender: SmsSender | None = _current()["sms"]
    return sender


def _forget(setting: str, **_: object) -> None:
    if setting in ("KASPI_IDENTITY", "SECRET_KEY", "SECRET_KEY_FALLBACKS", "AUTH_USER_MODEL"):
        with _lock:
            _built.clear()


setting_changed.connect(_forget, dispatch_uid="kaspi_identity.service.forget")


def password_hasher() -> DjangoCompatibleHasher:
    """The hasher of the service and of the validator's history (``HASH_PROFILE``), built once."""
    with _lock:
        if "hasher" not in _built:
            _built["hasher"] = _hasher(_config())
        hasher: DjangoCompatibleHasher = _built["hasher"]
        return hasher


def password_history() -> PasswordHistory:
    """The password history the service uses (its keys, its hasher), built once.

    Needs only the keys and the database of ``KASPI_IDENTITY`` (no link URLs), so the
    password validator can keep the history in a project that does not use the flows.
    """
    with _lock:
        if "service" in _built:
            history: PasswordHistory = _built["service"].history
            return history
        cached = _built.get("history")
        if cached is None:
            config = _config()
            try:
                keys = KeyRing(_keys(config))
            except (TypeError, ValueError) as exc:
                raise ImproperlyConfigured(f"KASPI_IDENTITY SECRET_KEYS: {exc}") from exc
            cached = _built["history"] = PasswordHistory(
                DjangoPasswordHistoryStore(config.get("DATABASE", "default")),
                secret_keys=keys.derive("history"),
                hasher=password_hasher(),
            )
        return cached
