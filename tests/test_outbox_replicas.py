"""The outbox relay deletes rows only once a replica has what vouches for them (`WAIT 1`), on a
private 3+3 cluster and on one Redis while a replica is connected: with the stream's replica in
sync it sends and deletes; with that replica stopped (SIGSTOP: it acknowledges nothing) the rows
stay, marked, and once it is back the next pass deletes them without sending them twice. Real
Redis processes, no mocks.
"""

import contextlib
import os
import signal

import pytest
import redis
from django.utils import timezone

from core.connections import events_client
from core.events import relay_pass
from core.events.outbox import fence_key, outbox_rows_before, record, replica_wait_ms, sent_key
from core.events.streams import domain_streams
from core.models import OutboxEvent
from tests.clusters import PrivateCluster
from tests.polling import eventually
from tests.subprocesses import PrivateRedis, free_port

pytestmark = pytest.mark.standalone_only  # it builds its own cluster to stop a replica of


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory):
    cluster = PrivateCluster(tmp_path_factory.mktemp("outbox-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_cluster(private_cluster, settings):
    """The events role on the private cluster (the cache stays where it is): events_client() is a
    cluster client of it."""
    env = private_cluster.env()
    settings.REDIS_CLUSTER = True
    settings.EVENTS_REDIS_URL = env["REDIS_URL"]
    settings.REDIS_CLUSTER_NODES = env["REDIS_CLUSTER_NODES"].split(",")
    settings.EVENTS_REPLICA_WAIT_MS = 100
    client = events_client()
    for port in private_cluster.masters():
        redis.Redis(port=port).flushall()
    return client


@contextlib.contextmanager
def replica_stopped(cluster: PrivateCluster, key: str):
    """SIGSTOP the replica of `key`'s master (it stays connected, acknowledging nothing), SIGCONT
    after; then until every master has its replica in sync again."""
    master = cluster.master_of(key)
    replica = redis.Redis(port=master).info("replication")["slave0"]["port"]
    pid = int(redis.Redis(port=replica).info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        cluster.wait_replicas_online()


def _rows(stream: str, count: int) -> list[int]:
    return [record(stream, f"event-{n}".encode()) for n in range(count)]


@pytest.mark.django_db
def test_the_relay_deletes_rows_a_replica_confirmed(on_cluster):
    stream = domain_streams("feed")[0]
    _rows(stream, 3)
    sent, drained = relay_pass(min_age_seconds=0)
    assert (sent, drained) == (3, True)
    assert not OutboxEvent.objects.exists()
    assert on_cluster.xlen(stream) == 3
    assert on_cluster.exists(fence_key(stream))  # the write the WAIT stood behind
    assert not on_cluster.smembers(sent_key(stream))  # the marks it consumed are gone


@pytest.mark.django_db
def test_the_relay_keeps_rows_no_replica_confirmed_and_sends_them_once(on_cluster, private_cluster):
    streams = domain_streams("feed")
    stream = streams[0]
    ids = _rows(stream, 3)
    with replica_stopped(private_cluster, stream):
        sent, drained = relay_pass(min_age_seconds=0)
        # Sent to the master, but no replica has them: kept, and marked so as not to be sent again.
        assert (sent, drained) == (3, True)
        assert sorted(OutboxEvent.objects.values_list("pk", flat=True)) == ids
        assert {int(member) for member in on_cluster.smembers(sent_key(stream))} == set(ids)
        # Commit-time marks vouch for nothing a replica has not confirmed either: a marked row
        # (its commit sent it) stays too.
        (committed,) = _rows(stream, 1)
        on_cluster.sadd(sent_key(stream), committed)
        assert relay_pass(min_age_seconds=0) == (0, True)
        assert OutboxEvent.objects.filter(pk=committed).exists()
    assert relay_pass(min_age_seconds=0) == (0, True)  # confirmed now: swept, none sent again
    assert not OutboxEvent.objects.exists()
    assert on_cluster.xlen(stream) == 3
    assert not on_cluster.smembers(sent_key(stream))


@pytest.mark.django_db
def test_other_partitions_are_deleted_while_one_waits_for_its_replica(on_cluster, private_cluster, settings):
    settings.EVENTS_STREAM_PARTITIONS = 6
    streams = domain_streams("feed")
    waiting = streams[0]
    others = [s for s in streams if private_cluster.master_of(s) != private_cluster.master_of(waiting)]
    assert others, "every partition of the feed is on one master"
    _rows(waiting, 2)
    kept_apart = _rows(others[0], 2)
    with replica_stopped(private_cluster, waiting):
        # One batch per partition here: the kept one does not hold back the rows after it.
        assert relay_pass(min_age_seconds=0, batch=2) == (4, True)
        assert set(OutboxEvent.objects.values_list("stream", flat=True)) == {waiting}
        # Kept rows are in their streams (marked): a drain after an outage need not wait for them.
        assert not outbox_rows_before(timezone.now())
    assert on_cluster.xlen(others[0]) == len(kept_apart)
    assert relay_pass(min_age_seconds=0) == (0, True)
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_on_one_redis_the_relay_confirms_only_while_a_replica_is_connected(settings, tmp_path):
    master, replica = PrivateRedis(free_port(), tmp_path), PrivateRedis(free_port(), tmp_path)
    master.start()
    replica.start()
    try:
        settings.REDIS_CLUSTER = False
        settings.EVENTS_REDIS_URL = f"redis://127.0.0.1:{master.port}/0"
        settings.EVENTS_REPLICA_WAIT_MS = 100
        client = events_client()
        stream = domain_streams("feed")[0]
        assert replica_wait_ms(client) == 0  # no replica: nothing a promotion could lose
        master.client().config_set("repl-diskless-sync-delay", 0)  # sync now, not in 5 s
        replica.client().replicaof("127.0.0.1", master.port)
        eventually(
            lambda: master.client().info("replication").get("slave0", {}).get("state") == "online", timeout=30
        )
        assert replica_wait_ms(client) == 100
        ids = _rows(stream, 2)
        replica.process.send_signal(signal.SIGSTOP)
        try:
            assert relay_pass(min_age_seconds=0) == (2, True)
            assert sorted(OutboxEvent.objects.values_list("pk", flat=True)) == ids
        finally:
            replica.process.send_signal(signal.SIGCONT)
        eventually(lambda: _in_sync(master.client()), timeout=30)
        assert relay_pass(min_age_seconds=0) == (0, True)
        assert not OutboxEvent.objects.exists()
        assert client.xlen(stream) == 2
    finally:
        replica.stop()
        master.stop()


def _in_sync(master: redis.Redis) -> bool:
    info = master.info("replication")
    replica = info.get("slave0", {})
    return replica.get("state") == "online" and replica.get("offset") == info["master_repl_offset"]
