"""A batch (`core.pipelines.Batch`) on a real Redis Cluster: one plain pipeline per master, results in
queued order, and the slot map's changes (a migrated slot: MOVED; a slot mid-migration: ASK; a
replica promoted: MOVED from the old master) followed without losing or reordering a command. Then
the consumer on top of it: a failing effect is retried and dead-lettered, and nothing whose effects
did not reach Redis is acknowledged.

Each module run starts a private 6-node cluster (`tests.clusters.PrivateCluster`, 3 masters + 3
replicas) on free loopback ports, since the tests move slots and fail masters over; it is stopped
after. Evidence of routing comes from the servers themselves (INFO commandstats / errorstats), not
from the client.
"""

import time

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode
from redis.crc import key_slot
from redis.retry import Retry

from core.caching.scripts import LuaScript
from core.connections import ClusterRedis
from core.events import Event, EventHandler, HandlerRegistry, dead_letter_stream
from core.events.streams import EVENT_FIELD, domain_streams, partition_of
from tests.clusters import PrivateCluster
from workers.consumer import StreamConsumer

pytestmark = pytest.mark.standalone_only  # it builds its own cluster; make test-cluster has one already

# Idempotent, as everything a batch carries must be (a NOSCRIPT replay runs the node's group again).
SET_GET = LuaScript(
    "pipelines_test_set_get", "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"
)


def _until(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
def cluster_ports(tmp_path_factory):
    """The ports of a private 3+3 cluster (`tests.clusters.PrivateCluster`), replicas in sync."""
    private = PrivateCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield list(private.ports)
    finally:
        private.stop()


@pytest.fixture
def cluster(cluster_ports):
    """A fresh product cluster client (its own slot map) on the private cluster, which is emptied."""
    client = ClusterRedis(
        startup_nodes=[ClusterNode("127.0.0.1", port) for port in cluster_ports[:3]],
        socket_timeout=1.0,
        socket_connect_timeout=0.5,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),  # the worker's (core.connections)
    )
    for node in client.get_primaries():
        connection = client.get_redis_connection(node)
        connection.flushall()
        connection.config_resetstat()
    yield client
    client.close()


def _masters(client: ClusterRedis) -> dict[str, redis.Redis]:
    """Each master's own plain client, by node name, as the servers see it (CLUSTER NODES)."""
    any_node = client.get_redis_connection(client.get_primaries()[0])
    masters = {}
    for address, node in any_node.cluster("nodes").items():
        if "master" in node["flags"] and node["slots"]:
            host, port = address.split("@")[0].rsplit(":", 1)
            masters[f"{host}:{port}"] = redis.Redis(host, int(port))
    return masters


def _node_id(connection: redis.Redis) -> str:
    return connection.cluster("myid").decode()


def _owned(connection: redis.Redis) -> list[tuple[int, int]]:
    """The slot ranges `connection`'s node serves, as it sees itself (CLUSTER SLOTS)."""
    me = connection.cluster("myid")
    return [
        (start, end)
        for start, end, primary, *_ in connection.execute_command("CLUSTER SLOTS")
        if primary[2] == me
    ]


def _owns(connection: redis.Redis, slot: int) -> bool:
    return any(start <= slot <= end for start, end in _owned(connection))


def _tag_on(masters: dict[str, redis.Redis], name: str, prefix: str) -> str:
    """A hash tag `prefix-N` whose slot `name` serves."""
    ranges = _owned(masters[name])
    for n in range(100_000):
        tag = f"{prefix}-{n}"
        slot = key_slot(tag.encode())
        if any(start <= slot <= end for start, end in ranges):
            return tag
    raise AssertionError(f"no tag on {name}")


def _stat(connection: redis.Redis, section: str, name: str, field: str = "calls") -> int:
    """A counter of INFO commandstats/errorstats (0 when absent)."""
    entry = connection.info(section).get(name)
    return int(entry[field] if isinstance(entry, dict) else 0) if entry else 0


def _getkeys_calls(connection: redis.Redis) -> int:
    stats = connection.info("commandstats")
    return sum(int(value["calls"]) for name, value in stats.items() if name.startswith("cmdstat_command"))


