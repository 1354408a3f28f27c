"""Cache strategies: the one door through which the apps read and write Redis as a cache.

- `BaseCacheStrategy`: namespaced, versioned keys, JSON values, a TTL on every key, and graceful
  degradation: with Redis down or slow, reads miss, writes are skipped, nothing raises into a request.
- `WriteThroughCacheStrategy`: the DB first, then the cache, only once the transaction commits; plus
  version-aware writes (an older version never overwrites a newer one) for the event handlers.
- `CacheAsideStrategy`: miss -> load -> fill, with a lease in the key itself (memcache-style): the
  loader runs once for N concurrent misses, and a fill that raced a write is dropped, never stored.

Methods that take a `pipe` queue commands on a pipeline the caller executes (the stream consumer):
those never swallow errors, because an event must not be acknowledged if its effect failed.
"""

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.db import transaction

from core.caching.breaker import RedisBreaker, breaker
from core.caching.keys import CacheKeyBuilder
from core.caching.lua import FILL_IF_LEASED, RELEASE_LEASE, SET_IF_NEWER
from core.caching.namespaces import generations
from core.caching.serializers import CorruptCacheValue, serializer
from core.connections import cache_client
from core.versions import FINAL_VERSION

logger = logging.getLogger("core.caching")

T = TypeVar("T")
_MISSING = object()

# A lease is stored in the key it guards. It is not JSON, so no reader can take it for a value.
LEASE_PREFIX = b"\x00lease:"


