"""The app's URLs, namespaced ``kaspi_identity``: ``path("accounts/", include(...urls))``."""

from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.urls import path

from . import views

__all__ = ["app_name", "urlpatterns"]

app_name = "kaspi_identity"

urlpatterns = [
    path("register/", views.RegisterView.as_view(), name="register"),
    path("confirm/", views.ConfirmEmailView.as_view(), name="confirm"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("password/change/", views.ChangePasswordView.as_view(), name="change"),
    path("password/forgot/", views.ForgotPasswordView.as_view(), name="forgot"),
    path("password/reset/", views.ResetPasswordView.as_view(), name="reset"),
    path("password/sms/", views.SmsForgotView.as_view(), name="sms_forgot"),
    path("password/sms/code/", views.SmsVerifyView.as_view(), name="sms_verify"),
    path("email/change/", views.EmailChangeView.as_view(), name="email_change"),
    path("email/confirm/", views.EmailConfirmView.as_view(), name="email_confirm"),
    path("email/undo/", views.EmailUndoView.as_view(), name="email_undo"),
    path("phone/", views.PhoneChangeView.as_view(), name="phone"),
    path("phone/verify/", views.PhoneVerifyView.as_view(), name="phone_verify"),
    path("phone/remove/", views.PhoneRemoveView.as_view(), name="phone_remove"),
    path("policy.json", views.PolicyView.as_view(), name="policy"),
]
