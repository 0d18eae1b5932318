"""A Django portal with every kaspi-identity flow: Django's usual settings plus the glue.

The glue is the block at the end (12 lines) and two lines of urls.py, as docs/django.md
shows them.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("PORTAL_SECRET_KEY", "dev-only-secret-key-change-me-0123456789abcdef")
DEBUG = os.environ.get("PORTAL_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "portal.example.kz"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "portal.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
USE_TZ = True
LANGUAGE_CODE = "kk"
LANGUAGES = [("kk", "Қазақша"), ("ru", "Русский"), ("en", "English")]
LOGIN_REDIRECT_URL = "/"
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "Portal <noreply@portal.example.kz>"

# -- kaspi-identity: the glue ------------------------------------------------------------
INSTALLED_APPS += ["kaspi_identity.contrib.django"]
MIDDLEWARE += ["kaspi_identity.contrib.django.middleware.SecurityStampMiddleware"]
DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}  # SQLite
AUTHENTICATION_BACKENDS = ["kaspi_identity.contrib.django.backends.KaspiIdentityBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "kaspi_identity.contrib.django.validators.KaspiPasswordValidator"}
]
KASPI_IDENTITY = {
    "SITE_URL": "https://portal.example.kz",
    "POLICY": "kz-procurement",
    "SMS_SENDER": "kaspi_identity.delivery.ConsoleSender",  # your SMS gateway's sender
}
