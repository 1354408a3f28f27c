"""A tiny circuit breaker: after a Redis failure, skip Redis for a moment instead of timing out again.

One warning is logged when a failure burst starts and one info line when Redis answers again, so a
dead Redis neither floods the logs nor costs every request a timeout.
"""

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings

logger = logging.getLogger("core.caching")


class RedisBreaker:
    def __init__(self, backoff_seconds: float | None = None) -> None:
        self._backoff = backoff_seconds
        self._open_until = 0.0
        self._failing = False
        self._held = False
        self._on_failure: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def backoff(self) -> float:
        return settings.CACHE_FAILURE_BACKOFF_SECONDS if self._backoff is None else self._backoff

    def available(self, ignore_hold: bool = False) -> bool:
        return (ignore_hold or not self._held) and time.monotonic() >= self._open_until

    def hold(self) -> None:
        """Stay open until `release()`, whatever the clock says: a process that failed to send
        events reads from the database until it has sent them (core.events.recovery)."""
        self._held = True

    def release(self) -> None:
        self._held = False

    def on_failure(self, callback: Callable[[], None]) -> None:
        """Call `callback()` at the start of every failure burst (idempotent per callback)."""
        if callback not in self._on_failure:
            self._on_failure.append(callback)

    def failure(self, exc: Exception, operation: str, key: str = "") -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.backoff
            first = not self._failing
            self._failing = True
        if first:
            for callback in self._on_failure:
                callback()
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
            self._held = False


breaker = RedisBreaker()