class _Stats:
    """Hits and misses per namespace since this process started (read by CacheManager.get_stats)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, namespace: str, hits: int, misses: int) -> None:
        with self._lock:
            if hits:
                self.hits[namespace] += hits
            if misses:
                self.misses[namespace] += misses

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            names = set(self.hits) | set(self.misses)
            return {n: {"hits": self.hits[n], "misses": self.misses[n]} for n in sorted(names)}

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.misses.clear()


stats = _Stats()


def is_tombstone(value: Any) -> bool:
    return isinstance(value, dict) and value.get("deleted") is True and "version" in value


def tombstone() -> dict[str, Any]:
    return {"deleted": True, "version": FINAL_VERSION}


class BaseCacheStrategy:
    """Namespaced JSON cache operations with a TTL on every key and graceful degradation."""

    namespace: str = "default"
    version: int = 1
    default_ttl: int = 300

    def __init__(self, client: redis.Redis | None = None, breaker_: RedisBreaker | None = None):
        self._client = client
        self._builders: dict[int, CacheKeyBuilder] = {}  # one per namespace generation seen
        # A strategy aimed at its own Redis gets its own breaker: its failures are not ours.
        self.breaker = breaker_ or (RedisBreaker() if client is not None else breaker)

    @property
    def client(self) -> redis.Redis:
        return self._client if self._client is not None else cache_client()

    # --- keys ------------------------------------------------------------------------------

    def key(self, *parts: object) -> str:
        return self._builder().build(*parts)

    def key_pattern(self, suffix: str = "*") -> str:
        """A SCAN pattern over this namespace's current keys: prefix + `suffix` (a glob)."""
        return self._builder().prefix + suffix

    def _builder(self) -> CacheKeyBuilder:
        generation = generations.fresh(self.namespace)
        if generation is None:
            # Through the breaker, so a dead Redis costs one timeout per burst, not one here and one
            # in the call; while it fails, keep the last generation known: 0 would revive
            # bumped-away keys.
            known = generations.last_known(self.namespace)
            generation = self._call(
                "generation", self.namespace, lambda: generations.get(self.client, self.namespace), known
            )
        builder = self._builders.get(generation)
        if builder is None:
            version = self.version if generation == 0 else f"{self.version}.{generation}"
            builder = self._builders[generation] = CacheKeyBuilder(self.namespace, version)
        return builder

    def ttl_ms(self, ttl: int | None) -> int:
        seconds = self.default_ttl if ttl is None else ttl
        if seconds <= 0:
            raise ValueError("Every cache key needs a positive TTL")
        return int(seconds * 1000)

    # --- guarded calls -----------------------------------------------------------------------

    def _call(self, operation: str, key: str, fn: Callable[[], T], fallback: T) -> T:
        """Run one Redis call; on a connection failure, log once per burst and return `fallback`."""
        if not self.breaker.available():
            return fallback
        try:
            result = fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.breaker.failure(exc, operation, key)
            return fallback
        except redis.RedisError as exc:
            logger.error("redis error: op=%s key=%s error=%s", operation, key, exc)
            return fallback
        self.breaker.success()
        return result

    def _decode(self, key: str, raw: bytes | None) -> Any:
        """Bytes from Redis to a value, or _MISSING for absent, leased or corrupt entries."""
        if raw is None or raw.startswith(LEASE_PREFIX):
            return _MISSING
        try:
            return serializer.loads(raw)
        except CorruptCacheValue as exc:
            logger.warning("corrupt cache entry read as a miss: key=%s error=%s", key, exc)
            return _MISSING

    def _count(self, hits: int, misses: int) -> None:
        stats.record(self.namespace, hits, misses)

    # --- plain operations --------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        value = self._decode(key, self._call("get", key, lambda: self.client.get(key), None))
        self._count(value is not _MISSING, value is _MISSING)
        return default if value is _MISSING else value

    def set(self, key: str, value: Any, ttl: int | None = None) -> bool:
        payload, ttl_ms = serializer.dumps(value), self.ttl_ms(ttl)
        return bool(self._call("set", key, lambda: self.client.set(key, payload, px=ttl_ms), False))

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(self._call("delete", keys[0], lambda: self.client.unlink(*keys), 0))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The keys that are cached, with their values (absent keys are left out).

        One pipelined round trip of GETs, not MGET: the keys may live in different cluster slots.
        """
        keys = list(keys)
        if not keys:
            return {}

        def fetch() -> list[bytes | None]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            return pipe.execute()

        raws = self._call("get_many", keys[0], fetch, [None] * len(keys))
        found = {}
        for key, raw in zip(keys, raws, strict=True):
            value = self._decode(key, raw)
            if value is not _MISSING:
                found[key] = value
        self._count(len(found), len(keys) - len(found))
        return found

    def set_many(self, mapping: Mapping[str, Any], ttl: int | None = None) -> bool:
        if not mapping:
            return True
        ttl_ms = self.ttl_ms(ttl)

        def store() -> bool:
            pipe = self.client.pipeline(transaction=False)
            for key, value in mapping.items():
                pipe.set(key, serializer.dumps(value), px=ttl_ms)
            return all(pipe.execute())

        return bool(self._call("set_many", next(iter(mapping)), store, False))

    def get_or_set(self, key: str, default: Callable[[], Any] | Any, ttl: int | None = None) -> Any:
        """The cached value, or `default` (called if callable) stored and returned. No lease."""
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = default() if callable(default) else default
        self.set(key, value, ttl)
        return value

    def ttl(self, key: str) -> int:
        """Seconds left on `key` (-2 absent, -1 no expiry: a bug, every key has a TTL)."""
        return int(self._call("ttl", key, lambda: self.client.ttl(key), -2))

    # --- pipelined, for event handlers (errors propagate) ---------------------------------------

    def queue_set(self, pipe: redis.client.Pipeline, key: str, value: Any, ttl: int | None = None):
        pipe.set(key, serializer.dumps(value), px=self.ttl_ms(ttl))

    def queue_delete(self, pipe: redis.client.Pipeline, *keys: str) -> None:
        pipe.unlink(*keys)


class WriteThroughCacheStrategy(BaseCacheStrategy):
    """Write the database first, then the cache, and only if the transaction commits."""

    def save_and_cache(
        self, write: Callable[[], T], key: str, to_cache: Callable[[T], Any], ttl: int | None = None
    ) -> T:
        """Run `write()` in a transaction; once it commits, cache `to_cache(result)` under `key`.

        A rollback (of the transaction or of an enclosing savepoint) leaves the cache untouched.
        """
        with transaction.atomic():
            result = write()
            transaction.on_commit(lambda: self.set_if_newer(key, to_cache(result), ttl))
        return result

    def set_if_newer(self, key: str, value: dict[str, Any], ttl: int | None = None) -> bool:
        """Store `value` unless the cache holds the same or a newer `value["version"]`."""
        args = [serializer.dumps(value), int(value["version"]), self.ttl_ms(ttl)]
        return bool(self._call("set_if_newer", key, lambda: SET_IF_NEWER(self.client, [key], args), False))

    def queue_set_if_newer(
        self, pipe: redis.client.Pipeline, key: str, value: dict[str, Any], ttl: int | None = None
    ) -> None:
        args = [serializer.dumps(value), int(value["version"]), self.ttl_ms(ttl)]
        SET_IF_NEWER(pipe, [key], args)

    def queue_tombstone(self, pipe: redis.client.Pipeline, key: str, ttl: int | None = None):
        """Mark `key` deleted for good: late or re-delivered older versions can't resurrect it."""
        self.queue_set_if_newer(pipe, key, tombstone(), ttl)


