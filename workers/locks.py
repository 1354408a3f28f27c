"""A Redis lock so that two beats, or a run that overlaps the previous one, do the work once."""

import contextlib
import uuid
from collections.abc import Iterator

from core.caching import CacheKeyBuilder
from core.caching.lua import RELEASE_LEASE
from core.connections import cache_client

_keys = CacheKeyBuilder("themoon")


@contextlib.contextmanager
def single_flight(name: str, ttl_seconds: float) -> Iterator[bool]:
    """Yield True if this caller holds the lock `name` (for at most `ttl_seconds`), else False."""
    client = cache_client()
    key = _keys.build("lock", name)
    token = uuid.uuid4().hex.encode()
    acquired = bool(client.set(key, token, nx=True, px=int(ttl_seconds * 1000)))
    try:
        yield acquired
    finally:
        if acquired:
            RELEASE_LEASE(client, [key], [token])
