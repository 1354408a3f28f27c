"""BaseCacheStrategy and the version-aware writes: plain ops, bulk ops, TTL on every key, update_if_newer
(events update present entries only, never create one), namespace epochs."""

import time

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from redis.cluster import RedisCluster

from core.caching import (
    FINAL_VERSION,
    BaseCacheStrategy,
    CacheAsideStrategy,
    CacheManager,
    WriteThroughCacheStrategy,
    epoch_key,
    is_tombstone,
    stats,
)
from core.connections import ClusterRedis, startup_nodes
from core.pipelines import Batch


class Things(CacheAsideStrategy, WriteThroughCacheStrategy):
    namespace = "things"
    default_ttl = 120


@pytest.fixture
def things():
    return Things()


def assert_has_ttl(client, key, at_most_seconds):
    pttl = client.pttl(key)
    assert 0 < pttl <= at_most_seconds * 1000, f"{key} has PTTL {pttl}"


def test_set_then_get_returns_the_value(things):
    key = things.key("a", 1)
    assert things.set(key, {"x": [1, 2]}) is True
    assert things.get(key) == {"x": [1, 2]}


def test_get_of_a_missing_key_returns_the_default(things):
    assert things.get(things.key("nope")) is None
    assert things.get(things.key("nope"), "dflt") == "dflt"


def test_a_cached_none_is_a_hit_not_a_miss(things, redis_client):
    key = things.key("null")
    things.set(key, None)
    assert redis_client.get(key) == b"null"
    assert things.get(key, "dflt") is None
    calls = []
    assert things.get_or_set(key, lambda: calls.append(1) or "computed") is None
    assert things.get_or_load(key, lambda: calls.append(1) or "loaded") is None
    assert calls == []


def test_delete_removes_keys_and_counts_them(things):
    a, b, c = things.key("a"), things.key("b"), things.key("c")
    things.set_many({a: 1, b: 2})
    assert things.delete(a, b, c) == 2
    assert things.get(a) is None
    assert things.get(b) is None
    assert things.delete() == 0


def test_get_many_returns_present_keys_only(things):
    present, absent, null = things.key("p"), things.key("absent"), things.key("null")
    things.set(present, {"v": 1})
    things.set(null, None)
    assert things.get_many([present, absent, null]) == {present: {"v": 1}, null: None}
    assert things.get_many([]) == {}


def test_set_many_writes_every_key_with_a_ttl(things, redis_client):
    mapping = {things.key("m", i): {"i": i} for i in range(20)}
    assert things.set_many(mapping, ttl=30) is True
    assert things.get_many(mapping) == mapping
    for key in mapping:
        assert_has_ttl(redis_client, key, 30)
    assert things.set_many({}) is True


def test_get_or_set_stores_the_computed_value_once(things, redis_client):
    key = things.key("gos")
    calls = []
    assert things.get_or_set(key, lambda: calls.append(1) or {"n": 1}, ttl=10) == {"n": 1}
    assert things.get_or_set(key, lambda: calls.append(1) or {"n": 2}, ttl=10) == {"n": 1}
    assert calls == [1]
    assert_has_ttl(redis_client, key, 10)
    other = things.key("gos2")
    assert things.get_or_set(other, "plain") == "plain"  # a non-callable default is stored as is
    assert things.get(other) == "plain"


def test_every_write_path_leaves_a_ttl(things, redis_client):
    """set, set_many, get_or_set, update_if_newer, a tombstone, the cache-aside lease and its fill,
    queued pipeline writes and the django cache door: no key without an expiry."""
    written = {}
    things.set(k := things.key("set"), 1)
    written[k] = 120
    things.set(k := things.key("set-ttl"), 1, ttl=7)
    written[k] = 7
    things.set_many({(k := things.key("many")): 1}, ttl=9)
    written[k] = 9
    things.get_or_set(k := things.key("gos"), 1)
    written[k] = 120
    things.set(k := things.key("newer"), {"version": 0})  # a fill: events update present entries only
    things.update_if_newer(k, {"version": 1}, ttl=11)
    written[k] = 11
    key_seen_during_load = {}

    def loader():
        key_seen_during_load["pttl"] = redis_client.pttl(lease_key)
        return {"filled": True}

    lease_key = things.key("lease")
    things.get_or_load(lease_key, loader, ttl=13)
    written[lease_key] = 13
    pipe = redis_client.pipeline(transaction=False)
    things.queue_set(pipe, k := things.key("queued"), 1, ttl=14)
    written[k] = 14
    things.set(k := things.key("queued-newer"), {"version": 2})
    things.queue_update_if_newer(pipe, k, {"version": 3}, ttl=15)
    written[k] = 15
    things.set(k := things.key("tomb"), {"version": 1})
    things.queue_tombstone(pipe, k, ttl=16)
    written[k] = 16
    pipe.execute()
    caches["default"].set(k := things.key("django"), 1, 17)
    written[k] = 17

    for key, seconds in written.items():
        assert_has_ttl(redis_client, key, seconds)
    # The lease itself expired on its own while the loader ran.
    assert key_seen_during_load["pttl"] > 0
    # And nothing in the database lacks one.
    for key in redis_client.scan_iter(count=1000):
        assert redis_client.pttl(key) > 0, key


