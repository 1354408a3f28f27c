"""The one read-through loop: read, and on a miss either fill under a lease or wait for whoever is.

Every cache-aside read (a post's detail, counts, a feed page, a conversation window) is this loop
with its own `read` (one guarded round trip, decoded) and `fill` (take the lease, load, store):

- `read()` returns the value, or one of the states below;
- UNAVAILABLE (Redis down): the source answers alone, nothing is stored;
- BYPASS (an entry we cannot use, already logged): the source answers, nothing is stored;
- ABSENT: nobody is filling; `fill()` tries to become the filler and returns the loaded value, or
  LEASED when someone else got there first;
- LEASED: someone else is filling; wait (5 ms steps) up to CACHE_LEASE_WAIT_SECONDS, then load
  without storing, so a stuck filler costs a reader a bounded wait, never an error;
- RETRY: read again at once (e.g. a corrupt entry was just dropped).

`record(hit)` counts each answer once, as a hit or a miss.
"""

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings

from core.caching.guarded import GuardedRedis
from core.caching.leases import Lease, release_lease, take_lease

T = TypeVar("T")


class _State:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<read state {self.name}>"


UNAVAILABLE = _State("unavailable")
BYPASS = _State("bypass")
ABSENT = _State("absent")
LEASED = _State("leased")
RETRY = _State("retry")

WAIT_STEP_SECONDS = 0.005


def read_through(
    read: Callable[[], Any],
    fill: Callable[[], Any],
    load: Callable[[], T],
    record: Callable[[bool], None],
) -> T:
    """The cached value, or the source's (see the module docstring). Raises only what `load` or
    `fill` raise (their loader's errors); Redis trouble is the callers' `read`/`fill` to absorb."""
    deadline = None
    while True:
        value = read()
        if value is RETRY:
            continue
        if value is UNAVAILABLE or value is BYPASS:
            record(False)
            return load()
        if value is ABSENT:
            value = fill()
            if value is not LEASED:
                record(False)
                return value
        elif value is not LEASED:
            record(True)
            return value
        now = time.monotonic()
        if deadline is None:
            deadline = now + settings.CACHE_LEASE_WAIT_SECONDS
        if now >= deadline:
            record(False)
            return load()
        time.sleep(WAIT_STEP_SECONDS)


def fill_under_lease(
    guard: GuardedRedis,
    lease_key: str,
    load: Callable[[], T],
    store: Callable[[Lease, T], object],
) -> Any:
    """Take the lease on `lease_key`, `load()`, then `store(lease, value)` (which fills the key and
    so consumes the lease, or releases it); the loaded value, or LEASED if someone else holds it.
    A loader that raises releases the lease (the next reader loads at once) and propagates."""
    lease = guard.call("lease", lease_key, lambda: take_lease(guard.client, lease_key), None)
    if lease is None:
        return LEASED
    try:
        value = load()
    except BaseException:
        guard.call("release", lease_key, lambda: release_lease(guard.client, lease), False)
        raise
    store(lease, value)
    return value
