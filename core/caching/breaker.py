"""A tiny circuit breaker: after a Redis failure, skip Redis for a moment instead of timing out again.

One warning is logged when a failure burst starts and one info line when Redis answers again, so a
dead Redis neither floods the logs nor costs every request a timeout.
"""

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger("core.caching")


class RedisBreaker:
    def __init__(self, backoff_seconds: float | None = None) -> None:
        self._backoff = backoff_seconds
        self._open_until = 0.0
        self._failing = False
        self._lock = threading.Lock()

    @property
    def backoff(self) -> float:
        return settings.CACHE_FAILURE_BACKOFF_SECONDS if self._backoff is None else self._backoff

    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def failure(self, exc: Exception, operation: str, key: str = "") -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.backoff
            first = not self._failing
            self._failing = True
        if first:
            logger.warning(
                "redis unavailable, serving without cache for now: op=%s key=%s error=%s",
                operation,
                key,
                exc,
            )

    def success(self) -> None:
        if self._failing:
            with self._lock:
                self._failing = False
            logger.info("redis answers again, cache back in use")

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0
            self._failing = False


breaker = RedisBreaker()
