"""Cache strategies: the one door through which the apps read and write Redis as a cache.

- `BaseCacheStrategy`: namespaced keys (schema + namespace epoch), JSON values, a TTL on every key,
  and graceful degradation through a `GuardedRedis`: with Redis down or slow, reads miss, writes
  are skipped, nothing raises into a request.
- `WriteThroughCacheStrategy`: written from events after the database committed.
- `CacheAsideStrategy`: `get_or_load` / `get_many_or_load`: miss -> load -> fill under a lease in
  the key itself: the loader runs once for N concurrent misses, and a fill that raced a write is
  dropped, never stored.

The invariant (no event, however late, makes a cache serve an older version than the database or
a deleted entity), by construction:
1. Only fills from the database create entries, under a lease taken before the read. An event never
   creates one (`update_if_newer`): over an absent key its only power is none; over a lease or a
   value without a version it deletes it (voids the fill: the next reader fills from the database,
   which already has the change); over a versioned value it is a compare-and-set (an older version
   never overwrites a newer one); a delete writes a FINAL tombstone over a present entry only.
2. So expiry or eviction of any entry or tombstone means "absent", which sends the reader to the
   database: no redelivery horizon and no durable version floor is needed for the caches.
3. A fill whose row does not exist stores no tombstone (a future row would be blocked): nothing,
   or an absent marker (`null`, no version, `negative_ttl`) that any event deletes.
4. No fill is stored while a namespace bump settles (namespaces.py): a process still on the old
   epoch applies events to the old keys and could not void the new key's fill.
5. Stale-while-revalidate (opt-in, `soft_ttl`, swr.py) only changes *when* a present entry is
   refilled: past its soft expiry it is still served, exactly as it is in Redis now (an event
   already applied to it in place), while one reader refreshes it, as a fill under a lease held in
   the entry's own bytes: any event that changes the entry voids the refresh. Tombstones, absent
   markers and leases never carry a soft expiry.

A cache that is both (a post's detail: filled on a miss, updated by events) inherits both.
Methods that take a `pipe` queue commands on a pipeline the caller executes (the stream consumer):
those never swallow errors, because an event must not be acknowledged if its effect failed.
"""

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar

import redis
from django.conf import settings

import core.caching.swr as swr
from core.caching.breaker import RedisBreaker
from core.caching.guarded import GuardedRedis
from core.caching.keys import CacheKeyBuilder
from core.caching.leases import (
    Lease,
    drop_if_holds,
    fill_leased,
    fill_leased_many,
    is_lease,
    new_token,
    queue_read_or_lease,
    release_lease,
    swap_if_holds,
    swap_many_if_holds,
    take_leases,
)
from core.caching.namespaces import NamespaceKeys
from core.caching.read_through import (
    ABSENT,
    BYPASS,
    LEASED,
    RETRY,
    UNAVAILABLE,
    fill_under_lease,
    read_through,
)
from core.caching.scripts import UPDATE_IF_NEWER
from core.caching.serializers import CorruptCacheValue, serializer
from core.caching.ttl import ttl_ms
from core.versions import FINAL_VERSION

logger = logging.getLogger("core.caching")

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

# get_many_or_load reads up to this many keys with SET NX GET (a miss takes its lease in the read).
LEASE_ON_READ_MAX = 4


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


