# Tokens expire and record their last use. Rows issued before this migration get the expiry a new
# token gets (AUTH_TOKEN_TTL_DAYS after they were created): those older than that stop working now,
# which is what "tokens expire" means for them. Digests were already stored, never raw tokens.

from datetime import timedelta

from django.conf import settings
from django.db import migrations, models
from django.db.models import F


def expire_like_new_tokens(apps, schema_editor):
    AuthToken = apps.get_model("accounts", "AuthToken")
    ttl = timedelta(days=settings.AUTH_TOKEN_TTL_DAYS)
    AuthToken.objects.using(schema_editor.connection.alias).filter(expires_at__isnull=True).update(
        expires_at=F("created_at") + ttl
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="authtoken", name="expires_at", field=models.DateTimeField(null=True)
        ),
        migrations.AddField(
            model_name="authtoken",
            name="last_used_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(expire_like_new_tokens, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(model_name="authtoken", name="expires_at", field=models.DateTimeField()),
    ]
