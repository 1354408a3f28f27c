"""Django's `migrate`, first adopting a database migrated before the user model moved to accounts.

See accounts/migration_history.py: without this, such a database fails the consistency check that
`migrate` runs before applying anything.
"""

from django.core.management.commands import migrate
from django.db import connections

from accounts.migration_history import adopt_moved_user_model


class Command(migrate.Command):
    def handle(self, *args, **options):
        if adopt_moved_user_model(connections[options["database"]]) and options["verbosity"] >= 1:
            self.stdout.write("Recorded accounts.0001_initial as applied (the user model moved from feed).")
        return super().handle(*args, **options)
