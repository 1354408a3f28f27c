"""Namespace epochs: invalidate every key of a namespace in O(1) by bumping a number.

A namespace's keys carry `v{schema}` (the code's key schema) and, once the namespace has been
bumped, `.{epoch}`: `feed:v1:...` becomes `feed:v1.1:...` and the old keys are never read again
(they expire on their TTL). Each process trusts its copy of the epoch for
CACHE_NAMESPACE_EPOCH_TTL_SECONDS, so another process sees a bump within that bound.

The transition rule (why a bump cannot leave a stale fill behind): while some process still uses
the old epoch, the events it applies write the old keys, so they cannot void a fill of the new key
that read the database before their change committed. So no process stores a fill of a namespace
until every process has switched: a bump records its time on Redis's clock (`bumped_at`, written
before the epoch moves), and a process that sees an epoch counts it `settled` only once that time +
the trust TTL + EPOCH_SETTLE_MARGIN_SECONDS has passed. Until then its reads of the namespace go to
the database. Why that is enough: an event applied with old-epoch keys was built by a process whose
copy was still fresh, i.e. before bumped_at + TTL; it committed before it was built; a fill that
starts after bumped_at + TTL + margin reads the database after that commit, so it holds the change.
An epoch whose bump time is unknown (bumped before this rule existed, or the record lost) settles
the trust TTL + margin after this process first saw it: missing state waits, it never trusts.

Where epochs live: on the events server (EVENTS_REDIS_URL, `noeviction`), with the durable state,
not on the evictable cache: an evicted epoch would read as 0 and revive the keys its bumps
invalidated. With one server for both roles it is that server (which then must not evict:
core/redis_roles.py warns at start).

`NamespaceKeys` is the door: the key builder of a namespace's current epoch, looked up through a
`GuardedRedis` (while Redis fails, the last epoch known is kept: 0 would revive bumped-away keys).
"""

import threading
import time
from typing import NamedTuple

import redis
from django.conf import settings

from core.caching.breaker import RedisBreaker
from core.caching.guarded import GuardedRedis
from core.caching.keys import CacheKeyBuilder
from core.connections import events_client, roles_shared

# Longer than any data TTL: when the epoch key expires, the keys of its epoch are gone too.
EPOCH_TTL_SECONDS = 7 * 24 * 3600
# Beyond the trust TTL: covers the distance between Redis's clock and each process's monotonic
# clock (one round trip) and clock rate drift over a TTL, both far below a second.
EPOCH_SETTLE_MARGIN_SECONDS = 0.5
_registry = CacheKeyBuilder("themoon")

clock = time.monotonic  # this process's clock for copies and settling (a test may replace it)

# The events server's failures, when it is not the cache's, are not the cache's either.
_events_breaker = RedisBreaker()


def epochs_guard(cache_guard: GuardedRedis) -> GuardedRedis:
    """The guarded client of the server holding the epochs: the events server (module docstring);
    `cache_guard` itself when the roles share a server."""
    if roles_shared():
        return cache_guard
    return GuardedRedis(events_client(), _events_breaker)


def epoch_key(namespace: str) -> str:
    # The stored name predates the word "epoch"; it stays, so that a deploy keeps every bump
    # (a lost bump would revive the keys it invalidated).
    return _registry.build("namespace", namespace, "generation")


def bumped_at_key(namespace: str) -> str:
    """Redis time (ms) of the namespace's latest bump: when its transition started."""
    return _registry.build("namespace", namespace, "bumped_at")


class _Copy(NamedTuple):
    epoch: int
    fresh_until: float  # our clock: trust the copy until then
    settled_at: float  # our clock: fills of this epoch may be stored from then on