def _migrate_slot(masters: dict[str, redis.Redis], slot: int, source: str, target: str, finish: bool = True):
    """Move `slot` from `source` to `target` for real: IMPORTING/MIGRATING, MIGRATE its keys, then
    (finish) SETSLOT NODE on every master. Without `finish`, the slot stays mid-migration."""
    src, dst = masters[source], masters[target]
    dst.cluster("setslot", slot, "importing", _node_id(src))
    src.cluster("setslot", slot, "migrating", _node_id(dst))
    if finish:
        _move_keys(src, dst, slot)
        for connection in (dst, src, *[c for n, c in masters.items() if n not in (source, target)]):
            connection.cluster("setslot", slot, "node", _node_id(dst))
        _until(lambda: _owns(masters[target], slot), f"slot {slot} on {target}")


def _move_keys(src: redis.Redis, dst: redis.Redis, slot: int, keys=None) -> None:
    host, port = dst.connection_pool.connection_kwargs["host"], dst.connection_pool.connection_kwargs["port"]
    keys = keys if keys is not None else src.cluster("getkeysinslot", slot, 1000)
    if keys:
        src.migrate(host, port, list(keys), 0, 5000)


def _fail_over_to(replica: redis.Redis, attempts: int = 5) -> None:
    """CLUSTER FAILOVER (coordinated: the old master becomes its replica). A manual failover that
    did not complete in time (a loaded machine) is abandoned by the nodes, so ask again."""
    for _ in range(attempts):
        replica.cluster("failover")
        try:
            _until(lambda: replica.info("replication")["role"] == "master", "promoted", timeout=8)
            return
        except AssertionError:
            continue
    raise AssertionError("the replica was never promoted")


# --- the batch --------------------------------------------------------------------------------


def test_a_batch_over_every_master_goes_to_each_owner_in_queued_order(cluster):
    masters = _masters(cluster)
    assert len(masters) == 3
    tags = {name: _tag_on(masters, name, "all") for name in masters}
    getkeys_before = {name: _getkeys_calls(c) for name, c in masters.items()}
    pipe = cluster.pipeline(transaction=False)
    expected = []
    for round_ in range(3):
        for tag in tags.values():
            pipe.rpush(f"t:{{{tag}}}:list", f"{round_}")
            expected.append(round_ + 1)
            SET_GET(pipe, [f"t:{{{tag}}}:s"], [round_])  # EVALSHA, queued like any other command
            expected.append(f"{round_}".encode())
            pipe.zadd(f"t:{{{tag}}}:z1", {f"m{round_}": round_})
            expected.append(1)
            pipe.zunionstore(f"t:{{{tag}}}:zu", [f"t:{{{tag}}}:z1"])  # movable keys: GETKEYS elsewhere
            expected.append(round_ + 1)
    for tag in tags.values():
        pipe.lrange(f"t:{{{tag}}}:list", 0, -1)
        expected.append([b"0", b"1", b"2"])
        pipe.incr(f"t:{{{tag}}}:list")  # WRONGTYPE: an error in its place, the rest unaffected
        expected.append(redis.ResponseError)
    assert len(pipe) == len(expected)
    cluster.script_load(SET_GET.source)  # on every primary

    results = pipe.execute(raise_on_error=False)

    assert len(pipe) == 0
    for result, want in zip(results, expected, strict=True):
        if want is redis.ResponseError:
            assert isinstance(result, redis.ResponseError)
            assert "WRONGTYPE" in str(result)
        else:
            assert result == want
    for name, connection in masters.items():
        tag = tags[name]
        assert connection.lrange(f"t:{{{tag}}}:list", 0, -1) == [b"0", b"1", b"2"]  # on its owner
        assert _stat(connection, "commandstats", "cmdstat_rpush") == 3, f"{name} got its commands only"
        assert _stat(connection, "errorstats", "errorstat_MOVED") == 0, "no redirect: sent to owners"
        assert _getkeys_calls(connection) == getkeys_before[name], "no COMMAND GETKEYS round trips"


def test_a_batch_reloads_scripts_a_master_forgot(cluster):
    masters = _masters(cluster)
    tags = {name: _tag_on(masters, name, "noscript") for name in masters}
    cluster.script_load(SET_GET.source)
    forgetful = next(iter(masters))
    masters[forgetful].script_flush()
    pipe = cluster.pipeline(transaction=False)
    for tag in tags.values():
        pipe.set(f"t:{{{tag}}}:plain", "p")
        SET_GET(pipe, [f"t:{{{tag}}}:s"], ["v"])
    assert pipe.execute() == [True, b"v"] * 3
    assert _stat(masters[forgetful], "errorstats", "errorstat_NOSCRIPT", "count") >= 1, "it really forgot"
    assert all(masters[forgetful].script_exists(SET_GET.sha))


