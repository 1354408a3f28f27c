"""A Redis lock so that two beats, or a run that overlaps the previous one, do the work once."""

import contextlib
from collections.abc import Iterator

from core.caching import CacheKeyBuilder, release_lease, take_lease
from core.connections import cache_client

_keys = CacheKeyBuilder("themoon")


@contextlib.contextmanager
def single_flight(name: str, ttl_seconds: float) -> Iterator[bool]:
    """Yield True if this caller holds the lock `name` (a lease for at most `ttl_seconds`), else
    False. Redis errors propagate: a beat task that cannot tell whether it may run does not run."""
    client = cache_client()
    lease = take_lease(client, _keys.build("lock", name), seconds=ttl_seconds)
    try:
        yield lease is not None
    finally:
        if lease is not None:
            release_lease(client, lease)
