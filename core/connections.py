"""The Redis clients every part shares, by role.

Two roles, possibly on two servers (README, "Redis roles"):
- the cache (`REDIS_URL`): evictable entries, may run `allkeys-lru`;
- the events server (`EVENTS_REDIS_URL`, default: the same server): streams, consumer groups, dead
  letters, consumer heartbeats and outbox sent marks, the durable state that must never be evicted.

The events server holds all the durable state the pipeline has; nothing a cache needs is durable:
an event's only power over an absent cache key is none, over a present one compare-and-set, so no
redelivery horizon or per-entity version floor has to outlive anything (the caches' docstrings).

When both roles name the same server, `events_client()` *is* `cache_client()`, so the commit-time
round trip stays one pipeline. `stream_client()` is the events server again, with a read timeout
that outlives XREADGROUP's BLOCK (the consumer's blocking reads and its acknowledgements).

`REDIS_CLUSTER=true` makes every one of these a Redis Cluster client (`ClusterRedis`): the URL names
one startup node, `REDIS_CLUSTER_NODES` more; database numbers do not apply (no SELECT on a
cluster). The clients are built on first use, and a cluster of which no node answers raises
`redis.ConnectionError` (not redis-py's `RedisClusterException`), so callers degrade exactly as
with a standalone Redis down; `UNAVAILABLE` is what they catch. On both kinds,
`pipeline(transaction=False)` returns a `core.pipelines.Batch` (we track what we queued).
"""

import time
from functools import cache
from urllib.parse import unquote, urlsplit

import redis
from django.conf import settings
from django_redis import get_redis_connection
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from core.pipelines import Batch, run_one

# What "Redis is unreachable" looks like, on one Redis or a cluster (a cluster client that lost
# every node raises RedisClusterException, which is not a RedisError).
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, RedisClusterException)


class StandaloneRedis(redis.Redis):
    """redis.Redis whose non-transactional pipelines are `Batch`es, and whose every command is sent
    as a batch of one (`core.pipelines.run_one`): redis-py's packing, parsing, callbacks and retry,
    without its per-call bookkeeping, which cost ~30 us of a hot read's ~120 us MGET."""

    def pipeline(self, transaction=True, shard_hint=None):
        if transaction:
            return super().pipeline(transaction, shard_hint)
        return Batch(self)

    def execute_command(self, *args, **options):
        if self.connection is not None:  # a single-connection client: redis-py's own locking
            return super().execute_command(*args, **options)
        return run_one(self, args, options)


class ClusterRedis(RedisCluster):
    """RedisCluster whose non-transactional pipelines are `Batch`es (per-node, EVALSHA allowed)."""

    def pipeline(self, transaction=None, shard_hint=None):
        if transaction:
            return super().pipeline(transaction, shard_hint)
        return Batch(self)


def cluster_enabled() -> bool:
    return settings.REDIS_CLUSTER


def startup_nodes(url: str) -> list[ClusterNode]:
    """The node `url` names, then REDIS_CLUSTER_NODES (`host:port`, comma-separated), no duplicates."""
    parts = urlsplit(url)
    nodes = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
    for item in settings.REDIS_CLUSTER_NODES:
        host, _, port = item.rpartition(":")
        nodes.append((host.strip("[]") or "127.0.0.1", int(port)))
    return [ClusterNode(host, port) for host, port in dict.fromkeys(nodes)]


def cluster_client(url: str, **kwargs) -> ClusterRedis:
    """A cluster client bootstrapped from `url` (credentials from it; its database number ignored).
    Raises redis.ConnectionError when no startup node answers."""
    parts = urlsplit(url)
    if parts.username:
        kwargs.setdefault("username", unquote(parts.username))
    if parts.password:
        kwargs.setdefault("password", unquote(parts.password))
    if parts.scheme == "rediss":
        kwargs.setdefault("ssl", True)
    try:
        return ClusterRedis(startup_nodes=startup_nodes(url), **kwargs)
    except RedisClusterException as exc:
        raise redis.ConnectionError(f"no Redis Cluster node answers at {url}: {exc}") from exc


def client_for(url: str, **kwargs) -> redis.Redis | ClusterRedis:
    """A client of the configured kind (standalone or cluster) for `url`."""
    if cluster_enabled():
        return cluster_client(url, **kwargs)
    return StandaloneRedis.from_url(url, **kwargs)


def primaries(client: redis.Redis | RedisCluster) -> list[redis.Redis]:
    """One plain client per primary: every node of a cluster that holds slots, or the client itself.
    For the commands that are per server (INFO, DBSIZE, SCAN, FLUSHALL)."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def roles_shared() -> bool:
    """True when the cache and the events live on one server (one pipeline can carry both)."""
    return settings.EVENTS_REDIS_URL == settings.REDIS_URL


class Unreachable:
    """Stands in for a client that could not be built (no cluster node answered): every use raises
    redis.ConnectionError, so the callers' breakers and fallbacks handle it as Redis down."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str):
        raise redis.ConnectionError(f"redis unreachable: {self.error}")


_unreachable: list = [0.0, None]  # [until (monotonic), Unreachable]: no rebuild attempt before then


def cache_client() -> redis.Redis:
    """django-redis's client for CACHES['default']: short socket timeouts, one shared pool.
    Looked up once per process (the lookup costs more than a cached read's Python side). While it
    cannot be built (a cluster of which no node answers), an `Unreachable`, retried after the
    breaker's backoff."""
    if _unreachable[1] is not None and time.monotonic() < _unreachable[0]:
        return _unreachable[1]
    try:
        client = _cache_client()
    except UNAVAILABLE as exc:
        _unreachable[:] = [time.monotonic() + settings.CACHE_FAILURE_BACKOFF_SECONDS, Unreachable(exc)]
        return _unreachable[1]
    _unreachable[1] = None
    return client


def forget_unreachable() -> None:
    """Try to build the cache client on the next use, whatever the backoff says (tests)."""
    _unreachable[1] = None


@cache
def _cache_client() -> redis.Redis:
    return get_redis_connection("default")


def events_client() -> redis.Redis:
    """The events server for publishing (XADD, sent marks) and the outbox relay: the cache's
    short timeouts. The cache client itself when the roles share a server."""
    if roles_shared():
        return cache_client()
    return _short_client(settings.EVENTS_REDIS_URL)


@cache
def _short_client(url: str) -> redis.Redis:
    return client_for(
        url,
        socket_connect_timeout=settings.REDIS_SOCKET_CONNECT_TIMEOUT,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        max_connections=settings.CACHES["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"]["max_connections"],
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )


def stream_client() -> redis.Redis:
    """The events server, with a read timeout that outlives XREADGROUP's BLOCK: the consumer."""
    return _long_client(settings.EVENTS_REDIS_URL)


def worker_cache_client() -> redis.Redis:
    """The cache, for the consumer's batches of effects: the stream client's patient timeouts (a
    500-event pipeline is not a 0.25 s request read). The stream client itself when shared."""
    return _long_client(settings.REDIS_URL)


@cache
def _long_client(url: str) -> redis.Redis:
    block_seconds = settings.EVENTS_BLOCK_MS / 1000
    return client_for(
        url,
        socket_connect_timeout=max(settings.REDIS_SOCKET_CONNECT_TIMEOUT, 0.5),
        socket_timeout=block_seconds + 5,
        health_check_interval=30,
        # One quick retry, not redis-py 8's ten with backoff (~3 s): the consumer has its own
        # backoff, and an operator's `manage.py streams` should fail fast.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
