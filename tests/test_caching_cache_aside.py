"""CacheAsideStrategy.get_or_load: one loader for N concurrent misses, no stale fill after a write."""

import threading
import time

import pytest

from core.caching import (
    LEASE_PREFIX,
    CacheAsideStrategy,
    CacheSerializer,
    WriteThroughCacheStrategy,
    is_lease,
    stats,
    take_lease,
)


class Posts(CacheAsideStrategy, WriteThroughCacheStrategy):
    namespace = "aside"
    default_ttl = 60


class Boom(Exception):
    pass


@pytest.fixture
def posts():
    return Posts()


def test_miss_loads_and_fills_then_hits(posts, redis_client):
    key = posts.key("post", 1)
    calls = []
    assert posts.get_or_load(key, lambda: calls.append(1) or {"id": 1}, ttl=30) == {"id": 1}
    assert posts.get_or_load(key, lambda: calls.append(1) or {"id": "other"}) == {"id": 1}
    assert calls == [1]
    assert CacheSerializer.loads(redis_client.get(key)) == {"id": 1}
    assert 0 < redis_client.pttl(key) <= 30_000
    assert stats.snapshot()["aside"] == {"hits": 1, "misses": 1}


def test_fifty_concurrent_misses_run_the_loader_once_and_all_get_its_value(posts):
    key = posts.key("post", "hot")
    lock = threading.Lock()
    loads = 0
    start = threading.Barrier(50)
    results: list[object] = [None] * 50
    errors: list[BaseException] = []

    def loader():
        nonlocal loads
        with lock:
            loads += 1
        time.sleep(0.1)
        return {"id": "hot", "body": "the one load"}

    def reader(i):
        try:
            start.wait()
            results[i] = posts.get_or_load(key, loader)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert loads == 1
    assert results == [{"id": "hot", "body": "the one load"}] * 50
    assert stats.snapshot()["aside"] == {"hits": 49, "misses": 1}


def test_loader_that_raises_releases_the_lease_so_the_next_call_loads(posts, redis_client):
    key = posts.key("post", "flaky")

    def failing():
        assert redis_client.get(key).startswith(LEASE_PREFIX)  # the lease was held while loading
        raise Boom

    with pytest.raises(Boom):
        posts.get_or_load(key, failing)
    assert redis_client.exists(key) == 0
    started = time.monotonic()
    assert posts.get_or_load(key, lambda: {"ok": True}) == {"ok": True}
    assert time.monotonic() - started < 0.2  # no waiting on a lease left behind
    assert posts.get(key) == {"ok": True}


def start_load_and_pause(posts, key, loaded_value):
    """Run get_or_load in a thread whose loader stops mid-load until released."""
    loading, release = threading.Event(), threading.Event()
    outcome = {}

    def loader():
        loading.set()
        assert release.wait(5)
        return loaded_value

    def run():
        outcome["value"] = posts.get_or_load(key, loader)

    thread = threading.Thread(target=run)
    thread.start()
    assert loading.wait(5)
    return release, thread, outcome


def test_fill_that_raced_a_newer_write_is_dropped(posts, redis_client):
    key = posts.key("post", 7)
    release, thread, outcome = start_load_and_pause(posts, key, {"id": 7, "body": "old", "version": 1})
    # While the loader is reading the database, a writer commits version 2; its event finds the
    # fill's lease and voids it (an event never creates an entry).
    assert posts.update_if_newer(key, {"id": 7, "body": "new", "version": 2}) == -1
    release.set()
    thread.join(5)
    assert outcome["value"] == {"id": 7, "body": "old", "version": 1}  # the caller gets what it loaded
    assert redis_client.exists(key) == 0  # but the old value is not stored
    new = {"id": 7, "body": "new", "version": 2}
    assert posts.get_or_load(key, lambda: new) == new  # the next reader fills from the database
    assert posts.get(key) == new


def test_fill_that_raced_a_delete_is_dropped(posts, redis_client):
    key = posts.key("post", 8)
    release, thread, outcome = start_load_and_pause(posts, key, {"id": 8, "body": "before delete"})
    posts.delete(key)  # an invalidation lands while the loader runs
    release.set()
    thread.join(5)
    assert outcome["value"] == {"id": 8, "body": "before delete"}
    assert redis_client.exists(key) == 0  # no stale value left behind


def test_fill_that_raced_a_plain_set_is_dropped(posts):
    key = posts.key("post", 9)
    release, thread, _ = start_load_and_pause(posts, key, "stale")
    posts.set(key, "fresh")
    release.set()
    thread.join(5)
    assert posts.get(key) == "fresh"


def test_waiter_loads_itself_when_the_lease_holder_takes_too_long(posts, settings):
    settings.CACHE_LEASE_WAIT_SECONDS = 0.1
    key = posts.key("post", "slow")
    release, thread, _ = start_load_and_pause(posts, key, "from the slow holder")
    try:
        started = time.monotonic()
        assert posts.get_or_load(key, lambda: "waited then loaded") == "waited then loaded"
        assert 0.09 <= time.monotonic() - started < 1.0
    finally:
        release.set()
        thread.join(5)
    assert posts.get(key) == "from the slow holder"  # the holder's fill still lands


def test_lease_expires_if_its_holder_dies(posts, settings, redis_client):
    settings.CACHE_LEASE_SECONDS = 0.2
    key = posts.key("post", "orphan")
    assert take_lease(redis_client, key, token=LEASE_PREFIX + b"dead-process")  # never comes back
    assert 0 < redis_client.pttl(key) <= 200
    time.sleep(0.25)
    assert posts.get_or_load(key, lambda: "reloaded") == "reloaded"
    assert posts.get(key) == "reloaded"