def test_a_batch_follows_a_slot_migrated_after_the_map_was_read(cluster):
    masters = _masters(cluster)
    source, target, other = list(masters)
    tag = _tag_on(masters, source, "moved")
    slot = key_slot(tag.encode())
    bystander = _tag_on(masters, other, "bystander")
    warm = cluster.pipeline(transaction=False)
    warm.rpush(f"t:{{{tag}}}", "old")
    warm.set(f"t:{{{bystander}}}", 1)
    assert warm.execute() == [1, True]  # the client's map (and the batch's memo) say: source

    _migrate_slot(masters, slot, source, target)

    pipe = cluster.pipeline(transaction=False)
    pipe.rpush(f"t:{{{tag}}}", "a")
    pipe.incr(f"t:{{{bystander}}}")
    pipe.rpush(f"t:{{{tag}}}", "b")
    pipe.lrange(f"t:{{{tag}}}", 0, -1)
    assert pipe.execute() == [2, 2, 3, [b"old", b"a", b"b"]]  # per-key order kept across the redirect
    moved = _stat(masters[source], "errorstats", "errorstat_MOVED", "count")
    assert moved >= 1, "the source really answered MOVED"
    assert masters[target].lrange(f"t:{{{tag}}}", 0, -1) == [b"old", b"a", b"b"]

    again = cluster.pipeline(transaction=False)
    again.rpush(f"t:{{{tag}}}", "c")
    assert again.execute() == [4]
    assert _stat(masters[source], "errorstats", "errorstat_MOVED", "count") == moved, "the map was refreshed"


def test_a_batch_into_a_slot_mid_migration_follows_ask(cluster):
    masters = _masters(cluster)
    source, target, _ = list(masters)
    tag = _tag_on(masters, source, "asked")
    slot = key_slot(tag.encode())
    moved_key, staying_key, new_key = f"t:{{{tag}}}:moved", f"t:{{{tag}}}:stays", f"t:{{{tag}}}:new"
    setup = cluster.pipeline(transaction=False)
    setup.set(moved_key, "there")
    setup.set(staying_key, 5)
    setup.execute()
    _migrate_slot(masters, slot, source, target, finish=False)
    _move_keys(masters[source], masters[target], slot, keys=[moved_key])
    try:
        pipe = cluster.pipeline(transaction=False)
        pipe.append(moved_key, "!")  # on the target now: ASK
        pipe.incr(staying_key)  # still on the source: served there
        pipe.set(new_key, "x")  # absent from the source: ASK
        pipe.get(moved_key)
        assert pipe.execute() == [6, 6, True, b"there!"]
        assert _stat(masters[source], "errorstats", "errorstat_ASK", "count") >= 2, "really redirected"
    finally:  # finish the migration
        _move_keys(masters[source], masters[target], slot)
        for connection in masters.values():
            connection.cluster("setslot", slot, "node", _node_id(masters[target]))
    asking = masters[target]
    assert [asking.get(new_key), asking.get(moved_key), asking.get(staying_key)] == [b"x", b"there!", b"6"]


def test_a_batch_follows_a_failover_to_the_replica(cluster, cluster_ports):
    masters = _masters(cluster)
    victim = next(iter(masters))
    tag = _tag_on(masters, victim, "failover")
    key = f"t:{{{tag}}}"
    warm = cluster.pipeline(transaction=False)
    warm.set(key, 1)
    warm.execute()
    info = masters[victim].info("replication")
    replica = redis.Redis(info["slave0"]["ip"], int(info["slave0"]["port"]))
    _until(lambda: replica.info("replication")["master_repl_offset"] >= info["master_repl_offset"], "synced")
    _fail_over_to(replica)
    _until(lambda: masters[victim].info("replication")["role"] == "slave", "the old master stepped down")

    pipe = cluster.pipeline(transaction=False)
    pipe.incr(key)
    pipe.incr(key)
    assert pipe.execute() == [2, 3]
    assert _stat(masters[victim], "errorstats", "errorstat_MOVED", "count") >= 1, "the old master redirected"
    assert replica.get(key) == b"3"


