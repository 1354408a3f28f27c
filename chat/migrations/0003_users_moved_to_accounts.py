# The user model moved from the feed app to accounts (accounts/migrations/0001_initial.py): chat's
# references name settings.AUTH_USER_MODEL again. State only: the table they point at is unchanged.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0002_initial"),
        ("accounts", "0001_initial"),
    ]

    # Before feed's state drops its copy of the model these still point at.
    run_before = [("feed", "0003_users_moved_to_accounts")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="sender",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="participant",
                    name="user",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="conversation",
                    name="participants",
                    field=models.ManyToManyField(
                        related_name="conversations", through="chat.Participant", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
        ),
    ]
