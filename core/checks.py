"""System checks for what core relies on but Django does not promise."""

import django
from django.core import checks

# `core.events.publisher._keep_flush_last` edits `connection.run_on_commit`, whose entries are
# `(savepoint_ids, func, robust)`: private to Django, checked on these releases only.
TESTED_DJANGO = ((5, 2),)


@checks.register(checks.Tags.compatibility)
def check_django_version(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if django.VERSION[:2] in TESTED_DJANGO:
        return []
    tested = ", ".join(f"{major}.{minor}.x" for major, minor in TESTED_DJANGO)
    return [
        checks.Error(
            f"Django {django.get_version()} is not one the event publisher was tested on ({tested})",
            hint="core.events.publisher._keep_flush_last relies on the private shape of "
            "connection.run_on_commit: test it on this Django, then add the version to "
            "core.checks.TESTED_DJANGO.",
            id="core.E001",
        )
    ]
