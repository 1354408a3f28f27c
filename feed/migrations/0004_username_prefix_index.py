# The user search (GET /api/users?prefix=) matches LOWER(username) LIKE 'abc%'. On PostgreSQL a
# LIKE prefix can use a b-tree only with a pattern operator class (the database's collation is not
# "C"), so the functional index below is text_pattern_ops. Raw SQL, not Meta.indexes: the table is
# accounts.AppUser's (it kept feed's table name), and the index changes no model state.
# SQLite (local runs) answers the same query with a scan: no index there.

from django.db import migrations

INDEX = "feed_appuser_username_lower_prefix_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON feed_appuser (LOWER(username) text_pattern_ops, id)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("feed", "0003_users_moved_to_accounts"), ("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index)]
