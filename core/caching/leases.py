"""The one lease: a token written with SET NX PX, released by compare-and-delete, expiring on its own.

A lease is stored either in the key it guards (a cache-aside fill: the token sits where the value
will go, so any write or delete meanwhile replaces it and voids the fill), in the value it refreshes
(stale-while-revalidate: the exact bytes of the claimed entry are the token, see swr.py), or in a
key of its own (a lock: a feed page's fill, a beat task's single flight). A token of the first and
last kinds starts with `LEASE_PREFIX`, which is not JSON, so no reader can take a lease for a
value (`is_lease`).

These functions raise Redis errors; callers on a request path run them through a `GuardedRedis`.
"""

import uuid
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import redis
from django.conf import settings

from core.caching.scripts import FILL_IF_LEASED, RELEASE_IF_HOLDS, LuaScript
from core.caching.ttl import ttl_ms

LEASE_PREFIX = b"\x00lease:"

SWAP_IF_HOLDS = LuaScript.load("swap_if_holds")


class Lease(NamedTuple):
    """A lease we hold: the key it lives in and our token there."""

    key: str
    token: bytes


def new_token() -> bytes:
    """A fresh, unique lease token."""
    return LEASE_PREFIX + uuid.uuid4().hex.encode()


def is_lease(raw: bytes | None) -> bool:
    """True when bytes read from Redis are a lease (someone is filling), not a value."""
    return raw is not None and raw.startswith(LEASE_PREFIX)


def take_lease(
    client: redis.Redis, key: str, seconds: float | None = None, token: bytes | None = None
) -> Lease | None:
    """The lease on `key` (for `seconds`, CACHE_LEASE_SECONDS by default), or None if the key is
    taken (someone else's lease, or a value)."""
    lease = Lease(key, token or new_token())
    ms = ttl_ms(settings.CACHE_LEASE_SECONDS if seconds is None else seconds)
    return lease if client.set(key, lease.token, nx=True, px=ms) else None


def queue_read_or_lease(pipe, lease: Lease, seconds: float | None = None) -> None:
    """Queue SET NX GET on the lease's key: its answer is the key's bytes (a value or someone's
    lease: nothing written), or None when the key was absent and `lease` is now ours. A read and
    a `take_lease` in one command (Redis 7.0 and later)."""
    ms = ttl_ms(settings.CACHE_LEASE_SECONDS if seconds is None else seconds)
    pipe.set(lease.key, lease.token, nx=True, px=ms, get=True)


def release_lease(client: redis.Redis, lease: Lease) -> bool:
    """Drop `lease` if it is still ours (never someone else's lease or a value written since)."""
    return bool(queue_release(client, lease))


def queue_release(pipe, lease: Lease) -> object:
    """`release_lease` on a client, or queued on a pipeline (its answer then comes from execute)."""
    return RELEASE_IF_HOLDS(pipe, [lease.key], [lease.token])


def fill_leased(client: redis.Redis, lease: Lease, payload: bytes, ttl_milliseconds: int) -> bool:
    """Replace our lease in its key by `payload`, only while the lease is still there: a write or
    delete since we took it wins (the loaded value may predate it). True if filled."""
    return bool(FILL_IF_LEASED(client, [lease.key], [lease.token, payload, ttl_milliseconds]))


def drop_if_holds(client: redis.Redis, key: str, raw: bytes) -> bool:
    """Delete `key` if it still holds exactly `raw` (e.g. bytes judged corrupt), else leave it."""
    return bool(RELEASE_IF_HOLDS(client, [key], [raw]))


def swap_if_holds(client: redis.Redis, key: str, expected: bytes, replacement: bytes) -> bool:
    """Replace `key`'s value by `replacement` (its TTL kept) only while it still holds exactly
    `expected`: how a refresh claims an entry it read (and gives it back). True if swapped."""
    return bool(SWAP_IF_HOLDS(client, [key], [expected, replacement]))


def swap_many_if_holds(client: redis.Redis, swaps: Sequence[tuple[str, bytes, bytes]]) -> list[bool]:
    """`swap_if_holds` for each (key, expected, replacement), one round trip."""
    if not swaps:
        return []
    pipe = client.pipeline(transaction=False)
    for key, expected, replacement in swaps:
        SWAP_IF_HOLDS(pipe, [key], [expected, replacement])
    return [bool(done) for done in pipe.execute()]


def take_leases(client: redis.Redis, keys: Iterable[str], seconds: float | None = None) -> dict[str, Lease]:
    """Leases on those of `keys` that are absent (a batch fill's first step), one round trip:
    {key: lease} for the keys we got; a key holding a value or someone's lease is left out."""
    ms = ttl_ms(settings.CACHE_LEASE_SECONDS if seconds is None else seconds)
    leases = [Lease(key, new_token()) for key in keys]
    if not leases:
        return {}
    pipe = client.pipeline(transaction=False)
    for lease in leases:
        pipe.set(lease.key, lease.token, nx=True, px=ms)
    return {lease.key: lease for lease, taken in zip(leases, pipe.execute(), strict=True) if taken}


def fill_leased_many(client: redis.Redis, fills: Sequence[tuple[Lease, bytes | None, int]]) -> list[bool]:
    """`fill_leased` for each (lease, payload, ttl ms), one round trip; a payload of None releases
    the lease instead (nothing to store). Per fill: True if stored."""
    if not fills:
        return []
    pipe = client.pipeline(transaction=False)
    for lease, payload, ttl_milliseconds in fills:
        if payload is None:
            queue_release(pipe, lease)
        else:
            FILL_IF_LEASED(pipe, [lease.key], [lease.token, payload, ttl_milliseconds])
    outcomes = pipe.execute()
    return [bool(done) and payload is not None for (_, payload, _), done in zip(fills, outcomes, strict=True)]
