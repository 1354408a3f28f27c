"""A guarded Redis: every call goes through the circuit breaker, is logged once per failure burst
and answers a fallback instead of raising into the request.

Caches compose one (`GuardedRedis`) rather than inheriting a strategy to borrow its error handling.
Pipelined work for the stream consumer does not go through it: there an error must propagate, so
that an event is not acknowledged while its effect failed.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

import redis

from core.caching.breaker import RedisBreaker, breaker
from core.connections import UNAVAILABLE, cache_client

logger = logging.getLogger("core.caching")

T = TypeVar("T")


class GuardedRedis:
    """A Redis client (the shared cache client unless given one) behind a circuit breaker.

    A guard aimed at its own Redis gets its own breaker: that Redis's failures are not the cache's.
    """

    __slots__ = ("_client", "breaker")

    def __init__(self, client: redis.Redis | None = None, breaker_: RedisBreaker | None = None) -> None:
        self._client = client
        self.breaker = breaker_ or (RedisBreaker() if client is not None else breaker)

    @property
    def client(self) -> redis.Redis:
        return self._client if self._client is not None else cache_client()

    def call(self, operation: str, key: str, fn: Callable[[], T], fallback: T) -> T:
        """`fn()`, or `fallback` while the breaker is open or when Redis fails (connection errors,
        a cluster of which no node answers included, open the breaker; other Redis errors are
        logged with the operation and key)."""
        if not self.breaker.available():
            return fallback
        try:
            result = fn()
        except UNAVAILABLE as exc:
            self.breaker.failure(exc, operation, key)
            return fallback
        except redis.RedisError as exc:
            logger.error("redis error: op=%s key=%s error=%s", operation, key, exc)
            return fallback
        self.breaker.success()
        return result