# --- the consumer on top of it -----------------------------------------------------------------


class _Probe(EventHandler):
    """probe.set SETs its entity's key; probe.wrongtype queues a command Redis refuses; probe.raise
    raises after queuing (its commands are discarded)."""

    event_types = ("probe.set", "probe.wrongtype", "probe.raise")
    app_label = "tests"

    def apply(self, pipe, event: Event) -> None:
        key = f"probe:{{e{event.data['entity']}}}"
        if event.type == "probe.wrongtype":
            pipe.set(key, "string")
            pipe.lpush(key, "x")  # WRONGTYPE
        elif event.type == "probe.raise":
            pipe.set(key, "half-applied")
            raise RuntimeError("handler bug")
        else:
            pipe.set(key, event.data["value"], ex=600)


def _consumer(cluster, streams, settings) -> StreamConsumer:
    handlers = HandlerRegistry()
    handlers.register(_Probe())
    consumer = StreamConsumer(name="pipelines", client=cluster, handlers=handlers, streams=streams)
    consumer.ensure_groups()
    return consumer


def _publish(cluster, streams, events) -> None:
    for event in events:
        stream = streams[partition_of(event.data["entity"], len(streams))]
        cluster.xadd(stream, {EVENT_FIELD: event.encode()})


def _pending(cluster, streams, group) -> int:
    return sum(cluster.xpending(stream, group)["pending"] for stream in streams)


def test_the_consumer_dead_letters_failed_effects_and_acks_the_rest(cluster, settings):
    settings.EVENTS_STREAM_PARTITIONS = 8
    settings.EVENTS_MAX_DELIVERIES = 2
    streams = domain_streams("feed")
    consumer = _consumer(cluster, streams, settings)
    masters = _masters(cluster)
    entities = list(range(40))
    assert len({cluster.get_node_from_key(f"probe:{{e{e}}}").name for e in entities}) == 3, "every master"
    events = [Event("probe.set", 1, {"entity": e, "value": f"v{e}"}) for e in entities]
    events += [Event("probe.wrongtype", 1, {"entity": 100}), Event("probe.raise", 1, {"entity": 101})]
    _publish(cluster, streams, events)

    assert consumer.process(consumer.read(pending=False)) == 2  # two failed: pending, to retry
    assert _pending(cluster, streams, consumer.group) == 2
    assert cluster.get("probe:{e101}") is None, "a raising handler's queued commands were discarded"
    assert consumer.process(consumer.read(pending=True)) == 0  # second delivery: dead-lettered
    assert _pending(cluster, streams, consumer.group) == 0

    dead = {fields[b"event_id"].decode(): fields for _, fields in cluster.xrange(dead_letter_stream())}
    assert set(dead) == {events[-2].id, events[-1].id}
    assert b"WRONGTYPE" in dead[events[-2].id][b"error"]
    assert b"handler bug" in dead[events[-1].id][b"error"]
    assert [cluster.get(f"probe:{{e{e}}}") for e in entities] == [f"v{e}".encode() for e in entities]
    assert sum(_stat(c, "commandstats", "cmdstat_set") for c in masters.values()) >= len(entities)


def test_the_consumer_acknowledges_nothing_while_a_master_cannot_apply(cluster, settings):
    settings.EVENTS_STREAM_PARTITIONS = 8
    streams = domain_streams("feed")
    consumer = _consumer(cluster, streams, settings)
    masters = _masters(cluster)
    entities = list(range(30))
    _publish(cluster, streams, [Event("probe.set", 1, {"entity": e, "value": "v"}) for e in entities])
    entries = consumer.read(pending=False)
    assert len(entries) == len(entities)
    stalled = cluster.get_node_from_key("probe:{e0}").name
    masters[stalled].client_pause(60_000, all=False)  # WRITE pause: its SETs never answer in time
    try:
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            consumer.process(entries)
        assert _pending(cluster, streams, consumer.group) == len(entities), "nothing acknowledged"
    finally:
        masters[stalled].client_unpause()
    assert consumer.process(consumer.read(pending=True)) == 0
    assert _pending(cluster, streams, consumer.group) == 0
    assert all(cluster.get(f"probe:{{e{e}}}") == b"v" for e in entities)
