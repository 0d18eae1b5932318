"""The URLs of the Django test project: the app's pages under ``accounts/``."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("accounts/", include("kaspi_identity.contrib.django.urls"))]