def _never(meta: swr.SoftExpiry) -> bool:
    return False


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
    # Opt-in (entries): small values read many times a second (a feed page's counts) are decoded
    # once per process and the same objects handed out again for the same bytes: deterministic,
    # as a value is a function of its bytes. The values are then SHARED: callers must not change
    # them (copy first). Dropped whole at the bound; one dict per instance, no lock (a dict's get
    # and set are atomic; two threads decoding the same bytes at once store equal values).
    decode_memo_size: int = 0

    def __init__(self, client: redis.Redis | None = None, breaker_: RedisBreaker | None = None):
        self.guard = GuardedRedis(client, breaker_)
        self.keys = NamespaceKeys(self.namespace, self.schema, self.guard)
        self._decoded: dict[bytes, tuple[Any, swr.SoftExpiry | None]] | None = (
            {} if self.decode_memo_size > 0 else None
        )

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
        """Bytes from Redis to a value, or MISSING for absent, leased or corrupt entries. A soft
        expiry stored with the value (swr.py) is not part of it."""
        return self.decode_entry(key, raw)[0]

    def decode_entry(self, key: str, raw: bytes | None) -> tuple[Any, swr.SoftExpiry | None]:
        """(`decode`'s value, the soft expiry stored with it or None)."""
        if raw is None or is_lease(raw):
            return MISSING, None
        memo = self._decoded
        if memo is not None and (found := memo.get(raw)) is not None:
            return found
        try:
            found = swr.split(serializer.loads(raw))
        except CorruptCacheValue as exc:
            logger.warning("corrupt cache entry read as a miss: key=%s error=%s", key, exc)
            return MISSING, None
        if memo is not None:
            if len(memo) >= self.decode_memo_size:
                memo.clear()
            memo[raw] = found
        return found

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
    """Updated from events once the database committed: present versioned entries only.

    Values are dicts with a monotonic `version`. An event updates an entry that holds an older
    version, leaves a same, newer or FINAL (tombstone) one alone, deletes a lease or an unversioned
    value (voiding a fill in flight), and never creates an entry (see the module docstring).
    """

    def update_if_newer(self, key: str, value: dict[str, Any], ttl: int | None = None) -> int:
        """Apply an event's `value` to `key`: 1 updated, 0 left alone (absent, or the same or a
        newer version there), -1 voided (a lease or an unversioned value deleted). 0 on failure."""
        args = [serializer.dumps(value), int(value["version"]), self.ttl_ms(ttl)]
        return int(
            self.guard.call("update_if_newer", key, lambda: UPDATE_IF_NEWER(self.client, [key], args), 0)
        )

    def queue_update_if_newer(
        self, pipe: redis.client.Pipeline, key: str, value: dict[str, Any], ttl: int | None = None
    ) -> None:
        """Queue `update_if_newer` (its outcome comes back from `pipe.execute()`)."""
        args = [serializer.dumps(value), int(value["version"]), self.ttl_ms(ttl)]
        UPDATE_IF_NEWER(pipe, [key], args)

    def queue_tombstone(self, pipe: redis.client.Pipeline, key: str, ttl: int | None = None):
        """Mark a present `key` deleted for good (FINAL: late older versions can't resurrect it);
        an absent key stays absent (the next reader finds the row gone in the database)."""
        self.queue_update_if_newer(pipe, key, tombstone(), ttl)


