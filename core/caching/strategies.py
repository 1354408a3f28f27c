"""Cache strategies: the one door through which the apps read and write Redis as a cache.

- `BaseCacheStrategy`: namespaced keys (schema + namespace epoch), JSON values, a TTL on every key,
  and graceful degradation through a `GuardedRedis`: with Redis down or slow, reads miss, writes
  are skipped, nothing raises into a request.
- `WriteThroughCacheStrategy`: written from events after the database committed: version
  compare-and-set (an older version never overwrites a newer one) and tombstones (a deleted row
  never comes back).
- `CacheAsideStrategy`: `get_or_load`: miss -> load -> fill under a lease in the key itself: the
  loader runs once for N concurrent misses, and a fill that raced a write is dropped, never stored.

A cache that is both (a post's detail: filled on a miss, written through by events) inherits both.
Methods that take a `pipe` queue commands on a pipeline the caller executes (the stream consumer):
those never swallow errors, because an event must not be acknowledged if its effect failed.
"""

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import redis

from core.caching.breaker import RedisBreaker
from core.caching.guarded import GuardedRedis
from core.caching.keys import CacheKeyBuilder
from core.caching.leases import Lease, drop_if_holds, fill_leased, is_lease
from core.caching.namespaces import NamespaceKeys
from core.caching.read_through import ABSENT, LEASED, RETRY, UNAVAILABLE, fill_under_lease, read_through
from core.caching.scripts import SET_IF_NEWER
from core.caching.serializers import CorruptCacheValue, serializer
from core.caching.ttl import ttl_ms
from core.versions import FINAL_VERSION

logger = logging.getLogger("core.caching")

