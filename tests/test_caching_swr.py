"""Stale-while-revalidate (CacheAsideStrategy.soft_ttl): an entry past its soft TTL is served while
one reader refreshes it under a lease that any event voids; tombstones, absent markers and leases
are never soft-served; the XFetch early refresh comes before expiry; off, nothing changes.

Time is the strategy's own `clock` (wall seconds), moved by the tests, so nothing sleeps to age an
entry; Redis is real and keeps the hard TTL itself."""

import math
import random
import threading
import time

import pytest

from core.caching import (
    CacheAsideStrategy,
    CacheSerializer,
    WriteThroughCacheStrategy,
    is_lease,
    is_tombstone,
    split_soft_expiry,
    stats,
    take_lease,
)
from feed import queries, selectors
from feed.cache import PostDetailCache, ReactionCountsCache
from tests.factories import make_post

SOFT = 10.0


class Posts(CacheAsideStrategy, WriteThroughCacheStrategy):
    namespace = "swr"
    default_ttl = 60
    negative_ttl = 30
    soft_ttl = SOFT
    xfetch_beta = 0.0  # only past the soft TTL, unless a test turns the early refresh on


class Clock:
    """A settable wall clock for one strategy instance."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Boom(Exception):
    pass


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def posts(clock):
    strategy = Posts()
    strategy.clock = clock
    return strategy


def entry(redis_client, key):
    """(the value in Redis without its soft expiry, the soft expiry) — what readers are served."""
    return split_soft_expiry(CacheSerializer.loads(redis_client.get(key)))


def fill(posts, key, value):
    assert posts.get_or_load(key, lambda: value) == value


def test_a_fill_stores_its_soft_expiry_with_the_value_and_readers_never_see_it(posts, clock, redis_client):
    key = posts.key("post", 1)
    fill(posts, key, {"id": 1, "version": 1})
    value, meta = entry(redis_client, key)
    assert value == {"id": 1, "version": 1}
    assert meta.soft == pytest.approx((clock.now + SOFT) * 1000, abs=1)
    assert meta.lease is None
    assert 50_000 < redis_client.pttl(key) <= 60_000  # the hard TTL is the strategy's TTL
    assert posts.get(key) == {"id": 1, "version": 1}
    assert posts.get_many([key]) == {key: {"id": 1, "version": 1}}
    assert posts.get_or_load(key, lambda: pytest.fail("a hit loads nothing")) == {"id": 1, "version": 1}


def test_past_its_soft_ttl_an_entry_is_served_while_exactly_one_of_n_readers_refreshes(
    posts, clock, redis_client
):
    key = posts.key("post", "hot")
    fill(posts, key, {"id": "hot", "body": "old", "version": 1})
    clock.now += SOFT + 1
    readers = 20
    start = threading.Barrier(readers)
    served = threading.Semaphore(0)
    loads = []
    results: list[object] = [None] * readers
    errors: list[BaseException] = []

    def loader():
        loads.append(1)
        # The refresher holds its lease until every other reader has been answered: none of them
        # waited for it, and none loaded.
        for _ in range(readers - 1):
            assert served.acquire(timeout=10)
        return {"id": "hot", "body": "fresh", "version": 2}

    def reader(i):
        try:
            start.wait()
            results[i] = posts.get_or_load(key, loader)
            if results[i]["body"] == "old":
                served.release()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors
    assert len(loads) == 1
    assert sorted(r["body"] for r in results) == ["fresh"] + ["old"] * (readers - 1)
    value, meta = entry(redis_client, key)
    assert value == {"id": "hot", "body": "fresh", "version": 2}
    assert meta.lease is None
    assert meta.soft == pytest.approx((clock.now + SOFT) * 1000, abs=1)
    assert stats.snapshot()["swr"] == {"hits": readers - 1, "misses": 2}  # the fill, the refresh


def test_a_refresh_that_raced_an_edit_is_dropped_and_readers_get_the_edit(posts, clock, redis_client):
    key = posts.key("post", 2)
    fill(posts, key, {"id": 2, "body": "v1", "version": 1})
    clock.now += SOFT + 1
    seen_meanwhile = []

    def loader():
        # The refresher read the database before the edit committed; the edit's event lands now.
        assert posts.update_if_newer(key, {"id": 2, "body": "v2", "version": 2}) == 1
        seen_meanwhile.append(posts.get_or_load(key, lambda: pytest.fail("served, not loaded")))
        return {"id": 2, "body": "v1 as loaded", "version": 1}

    assert posts.get_or_load(key, loader)["body"] == "v1 as loaded"  # what this reader loaded
    assert seen_meanwhile == [{"id": 2, "body": "v2", "version": 2}]  # the entry as it is now
    assert posts.get(key) == {"id": 2, "body": "v2", "version": 2}  # the refresh was dropped


def test_a_refresh_that_raced_a_delete_leaves_the_tombstone(posts, clock, redis_client):
    key = posts.key("post", 3)
    fill(posts, key, {"id": 3, "version": 1})
    clock.now += SOFT + 1

    def loader():
        pipe = redis_client.pipeline()
        posts.queue_tombstone(pipe, key)
        pipe.execute()
        return {"id": 3, "version": 1}

    posts.get_or_load(key, loader)
    assert is_tombstone(posts.get(key))
    assert posts.get_or_load(key, lambda: pytest.fail("a tombstone is never refreshed")) is None


def test_tombstones_absent_markers_and_leases_are_never_soft_served(posts, clock, redis_client):
    gone, missing, leased = posts.key("post", "gone"), posts.key("post", "missing"), posts.key("post", "l")
    fill(posts, gone, {"id": "gone", "version": 1})
    pipe = redis_client.pipeline()
    posts.queue_tombstone(pipe, gone)
    pipe.execute()
    assert posts.get_or_load(missing, lambda: None) is None
    assert redis_client.get(missing) == CacheSerializer.dumps(None)  # a marker carries no soft expiry
    assert take_lease(redis_client, leased) is not None
    clock.now += SOFT * 5
    for key in (gone, missing):
        assert posts.get_or_load(key, lambda: pytest.fail("never refreshed")) is None
    assert is_tombstone(CacheSerializer.loads(redis_client.get(gone)))
    assert redis_client.get(missing) == CacheSerializer.dumps(None)
    # A lease is waited for, then the source answers alone: it is never served as a value.
    assert posts.get_or_load(leased, lambda: {"id": "l", "version": 1}) == {"id": "l", "version": 1}
    assert is_lease(redis_client.get(leased))
    # A batch loads (and never fills) over a marker, as it always did; the tombstone answers None.
    loads = []
    assert posts.get_many_or_load(
        {"gone": gone, "missing": missing}, lambda ids: loads.append(ids) or {}
    ) == {
        "gone": None,
        "missing": None,
    }
    assert loads == [["missing"]]
    assert redis_client.get(missing) == CacheSerializer.dumps(None)


def test_an_entry_with_no_soft_expiry_is_served_until_its_hard_ttl(posts, clock, redis_client):
    """Entries written before SWR existed, or replaced by an event, carry no soft expiry."""
    key = posts.key("post", "old")
    posts.set(key, {"id": "old", "version": 4})
    clock.now += SOFT * 5
    assert posts.get_or_load(key, lambda: pytest.fail("no soft expiry")) == {"id": "old", "version": 4}


def test_the_early_refresh_triggers_before_the_soft_expiry_as_the_seeded_draws_say(posts, clock):
    key = posts.key("post", "early")

    def slow_loader():
        clock.now += 2.0  # the load takes 2 s: XFetch's delta
        return {"id": "early", "version": 1}

    assert posts.get_or_load(key, slow_loader) == {"id": "early", "version": 1}
    soft = entry(posts.client, key)[1].soft
    posts.xfetch_beta = 1.0
    posts.rng = random.Random(42)
    replica = random.Random(42)
    clock.now += SOFT - 1.0  # one second before the soft expiry
    assert clock.now * 1000 < soft
    # Due when now - delta * beta * ln(1 - r) >= soft, i.e. when -2 s * ln(1 - r) >= 1 s.
    expected = next(i for i in range(1, 100) if -2.0 * math.log(1.0 - replica.random()) >= 1.0)
    refreshes = []
    for read in range(1, expected + 5):
        posts.get_or_load(key, lambda read=read: refreshes.append(read) or {"id": "early", "version": 1})
    assert refreshes == [expected]  # once, and then the entry is fresh (its refresh took no time)
    assert entry(posts.client, key)[1].soft > soft


def test_without_beta_there_is_no_refresh_before_the_soft_expiry(posts, clock):
    key = posts.key("post", "late")

    def slow_loader():
        clock.now += 2.0
        return {"id": "late", "version": 1}

    posts.get_or_load(key, slow_loader)
    clock.now += SOFT - 0.01
    for _ in range(200):
        posts.get_or_load(key, lambda: pytest.fail("not before the soft expiry"))
    clock.now += 0.02
    assert posts.get_or_load(key, lambda: {"id": "late", "version": 1, "refreshed": True})["refreshed"]


def test_a_refresh_whose_loader_raises_gives_the_entry_back(posts, clock, redis_client):
    key = posts.key("post", "flaky")
    fill(posts, key, {"id": "flaky", "version": 1})
    clock.now += SOFT + 1

    def failing():
        raise Boom

    with pytest.raises(Boom):
        posts.get_or_load(key, failing)
    assert entry(redis_client, key)[1].lease is None  # no lease left for others to wait out
    assert posts.get_or_load(key, lambda: {"id": "flaky", "version": 2}) == {"id": "flaky", "version": 2}


def test_a_batch_read_refreshes_its_due_entries_with_its_misses_in_one_load(posts, clock, redis_client):
    keys = {i: posts.key("post", i) for i in (1, 2, 3)}
    assert posts.get_many_or_load({1: keys[1], 2: keys[2]}, lambda ids: {i: {"id": i, "v": 1} for i in ids})
    clock.now += SOFT + 1
    calls = []

    def loader(ids):
        calls.append(sorted(ids))
        # A concurrent batch is served the stale entries (claimed by us), and loads nothing.
        assert posts.get_many_or_load({1: keys[1], 2: keys[2]}, lambda ids: pytest.fail(ids)) == {
            1: {"id": 1, "v": 1},
            2: {"id": 2, "v": 1},
        }
        # An edit of post 2 lands while we load: its refresh is dropped.
        assert posts.update_if_newer(keys[2], {"id": 2, "v": 2, "version": 2}) == -1  # no version: voided
        return {i: {"id": i, "v": 9} for i in ids}

    assert posts.get_many_or_load(keys, loader) == {i: {"id": i, "v": 9} for i in (1, 2, 3)}
    assert calls == [[1, 2, 3]]
    assert posts.get(keys[1]) == {"id": 1, "v": 9}
    assert redis_client.exists(keys[2]) == 0  # the event voided the claimed entry; never refilled
    assert posts.get(keys[3]) == {"id": 3, "v": 9}


def test_a_versioned_batch_refresh_racing_an_edit_keeps_the_edit(posts, clock):
    key = posts.key("post", 7)
    posts.get_many_or_load({7: key}, lambda ids: {7: {"id": 7, "body": "v1", "version": 1}})
    clock.now += SOFT + 1

    def loader(ids):
        assert posts.update_if_newer(key, {"id": 7, "body": "v2", "version": 2}) == 1
        return {7: {"id": 7, "body": "v1 as loaded", "version": 1}}

    posts.get_many_or_load({7: key}, loader)
    assert posts.get(key) == {"id": 7, "body": "v2", "version": 2}


def test_with_swr_off_fills_store_the_plain_value_and_nothing_is_refreshed(
    posts, clock, redis_client, settings
):
    on, off = posts.key("post", "filled-on"), posts.key("post", "filled-off")
    fill(posts, on, {"id": "on", "version": 1})
    settings.CACHE_SWR_ENABLED = False
    fill(posts, off, {"id": "off", "version": 1})
    assert redis_client.get(off) == CacheSerializer.dumps({"id": "off", "version": 1})
    clock.now += SOFT * 5
    for key, value in ((on, {"id": "on", "version": 1}), (off, {"id": "off", "version": 1})):
        assert posts.get_or_load(key, lambda: pytest.fail("SWR is off")) == value
        assert posts.get_many_or_load({1: key}, lambda ids: pytest.fail("SWR is off")) == {1: value}


def test_post_details_and_counts_opt_in():
    assert PostDetailCache.soft_ttl is not None
    assert PostDetailCache.soft_ttl < PostDetailCache.default_ttl
    assert ReactionCountsCache.soft_ttl is not None
    assert ReactionCountsCache.soft_ttl < ReactionCountsCache.default_ttl


@pytest.mark.django_db
def test_a_post_detail_past_its_soft_ttl_is_refreshed_from_the_database(redis_client, monkeypatch):
    """A change the cache never heard of (written around the signals) is picked up by the refresh."""
    from feed.models import Post

    post = make_post(body="before")
    assert selectors.post(post.pk)["body"] == "before"
    Post.objects.filter(pk=post.pk).update(body="after")  # no signal, no event
    assert selectors.post(post.pk)["body"] == "before"
    later = time.time() + PostDetailCache.soft_ttl + 1
    monkeypatch.setattr(selectors.details, "clock", lambda: later)
    monkeypatch.setattr(selectors.counts, "clock", lambda: later)
    assert selectors.post(post.pk)["body"] == "after"
    assert queries.post_detail_or_none(post.pk)["body"] == "after"
    assert PostDetailCache().get(PostDetailCache().detail_key(post.pk))["body"] == "after"
