"""Shared fixtures: a real Redis database for the run (flushed between tests), a real Celery
worker whose stream consumer applies events, and plain factory functions (tests/factories.py)."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _redis_is_ours():
    from django.conf import settings

    # themoon/settings_test.py defaults to databases 15 and 14; never the development database 0.
    assert not settings.REDIS_URL.rstrip("/").endswith(("/0", ":6379")), "tests flush their Redis db"
    from core.connections import cache_client

    cache_client().ping()  # fail loudly when Redis is not running


def flush_redis() -> None:
    """Empty what the tests own: the cache's database (on a cluster: FLUSHALL on every primary) and
    the channel layer's servers when they are not the cache's."""
    import redis
    from django.conf import settings

    from core.connections import cache_client, cluster_enabled, primaries

    client = cache_client()
    if cluster_enabled():
        for node in primaries(client):
            node.flushall()
    else:
        client.flushdb()
    for url in settings.CHANNEL_LAYER_REDIS_URL.split(","):
        if url.strip() and url.strip() != settings.REDIS_URL:
            redis.Redis.from_url(url.strip()).flushdb()


@pytest.fixture(autouse=True)
def redis_client():
    """The cache client, on a flushed database; process-local cache state reset. Each test gets
    its own channel layer: tests run their sockets in an event loop each, and channels-redis keeps
    its receive lock per layer instance, not per loop (a receive still unwound from the loop
    before, cleaned up only when the collector gets to it, made the next test's receive use that
    loop's lock: "is bound to a different event loop"). A server process has one loop."""
    from channels.layers import channel_layers

    from core.caching import breaker, epochs, stats
    from core.connections import cache_client, forget_unreachable
    from core.events.recovery import recovery

    forget_unreachable()
    client = cache_client()
    flush_redis()
    recovery.reset()
    breaker.reset()
    epochs.forget()
    stats.reset()
    channel_layers.backends.clear()
    yield client
    recovery.reset()  # no drain thread of this test outlives it


@pytest.fixture
def celery_app():
    from themoon.celery import app

    return app


@pytest.fixture
def pipeline_settings(settings):
    """Settings the pipeline worker starts with; a test module may override this fixture."""
    settings.EVENTS_BLOCK_MS = 200
    return settings


@pytest.fixture
def pipeline_worker(transactional_db, celery_app, pipeline_settings):
    """A real Celery worker (in-process, threads pool) with its stream-consumer bootstep running."""
    from celery.contrib.testing.worker import start_worker

    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker


@pytest.fixture
def unused_port() -> int:
    """A loopback port nobody listens on (a Redis that is down)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
