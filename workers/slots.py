"""Single-slot commands on a Redis Cluster, sent straight to the node that serves their slot.

Why not `RedisCluster` itself: for an XREADGROUP it asks its "default node" for the keys (`COMMAND
GETKEYS`, a round trip per read, ~2.7x the consumer's CPU per event) outside its retry path, and it
never replaces a dead default node, so a consumer never recovered from that master's death. Here
the slot is computed locally (CRC16 of the hash tag), the commands of one node go in one plain
pipeline (one round trip per node, every command single-slot), and any failure (a dead node, MOVED,
CLUSTERDOWN) marks the topology stale: the next call asks the surviving nodes for it again.
"""

import logging
from collections.abc import Callable, Sequence

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError

logger = logging.getLogger("workers.consumer")

# Answers that mean "the slot map you used is wrong": refresh it.
TOPOLOGY_ERRORS = (AskError, ClusterDownError, TryAgainError)  # AskError covers MovedError

Command = tuple[str, Callable[[redis.client.Pipeline], None]]


def is_cluster(client) -> bool:
    return isinstance(client, RedisCluster)


class SlotRouter:
    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.stale = False

    def refresh(self) -> None:
        """Ask the reachable nodes for the slot map (raises redis.ConnectionError if none answers)."""
        try:
            self.cluster.nodes_manager.initialize()
        except RedisClusterException as exc:  # not a RedisError: say "unreachable" to the caller
            raise redis.ConnectionError(f"cluster topology refresh failed: {exc}") from exc
        self.stale = False

    def slot_of(self, key: str) -> int:
        return key_slot(key.encode())

    def groups(self, keys: Sequence[str]) -> dict[str, tuple[redis.Redis, list[int]]]:
        """Positions of `keys` grouped by the primary serving each key's slot."""
        if self.stale:
            self.refresh()
        manager = self.cluster.nodes_manager
        grouped: dict[str, tuple[redis.Redis, list[int]]] = {}
        for index, key in enumerate(keys):
            try:
                node = manager.get_node_from_slot(self.slot_of(key))
            except RedisClusterException as exc:  # SlotNotCoveredError: mid-failover
                self.stale = True
                raise redis.ConnectionError(f"slot of {key} not covered: {exc}") from exc
            if node.name not in grouped:
                grouped[node.name] = (self.cluster.get_redis_connection(node), [])
            grouped[node.name][1].append(index)
        return grouped

    def execute(self, commands: Sequence[Command]) -> list:
        """Run each `(key, queue)` (queue puts ONE command about `key` on a pipeline): one
        pipeline per node. Returns each command's result, or the exception it met (a node's
        connection error stands for all of its commands); other nodes' commands still ran."""
        results: list = [None] * len(commands)
        for name, (connection, positions) in self.groups([key for key, _ in commands]).items():
            pipe = connection.pipeline(transaction=False)
            for position in positions:
                commands[position][1](pipe)
            try:
                answers = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                logger.warning("cluster node %s failed (%s): refreshing the slot map", name, exc)
                self.stale = True
                answers = [exc] * len(positions)
            for position, answer in zip(positions, answers, strict=True):
                if isinstance(answer, TOPOLOGY_ERRORS):
                    self.stale = True
                results[position] = answer
        return results
