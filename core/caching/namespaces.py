"""Namespace epochs: invalidate every key of a namespace in O(1) by bumping a number.

A namespace's keys carry `v{schema}` (the code's key schema) and, once the namespace has been
bumped, `.{epoch}`: `feed:v1:...` becomes `feed:v1.1:...` and the old keys are never read again
(they expire on their TTL). Each process trusts its copy of the epoch for
CACHE_NAMESPACE_EPOCH_TTL_SECONDS, so another process sees a bump within that bound.

`NamespaceKeys` is the door: the key builder of a namespace's current epoch, looked up through a
`GuardedRedis` (while Redis fails, the last epoch known is kept: 0 would revive bumped-away keys).
"""

import threading
import time

import redis
from django.conf import settings

from core.caching.guarded import GuardedRedis
from core.caching.keys import CacheKeyBuilder

# Longer than any data TTL: when the epoch key expires, the keys of its epoch are gone too.
EPOCH_TTL_SECONDS = 7 * 24 * 3600
_registry = CacheKeyBuilder("themoon")


def epoch_key(namespace: str) -> str:
    # The stored name predates the word "epoch"; it stays, so that a deploy keeps every bump
    # (a lost bump would revive the keys it invalidated).
    return _registry.build("namespace", namespace, "generation")


class NamespaceEpochs:
    """This process's copy of each namespace's epoch, refreshed from Redis when it ages out."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, client: redis.Redis, namespace: str) -> int:
        """The namespace's epoch, from our copy while fresh, else from Redis (errors raise)."""
        known = self._known.get(namespace)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        raw = client.get(epoch_key(namespace))
        epoch = int(raw) if raw else 0
        self._remember(namespace, epoch)
        return epoch

    def fresh(self, namespace: str) -> int | None:
        """Our copy of the epoch while it is fresh, else None (no Redis call)."""
        known = self._known.get(namespace)
        return known[0] if known is not None and known[1] > time.monotonic() else None

    def last_known(self, namespace: str) -> int:
        """The last epoch this process saw, however old (0 if none): for use while Redis fails."""
        known = self._known.get(namespace)
        return known[0] if known else 0

    def bump(self, client: redis.Redis, namespace: str) -> int:
        pipe = client.pipeline(transaction=False)
        pipe.incr(epoch_key(namespace))
        pipe.expire(epoch_key(namespace), EPOCH_TTL_SECONDS)
        epoch = int(pipe.execute()[0])
        self._remember(namespace, epoch)
        return epoch

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    def _remember(self, namespace: str, epoch: int) -> None:
        expires = time.monotonic() + settings.CACHE_NAMESPACE_EPOCH_TTL_SECONDS
        with self._lock:
            self._known[namespace] = (epoch, expires)


epochs = NamespaceEpochs()


class NamespaceKeys:
    """Keys of one namespace under its current epoch: `build(*parts)`, `builder()`, `pattern()`."""

    __slots__ = ("_builders", "guard", "namespace", "schema")

    def __init__(self, namespace: str, schema: int | str, guard: GuardedRedis) -> None:
        self.namespace = namespace
        self.schema = schema
        self.guard = guard
        self._builders: dict[int, CacheKeyBuilder] = {}  # one per epoch seen

    def builder(self) -> CacheKeyBuilder:
        """The key builder of the current epoch: build many keys with it on a hot path."""
        epoch = epochs.fresh(self.namespace)
        if epoch is None:
            # Through the breaker, so a dead Redis costs one timeout per burst, not one here and
            # one in the call that follows.
            epoch = self.guard.call(
                "epoch",
                self.namespace,
                lambda: epochs.get(self.guard.client, self.namespace),
                epochs.last_known(self.namespace),
            )
        builder = self._builders.get(epoch)
        if builder is None:
            schema = self.schema if epoch == 0 else f"{self.schema}.{epoch}"
            builder = self._builders[epoch] = CacheKeyBuilder(self.namespace, schema)
        return builder

    def build(self, *parts: object) -> str:
        return self.builder().build(*parts)

    def pattern(self, suffix: str = "*") -> str:
        """A SCAN pattern over the namespace's current keys: prefix + `suffix` (a glob)."""
        return self.builder().prefix + suffix
