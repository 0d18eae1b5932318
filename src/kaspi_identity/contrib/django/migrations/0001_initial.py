"""The app's tables: identities beside AUTH_USER_MODEL, history, ledger, codes, rate limits."""

from typing import ClassVar

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """Create the five tables."""

    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL)
    ]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.CreateModel(
            name="ConsumedToken",
            fields=[
                ("token_id", models.CharField(max_length=128, primary_key=True, serialize=False)),
                ("expires_at", models.BigIntegerField(db_index=True)),
            ],
        ),
        migrations.CreateModel(
            name="Identity",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="kaspi_identity",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("username", models.CharField(blank=True, max_length=254, null=True)),
                ("username_key", models.CharField(max_length=1024, null=True, unique=True)),
                ("email", models.CharField(blank=True, max_length=254, null=True)),
                ("email_key", models.CharField(max_length=1024, null=True, unique=True)),
                ("phone", models.CharField(max_length=16, null=True, unique=True)),
                ("iin", models.CharField(max_length=12, null=True, unique=True)),
                ("email_confirmed", models.BooleanField(default=False)),
                ("failed_logins", models.BigIntegerField(default=0)),
                ("last_failed_login_at", models.DateTimeField(null=True)),
                ("created_at", models.DateTimeField()),
                ("language", models.CharField(default="en", max_length=35)),
                ("security_stamp", models.CharField(max_length=64)),
                ("names", models.JSONField(default=list)),
                ("password_changed_at", models.DateTimeField(null=True)),
                ("must_change_password", models.BooleanField(default=False)),
                ("grace_logins_used", models.BigIntegerField(default=0)),
            ],
            options={
                "verbose_name": "identity",
                "verbose_name_plural": "identities",
            },
        ),
        migrations.CreateModel(
            name="OneTimeCode",
            fields=[
                ("code_key", models.CharField(max_length=256, primary_key=True, serialize=False)),
                ("code_hash", models.BinaryField(null=True)),
                ("expires_at", models.BigIntegerField(null=True)),
                ("failure_window", models.BigIntegerField()),
                ("failures", models.IntegerField()),
                ("window_ends_at", models.BigIntegerField(null=True)),
            ],
        ),
        migrations.CreateModel(
            name="RateLimitWindow",
            fields=[
                ("limit_key", models.CharField(max_length=256, primary_key=True, serialize=False)),
                ("window_start", models.BigIntegerField()),
                ("window_length", models.BigIntegerField()),
                ("hits", models.BigIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="PasswordHistoryEntry",
            fields=[
                ("seq", models.BigAutoField(primary_key=True, serialize=False)),
                ("account_id", models.CharField(max_length=256)),
                ("password_hash", models.CharField(max_length=1024)),
                ("fingerprint", models.BinaryField()),
                ("created_at", models.BigIntegerField()),
            ],
            options={
                "verbose_name_plural": "password history entries",
                "indexes": [
                    models.Index(fields=["account_id", "seq"], name="kaspi_history_account")
                ],
            },
        ),
    ]
