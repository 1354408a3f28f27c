"""Adopting a database migrated before the user model moved from feed to accounts.

Django's admin (and any app with a user foreign key) depends on the first migration of the app
that holds AUTH_USER_MODEL. On a database migrated by the old code admin.0001 is applied while
accounts.0001 is not, and `migrate` refuses to start (InconsistentMigrationHistory) before any
migration could fix that. accounts.0001 changes Django's state only (the tables are feed's, created
by feed.0002), so recording it as applied on such a database is exactly what running it would do.
"""

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder

STATE_ONLY = ("accounts", "0001_initial")
TABLES_CREATED_BY = ("feed", "0002_auth_token")


def adopt_moved_user_model(connection: BaseDatabaseWrapper) -> bool:
    """Record accounts.0001 as applied where feed already created its tables. Returns whether it did."""
    recorder = MigrationRecorder(connection)
    if not recorder.has_table():
        return False
    applied = recorder.applied_migrations()
    if STATE_ONLY in applied or TABLES_CREATED_BY not in applied:
        return False
    recorder.record_applied(*STATE_ONLY)
    return True
