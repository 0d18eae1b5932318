"""``Member``: e-mail as the log-in (nullable, unique), a UUID primary key, no user name."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class MemberManager(BaseUserManager["Member"]):
    """``create_user`` for an e-mail log-in."""

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> Member:
        """A member with this e-mail and password."""
        member = self.model(email=self.normalize_email(email), **extra)
        member.set_password(password)
        member.save(using=self._db)
        return member


class Member(AbstractBaseUser):
    """A portal member: logs in by e-mail; the e-mail may be missing (phone-only members)."""

    id: models.UUIDField[uuid.UUID, uuid.UUID] = models.UUIDField(
        primary_key=True, default=uuid.uuid4
    )
    email: models.EmailField[str | None, str | None] = models.EmailField(
        unique=True, null=True, blank=True
    )
    is_active: models.BooleanField[bool, bool] = models.BooleanField(default=True)

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects = MemberManager()