def test_a_lease_is_never_returned_as_a_value(posts, redis_client):
    key = posts.key("post", "leased")
    assert is_lease(take_lease(redis_client, key).token)
    assert posts.get(key, "miss") == "miss"
    assert posts.get_many([key]) == {}


def test_a_batch_read_fetches_only_the_keys_the_caller_has_not_read(posts, redis_client):
    from tests.test_caching_strategies import recorder_for

    keys = {i: posts.key("post", i) for i in (1, 2, 3)}
    posts.get_many_or_load(keys, lambda ids: {i: {"id": i} for i in ids})
    read = {1: redis_client.get(keys[1]), 2: None}  # the caller read 1, and found 2 absent
    recorder = recorder_for(redis_client)
    loads = []

    def loader(ids):
        loads.append(sorted(ids))
        return {i: {"id": i, "loaded": True} for i in ids}

    found = Posts(client=recorder).get_many_or_load(keys, loader, read=read)

    assert found == {1: {"id": 1}, 2: {"id": 2, "loaded": True}, 3: {"id": 3}}
    assert loads == [[2]]  # what the caller found absent is loaded, not re-read
    assert _keys_read(recorder.commands) == [keys[3]]


def _keys_read(commands: list[tuple]) -> list[str]:
    """The keys read by GET, MGET or SET ... GET (a read that takes a lease), in order."""
    read = []
    for args in commands:
        name = args[0].upper()
        if name in ("GET", "MGET"):
            read += args[1:]
        elif name == "SET" and "GET" in (str(arg).upper() for arg in args[3:]):
            read.append(args[1])
    return read


def test_a_few_keys_read_take_their_leases_in_the_same_round_trip(posts, redis_client):
    """A page's new posts: each absent key is read and leased by one SET NX GET, so the miss costs
    the read, the load and the fill (no lease round trip), and a concurrent reader waits for it."""
    from tests.test_caching_strategies import recorder_for

    keys = {i: posts.key("post", i) for i in (1, 2)}
    posts.set(keys[1], {"id": 1})
    recorder = recorder_for(redis_client)
    seen_during_load = []

    def loader(ids):
        seen_during_load.append(redis_client.get(keys[2]))  # our lease, taken by the read
        return {i: {"id": i, "loaded": True} for i in ids}

    found = Posts(client=recorder).get_many_or_load(keys, loader)

    assert found == {1: {"id": 1}, 2: {"id": 2, "loaded": True}}
    assert is_lease(seen_during_load[0])
    assert _keys_read(recorder.commands) == [keys[1], keys[2]]
    lease_takes = [args for args in recorder.commands if args[0].upper() == "SET" and "GET" not in args]
    assert lease_takes == []  # no SET NX of its own: the read took the lease
    assert posts.get_many_or_load(keys, lambda ids: pytest.fail("filled: no load")) == found


def test_many_keys_are_read_in_one_mget_and_leased_after(posts, redis_client):
    from core.caching.strategies import LEASE_ON_READ_MAX
    from tests.test_caching_strategies import recorder_for

    keys = {i: posts.key("post", i) for i in range(LEASE_ON_READ_MAX + 1)}
    recorder = recorder_for(redis_client)
    found = Posts(client=recorder).get_many_or_load(keys, lambda ids: {i: {"id": i} for i in ids})

    assert found == {i: {"id": i} for i in keys}
    sets = [args for args in recorder.commands if args[0].upper() == "SET"]
    assert _keys_read(recorder.commands) == list(keys.values())  # MGET (GETs on a cluster)
    assert len(sets) == len(keys)  # leases taken after the read, then filled by script
    assert not any("GET" in args for args in sets)
    assert posts.get_many_or_load(keys, lambda ids: pytest.fail("filled: no load")) == found


def test_a_single_read_uses_the_callers_bytes_once_then_asks_redis(posts, redis_client):
    from tests.test_caching_strategies import recorder_for

    key = posts.key("post", 7)
    posts.get_or_load(key, lambda: {"id": 7})
    recorder = recorder_for(redis_client)
    reader = Posts(client=recorder)

    # The caller's bytes: served with no read of its own.
    assert reader.get_or_load(key, lambda: {"id": "loaded"}, read=redis_client.get(key)) == {"id": 7}
    assert [args for args in recorder.commands if args[0].upper() == "GET"] == []

    # The caller read it absent, but it is there now: the fill finds the key taken (no lease),
    # so the read is made again, from Redis, and serves what is there.
    assert reader.get_or_load(key, lambda: {"id": "loaded"}, read=None) == {"id": 7}
    assert [args[1] for args in recorder.commands if args[0].upper() == "GET"] == [key]

    # The caller's read failed: the source answers, nothing is stored, Redis is not asked.
    recorder.commands.clear()
    from core.caching import UNAVAILABLE

    assert reader.get_or_load(posts.key("post", 8), lambda: {"id": 8}, read=UNAVAILABLE) == {"id": 8}
    assert recorder.commands == []


class Memoized(Posts):
    decode_memo_size = 3


def test_a_decode_memo_hands_out_one_decoding_per_bytes_and_stays_bounded(redis_client):
    memoized = Memoized()
    key = memoized.key("post", 1)
    memoized.set(key, {"id": 1, "n": 1})
    first, again = memoized.get(key), memoized.get(key)
    assert first == {"id": 1, "n": 1}
    assert again is first  # the same bytes: the same (shared, read-only) value
    memoized.set(key, {"id": 1, "n": 2})
    assert memoized.get(key) == {"id": 1, "n": 2}  # new bytes, a new decoding: never a stale value
    for n in range(10):
        memoized.set(key, {"id": 1, "n": n})
        assert memoized.get(key) == {"id": 1, "n": n}
    assert len(memoized._decoded) <= Memoized.decode_memo_size
    assert Posts()._decoded is None  # opt-in