class NamespaceEpochs:
    """This process's copy of each namespace's epoch, refreshed from Redis when it ages out."""

    def __init__(self) -> None:
        self._known: dict[str, _Copy] = {}
        self._lock = threading.Lock()

    def get(self, client: redis.Redis, namespace: str) -> int:
        """The namespace's epoch, from our copy while fresh, else from Redis (errors raise).

        A refresh is one round trip (the epoch and its bump time, pipelined); a second one reads
        Redis's clock only when we see a bumped epoch for the first time."""
        known = self._known.get(namespace)
        if known is not None and known.fresh_until > clock():
            return known.epoch
        pipe = client.pipeline(transaction=False)
        pipe.get(epoch_key(namespace))
        pipe.get(bumped_at_key(namespace))
        raw, bumped_at = pipe.execute()
        epoch = int(raw) if raw else 0
        if known is not None and known.epoch == epoch:
            since = None  # seen before: it keeps the settling time we gave it
        elif bumped_at is not None:
            seconds, micros = client.time()
            since = (seconds * 1000 + micros // 1000 - int(bumped_at)) / 1000
        else:
            since = None
        self._remember(namespace, epoch, since)
        return epoch

    def fresh(self, namespace: str) -> int | None:
        """Our copy of the epoch while it is fresh, else None (no Redis call)."""
        known = self._known.get(namespace)
        return known.epoch if known is not None and known.fresh_until > clock() else None

    def last_known(self, namespace: str) -> int:
        """The last epoch this process saw, however old (0 if none): for use while Redis fails."""
        known = self._known.get(namespace)
        return known.epoch if known else 0

    def settled(self, namespace: str) -> bool:
        """True once every process uses the epoch we know (see the module docstring): only then
        may a fill of the namespace be stored. False when we know no epoch at all."""
        known = self._known.get(namespace)
        return known is not None and known.settled_at <= clock()

    def bump(self, client: redis.Redis, namespace: str) -> int:
        """Move the namespace to a new epoch; its bump time is recorded first, so no process can
        see the new epoch with an older bump time (it would settle too early)."""
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        pipe = client.pipeline(transaction=False)
        pipe.set(bumped_at_key(namespace), now_ms, ex=EPOCH_TTL_SECONDS)
        pipe.incr(epoch_key(namespace))
        pipe.expire(epoch_key(namespace), EPOCH_TTL_SECONDS)
        epoch = int(pipe.execute()[1])
        self._remember(namespace, epoch, 0.0)
        return epoch

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    def _remember(self, namespace: str, epoch: int, since_bump: float | None) -> None:
        """Keep `epoch`, bumped `since_bump` seconds ago on Redis's clock (None: unknown)."""
        now = clock()
        window = settings.CACHE_NAMESPACE_EPOCH_TTL_SECONDS + EPOCH_SETTLE_MARGIN_SECONDS
        with self._lock:
            known = self._known.get(namespace)
            if since_bump is not None:
                settled_at = now + max(0.0, window - since_bump)
            elif epoch == 0:
                settled_at = now  # never bumped: no transition to wait for
            elif known is not None and known.epoch == epoch:
                settled_at = known.settled_at
            else:
                settled_at = now + window  # first sight, bump time unknown: wait a full window
            fresh_until = now + settings.CACHE_NAMESPACE_EPOCH_TTL_SECONDS
            self._known[namespace] = _Copy(epoch, fresh_until, settled_at)


epochs = NamespaceEpochs()


class NamespaceKeys:
    """Keys of one namespace under its current epoch: `build(*parts)`, `builder()`, `pattern()`,
    and `settled()`: whether fills of the current epoch may be stored yet.

    `epochs_` is the process's epoch copies (a test gives another process's its own)."""

    __slots__ = ("_builders", "epochs", "guard", "namespace", "schema")

    def __init__(
        self, namespace: str, schema: int | str, guard: GuardedRedis, epochs_: NamespaceEpochs | None = None
    ) -> None:
        self.namespace = namespace
        self.schema = schema
        self.guard = guard
        self.epochs = epochs_ if epochs_ is not None else epochs
        self._builders: dict[int, CacheKeyBuilder] = {}  # one per epoch seen

    def epoch(self) -> int:
        """The namespace's current epoch, as this process knows it."""
        epoch = self.epochs.fresh(self.namespace)
        if epoch is None:
            # Through the breaker, so a dead Redis costs one timeout per burst, not one here and
            # one in the call that follows.
            guard = epochs_guard(self.guard)
            epoch = guard.call(
                "epoch",
                self.namespace,
                lambda: self.epochs.get(guard.client, self.namespace),
                self.epochs.last_known(self.namespace),
            )
        return epoch

    def builder(self) -> CacheKeyBuilder:
        """The key builder of the current epoch: build many keys with it on a hot path."""
        epoch = self.epoch()
        builder = self._builders.get(epoch)
        if builder is None:
            schema = self.schema if epoch == 0 else f"{self.schema}.{epoch}"
            builder = self._builders[epoch] = CacheKeyBuilder(self.namespace, schema)
        return builder

    def build(self, *parts: object) -> str:
        return self.builder().build(*parts)

    def pattern(self, suffix: str = "*") -> str:
        """A SCAN pattern over the namespace's current keys: prefix + `suffix` (a glob)."""
        return self.builder().prefix + suffix

    def settled(self) -> bool:
        """True when a fill of the namespace's current epoch may be stored (no process still
        writes the previous epoch's keys). No Redis call: keys were built just before."""
        return self.epochs.settled(self.namespace)
