"""The app's tables: what an account needs beyond the host's user model, and the other stores.

:class:`Identity` sits beside each row of ``AUTH_USER_MODEL`` (one to one, same primary key)
and holds what Django's user has no column for: the casefolded keys that make user names
and e-mails unique whatever their case, the phone in E.164, the IIN, the names, the e-mail
confirmation, the failure count, the security stamp, the password's age and the contact
details (the phone's verification, the pending and previous addresses, the time zone).
The user row keeps what Django itself reads: the user name, the e-mail, the password
(argon2 hashes in Django's ``argon2$argon2id$...`` form, so ``check_password`` and the
admin accept them) and ``last_login``.

The other models are the password history, the token ledger, the one-time codes and the
rate-limit windows. Their times are integer microseconds since the Unix epoch, as in the
SQLite and SQLAlchemy adapters, so every adapter decodes the same rows the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.db import models

from kaspi_identity.storage._checks import EMAIL_MAX_LENGTH, STAMP_MAX_LENGTH, TOKEN_ID_MAX_LENGTH
from kaspi_identity.storage._records import TIME_ZONE_MAX_LENGTH

__all__ = ["ConsumedToken", "Identity", "OneTimeCode", "PasswordHistoryEntry", "RateLimitWindow"]


class Identity(models.Model):
    """What kaspi-identity keeps of one user, beside the host's user row."""

    user: models.OneToOneField[Any, Any] = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="kaspi_identity",
    )
    username: models.CharField[str | None, str | None] = models.CharField(
        max_length=254, null=True, blank=True
    )
    # Casefolding can lengthen a string ("ß" -> "ss"), so the keys get more room.
    username_key: models.CharField[str | None, str | None] = models.CharField(
        max_length=1024, null=True, unique=True
    )
    email: models.CharField[str | None, str | None] = models.CharField(
        max_length=254, null=True, blank=True
    )
    email_key: models.CharField[str | None, str | None] = models.CharField(
        max_length=1024, null=True, unique=True
    )
    phone: models.CharField[str | None, str | None] = models.CharField(
        max_length=16, null=True, unique=True
    )
    iin: models.CharField[str | None, str | None] = models.CharField(
        max_length=12, null=True, unique=True
    )
    email_confirmed: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    failed_logins: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)
    last_failed_login_at: models.DateTimeField[datetime | None, datetime | None] = (
        models.DateTimeField(null=True)
    )
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    language: models.CharField[str, str] = models.CharField(max_length=35, default="en")
    security_stamp: models.CharField[str, str] = models.CharField(max_length=STAMP_MAX_LENGTH)
    names: models.JSONField[Any, Any] = models.JSONField(default=list)
    # The password's age (docs/policy.md): when it was set, whether the next log-in must
    # choose a new one, and the log-ins made since it expired.
    password_changed_at: models.DateTimeField[datetime | None, datetime | None] = (
        models.DateTimeField(null=True)
    )
    must_change_password: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    grace_logins_used: models.BigIntegerField[int, int] = models.BigIntegerField(default=0)
    # The contact details (Account.contact): whether a code proved the phone, the change
    # awaiting its proof (nobody's login, so not unique), the address a confirmed change
    # replaced with when (both or neither), and the IANA zone of the account's letters.
    phone_verified: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    pending_email: models.CharField[str | None, str | None] = models.CharField(
        max_length=EMAIL_MAX_LENGTH, null=True, blank=True
    )
    pending_phone: models.CharField[str | None, str | None] = models.CharField(
        max_length=16, null=True, blank=True
    )
    previous_email: models.CharField[str | None, str | None] = models.CharField(
        max_length=EMAIL_MAX_LENGTH, null=True, blank=True
    )
    email_changed_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True
    )
    time_zone: models.CharField[str | None, str | None] = models.CharField(
        max_length=TIME_ZONE_MAX_LENGTH, null=True, blank=True
    )

    class Meta:
        """Names in the admin."""

        verbose_name = "identity"
        verbose_name_plural = "identities"

    def __str__(self) -> str:
        return f"identity of user {self.pk}"


class PasswordHistoryEntry(models.Model):
    """One past password of an account: its argon2 hash and keyed similarity fingerprint."""

    seq: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    account_id: models.CharField[str, str] = models.CharField(max_length=256)
    password_hash: models.CharField[str, str] = models.CharField(max_length=1024)
    fingerprint: models.BinaryField[bytes, bytes | memoryview] = models.BinaryField()
    created_at: models.BigIntegerField[int, int] = models.BigIntegerField()

    class Meta:
        """The index history reads by, and the name in the admin."""

        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["account_id", "seq"], name="kaspi_history_account")
        ]
        verbose_name_plural = "password history entries"


class ConsumedToken(models.Model):
    """A link token that was used, kept until 5 minutes past its expiry."""

    token_id: models.CharField[str, str] = models.CharField(
        max_length=TOKEN_ID_MAX_LENGTH, primary_key=True
    )
    expires_at: models.BigIntegerField[int, int] = models.BigIntegerField(db_index=True)


class OneTimeCode(models.Model):
    """The keyed hash of an SMS code and the count of wrong attempts, per phone."""

    code_key: models.CharField[str, str] = models.CharField(max_length=256, primary_key=True)
    code_hash: models.BinaryField[bytes | None, bytes | memoryview | None] = models.BinaryField(
        null=True
    )
    expires_at: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(null=True)
    failure_window: models.BigIntegerField[int, int] = models.BigIntegerField()
    failures: models.IntegerField[int, int] = models.IntegerField()
    window_ends_at: models.BigIntegerField[int | None, int | None] = models.BigIntegerField(
        null=True
    )


class RateLimitWindow(models.Model):
    """One open fixed window of a rate limit and the hits counted in it."""

    limit_key: models.CharField[str, str] = models.CharField(max_length=256, primary_key=True)
    window_start: models.BigIntegerField[int, int] = models.BigIntegerField()
    window_length: models.BigIntegerField[int, int] = models.BigIntegerField()
    hits: models.BigIntegerField[int, int] = models.BigIntegerField()
