"""The portal's URLs: the admin, and every kaspi-identity page under ``accounts/``."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("kaspi_identity.contrib.django.urls")),  # kaspi-identity's line
]
