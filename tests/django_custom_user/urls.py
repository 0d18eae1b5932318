"""The custom-user project's URLs."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("accounts/", include("kaspi_identity.contrib.django.urls"))]