class CacheAsideStrategy(BaseCacheStrategy):
    """Miss -> load -> fill, guarded by a lease so the loader runs once and stale fills are dropped.

    `negative_ttl`: seconds a fill that found no row keeps an absent marker (`null`, no version:
    any event about the key deletes it); None stores nothing for a missing row.

    `soft_ttl` (opt-in, seconds, below the TTL): stale-while-revalidate (swr.py). A dict filled
    more than `soft_ttl` ago is still served while one reader refreshes it; `xfetch_beta` (None:
    CACHE_SWR_BETA) scales how early, by the last load's time, a refresh may come. Off for every
    strategy with CACHE_SWR_ENABLED=false. `clock` (wall seconds) and `rng` can be set on an
    instance so that tests drive them.
    """

    negative_ttl: int | None = None
    soft_ttl: float | None = None
    xfetch_beta: float | None = None
    clock: Callable[[], float] = staticmethod(time.time)
    rng: random.Random = random.Random()  # shared: random() is thread-safe

    def swr_enabled(self) -> bool:
        return self.soft_ttl is not None and settings.CACHE_SWR_ENABLED

    def refresh_due(self, meta: swr.SoftExpiry | None) -> bool:
        """Whether an entry with this soft expiry should be refreshed by this read (XFetch)."""
        return meta is not None and self.refresh_rule()(meta)

    def refresh_rule(self) -> Callable[[swr.SoftExpiry], bool]:
        """`refresh_due` for a batch of entries read together: the settings, the clock and beta
        read once (per entry, they were most of a 20-entry read's decoding time)."""
        if not self.swr_enabled():
            return _never
        beta = self.beta()
        now_ms, rng, due = self.clock() * 1000, self.rng, swr.due
        return lambda meta: due(meta, now_ms, beta, rng)

    def beta(self) -> float:
        """XFetch's beta for this strategy: `xfetch_beta`, else CACHE_SWR_BETA."""
        return settings.CACHE_SWR_BETA if self.xfetch_beta is None else self.xfetch_beta

    def refresh_quiet_until(self, metas: Iterable[swr.SoftExpiry | None]) -> float:
        """The wall time (ms, by `clock`) before which `refresh_due` is false for every one of
        `metas` whatever the draws (swr.quiet_until; an entry without a soft expiry never is due);
        infinity with stale-while-revalidate off."""
        if not self.swr_enabled():
            return math.inf
        beta = self.beta()
        return min((swr.quiet_until(meta, beta) for meta in metas if meta is not None), default=math.inf)

    def claim_refresh(self, value: dict, meta: swr.SoftExpiry) -> bytes:
        """The bytes that claim an entry for a refresh: its value with our lease in it."""
        until = (self.clock() + settings.CACHE_LEASE_SECONDS) * 1000
        return serializer.dumps(swr.claimed(value, meta, until))

    def timed(self, loader: Callable[..., T], *args: Any) -> tuple[T, float]:
        """`loader(*args)` and how long it took (seconds, by `clock`): a fill's XFetch delta."""
        started = self.clock()
        value = loader(*args)
        return value, max(0.0, self.clock() - started)

    def get_or_load(
        self, key: str, loader: Callable[[], T], ttl: int | None = None, read: Any = MISSING
    ) -> T:
        """The cached value, or `loader()`'s, filled under a lease. `read`: the key's bytes (or
        None), already read by the caller in a round trip of its own (e.g. one MGET of a post's
        keys), or UNAVAILABLE when that read failed; only a read again (after a wait) goes to Redis.

        N concurrent misses run `loader` once: the others wait (up to CACHE_LEASE_WAIT_SECONDS) for
        the value, then load without caching. If the key is written or deleted while the loader runs,
        the fill is dropped (the loaded value may predate that write), but still returned.
        A tombstone reads as None. While a namespace bump settles, misses load without filling.
        With a `soft_ttl`, the one reader that claims an entry due for a refresh loads and returns
        the source's value (and fills it unless an event changed the entry meanwhile); the others
        are served the entry as it is.
        """
        guard, client = self.guard, self.client
        load_seconds = 0.0
        refreshed = False
        given = read

        def timed_loader() -> T:
            nonlocal load_seconds
            value, load_seconds = self.timed(loader)
            return value

        def read_key() -> Any:
            nonlocal refreshed, given
            if given is not MISSING:
                raw, given = given, MISSING
            else:
                raw = guard.call("get", key, lambda: client.get(key), UNAVAILABLE)
            if raw is UNAVAILABLE:
                return UNAVAILABLE
            if raw is None:
                return ABSENT if self.keys.settled() else BYPASS
            if is_lease(raw):
                return LEASED
            value, meta = self.decode_entry(key, raw)
            if value is not MISSING:
                if is_tombstone(value):
                    return None
                if not self.refresh_due(meta) or not self.keys.settled():
                    return value
                fresh = self.refresh(key, raw, value, meta, loader, ttl)
                refreshed = fresh is not MISSING and fresh is not RETRY
                return value if fresh is MISSING else fresh
            # Corrupt (already logged): a miss, not a lease to wait for. Drop it unless it was
            # rewritten meanwhile, then read again (and take the lease).
            dropped = guard.call("drop_corrupt", key, lambda: drop_if_holds(client, key, raw), False)
            return RETRY if dropped else LEASED

        def store(lease: Lease, value: T) -> None:
            payload, ttl_ms_ = self.fill_payload(value, ttl, load_seconds)
            if payload is None:
                guard.call("release", key, lambda: release_lease(client, lease), False)
            else:
                guard.call("fill", key, lambda: fill_leased(client, lease, payload, ttl_ms_), False)

        return read_through(
            read_key,
            lambda: fill_under_lease(guard, key, timed_loader, store),
            loader,
            lambda hit: self.record_lookup(hit and not refreshed),
        )

    def refresh(
        self,
        key: str,
        raw: bytes,
        value: dict,
        meta: swr.SoftExpiry,
        loader: Callable[[], T],
        ttl: int | None,
    ) -> Any:
        """Refresh the entry we read as `raw`: claim it (its bytes become our lease), load, fill if
        still claimed. The loaded value; RETRY if the entry changed before we claimed it; MISSING
        when Redis failed (serve what we read). A loader that raises gives the entry back."""
        guard, client = self.guard, self.client
        marked = self.claim_refresh(value, meta)
        claimed = guard.call("claim_refresh", key, lambda: swap_if_holds(client, key, raw, marked), None)
        if claimed is None:
            return MISSING
        if not claimed:
            return RETRY
        try:
            fresh, load_seconds = self.timed(loader)
        except BaseException:
            guard.call("unclaim_refresh", key, lambda: swap_if_holds(client, key, marked, raw), False)
            raise
        lease = Lease(key, marked)  # an event since the claim replaced these bytes: fill dropped
        payload, ttl_ms_ = self.fill_payload(fresh, ttl, load_seconds)
        if payload is None:
            guard.call("release", key, lambda: release_lease(client, lease), False)
        else:
            guard.call("refill", key, lambda: fill_leased(client, lease, payload, ttl_ms_), False)
        return fresh

    def get_many_or_load(
        self,
        keys: Mapping[K, str],
        loader: Callable[[list[K]], Mapping[K, Any]],
        ttl: int | None = None,
        read: Mapping[K, bytes | None] | None = None,
    ) -> dict[K, Any]:
        """{id: value} for every id of `keys` ({id: key}): cached, or loaded by one `loader(ids)`
        call for all the misses ({id: value}, missing rows left out) and filled under leases.
        `read`: the bytes of some of those keys, already read by the caller in an earlier round
        trip of its own (a feed page's counts read with the page); only the others are fetched.

        A hit costs one pipelined round trip; misses add two (take the leases, fill the ones still
        leased), with the one load between; one when at most LEASE_ON_READ_MAX keys are read (each
        read takes its key's lease: SET NX GET). A missing row or a tombstone reads as None. A key that
        holds someone else's lease, an absent marker or a corrupt value is loaded, not filled.
        With a `soft_ttl`, entries due for a refresh that this call claims (one more round trip)
        are loaded with the misses and refilled unless an event changed them meanwhile.
        """
        ids = list(keys)
        if not ids:
            return {}
        guard, client, first = self.guard, self.client, keys[ids[0]]

        wanted = [ident for ident in ids if ident not in read] if read else ids
        # A few keys (a page's new posts, its counts read with it): each read takes its lease when
        # the key is absent (SET NX GET), so a miss costs no lease round trip of its own. Many (a
        # cold page): one MGET, far less to pack and parse, and the leases after.
        lease_on_read = 0 < len(wanted) <= LEASE_ON_READ_MAX and self.keys.settled()
        leases: dict[str, Lease] = {}

        def fetch() -> list[bytes | None]:
            if not wanted:
                return []
            if lease_on_read:
                taken = [Lease(keys[ident], new_token()) for ident in wanted]
                pipe = client.pipeline(transaction=False)
                for lease in taken:
                    queue_read_or_lease(pipe, lease)
                raws = pipe.execute()
                leases.update(
                    (lease.key, lease) for lease, raw in zip(taken, raws, strict=True) if raw is None
                )
                return raws
            if isinstance(client, redis.Redis):  # one server: one MGET (far less to pack and parse)
                return client.mget([keys[ident] for ident in wanted])
            pipe = client.pipeline(transaction=False)  # a cluster: the keys span slots
            for ident in wanted:
                pipe.get(keys[ident])
            return pipe.execute()

        raws = guard.call("get_many", first, fetch, None)
        if raws is not None and read:
            fetched = dict(zip(wanted, raws, strict=True))
            raws = [read[ident] if ident in read else fetched[ident] for ident in ids]
        if raws is None:  # Redis unavailable: the source answers alone, nothing is stored
            self.record_lookups(0, len(ids))
            loaded = loader(ids)
            return {ident: loaded.get(ident) for ident in ids}
        found: dict[K, Any] = {}
        absent: list[K] = []
        unusable: list[K] = []
        due: list[tuple[K, bytes, bytes]] = []  # (id, raw read, bytes that claim its refresh)
        decode, refresh_due = self.decode_entry, self.refresh_rule()
        for ident, raw in zip(ids, raws, strict=True):
            if raw is None:
                absent.append(ident)
                continue
            value, meta = (MISSING, None) if is_lease(raw) else decode(keys[ident], raw)
            if value is MISSING or value is None:
                unusable.append(ident)
            elif is_tombstone(value):
                found[ident] = None
            else:
                found[ident] = value
                if meta is not None and refresh_due(meta):
                    due.append((ident, raw, self.claim_refresh(value, meta)))
        settled = bool(absent or due) and self.keys.settled()
        unleased = [keys[ident] for ident in absent if keys[ident] not in leases]
        if unleased and settled:
            leases.update(guard.call("lease_many", first, lambda: take_leases(client, unleased), {}))
        refreshing: dict[K, bytes] = {}
        if due and settled:
            swaps = [(keys[ident], raw, marked) for ident, raw, marked in due]
            claimed = guard.call("claim_many", first, lambda: swap_many_if_holds(client, swaps), [])
            refreshing = {ident: marked for (ident, _, marked), won in zip(due, claimed, strict=False) if won}
            for ident in refreshing:
                del found[ident]
        to_load = absent + unusable + list(refreshing)
        self.record_lookups(len(found), len(to_load))
        if not to_load:
            return found
        try:
            loaded, load_seconds = self.timed(loader, to_load)
        except BaseException:
            fills = [(lease, None, 0) for lease in leases.values()]
            guard.call("release_many", first, lambda: fill_leased_many(client, fills), [])
            unclaims = [(keys[ident], marked, raw) for ident, raw, marked in due if ident in refreshing]
            guard.call("unclaim_many", first, lambda: swap_many_if_holds(client, unclaims), [])
            raise
        fills = []
        for ident in absent:
            lease = leases.get(keys[ident])
            if lease is not None:
                fills.append((lease, *self.fill_payload(loaded.get(ident), ttl, load_seconds)))
        for ident, marked in refreshing.items():
            lease = Lease(keys[ident], marked)
            fills.append((lease, *self.fill_payload(loaded.get(ident), ttl, load_seconds)))
        if fills:
            guard.call("fill_many", first, lambda: fill_leased_many(client, fills), [])
        return {**found, **{ident: loaded.get(ident) for ident in to_load}}

    def fill_payload(
        self, value: Any, ttl: int | None = None, load_seconds: float = 0.0
    ) -> tuple[bytes | None, int]:
        """What a fill stores for a loaded `value`, and for how long (ms): None (nothing) or an
        absent marker for a missing row (`negative_ttl`), never a tombstone. With a `soft_ttl`, a
        dict is stored with its soft expiry and `load_seconds` (the XFetch delta)."""
        if value is None:
            if self.negative_ttl is None:
                return None, 0
            return serializer.dumps(None), self.ttl_ms(self.negative_ttl)
        ttl_ms_ = self.ttl_ms(ttl)
        if type(value) is dict and not is_tombstone(value) and self.swr_enabled():
            soft_ms = min(ttl_ms(self.soft_ttl), ttl_ms_)
            value = swr.stamped(value, self.clock() * 1000 + soft_ms, load_seconds * 1000)
        return serializer.dumps(value), ttl_ms_
