"""Administrative view of the cache: health, statistics, namespace-wide invalidation.

INFO, DBSIZE and SCAN are per server: on a cluster they go to every primary and are summed."""

import logging
from typing import Any

import redis

from core.caching.keys import CacheKeyBuilder
from core.caching.namespaces import epochs
from core.caching.strategies import stats
from core.connections import UNAVAILABLE, cache_client, events_client, primaries

logger = logging.getLogger("core.caching")

_SCAN_COUNT = 1000


class CacheManager:
    def __init__(self, client: redis.Redis | None = None) -> None:
        self._client = client

    @property
    def client(self) -> redis.Redis:
        return self._client if self._client is not None else cache_client()

    def health_check(self) -> bool:
        """True when Redis answers a PING; never raises."""
        try:
            return all(node.ping() for node in primaries(self.client))
        except (redis.RedisError, *UNAVAILABLE) as exc:
            logger.warning("cache health check failed: %s", exc)
            return False

    def get_stats(self) -> dict[str, Any]:
        """Memory, key counts (total and per namespace, by SCAN) and this process's hits/misses."""
        nodes = primaries(self.client)
        infos = [node.info("memory") for node in nodes]
        per_namespace: dict[str, int] = {}
        for node in nodes:
            for key in node.scan_iter(count=_SCAN_COUNT):
                namespace = key.split(b":", 1)[0].decode(errors="replace")
                per_namespace[namespace] = per_namespace.get(namespace, 0) + 1
        used_memory = sum(info["used_memory"] for info in infos)
        return {
            "used_memory": used_memory,
            "used_memory_human": (
                infos[0].get("used_memory_human") if len(infos) == 1 else _human(used_memory)
            ),
            "total_keys": sum(node.dbsize() for node in nodes),
            "keys_per_namespace": dict(sorted(per_namespace.items())),
            "requests_per_namespace": stats.snapshot(),
        }

    def clear_namespace(self, namespace: str) -> int:
        """UNLINK every key of `namespace` (every schema and epoch), by SCAN: never KEYS. Returns the count.
        Raises ValueError for a namespace that is not a plain name (a glob would match others)."""
        CacheKeyBuilder(namespace)  # validates: letters, digits, '_', '.', '-'
        removed = 0
        for node in primaries(self.client):
            batch: list[bytes] = []
            for key in node.scan_iter(match=f"{namespace}:*", count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _SCAN_COUNT:
                    removed += _unlink(node, batch)
                    batch.clear()
            if batch:
                removed += _unlink(node, batch)
        logger.info("cleared namespace %s: %d keys", namespace, removed)
        return removed

    def bump_namespace(self, namespace: str) -> int:
        """Invalidate a whole namespace in O(1): its keys move to a new epoch. Returns the epoch.

        Until every process has switched (the trust TTL + a margin after the bump), no fill of the
        namespace is stored: its reads go to the database (`NamespaceKeys.settled`)."""
        # On the events server, where epochs live (core.caching.namespaces), unless given a client.
        epoch = epochs.bump(self._client if self._client is not None else events_client(), namespace)
        logger.info("namespace %s bumped to epoch %d", namespace, epoch)
        return epoch


def _unlink(node: redis.Redis, keys: list[bytes]) -> int:
    """UNLINK keys of one server, one command per key pipelined (keys of many slots)."""
    pipe = node.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(pipe.execute())


def _human(size: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.2f}{unit}" if unit != "B" else f"{size}B"
        size /= 1024
    return f"{size:.2f}G"
