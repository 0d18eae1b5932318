"""Settings of the custom-user project: the app beside ``members.Member``."""

from __future__ import annotations

import os
import tempfile

_FOLDER = tempfile.mkdtemp(prefix="kaspi-custom-user-")
SECRET_KEY = "custom-user-test-secret-key-that-is-long-enough-0123456789"
USE_TZ = True
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_custom_user.members",
    "kaspi_identity.contrib.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "kaspi_identity.contrib.django.middleware.SecurityStampMiddleware",
]
ROOT_URLCONF = "django_custom_user.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
AUTH_USER_MODEL = "members.Member"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(_FOLDER, "db.sqlite3"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        "TEST": {"NAME": os.path.join(_FOLDER, "test.sqlite3")},
    }
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
KASPI_IDENTITY = {
    "SITE_URL": "https://portal.example.kz",
    "POLICY": "kz-procurement",
    "HASH_PROFILE": "tests-only",
    "SMS_SENDER": "kaspi_identity.delivery.Outbox",
}
