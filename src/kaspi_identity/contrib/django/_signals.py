"""What the app does when the host's code changes a user without going through the stores.

* A user saved for the first time (``createsuperuser``, the admin, ``create_user``) gets its
  :class:`~.models.Identity`, with the identifiers it can have (one another account holds
  already is left off, with a warning).
* A saved change of the password, e-mail or user name (``set_password`` then ``save``, the
  admin's forms) is carried into the identity: a new password or e-mail gives the account a
  new security stamp (its links and sessions die), a new e-mail is unconfirmed.
* Django calls the validators' ``password_changed`` after such a ``save``; the app's
  validator records the history entry there (see :mod:`.validators`).

Writes the stores make themselves (``UPDATE`` statements) send no signal, and a user the
stores create is marked so that these handlers leave it alone.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in
from django.db import IntegrityError, transaction
from django.db.models.signals import post_init, post_save
from django.utils import timezone

from kaspi_identity.storage._checks import new_security_stamp

from .models import Identity

__all__ = ["connect", "ensure_identity"]

_log = logging.getLogger("kaspi_identity.contrib.django")
_LOADED = "_kaspi_identity_loaded"
_MANAGED = "_kaspi_identity_managed"


def _fields(user: AbstractBaseUser) -> tuple[str | None, str | None]:
    """The user's user name (unless it is the e-mail field) and e-mail, as Identity keeps them."""
    model: Any = user  # the stubs know AbstractBaseUser, not the host's model
    email_field = str(model.get_email_field_name())
    username_field = str(model.USERNAME_FIELD)
    email = getattr(user, email_field, None) or None
    username = None if username_field == email_field else getattr(user, username_field, None)
    if isinstance(username, str) and username.startswith("~"):
        username = None  # the stores' placeholder for an account without a user name
    return (username or None), email


def _remember(user: AbstractBaseUser) -> None:
    setattr(user, _LOADED, (user.password, *_fields(user)))


def ensure_identity(user: AbstractBaseUser, *, using: str = "default") -> Identity:
    """Return the user's identity, creating it (from the user's fields) if it has none.

    An identifier another account already holds is left off the new identity, with a
    warning in the ``kaspi_identity.contrib.django`` log.
    """
    existing = Identity.objects.using(using).filter(pk=user.pk).first()
    if existing is not None:
        return existing
    username, email = _fields(user)
    joined = getattr(user, "date_joined", None) or timezone.now()
    for _ in range(3):
        identity = Identity(
            user=user,
            username=username,
            username_key=None if username is None else username.casefold(),
            email=email,
            email_key=None if email is None else email.casefold(),
            created_at=joined,
            security_stamp=new_security_stamp(),
            password_changed_at=joined if user.has_usable_password() else None,
            names=[
                name
                for name in (getattr(user, "first_name", ""), getattr(user, "last_name", ""))
                if isinstance(name, str) and name
            ],
        )
        try:
            with transaction.atomic(using=using):
                identity.save(using=using, force_insert=True)
        except IntegrityError:
            others = Identity.objects.using(using)
            if username is not None and others.filter(username_key=username.casefold()).exists():
                _log.warning("user %s: its user name belongs to another account", user.pk)
                username = None
            elif email is not None and others.filter(email_key=email.casefold()).exists():
                _log.warning("user %s: its e-mail belongs to another account", user.pk)
                email = None
            elif others.filter(pk=user.pk).exists():
                return others.get(pk=user.pk)
            else:
                raise
            continue
        return identity
    raise IntegrityError("no identity could be stored for the user")  # pragma: no cover


def _on_init(sender: type[AbstractBaseUser], instance: AbstractBaseUser, **_: Any) -> None:
    _remember(instance)


def _on_save(
    sender: type[AbstractBaseUser],
    instance: AbstractBaseUser,
    created: bool,
    using: str,
    raw: bool = False,
    **_: Any,
) -> None:
    if raw:  # loaddata: fixtures bring their own identities
        return
    if getattr(instance, _MANAGED, False):
        setattr(instance, _MANAGED, False)
        _remember(instance)
        return
    if created:
        ensure_identity(instance, using=using)
        _remember(instance)
        return
    before = getattr(instance, _LOADED, None)
    password, username, email = instance.password, *_fields(instance)
    if before is None or before == (password, username, email):
        return
    old_password, old_username, old_email = before
    changes: dict[str, object] = {}
    if password != old_password or email != old_email:
        changes["security_stamp"] = new_security_stamp()
    if password != old_password:  # a new password, set by Django itself: its age starts now
        changes.update(
            password_changed_at=timezone.now(), must_change_password=False, grace_logins_used=0
        )
    if email != old_email:
        # An operator's change of address supersedes a change waiting for its link and the
        # window to undo an earlier one: an undo link must not bring back what they replaced.
        changes.update(
            email=email,
            email_key=None if email is None else email.casefold(),
            email_confirmed=False,
            pending_email=None,
            previous_email=None,
            email_changed_at=None,
        )
    if username != old_username:
        changes.update(
            username=username, username_key=None if username is None else username.casefold()
        )
    ensure_identity(instance, using=using)
    Identity.objects.using(using).filter(pk=instance.pk).update(**changes)
    _remember(instance)


def _on_login(sender: object, request: Any, user: AbstractBaseUser, **_: Any) -> None:
    """Keep the account's stamp in the new session (every log-in path sends this signal)."""
    from django.conf import settings

    from .middleware import MUST_CHANGE_KEY, SESSION_STAMP_KEY

    session = getattr(request, "session", None)
    if session is None or user is None:
        return
    using = getattr(settings, "KASPI_IDENTITY", {}).get("DATABASE", "default")
    identity = ensure_identity(user, using=using)
    session[SESSION_STAMP_KEY] = identity.security_stamp
    must_change = getattr(user, "_kaspi_identity_must_change", None)
    if must_change:
        session[MUST_CHANGE_KEY] = must_change


def connect() -> None:
    """Connect the handlers to ``AUTH_USER_MODEL`` (once), and to ``user_logged_in``."""
    user_model = get_user_model()
    user_logged_in.connect(_on_login, dispatch_uid="kaspi_identity.user_logged_in")
    post_init.connect(_on_init, sender=user_model, dispatch_uid="kaspi_identity.post_init")
    post_save.connect(_on_save, sender=user_model, dispatch_uid="kaspi_identity.post_save")
