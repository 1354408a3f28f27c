"""What every benchmark shares: Django set up on throwaway databases, timing, markdown tables.

Benchmarks never touch development data: they run on Redis databases 6 (cache, streams) and 5
(broker) by default, flushed at start, and on a throwaway SQL database created next to the one
DATABASE_URL names (like the test runner's `test_<name>`), dropped at the end.
"""

import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "themoon.settings")
os.environ.setdefault("REDIS_URL", os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"))
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-used-anywhere-else")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh, migrated database for the run (name yielded); Redis bench dbs flushed."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from core.connections import cache_client

    if connection.settings_dict["NAME"].endswith("/db.sqlite3") or connection.vendor == "sqlite":
        connection.settings_dict["TEST"]["NAME"] = str(_run_dir() / "bench.sqlite3")
    cache_client().flushdb()
    config = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        yield connection.settings_dict["NAME"]
    finally:
        teardown_databases(config, verbosity=0)
        cache_client().flushdb()


def database_url() -> str:
    """DATABASE_URL pointed at the throwaway database this run uses (for the processes it starts)."""
    from urllib.parse import urlsplit, urlunsplit

    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{name}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _run_dir():
    from django.conf import settings

    path = settings.BASE_DIR / ".run"
    path.mkdir(exist_ok=True)
    return path


def settle_namespace(namespace: str, timeout: float = 10.0) -> None:
    """Wait until fills of `namespace` are stored again after a bump (seed_demo bumps "feed"):
    for the epoch trust TTL + a margin, reads go to the database (core/caching/namespaces.py)."""
    from core.caching import GuardedRedis, NamespaceKeys

    keys = NamespaceKeys(namespace, 1, GuardedRedis())
    deadline = time.monotonic() + timeout
    while keys.builder() is not None and not keys.settled():
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace {namespace} did not settle within {timeout}s")
        time.sleep(0.05)


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def time_per_op(fn: Callable[[], object], iterations: int, repeats: int = 5) -> float:
    """Best-of-`repeats` mean seconds per call of `fn` (best-of filters scheduler noise)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats get sensible precision."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> str:
    import platform

    from django.db import connection

    from core.connections import cache_client

    redis_version = cache_client().info("server")["redis_version"]
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Redis {redis_version}, "
        f"database {connection.vendor}"
    )