def test_non_positive_ttl_is_refused(things):
    with pytest.raises(ValueError, match="positive TTL"):
        things.set(things.key("x"), 1, ttl=0)
    with pytest.raises(ValueError, match="positive TTL"):
        things.set_many({things.key("x"): 1}, ttl=-1)


def test_ttl_reports_seconds_left_and_minus_two_for_absent(things):
    key = things.key("t")
    things.set(key, 1, ttl=50)
    assert 0 < things.ttl(key) <= 50
    assert things.ttl(things.key("absent")) == -2


def test_key_uses_namespace_and_schema():
    class Versioned(BaseCacheStrategy):
        namespace = "vv"
        schema = 3

    assert Versioned().key("a", 1) == "vv:v3:a:1"


# --- update_if_newer: an event's write ---------------------------------------------------------


@pytest.fixture
def through():
    class Through(WriteThroughCacheStrategy):
        namespace = "through"
        default_ttl = 60

    return Through()


def test_update_if_newer_stores_a_newer_version_over_a_present_one(through):
    key = through.key("post", 1)
    through.set(key, {"version": 1, "body": "a"})  # what a fill stored
    assert through.update_if_newer(key, {"version": 2, "body": "b"}) == 1
    assert through.update_if_newer(key, {"version": 3, "body": "c"}) == 1
    assert through.get(key) == {"version": 3, "body": "c"}


def test_update_if_newer_never_creates_an_entry(through, redis_client):
    """An absent key (never filled, expired, evicted) stays absent: the next reader fills it from
    the database, which already has the event's change (or a newer one)."""
    key = through.key("post", 1)
    assert through.update_if_newer(key, {"version": 2, "body": "late"}) == 0
    pipe = redis_client.pipeline(transaction=False)
    through.queue_update_if_newer(pipe, key, {"version": 3, "body": "later"})
    through.queue_tombstone(pipe, key)
    assert pipe.execute() == [0, 0]
    assert redis_client.exists(key) == 0


@pytest.mark.parametrize("stale_version", [1, 4, 5])
def test_update_if_newer_ignores_an_older_or_equal_version(through, stale_version):
    key = through.key("post", 1)
    through.set(key, {"version": 5, "body": "current"})
    assert through.update_if_newer(key, {"version": stale_version, "body": "stale"}) == 0
    assert through.get(key) == {"version": 5, "body": "current"}


@pytest.mark.parametrize("unversioned", [{"body": "unversioned"}, None, [1, 2], "text"])
def test_update_if_newer_voids_a_value_without_a_version(through, redis_client, unversioned):
    """An absent marker or any unversioned value is deleted, not overwritten: the next reader fills."""
    key = through.key("post", 1)
    through.set(key, unversioned)
    assert through.update_if_newer(key, {"version": 1, "body": "v1"}) == -1
    assert redis_client.exists(key) == 0


def test_update_if_newer_and_tombstone_void_a_fill_lease(through, redis_client):
    from core.caching import take_lease

    for write in ("update", "tombstone"):
        key = through.key("post", write)
        assert take_lease(redis_client, key) is not None
        pipe = redis_client.pipeline(transaction=False)
        if write == "update":
            through.queue_update_if_newer(pipe, key, {"version": 2, "body": "b"})
        else:
            through.queue_tombstone(pipe, key)
        assert pipe.execute() == [-1]
        assert redis_client.exists(key) == 0, write


def test_tombstone_blocks_every_later_write(through, redis_client):
    key = through.key("post", 1)
    through.set(key, {"version": 3, "body": "alive"})
    pipe = redis_client.pipeline(transaction=False)
    through.queue_tombstone(pipe, key)
    pipe.execute()
    tomb = through.get(key)
    assert is_tombstone(tomb)
    assert tomb["version"] == FINAL_VERSION
    for version in (4, 10**9, FINAL_VERSION - 1, FINAL_VERSION):
        assert through.update_if_newer(key, {"version": version, "body": "zombie"}) == 0
    pipe = redis_client.pipeline(transaction=False)
    through.queue_update_if_newer(pipe, key, {"version": 99, "body": "zombie"})
    assert pipe.execute() == [0]
    assert is_tombstone(through.get(key))


