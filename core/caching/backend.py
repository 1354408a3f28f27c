"""django-redis on Redis Cluster: django-redis has no cluster client (its factory hands redis-py a
`connection_pool`, which `RedisCluster` refuses), so `ClusterConnectionFactory` builds the product's
cluster client (`core.connections.cluster_client`) and `CacheClient` reads many keys without a
cross-slot MGET. On a standalone Redis `CacheClient` is django-redis's `DefaultClient` unchanged.
"""

from typing import Any

from django_redis.client import DefaultClient
from django_redis.exceptions import ConnectionInterrupted
from django_redis.pool import ConnectionFactory
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from core.connections import UNAVAILABLE, cluster_client


class ClusterConnectionFactory(ConnectionFactory):
    """CACHES OPTIONS["CONNECTION_FACTORY"] under REDIS_CLUSTER: one cluster client per LOCATION."""

    def connect(self, url: str) -> RedisCluster:
        pool_kwargs = self.options.get("CONNECTION_POOL_KWARGS", {})
        return cluster_client(
            url,
            socket_timeout=self.options.get("SOCKET_TIMEOUT"),
            socket_connect_timeout=self.options.get("SOCKET_CONNECT_TIMEOUT"),
            # Try once, as on one Redis: redis-py's default of 10 cluster retries made a request
            # pay ~3 s at a hung master. A failed call still refreshes the slot map, so the next
            # one (after the breaker's backoff) goes to a promoted replica.
            retry=Retry(NoBackoff(), 0),
            **pool_kwargs,
        )

    def disconnect(self, connection: RedisCluster) -> None:
        connection.close()


class CacheClient(DefaultClient):
    """DefaultClient whose `get_many` is one pipelined GET per key on a cluster (keys of many slots)."""

    def get_many(self, keys, version: int | None = None, client=None) -> dict:
        if client is None:
            try:
                client = self.get_client(write=False)
            except UNAVAILABLE as exc:
                raise ConnectionInterrupted(connection=None) from exc
        if not isinstance(client, RedisCluster):
            return super().get_many(keys, version=version, client=client)
        if not keys:
            return {}
        map_keys = {self.make_key(key, version=version): key for key in keys}
        pipe = client.pipeline(transaction=False)
        for key in map_keys:
            pipe.get(key)
        try:
            values = pipe.execute()
        except UNAVAILABLE as exc:
            raise ConnectionInterrupted(connection=client) from exc
        found: dict[Any, Any] = {}
        for key, value in zip(map_keys, values, strict=True):
            if value is not None:
                found[map_keys[key]] = self.decode(value)
        return found
