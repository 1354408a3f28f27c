# AppUser and AuthToken moved to the accounts app (accounts/migrations/0001_initial.py). Their tables
# stay where they are: this migration changes Django's state only (feed's foreign keys now name
# settings.AUTH_USER_MODEL, the two models leave feed's state) and moves the two content types to
# accounts, so permissions, groups and admin log entries keep pointing at them.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("appuser", "authtoken")


def _relabel(apps, schema_editor, old, new):
    ContentType = apps.get_model("contenttypes", "ContentType")
    types = ContentType.objects.db_manager(schema_editor.connection.alias)
    for model in MOVED:
        if not types.filter(app_label=new, model=model).exists():
            types.filter(app_label=old, model=model).update(app_label=new)
    types.clear_cache()


def content_types_to_accounts(apps, schema_editor):
    _relabel(apps, schema_editor, "feed", "accounts")


def content_types_to_feed(apps, schema_editor):
    _relabel(apps, schema_editor, "accounts", "feed")


def _user(related_name):
    return models.ForeignKey(
        on_delete=django.db.models.deletion.CASCADE, related_name=related_name, to=settings.AUTH_USER_MODEL
    )


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("feed", "0002_auth_token"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(model_name="post", name="author", field=_user("posts")),
                migrations.AlterField(model_name="comment", name="author", field=_user("comments")),
                migrations.AlterField(model_name="reaction", name="user", field=_user("reactions")),
                migrations.AlterField(model_name="follow", name="follower", field=_user("following")),
                migrations.AlterField(model_name="follow", name="followee", field=_user("followers")),
                migrations.DeleteModel(name="AuthToken"),
                migrations.DeleteModel(name="AppUser"),
            ],
        ),
        migrations.RunPython(content_types_to_accounts, content_types_to_feed, elidable=True),
    ]
