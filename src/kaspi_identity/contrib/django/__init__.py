"""kaspi-identity for Django: a validator, the stores on the ORM, views, commands, sessions.

Add ``"kaspi_identity.contrib.django"`` to ``INSTALLED_APPS``, run ``manage.py migrate``, and
see docs/django.md. The modules:

* :mod:`~kaspi_identity.contrib.django.validators` -- ``KaspiPasswordValidator`` for
  ``AUTH_PASSWORD_VALIDATORS``;
* :mod:`~kaspi_identity.contrib.django.storage` -- every storage protocol on the Django ORM,
  accounts on ``AUTH_USER_MODEL``;
* :mod:`~kaspi_identity.contrib.django.service` -- the ``IdentityService`` built from the
  ``KASPI_IDENTITY`` setting;
* :mod:`~kaspi_identity.contrib.django.urls` and ``views`` -- every flow as pages, and the
  policy as JSON;
* :mod:`~kaspi_identity.contrib.django.middleware` -- sessions end with the security stamp.

Needs the ``django`` extra: ``pip install 'kaspi-identity[django]'``.
"""

from __future__ import annotations

try:
    import django as _django
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "kaspi_identity.contrib.django needs Django: pip install 'kaspi-identity[django]'"
    ) from _missing

del _django
