"""The contact details on the identity; the phones stored before count as verified."""

from typing import Any, ClassVar

from django.db import migrations, models


def _verify_stored_phones(apps: Any, schema_editor: Any) -> None:
    """Mark every phone stored before this migration verified.

    Until now every stored phone received reset codes; from now on only a verified one
    does, so without this step SMS recovery would stop for every account at the upgrade.
    """
    identity = apps.get_model("kaspi_identity", "Identity")
    using = schema_editor.connection.alias
    identity.objects.using(using).filter(phone__isnull=False).update(phone_verified=True)


class Migration(migrations.Migration):
    """Add phone_verified, pending_email/phone, previous_email, email_changed_at, time_zone."""

    dependencies: ClassVar[list[tuple[str, str]]] = [("kaspi_identity", "0001_initial")]

    operations: ClassVar[list[migrations.operations.base.Operation]] = [
        migrations.AddField(
            model_name="identity",
            name="phone_verified",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="identity",
            name="pending_email",
            field=models.CharField(blank=True, max_length=254, null=True),
        ),
        migrations.AddField(
            model_name="identity",
            name="pending_phone",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.AddField(
            model_name="identity",
            name="previous_email",
            field=models.CharField(blank=True, max_length=254, null=True),
        ),
        migrations.AddField(
            model_name="identity",
            name="email_changed_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="identity",
            name="time_zone",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        # Phones stored before were all sent reset codes; keep it so (the reverse: nothing
        # to undo, the column goes away with the fields).
        migrations.RunPython(_verify_stored_phones, migrations.RunPython.noop, elidable=False),
    ]
