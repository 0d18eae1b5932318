"""``KaspiPasswordValidator``: the policy as one of Django's ``AUTH_PASSWORD_VALIDATORS``.

::

    AUTH_PASSWORD_VALIDATORS = [
        {
            "NAME": "kaspi_identity.contrib.django.validators.KaspiPasswordValidator",
            "OPTIONS": {"preset": "kz-procurement"},  # or "policy_file" or "policy"
        },
    ]

``validate(password, user)`` checks the policy with the user's fields (user name, e-mail,
first and last names, and the identity's phone, IIN and names) as personal data, plus the
history when the policy keeps one; each broken rule is a ``ValidationError`` whose ``code``
and ``params`` are the violation's (docs/policy.md lists them), its message in the active
Django language (kk, ru or en; English for any other). ``get_help_text()`` is the policy's
``describe()`` in that language. ``password_changed(password, user)``, which Django calls
after saving a password set with ``set_password``, records the history entry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone
from django.utils.translation import get_language

from kaspi_identity._errors import UnknownLanguageError
from kaspi_identity.i18n import DEFAULT_LANGUAGE, normalize_language
from kaspi_identity.policy import PolicyResult, UserInfo

from .service import load_policy, password_hasher, password_history

__all__ = ["KaspiPasswordValidator", "active_language", "user_info"]


def active_language() -> str:
    """The active Django language as a catalog language: kk, ru or en (else the default)."""
    try:
        return normalize_language(get_language() or DEFAULT_LANGUAGE)
    except UnknownLanguageError:
        return DEFAULT_LANGUAGE


def user_info(user: Any) -> UserInfo | None:
    """The personal data of a Django user (and its identity) the policy keeps out of passwords.

    ``None`` for no user. Values longer than the policy reads are left out, not refused.
    """
    if user is None:
        return None
    from .models import Identity

    fields: dict[str, Any] = {}
    email_field = user.get_email_field_name() if hasattr(user, "get_email_field_name") else "email"
    username_field = getattr(user, "USERNAME_FIELD", "username")
    if username_field != email_field:
        username = getattr(user, username_field, None)
        if isinstance(username, str) and username and not username.startswith("~"):
            fields["username"] = username
    email = getattr(user, email_field, None)
    if isinstance(email, str) and email:
        fields["email"] = email
    names = [
        name
        for name in (getattr(user, "first_name", None), getattr(user, "last_name", None))
        if isinstance(name, str) and name
    ]
    identity = None
    if getattr(user, "pk", None) is not None:
        from django.conf import settings

        using = getattr(settings, "KASPI_IDENTITY", {}).get("DATABASE", "default")
        identity = Identity.objects.using(using).filter(pk=user.pk).first()
    if identity is not None:
        fields["phone"] = identity.phone
        fields["iin"] = identity.iin
        names.extend(n for n in identity.names if isinstance(n, str) and n not in names)
    fields["names"] = tuple(names[:8])
    try:
        return UserInfo(**fields)
    except ValueError:
        fields = {k: v for k, v in fields.items() if k in ("username", "email")}
        try:
            return UserInfo(**fields)
        except ValueError:
            return UserInfo()


def _errors(result: PolicyResult, lang: str) -> list[ValidationError]:
    # Django %-formats a message that has params: the rendered text is escaped for it.
    errors = [
        ValidationError(
            violation.message(lang).replace("%", "%%"),
            code=violation.code,
            params=dict(violation.params),
        )
        for violation in result.violations
    ]
    errors.extend(
        ValidationError(hint.message(lang).replace("%", "%%"), code=hint.code)
        for hint in result.hints
    )
    return errors


class KaspiPasswordValidator:
    """A Django password validator running a :class:`~kaspi_identity.PasswordPolicy`.

    Give at most one of the options (none: the policy of ``KASPI_IDENTITY["POLICY"]``, else
    the default policy).

    Args:
        preset: a preset name (``"kz-procurement"``, ``"utility-cabinet"``, ``"nist"``).
        policy_file: a TOML policy file.
        policy: a mapping of policy keys (docs/policy.md).

    Raises:
        ImproperlyConfigured: more than one option, or an invalid policy.

    """

    def __init__(
        self,
        preset: str | None = None,
        policy_file: str | os.PathLike[str] | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> None:
        given = [value for value in (preset, policy_file, policy) if value is not None]
        if len(given) > 1:
            raise ImproperlyConfigured(
                "KaspiPasswordValidator takes one of preset, policy_file and policy"
            )
        if preset is not None:
            self.policy = load_policy({"preset": preset})
        elif policy_file is not None:
            self.policy = load_policy(os.fspath(policy_file))
        elif policy is not None:
            self.policy = load_policy(policy)
        else:
            from django.conf import settings

            self.policy = load_policy(getattr(settings, "KASPI_IDENTITY", {}).get("POLICY"))

    def __repr__(self) -> str:
        return f"KaspiPasswordValidator({self.policy!r})"

    def check(self, password: str, user: Any = None) -> PolicyResult:
        """The policy's (and history's) verdict on ``password`` for ``user``."""
        info = user_info(user)
        if self.policy.history and getattr(user, "pk", None) is not None:
            return password_history().validate(self.policy, str(user.pk), password, user=info)
        return self.policy.check(password, user=info)

    def validate(self, password: str, user: Any = None) -> None:
        """Raise ``ValidationError`` with every broken rule, in the active language.

        Raises:
            ValidationError: a list with one error per violation (``code`` and ``params``
                as the violation's) and per hint.

        """
        result = self.check(password, user)
        if not result:
            raise ValidationError(_errors(result, active_language()))

    def password_changed(self, password: str, user: Any = None) -> None:
        """Record ``password`` in ``user``'s history (when the policy keeps one)."""
        if not self.policy.history or getattr(user, "pk", None) is None:
            return
        history = password_history()
        history.record(
            str(user.pk),
            password,
            password_hasher().hash(password),
            keep=max(self.policy.history, 1),
            now=timezone.now(),
        )

    def get_help_text(self) -> str:
        """The policy's requirement lines in the active language, as one text."""
        return " ".join(self.policy.describe(active_language()))
