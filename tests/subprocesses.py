"""What a test passes to the processes it starts (worker, web, workload drivers)."""

from urllib.parse import quote

from django.db import connection


def database_url() -> str:
    """The test database as a DATABASE_URL another process can open: it must see the test's rows
    (transactional tests commit; the SQLite test database is a file, see themoon/settings_test.py)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = quote(db["USER"] or "") + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
        return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    if connection.is_in_memory_db():
        raise RuntimeError("the test database is in-memory SQLite: another process cannot open it")
    return f"sqlite:///{db['NAME']}"
