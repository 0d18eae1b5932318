"""The forms of the app's pages: plain fields; every rule is the service's, not the form's.

The forms only collect what the user typed. The checks (policy, identifiers, limits) run
once, in :class:`~kaspi_identity.services.IdentityService`, and the views put its answers
on the form as errors, so there is one implementation of every rule.
"""

from __future__ import annotations

from django import forms

from ._ui import text_lazy

__all__ = [
    "ChangePasswordForm",
    "CodeForm",
    "ConfirmForm",
    "EmailChangeForm",
    "IdentifierForm",
    "LoginForm",
    "NewPasswordForm",
    "PasswordForm",
    "PhoneChangeForm",
    "PhoneForm",
    "RegisterForm",
]

# Long enough for any policy (hard cap 4096) and any identifier; the service checks the rest.
_PASSWORD = 4096 * 4
_IDENTIFIER = 320


def _password(key: str, autocomplete: str) -> forms.CharField:
    return forms.CharField(
        label=text_lazy(key),
        strip=False,
        max_length=_PASSWORD,
        widget=forms.PasswordInput(attrs={"autocomplete": autocomplete}),
    )


class RegisterForm(forms.Form):
    """E-mail, optional user name and phone, the password twice."""

    email = forms.CharField(label=text_lazy("page.field.email"), max_length=_IDENTIFIER)
    username = forms.CharField(
        label=text_lazy("page.field.username"), max_length=_IDENTIFIER, required=False
    )
    phone = forms.CharField(label=text_lazy("page.field.phone"), max_length=64, required=False)
    password = _password("page.field.password", "new-password")
    confirmation = _password("page.field.confirmation", "new-password")


class LoginForm(forms.Form):
    """A user name, e-mail or phone, and the password."""

    identifier = forms.CharField(label=text_lazy("page.field.identifier"), max_length=_IDENTIFIER)
    password = _password("page.field.password", "current-password")


class IdentifierForm(forms.Form):
    """The user name, e-mail or phone of the account whose password is forgotten."""

    identifier = forms.CharField(label=text_lazy("page.field.identifier"), max_length=_IDENTIFIER)


class PhoneForm(forms.Form):
    """The mobile number given at registration."""

    phone = forms.CharField(label=text_lazy("page.field.phone"), max_length=64)


class CodeForm(forms.Form):
    """The code of the SMS."""

    code = forms.CharField(
        label=text_lazy("page.field.code"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class NewPasswordForm(forms.Form):
    """The new password, twice."""

    password = _password("page.field.new", "new-password")
    confirmation = _password("page.field.confirmation", "new-password")


class ChangePasswordForm(forms.Form):
    """The current password, and the new one twice."""

    current = _password("page.field.current", "current-password")
    password = _password("page.field.new", "new-password")
    confirmation = _password("page.field.confirmation", "new-password")


class ConfirmForm(forms.Form):
    """No field: the button that confirms the address (a link scanner's GET confirms nothing)."""


class EmailChangeForm(forms.Form):
    """The new e-mail address, and the current password."""

    email = forms.CharField(label=text_lazy("page.field.new_email"), max_length=_IDENTIFIER)
    password = _password("page.field.current", "current-password")


class PhoneChangeForm(forms.Form):
    """The number to add, change to or prove, and the current password."""

    phone = forms.CharField(label=text_lazy("page.field.phone"), max_length=64)
    password = _password("page.field.current", "current-password")


class PasswordForm(forms.Form):
    """The current password, alone (the removal of the phone)."""

    password = _password("page.field.current", "current-password")