class CacheAsideStrategy(WriteThroughCacheStrategy):
    """Miss -> load -> fill, guarded by a lease so the loader runs once and stale fills are dropped."""

    def get_or_load(self, key: str, loader: Callable[[], T], ttl: int | None = None) -> T:
        """The cached value, or `loader()`'s, filled under a lease.

        N concurrent misses run `loader` once: the others wait (up to CACHE_LEASE_WAIT_SECONDS) for
        the value, then load without caching. If the key is written or deleted while the loader runs,
        the fill is dropped (the loaded value may predate that write), but still returned.
        A tombstone reads as None.
        """
        deadline = None
        while True:
            raw = self._call("get", key, lambda: self.client.get(key), _MISSING)
            if raw is _MISSING:  # Redis unavailable: the source answers alone.
                self._count(0, 1)
                return loader()
            value = self._decode(key, raw)
            if value is not _MISSING:
                self._count(1, 0)
                return None if is_tombstone(value) else value
            if raw is None:
                lease = LEASE_PREFIX + uuid.uuid4().hex.encode()
                if self._take_lease(key, lease):
                    self._count(0, 1)
                    return self._load_and_fill(key, lease, loader, ttl)
            elif not raw.startswith(LEASE_PREFIX) and self._drop_corrupt(key, raw):
                continue  # the corrupt bytes were a miss, not a lease to wait for: take the lease now
            # Another process holds the lease: wait for its value, a bounded while.
            now = time.monotonic()
            if deadline is None:
                deadline = now + settings.CACHE_LEASE_WAIT_SECONDS
            if now >= deadline:
                self._count(0, 1)
                return loader()
            time.sleep(0.005)

    def _drop_corrupt(self, key: str, raw: bytes) -> bool:
        """Delete `raw` (undecodable, already logged) from `key` unless it was rewritten meanwhile."""
        return bool(self._call("drop_corrupt", key, lambda: RELEASE_LEASE(self.client, [key], [raw]), 0))

    def _take_lease(self, key: str, lease: bytes) -> bool:
        lease_ms = int(settings.CACHE_LEASE_SECONDS * 1000)
        return bool(
            self._call("lease", key, lambda: self.client.set(key, lease, nx=True, px=lease_ms), False)
        )

    def _load_and_fill(self, key: str, lease: bytes, loader: Callable[[], T], ttl: int | None) -> T:
        try:
            value = loader()
        except BaseException:
            self._call("release", key, lambda: RELEASE_LEASE(self.client, [key], [lease]), 0)
            raise
        args = [lease, serializer.dumps(value), self.ttl_ms(ttl)]
        self._call("fill", key, lambda: FILL_IF_LEASED(self.client, [key], args), 0)
        return value