T = TypeVar("T")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What `decode` returns for an absent, leased or corrupt entry (a cached None is a value)."""


class LookupStats:
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


stats = LookupStats()


def is_tombstone(value: Any) -> bool:
    return isinstance(value, dict) and value.get("deleted") is True and "version" in value


def tombstone() -> dict[str, Any]:
    return {"deleted": True, "version": FINAL_VERSION}


class BaseCacheStrategy:
    """Namespaced JSON cache operations with a TTL on every key and graceful degradation.

    Subclasses set `namespace`, `schema` (the key layout's number: change it to orphan old keys)
    and `default_ttl` (seconds).
    """

    namespace: str = "default"
    schema: int = 1
    default_ttl: int = 300

    def __init__(self, client: redis.Redis | None = None, breaker_: RedisBreaker | None = None):
        self.guard = GuardedRedis(client, breaker_)
        self.keys = NamespaceKeys(self.namespace, self.schema, self.guard)

    @property
    def client(self) -> redis.Redis:
        return self.guard.client

    @property
    def breaker(self) -> RedisBreaker:
        return self.guard.breaker

    # --- keys ------------------------------------------------------------------------------

    def key(self, *parts: object) -> str:
        return self.keys.build(*parts)

    def key_builder(self) -> CacheKeyBuilder:
        """The builder of the namespace's current epoch: build a batch of keys with one lookup."""
        return self.keys.builder()

    def key_pattern(self, suffix: str = "*") -> str:
        """A SCAN pattern over this namespace's current keys: prefix + `suffix` (a glob)."""
        return self.keys.pattern(suffix)

    def ttl_ms(self, ttl: int | None) -> int:
        return ttl_ms(self.default_ttl if ttl is None else ttl)

    # --- values and statistics -----------------------------------------------------------------

    def decode(self, key: str, raw: bytes | None) -> Any:
        """Bytes from Redis to a value, or MISSING for absent, leased or corrupt entries."""
        if raw is None or is_lease(raw):
            return MISSING
        try:
            return serializer.loads(raw)
        except CorruptCacheValue as exc:
            logger.warning("corrupt cache entry read as a miss: key=%s error=%s", key, exc)
            return MISSING

    def record_lookups(self, hits: int, misses: int) -> None:
        """Count answers of this namespace (CacheManager.get_stats, /metrics)."""
        stats.record(self.namespace, hits, misses)

    def record_lookup(self, hit: bool) -> None:
        stats.record(self.namespace, 1 if hit else 0, 0 if hit else 1)

    # --- plain operations --------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        value = self.decode(key, self.guard.call("get", key, lambda: self.client.get(key), None))
        self.record_lookup(value is not MISSING)
        return default if value is MISSING else value

    def set(self, key: str, value: Any, ttl: int | None = None) -> bool:
        payload, ttl_ms_ = serializer.dumps(value), self.ttl_ms(ttl)
        return bool(self.guard.call("set", key, lambda: self.client.set(key, payload, px=ttl_ms_), False))

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(self.guard.call("delete", keys[0], lambda: self.client.unlink(*keys), 0))

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

        raws = self.guard.call("get_many", keys[0], fetch, [None] * len(keys))
        found = {}
        for key, raw in zip(keys, raws, strict=True):
            value = self.decode(key, raw)
            if value is not MISSING:
                found[key] = value
        self.record_lookups(len(found), len(keys) - len(found))
        return found

    def set_many(self, mapping: Mapping[str, Any], ttl: int | None = None) -> bool:
        if not mapping:
            return True
        ttl_ms_ = self.ttl_ms(ttl)

        def store() -> bool:
            pipe = self.client.pipeline(transaction=False)
            for key, value in mapping.items():
                pipe.set(key, serializer.dumps(value), px=ttl_ms_)
            return all(pipe.execute())

        return bool(self.guard.call("set_many", next(iter(mapping)), store, False))

    def get_or_set(self, key: str, default: Callable[[], Any] | Any, ttl: int | None = None) -> Any:
        """The cached value, or `default` (called if callable) stored and returned. No lease."""
        value = self.get(key, MISSING)
        if value is not MISSING:
            return value
        value = default() if callable(default) else default
        self.set(key, value, ttl)
        return value

    def ttl(self, key: str) -> int:
        """Seconds left on `key` (-2 absent, -1 no expiry: a bug, every key has a TTL)."""
        return int(self.guard.call("ttl", key, lambda: self.client.ttl(key), -2))

    # --- pipelined, for event handlers (errors propagate) ---------------------------------------

    def queue_set(self, pipe: redis.client.Pipeline, key: str, value: Any, ttl: int | None = None):
        pipe.set(key, serializer.dumps(value), px=self.ttl_ms(ttl))

    def queue_delete(self, pipe: redis.client.Pipeline, *keys: str) -> None:
        pipe.unlink(*keys)


class WriteThroughCacheStrategy(BaseCacheStrategy):
    """Written from events once the database committed: version-aware, deletes leave tombstones.

    Values are dicts with a monotonic `version`; an older or equal version never replaces what
    the cache holds, and a tombstone (FINAL_VERSION) is never replaced at all.
    """

    def set_if_newer(self, key: str, value: dict[str, Any], ttl: int | None = None) -> bool:
        """Store `value` unless the cache holds the same or a newer `value["version"]`."""
        args = [serializer.dumps(value), int(value["version"]), self.ttl_ms(ttl)]
        return bool(
            self.guard.call("set_if_newer", key, lambda: SET_IF_NEWER(self.client, [key], args), False)
        )

    def queue_set_if_newer(
        self, pipe: redis.client.Pipeline, key: str, value: dict[str, Any], ttl: int | None = None
    ) -> None:
        args = [serializer.dumps(value), int(value["version"]), self.ttl_ms(ttl)]
        SET_IF_NEWER(pipe, [key], args)

    def queue_tombstone(self, pipe: redis.client.Pipeline, key: str, ttl: int | None = None):
        """Mark `key` deleted for good: late or re-delivered older versions can't resurrect it."""
        self.queue_set_if_newer(pipe, key, tombstone(), ttl)


class CacheAsideStrategy(BaseCacheStrategy):
    """Miss -> load -> fill, guarded by a lease so the loader runs once and stale fills are dropped."""

    def get_or_load(self, key: str, loader: Callable[[], T], ttl: int | None = None) -> T:
        """The cached value, or `loader()`'s, filled under a lease.

        N concurrent misses run `loader` once: the others wait (up to CACHE_LEASE_WAIT_SECONDS) for
        the value, then load without caching. If the key is written or deleted while the loader runs,
        the fill is dropped (the loaded value may predate that write), but still returned.
        A tombstone reads as None.
        """
        guard, client = self.guard, self.client

        def read() -> Any:
            raw = guard.call("get", key, lambda: client.get(key), UNAVAILABLE)
            if raw is UNAVAILABLE or raw is None:
                return ABSENT if raw is None else UNAVAILABLE
            if is_lease(raw):
                return LEASED
            value = self.decode(key, raw)
            if value is not MISSING:
                return None if is_tombstone(value) else value
            # Corrupt (already logged): a miss, not a lease to wait for. Drop it unless it was
            # rewritten meanwhile, then read again (and take the lease).
            dropped = guard.call("drop_corrupt", key, lambda: drop_if_holds(client, key, raw), False)
            return RETRY if dropped else LEASED

        def store(lease: Lease, value: T) -> None:
            payload = serializer.dumps(value)
            guard.call("fill", key, lambda: fill_leased(client, lease, payload, self.ttl_ms(ttl)), False)

        return read_through(
            read, lambda: fill_under_lease(guard, key, loader, store), loader, self.record_lookup
        )
