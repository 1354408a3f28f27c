"""The caching library: keys, serializer, strategies, manager. Import from here."""

from core.caching.keys import CacheKeyBuilder, HashTag
from core.caching.manager import CacheManager
from core.caching.serializers import CacheSerializer, CorruptCacheValue
from core.caching.strategies import (
    FINAL_VERSION,
    BaseCacheStrategy,
    CacheAsideStrategy,
    WriteThroughCacheStrategy,
    is_tombstone,
)

__all__ = [
    "FINAL_VERSION",
    "BaseCacheStrategy",
    "CacheAsideStrategy",
    "CacheKeyBuilder",
    "CacheManager",
    "CacheSerializer",
    "CorruptCacheValue",
    "HashTag",
    "WriteThroughCacheStrategy",
    "is_tombstone",
]
