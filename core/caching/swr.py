"""Stale-while-revalidate: the soft expiry stored with a cache-aside value, and when to refresh it.

A fill of a strategy with a `soft_ttl` stores its value (a dict) with one reserved field,
`_swr: {"soft": ms, "delta": ms}`: the wall-clock time (ms) past which the entry is due for a
refresh, and how long its load took. Until the hard TTL (the key's PX) the entry is still served;
one reader refreshes it (XFetch, Vattani et al., VLDB 2015): it is due when

    now - delta * beta * ln(random()) >= soft

so an entry whose load is slow is refreshed a little early, with a probability that grows as its
soft expiry nears, and N readers rarely all find it due at once. The reader that finds it due
claims it with a compare-and-swap of the exact bytes it read into the same value plus its lease
(`lease`, `until`): readers that see a live lease serve the entry as it is; an event that updates
or tombstones the entry replaces those bytes, and so voids the refresh (its fill is dropped).

An entry without `_swr` (written before, or by an event, or by a strategy without a soft TTL) is
served as it is until its hard TTL. Tombstones, absent markers (`null`) and leases never carry it.
"""

import math
import random
import uuid
from typing import Any, NamedTuple

FIELD = "_swr"


class SoftExpiry(NamedTuple):
    """What an entry carries: its soft expiry and last load time (ms), and a refresh lease if any."""

    soft: float
    delta: float
    lease: str | None = None
    until: float = 0.0


def split(value: Any) -> tuple[Any, SoftExpiry | None]:
    """(the value without the reserved field, its SoftExpiry or None). A malformed field is
    dropped and read as no soft expiry (the entry is then served until its hard TTL).

    The field is popped from `value` itself: pass a value just decoded, which nobody else holds
    (a copy per entry was a sixth of a hot feed read's counts)."""
    if type(value) is not dict or FIELD not in value:
        return value, None
    meta = value.pop(FIELD)
    try:
        return value, SoftExpiry(
            float(meta["soft"]), float(meta["delta"]), meta.get("lease"), float(meta.get("until", 0))
        )
    except (TypeError, KeyError, ValueError):
        return value, None


def stamped(value: dict, soft_ms: float, delta_ms: float) -> dict:
    """`value` (not changed) with its soft expiry, as a fill stores it."""
    return {**value, FIELD: {"soft": round(soft_ms), "delta": round(delta_ms)}}


def claimed(value: dict, meta: SoftExpiry, until_ms: float) -> dict:
    """`value` with its soft expiry and a fresh refresh lease valid until `until_ms`."""
    lease = {"lease": uuid.uuid4().hex, "until": round(until_ms)}
    return {**value, FIELD: {"soft": round(meta.soft), "delta": round(meta.delta), **lease}}


def due(meta: SoftExpiry, now_ms: float, beta: float, rng: random.Random) -> bool:
    """XFetch: past the soft expiry, or early with a probability set by delta and beta (0: never
    early). A live refresh lease makes it not due: someone is refreshing it."""
    if meta.lease is not None and meta.until > now_ms:
        return False
    if now_ms >= meta.soft:
        return True
    if beta <= 0 or meta.delta <= 0:
        return False
    return now_ms - meta.delta * beta * math.log(1.0 - rng.random()) >= meta.soft


# XFetch's early term is delta * beta * -ln(1 - random()), and random() is below 1 by at least
# 2**-53: the term never exceeds 53 * ln 2 (36.74) times delta * beta. 37: that, rounded up.
QUIET_MARGIN = 37.0


def quiet_until(meta: SoftExpiry, beta: float) -> float:
    """The wall time (ms) before which `due(meta, now, beta, rng)` is false whatever `rng` draws:
    an early refresh comes at most QUIET_MARGIN * delta * beta before the soft expiry, and a live
    refresh lease holds it off until its `until`. For a reader that skips the check on entries
    whose bytes it read before (feed.selectors' served pages)."""
    early = meta.delta * beta * QUIET_MARGIN if beta > 0 and meta.delta > 0 else 0.0
    quiet = meta.soft - early
    if meta.lease is not None:
        quiet = max(quiet, meta.until)
    return quiet