def test_tombstone_reads_as_none_through_get_or_load(redis_client):
    aside = Things()
    key = aside.key("gone")
    aside.set(key, {"version": 1})  # present: a delete tombstones only what is cached
    pipe = redis_client.pipeline(transaction=False)
    aside.queue_tombstone(pipe, key)
    pipe.execute()
    assert aside.get_or_load(key, lambda: {"resurrected": True}) is None


# --- namespace epochs --------------------------------------------------------------------------


def test_bump_namespace_makes_old_keys_unreadable_without_touching_them(things, redis_client):
    old_keys = [things.key("item", i) for i in range(50)]
    things.set_many({key: i for i, key in enumerate(old_keys)})
    recorder = recorder_for(redis_client)

    epoch = CacheManager(client=recorder).bump_namespace("things")

    assert epoch == 1
    # O(1): the bump's time (Redis's clock, recorded first), then the epoch, however many keys
    # the namespace holds.
    assert [name for name, *_ in recorder.commands] == ["TIME", "SET", "INCRBY", "EXPIRE"]
    new_keys = [things.key("item", i) for i in range(50)]
    assert set(new_keys).isdisjoint(old_keys)
    assert new_keys[0] == "things:v1.1:item:0"
    assert things.get_many(new_keys) == {}
    assert things.get(new_keys[0], "miss") == "miss"
    assert redis_client.exists(*old_keys) == 50  # still there, left to expire on their TTL


def test_bump_namespace_leaves_other_namespaces_alone(things):
    other = Other()
    other_key = other.key("item")
    other.set(other_key, "kept")
    CacheManager().bump_namespace("things")
    assert other.key("item") == other_key
    assert other.get(other_key) == "kept"


def test_bump_namespace_returns_increasing_epochs():
    manager = CacheManager()
    assert [manager.bump_namespace("things") for _ in range(4)] == [1, 2, 3, 4]
    assert Things().key("x") == "things:v1.4:x"


def test_another_process_sees_a_bump_within_the_epoch_ttl(things, settings, redis_client):
    settings.CACHE_NAMESPACE_EPOCH_TTL_SECONDS = 0.1
    before = things.key("x")
    redis_client.incr(epoch_key("things"))  # another process's bump: our copy knows nothing
    assert things.key("x") == before  # trusted for CACHE_NAMESPACE_EPOCH_TTL_SECONDS
    time.sleep(0.15)
    assert things.key("x") == "things:v1.1:x"


class Other(BaseCacheStrategy):
    namespace = "other"


def recorder_for(client: redis.Redis | RedisCluster) -> "RecordingRedis | RecordingCluster":
    """A real client of `client`'s kind, on the same server(s), that records what it sends."""
    if isinstance(client, RedisCluster):
        return RecordingCluster(startup_nodes=startup_nodes(settings.REDIS_URL))
    return RecordingRedis(connection_pool=client.connection_pool)


class RecordingRedis(redis.Redis):
    """A real client (on the test's pool) that remembers the commands it sends, pipelined or not."""

    def __init__(self, *args, commands: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands: list[tuple] = [] if commands is None else commands

    def execute_command(self, *args, **options):
        self.commands.append(args)
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = Batch(self)  # what the product's clients return: it knows what was queued
        execute = pipe.execute

        def recorded_execute(raise_on_error=True):
            self.commands.extend(args for args, _ in pipe.commands)
            return execute(raise_on_error)

        pipe.execute = recorded_execute
        return pipe


class RecordingCluster(ClusterRedis):
    """RecordingRedis on a cluster: the commands sent through it, through its batches, and through
    the per-node clients it hands out (`primaries()`: SCAN, INFO, DBSIZE), in one list."""

    def __init__(self, *args, **kwargs):
        self.commands: list[tuple] = []
        super().__init__(*args, **kwargs)
        self.commands.clear()  # what the constructor asked (COMMAND, CLUSTER SLOTS) is not ours

    def execute_command(self, *args, **options):
        self.commands.append(args)
        return super().execute_command(*args, **options)

    def get_redis_connection(self, node) -> RecordingRedis:
        pool = super().get_redis_connection(node).connection_pool
        return RecordingRedis(connection_pool=pool, commands=self.commands)

    pipeline = RecordingRedis.pipeline


def test_hits_and_misses_are_counted_per_namespace(things):
    other = Other()
    things.set(things.key("a"), 1)
    things.get(things.key("a"))  # hit
    things.get(things.key("b"))  # miss
    things.get_many([things.key("a"), things.key("b"), things.key("c")])  # 1 hit, 2 misses
    other.get(other.key("z"))  # miss elsewhere
    assert stats.snapshot() == {
        "other": {"hits": 0, "misses": 1},
        "things": {"hits": 2, "misses": 3},
    }
