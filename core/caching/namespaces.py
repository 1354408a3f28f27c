"""Namespace generations: invalidate every key of a namespace in O(1) by bumping a number.

A namespace's keys carry `v{version}` (the code's schema version) and, once the namespace has been
bumped, `.{generation}`: `feed:v1:...` becomes `feed:v1.1:...` and the old keys are never read again
(they expire on their TTL). Each process trusts its copy of the generation for
CACHE_NAMESPACE_VERSION_TTL_SECONDS, so another process sees a bump within that bound.
"""

import threading
import time

import redis
from django.conf import settings

from core.caching.keys import CacheKeyBuilder

# Longer than any data TTL: when the generation key expires, the keys of its generation are gone too.
GENERATION_TTL_SECONDS = 7 * 24 * 3600
_registry = CacheKeyBuilder("themoon")


def generation_key(namespace: str) -> str:
    return _registry.build("namespace", namespace, "generation")


class NamespaceGenerations:
    def __init__(self) -> None:
        self._known: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, client: redis.Redis, namespace: str) -> int:
        """The namespace's generation, from our copy while fresh, else from Redis (errors raise)."""
        known = self._known.get(namespace)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        raw = client.get(generation_key(namespace))
        generation = int(raw) if raw else 0
        self._remember(namespace, generation)
        return generation

    def fresh(self, namespace: str) -> int | None:
        """Our copy of the generation while it is fresh, else None (no Redis call)."""
        known = self._known.get(namespace)
        return known[0] if known is not None and known[1] > time.monotonic() else None

    def last_known(self, namespace: str) -> int:
        """The last generation this process saw, however old (0 if none): for use while Redis fails."""
        known = self._known.get(namespace)
        return known[0] if known else 0

    def bump(self, client: redis.Redis, namespace: str) -> int:
        pipe = client.pipeline(transaction=False)
        pipe.incr(generation_key(namespace))
        pipe.expire(generation_key(namespace), GENERATION_TTL_SECONDS)
        generation = int(pipe.execute()[0])
        self._remember(namespace, generation)
        return generation

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    def _remember(self, namespace: str, generation: int) -> None:
        expires = time.monotonic() + settings.CACHE_NAMESPACE_VERSION_TTL_SECONDS
        with self._lock:
            self._known[namespace] = (generation, expires)


generations = NamespaceGenerations()
