"""The Redis clients every part shares, by role.

Two roles, possibly on two servers (README, "Redis roles"):
- the cache (`REDIS_URL`): evictable entries, may run `allkeys-lru`;
- the events server (`EVENTS_REDIS_URL`, default: the same server): streams, consumer groups, dead
  letters, consumer heartbeats and outbox sent marks, the durable state that must never be evicted.

The events server holds all the durable state the pipeline has; nothing a cache needs is durable:
an event's only power over an absent cache key is none, over a present one compare-and-set, so no
redelivery horizon or per-entity version floor has to outlive anything (the caches' docstrings).

When both roles name the same server, `events_client()` *is* `cache_client()`, so the commit-time
round trip stays one pipeline. `stream_client()` is the events server again, with a read timeout
that outlives XREADGROUP's BLOCK (the consumer's blocking reads and its acknowledgements).
"""

from functools import cache

import redis
from django.conf import settings
from django_redis import get_redis_connection
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def roles_shared() -> bool:
    """True when the cache and the events live on one server (one pipeline can carry both)."""
    return settings.EVENTS_REDIS_URL == settings.REDIS_URL


@cache
def cache_client() -> redis.Redis:
    """django-redis's client for CACHES['default']: short socket timeouts, one shared pool.
    Looked up once per process (the lookup costs more than a cached read's Python side)."""
    return get_redis_connection("default")


def events_client() -> redis.Redis:
    """The events server for publishing (XADD, sent marks) and the outbox relay: the cache's
    short timeouts. The cache client itself when the roles share a server."""
    if roles_shared():
        return cache_client()
    return _short_client(settings.EVENTS_REDIS_URL)


@cache
def _short_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=settings.REDIS_SOCKET_CONNECT_TIMEOUT,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        max_connections=settings.CACHES["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["max_connections"],
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )


def stream_client() -> redis.Redis:
    """The events server, with a read timeout that outlives XREADGROUP's BLOCK: the consumer."""
    return _long_client(settings.EVENTS_REDIS_URL)


def worker_cache_client() -> redis.Redis:
    """The cache, for the consumer's batches of effects: the stream client's patient timeouts (a
    500-event pipeline is not a 0.25 s request read). The stream client itself when shared."""
    return _long_client(settings.REDIS_URL)


@cache
def _long_client(url: str) -> redis.Redis:
    block_seconds = settings.EVENTS_BLOCK_MS / 1000
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=max(settings.REDIS_SOCKET_CONNECT_TIMEOUT, 0.5),
        socket_timeout=block_seconds + 5,
        health_check_interval=30,
        # One quick retry, not redis-py 8's ten with backoff (~3 s): the consumer has its own
        # backoff, and an operator's `manage.py streams` should fail fast.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
