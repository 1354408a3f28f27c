"""The caching library: keys, serializer, strategies, manager, and the parts a domain cache builds
on (guarded Redis calls, leases, the read-through loop, Lua scripts). Import from here.

Extension API for an app's own cache:
- `GuardedRedis`: a client behind the circuit breaker; `call(op, key, fn, fallback)` never raises.
- `NamespaceKeys`: a namespace's keys under its current epoch (what every strategy uses).
- leases: `take_lease` / `release_lease` / `fill_leased` (SET NX PX token, compare-and-delete,
  fill-if-still-leased), their batch forms `take_leases` / `fill_leased_many` (one pipeline
  each), `queue_release` (a release queued on a pipeline), `is_lease`, `new_token`, `Lease`.
- `read_through(read, fill, load, record)` with its states (`ABSENT`, `LEASED`, `UNAVAILABLE`,
  `BYPASS`, `RETRY`) and `fill_under_lease`: the one miss/lease/wait loop.
- `LuaScript.load(name, directory, prelude)`: a `.lua` file run by EVALSHA (NOSCRIPT retried,
  pipelines included).
- `MISSING`: what `BaseCacheStrategy.decode` returns for an absent, leased or corrupt entry.
- stale-while-revalidate (`CacheAsideStrategy.soft_ttl`): `SoftExpiry`, `split_soft_expiry` (a
  decoded entry without the soft expiry stored with it), `swap_if_holds` / `swap_many_if_holds`.
"""

from core.caching.breaker import RedisBreaker, breaker
from core.caching.guarded import GuardedRedis
from core.caching.keys import CacheKeyBuilder, HashTag
from core.caching.leases import (
    LEASE_PREFIX,
    Lease,
    drop_if_holds,
    fill_leased,
    fill_leased_many,
    is_lease,
    new_token,
    queue_release,
    release_lease,
    swap_if_holds,
    swap_many_if_holds,
    take_lease,
    take_leases,
)
from core.caching.manager import CacheManager
from core.caching.namespaces import NamespaceKeys, epoch_key, epochs
from core.caching.read_through import (
    ABSENT,
    BYPASS,
    LEASED,
    RETRY,
    UNAVAILABLE,
    fill_under_lease,
    read_through,
)
from core.caching.scripts import LuaScript
from core.caching.serializers import CacheSerializer, CorruptCacheValue, serializer
from core.caching.strategies import (
    FINAL_VERSION,
    MISSING,
    BaseCacheStrategy,
    CacheAsideStrategy,
    WriteThroughCacheStrategy,
    is_tombstone,
    stats,
    tombstone,
)
from core.caching.swr import SoftExpiry
from core.caching.swr import split as split_soft_expiry
from core.caching.ttl import ttl_ms

__all__ = [
    "ABSENT",
    "BYPASS",
    "FINAL_VERSION",
    "LEASED",
    "LEASE_PREFIX",
    "MISSING",
    "RETRY",
    "UNAVAILABLE",
    "BaseCacheStrategy",
    "CacheAsideStrategy",
    "CacheKeyBuilder",
    "CacheManager",
    "CacheSerializer",
    "CorruptCacheValue",
    "GuardedRedis",
    "HashTag",
    "Lease",
    "LuaScript",
    "NamespaceKeys",
    "RedisBreaker",
    "SoftExpiry",
    "WriteThroughCacheStrategy",
    "breaker",
    "drop_if_holds",
    "epoch_key",
    "epochs",
    "fill_leased",
    "fill_leased_many",
    "fill_under_lease",
    "is_lease",
    "is_tombstone",
    "new_token",
    "queue_release",
    "read_through",
    "release_lease",
    "serializer",
    "split_soft_expiry",
    "stats",
    "swap_if_holds",
    "swap_many_if_holds",
    "take_lease",
    "take_leases",
    "tombstone",
    "ttl_ms",
]
