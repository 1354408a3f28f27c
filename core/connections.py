"""The Redis clients every part shares: one pool for cache work, one for blocking stream reads."""

from functools import cache

import redis
from django.conf import settings
from django_redis import get_redis_connection
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


@cache
def cache_client() -> redis.Redis:
    """django-redis's client for CACHES['default']: short socket timeouts, one shared pool.
    Looked up once per process (the lookup costs more than a cached read's Python side)."""
    return get_redis_connection("default")


@cache
def stream_client() -> redis.Redis:
    """A client whose read timeout outlives XREADGROUP's BLOCK, for the stream consumer."""
    block_seconds = settings.EVENTS_BLOCK_MS / 1000
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=max(settings.REDIS_SOCKET_CONNECT_TIMEOUT, 0.5),
        socket_timeout=block_seconds + 5,
        health_check_interval=30,
        # One quick retry, not redis-py 8's ten with backoff (~3 s): the consumer has its own
        # backoff, and an operator's `manage.py streams` should fail fast.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
