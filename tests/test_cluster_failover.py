"""A consumer survives `kill -9` of a master holding a stream partition (issue 15 item 4).

Without CLUSTER_FAILOVER_NODES it starts a private 6-node cluster (3 masters + 3 replicas,
cluster-node-timeout 2000 ms; tests/clusters.py) on free loopback ports and stops it after.
CLUSTER_FAILOVER_NODES (comma-separated host:port) names a disposable cluster instead; never one
anyone else uses. The test kills one master, waits for its replica's promotion, then restarts the
killed node (from its own config file) as a replica.
"""

import contextlib
import os
import signal
import subprocess
import threading
import time

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from core.events import Event, EventHandler, HandlerRegistry
from core.events.streams import EVENT_FIELD, domain_streams, partition_of
from tests.clusters import PrivateCluster, cluster_state_ok
from workers.consumer import StreamConsumer

pytestmark = pytest.mark.standalone_only  # it builds its own cluster; make test-cluster has one already
PARTITIONS = 8
# From the kill: cluster-node-timeout (2 s) + election (~1 s) + the consumer's backoff (<= 5 s).
RESUME_BOUND_SECONDS = 15.0


class _ProbeHandler(EventHandler):
    """probe.set: SET the probe key of the event's entity (idempotent)."""

    event_types = ("probe.set",)
    app_label = "tests"

    def apply(self, pipe, event: Event) -> None:
        pipe.set(_probe_key(event.data["entity"]), event.data["value"], ex=600)


def _probe_key(entity: int) -> str:
    return f"failover:{{probe:{entity}}}"


@pytest.fixture(scope="module")
def cluster_nodes(tmp_path_factory):
    """CLUSTER_FAILOVER_NODES, or a private cluster started for this module (always stopped)."""
    named = os.environ.get("CLUSTER_FAILOVER_NODES", "")
    if named:
        yield named
        return
    cluster = PrivateCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster.startup_nodes()
    finally:
        cluster.stop()


def _cluster(nodes: str) -> RedisCluster:
    startup = [ClusterNode(*part.split(":")) for part in nodes.split(",")]
    return RedisCluster(startup_nodes=startup, socket_timeout=2.0, socket_connect_timeout=0.3)


def _write(client: RedisCluster, streams: list[str], entity: int, value: str, deadline: float) -> None:
    """XADD one probe event to its entity's partition, retrying through the failover (what the
    outbox relay does for a commit whose send failed)."""
    event = Event("probe.set", 1, {"entity": entity, "value": value})
    stream = streams[partition_of(entity, len(streams))]
    while True:
        try:
            client.xadd(stream, {EVENT_FIELD: event.encode()})
            return
        except (redis.RedisError, redis.exceptions.RedisClusterException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _values(client: RedisCluster, entities) -> dict[int, bytes | None]:
    out = {}
    for entity in entities:
        try:
            out[entity] = client.get(_probe_key(entity))
        except (redis.RedisError, redis.exceptions.RedisClusterException):
            out[entity] = None
    return out


def _wait_applied(client, expected: dict[int, str], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        values = _values(client, expected)
        if all(values[e] == v.encode() for e, v in expected.items()):
            return time.monotonic() - started
        time.sleep(0.1)
    missing = {e: v for e, v in _values(client, expected).items() if v != expected[e].encode()}
    raise AssertionError(f"{len(missing)} events never reached the cache: {sorted(missing)[:10]}")


def test_consumer_survives_kill_of_a_partition_master(transactional_db, settings, cluster_nodes):
    settings.EVENTS_STREAM_PARTITIONS = PARTITIONS
    settings.EVENTS_CLAIM_IDLE_MS = 60_000
    client = _cluster(cluster_nodes)
    streams = domain_streams("feed")
    for stream in streams:
        client.delete(stream)
    handlers = HandlerRegistry()
    handlers.register(_ProbeHandler())
    consumer = StreamConsumer(name="failover", client=client, handlers=handlers, streams=streams)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    entities = range(64)
    try:
        before = {e: f"before-{e}" for e in entities}
        for entity, value in before.items():
            _write(client, streams, entity, value, time.monotonic() + 5)
        _wait_applied(client, before, timeout=10)
        time.sleep(0.5)  # let the replicas catch up (asynchronous replication)

        victim_stream = streams[3]
        victim = client.nodes_manager.get_node_from_slot(key_slot(victim_stream.encode()))
        info = client.get_redis_connection(victim).info("server")
        config_file = info["config_file"]
        os.kill(int(info["process_id"]), signal.SIGKILL)
        killed_at = time.monotonic()

        after = {e: f"after-{e}" for e in entities}
        for entity, value in after.items():
            _write(client, streams, entity, value, killed_at + RESUME_BOUND_SECONDS)
        waited = _wait_applied(client, after, timeout=RESUME_BOUND_SECONDS)
        resumed = time.monotonic() - killed_at
        assert thread.is_alive(), "the consumer thread survived"
        assert resumed < RESUME_BOUND_SECONDS, f"resumed {resumed:.1f}s after the kill (waited {waited:.1f}s)"
        promoted = client.nodes_manager.get_node_from_slot(key_slot(victim_stream.encode()))
        assert promoted.name != victim.name, "the partition moved to the promoted replica"
        print(f"consumer resumed {resumed:.1f}s after kill -9 of {victim.name}")
    finally:
        consumer.stop()
        thread.join(timeout=10)
        if "config_file" in locals():
            subprocess.run(["redis-server", config_file], check=False)  # back, as a replica
            _wait_cluster_ok(victim)
        for stream in streams:
            with contextlib.suppress(redis.RedisError):
                client.delete(stream)


def _wait_cluster_ok(node: ClusterNode, timeout: float = 20.0) -> None:
    """Until the restarted node is back in a cluster whose slots are all served."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = redis.Redis(node.host, node.port, socket_timeout=1).execute_command("CLUSTER INFO")
            if cluster_state_ok(info):  # redis-py answers a dict: str() of it never matched
                return
        except redis.RedisError:
            pass
        time.sleep(0.2)
