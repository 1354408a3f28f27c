"""Nothing stale from the feed caches under the ways Redis really loses state (issue 11, items 2-4).

Each fault is injected for real on a real Redis, in a deterministic order (no sleeps): a late event
(re-delivered after its key expired or was evicted, by PEXPIRE, DEL, or a private redis-server
with a tiny `maxmemory` and `allkeys-lru`), an evicted feed stamp, a namespace bump racing an edit
applied by a process whose epoch copy is stale, and a warm-up racing a delete. The end state is
checked through the HTTP API against the database, and `check_cache_consistency` reports 0.

A late event is applied with `core.events.apply`, the function the stream consumer and the
commit path both call, exactly as a reclaimed entry, a relay duplicate or a replayed dead letter is.
"""

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable

import pytest
import redis
from django.core.management import call_command
from django.db import connection
from django.test import Client

import feed.handlers
import feed.tasks
from accounts.auth import issue_token
from core.caching import CacheManager, NamespaceKeys, is_lease, namespaces
from core.caching.namespaces import NamespaceEpochs
from core.connections import StandaloneRedis
from core.events import Event, apply
from feed import events as feed_events
from feed import queries, services
from feed.cache import PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.handlers import PostHandler
from feed.models import Follow, Post
from feed.popularity import PopularityTracker
from feed.warmup import warm_posts
from tests.factories import make_post, make_user
from tests.polling import eventually

details, counts, feeds = PostDetailCache(), ReactionCountsCache(), UserFeedCache()


def client_for(user) -> Client:
    return Client(headers={"Authorization": f"Bearer {issue_token(user)}"})


def get_post(client: Client, post_id: int):
    response = client.get(f"/api/posts/{post_id}")
    return response.status_code, (response.json() if response.status_code == 200 else None)


def feed_bodies(client: Client) -> list[str]:
    response = client.get("/api/feed")
    assert response.status_code == 200
    return [item["body"] for item in response.json()["items"]]


def deliver_late(*events: Event, client: redis.Redis | None = None) -> list:
    """Apply `events` as the consumer does (one pipeline, the registry's handlers)."""
    pipe = (client or details.client).pipeline(transaction=False)
    applied = apply(pipe, list(events))
    assert not applied.failed()
    return pipe.execute()


def consistent(capsys) -> None:
    call_command("check_cache_consistency")
    assert "0 mismatches" in capsys.readouterr().out


@pytest.fixture
def people(transactional_db):
    return make_user("alice"), make_user("bob")


# --- (a) late re-delivery after expiry, DEL and real eviction --------------------------------------


@pytest.mark.parametrize("lose", ["expired", "deleted"])
def test_a_late_old_event_into_a_lost_entry_leaves_the_database_version_served(people, lose, capsys):
    alice, bob = people
    post = make_post(alice, "v1")
    as_bob = client_for(bob)
    assert get_post(as_bob, post.pk)[1]["body"] == "v1"  # filled
    created = feed_events.post_created(queries.post_detail_or_none(post.pk))
    services.update_post(alice, post.pk, "v2")
    updated_v2 = feed_events.post_updated(queries.post_detail_or_none(post.pk))
    services.update_post(alice, post.pk, "v3")
    key = details.detail_key(post.pk)
    assert details.get(key)["body"] == "v3"

    if lose == "expired":
        details.client.pexpire(key, 1)
        eventually(lambda: details.client.exists(key) == 0)
    else:
        details.client.delete(key)
    assert deliver_late(created, updated_v2)[:1] == [0]  # nothing there: nothing written

    assert details.client.exists(key) == 0, "a late event must not create an entry"
    assert get_post(as_bob, post.pk)[1]["body"] == "v3"  # from the database, filled
    deliver_late(created, updated_v2)  # and again, now over the filled entry: kept
    assert get_post(as_bob, post.pk)[1]["body"] == "v3"
    consistent(capsys)


@pytest.mark.parametrize("lose", ["expired", "deleted"])
def test_a_deleted_post_stays_gone_after_a_late_update_into_its_lost_tombstone(people, lose, capsys):
    alice, bob = people
    post = make_post(alice, "v1")
    as_bob = client_for(bob)
    assert get_post(as_bob, post.pk)[0] == 200
    services.update_post(alice, post.pk, "v2")
    updated = feed_events.post_updated(queries.post_detail_or_none(post.pk))
    post_id, key = post.pk, details.detail_key(post.pk)
    services.delete_post(alice, post_id)
    assert details.get(key)["deleted"] is True
    if lose == "expired":
        details.client.pexpire(key, 1)
        eventually(lambda: details.client.exists(key) == 0)
    else:
        details.client.delete(key)

    deliver_late(updated, feed_events.post_created({**updated.data["post"], "version": 1}))

    assert details.client.exists(key) == 0
    assert get_post(as_bob, post_id) == (404, None)
    deliver_late(updated)  # over the absent marker the 404 left: deleted, still 404
    assert get_post(as_bob, post_id) == (404, None)
    consistent(capsys)


EVICTING = ("--appendonly", "no", "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")


@pytest.fixture
def evicting_redis(tmp_path, unused_port):
    """A private redis-server with a tiny maxmemory and allkeys-lru, as a cache Redis runs."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server must be on PATH"
    server = subprocess.Popen(
        [binary, "--port", str(unused_port), "--bind", "127.0.0.1", "--save", "", *EVICTING],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    client = StandaloneRedis(port=unused_port, socket_connect_timeout=0.2, retry=None)  # the product's kind
    try:
        eventually(lambda: _pings(client))
        yield client
    finally:
        server.terminate()
        server.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def evict(client: redis.Redis, *keys: str) -> None:
    """Write filler until Redis evicts every one of `keys` (memory pressure, not a DEL)."""
    filler = os.urandom(16 * 1024)
    for n in range(10_000):
        client.set(f"filler:{n}", filler, px=600_000)
        if n % 16 == 0 and client.exists(*keys) == 0:
            assert client.info("stats")["evicted_keys"] > 0
            return
    raise AssertionError(f"{keys} were never evicted")


def test_late_events_after_a_real_eviction_serve_the_database_version(transactional_db, evicting_redis):
    cache = PostDetailCache(client=evicting_redis)
    alive, doomed = make_post(body="v1"), make_post(body="to delete")

    def read(post_id: int):
        return cache.get_post(post_id, lambda: queries.post_detail_or_none(post_id))

    read(alive.pk), read(doomed.pk)
    old_alive = queries.post_detail_or_none(alive.pk)
    old_doomed = queries.post_detail_or_none(doomed.pk)
    pipe = evicting_redis.pipeline(transaction=False)
    alive.body = "v2"
    alive.save()
    cache.queue_write(pipe, queries.post_detail_or_none(alive.pk))
    doomed_id = doomed.pk
    doomed.delete()
    cache.queue_deleted(pipe, doomed_id)
    assert pipe.execute() == [1, 1]  # v2 written over v1, the tombstone over "to delete"

    evict(evicting_redis, cache.detail_key(alive.pk), cache.detail_key(doomed_id))
    pipe = evicting_redis.pipeline(transaction=False)
    cache.queue_write(pipe, old_alive)  # a re-delivered post.created of each
    cache.queue_write(pipe, old_doomed)
    assert pipe.execute() == [0, 0]

    assert read(alive.pk)["body"] == "v2"
    assert read(doomed_id) is None


def test_a_negative_fill_stores_no_tombstone_and_any_event_voids_it(people, settings):
    alice, bob = people
    settings.EVENTS_APPLY_ON_COMMIT = False  # the post.created below arrives late, by hand
    next_id = (Post.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 100
    as_bob = client_for(bob)
    assert get_post(as_bob, next_id) == (404, None)
    key = details.detail_key(next_id)
    assert details.client.get(key) == b"null"  # an absent marker: no version, short-lived
    assert 0 < details.client.pttl(key) <= PostDetailCache.negative_ttl * 1000
    assert details.client.exists(counts.counts_key(next_id)) == 0  # counts store nothing
    post = Post.objects.create(pk=next_id, author=alice, body="now it exists")
    deliver_late(feed_events.post_created(queries.post_detail_or_none(post.pk)))
    assert details.client.exists(key) == 0  # the event deleted the marker
    assert get_post(as_bob, next_id)[1]["body"] == "now it exists"


# --- (b) an evicted feed stamp ---------------------------------------------------------------------


def test_a_follower_never_sees_a_pre_edit_page_after_their_stamp_is_evicted(people, capsys):
    alice, bob = people
    Follow.objects.create(follower=bob, followee=alice)
    post = make_post(alice, "before the edit")
    as_bob, stamp_key = client_for(bob), feeds.stamp_key(bob.pk)
    feeds.client.delete(stamp_key)  # evicted before bob's first read
    assert feed_bodies(as_bob) == ["before the edit"]
    assert feeds.client.get(stamp_key) is not None, "the filler created a stamp, not '0'"

    services.update_post(alice, post.pk, "after the edit")
    PostHandler().after_batch([feed_events.post_updated(queries.post_detail_or_none(post.pk))])  # fan-out
    feeds.client.delete(stamp_key)  # the stamp the fan-out wrote is evicted

    assert feed_bodies(as_bob) == ["after the edit"]
    feeds.client.delete(stamp_key)
    assert feed_bodies(as_bob) == ["after the edit"]
    consistent(capsys)


def test_a_page_without_a_stamp_is_never_served(people):
    _, bob = people
    make_post(bob, "own post")
    feeds.client.delete(feeds.stamp_key(bob.pk))  # evicted
    page = feeds.page_key(bob.pk, 1, 20)
    feeds.client.set(page, json.dumps(feeds.page_value("0", [{"id": 1, "body": "stale"}])), px=60_000)
    loaded = []
    items = feeds.get_feed(bob.pk, 1, 20, lambda: loaded.append(1) or queries.feed_page(bob.pk, 1, 20))
    assert [item["body"] for item in items] == ["own post"]
    assert loaded == [1]


# --- (c) a namespace bump racing an edit applied with a stale epoch ---------------------------------


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class PausedLoader:
    """Reads the database, then waits until the test lets it go (between the read and the fill)."""

    def __init__(self, read: Callable[..., object]) -> None:
        self.read = read
        self.has_read = threading.Event()
        self.resume = threading.Event()

    def __call__(self, *args):
        try:
            value = self.read(*args)
        finally:
            connection.close()  # this thread's connection
        self.has_read.set()
        assert self.resume.wait(10), "the test never resumed the loader"
        return value


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    return thread, result


def test_a_bump_racing_an_edit_applied_by_a_stale_process_leaves_no_stale_body(
    people, settings, monkeypatch, capsys
):
    alice, bob = people
    settings.EVENTS_APPLY_ON_COMMIT = False  # the edit's event is applied by the stale "worker"
    clock = FakeClock(1_000.0)
    monkeypatch.setattr(namespaces, "clock", clock)
    Follow.objects.create(follower=bob, followee=alice)
    post = make_post(alice, "before")
    as_bob = client_for(bob)
    assert get_post(as_bob, post.pk)[1]["body"] == "before"
    assert feed_bodies(as_bob) == ["before"]

    # The worker process: its own epoch copies, still trusting epoch 0 when the bump lands.
    worker_epochs = NamespaceEpochs()
    stale = {}
    for name, cache in (("details", PostDetailCache()), ("counts", ReactionCountsCache()), ("feeds", feeds)):
        copy = type(cache)()
        copy.keys = NamespaceKeys(cache.namespace, cache.schema, copy.guard, epochs_=worker_epochs)
        stale[name] = copy
    assert stale["details"].detail_key(post.pk) == details.detail_key(post.pk)  # epoch 0, fresh

    assert CacheManager().bump_namespace("feed") == 1  # e.g. seed_demo --append, in the web process
    assert details.detail_key(post.pk) != stale["details"].detail_key(post.pk)

    # A reader of the new epoch reads the database, then pauses before its fill.
    loader = PausedLoader(queries.post_detail_or_none)
    monkeypatch.setattr(queries, "post_detail_or_none", loader)
    thread, result = in_thread(lambda: get_post(as_bob, post.pk))
    assert loader.has_read.wait(10)
    # The edit commits; the stale worker applies its event, to the old epoch's keys.
    services.update_post(alice, post.pk, "after")
    for name, cache in stale.items():
        monkeypatch.setattr(feed.handlers, name, cache)
    monkeypatch.setattr(feed.tasks, "feeds", stale["feeds"])  # the fan-out, in the worker too
    event = feed_events.post_updated(queries.post_detail_or_none.read(post.pk))
    deliver_late(event)
    PostHandler().after_batch([event])
    loader.resume.set()
    thread.join(10)
    assert result[0][1]["body"] == "before"  # the racing read's own answer
    assert feed_bodies(as_bob) == ["after"]  # read from the database during the transition

    # Every process has switched (our clock past bump + trust TTL + margin): fills resume.
    window = settings.CACHE_NAMESPACE_EPOCH_TTL_SECONDS + namespaces.EPOCH_SETTLE_MARGIN_SECONDS
    clock.now += window + 0.01
    monkeypatch.undo()
    monkeypatch.setattr(namespaces, "clock", clock)
    assert get_post(as_bob, post.pk)[1]["body"] == "after"
    assert details.get(details.detail_key(post.pk))["body"] == "after"  # filled now, from the DB
    assert feed_bodies(as_bob) == ["after"]
    assert feed_bodies(as_bob) == ["after"]  # and served from the page now filled
    consistent(capsys)


def test_fills_wait_for_the_bump_to_settle_then_resume(transactional_db, settings, monkeypatch):
    clock = FakeClock(50.0)
    monkeypatch.setattr(namespaces, "clock", clock)
    post = make_post(body="x")
    CacheManager().bump_namespace("feed")
    loads = []

    def read():
        return details.get_post(post.pk, lambda: loads.append(1) or queries.post_detail_or_none(post.pk))

    read(), read()
    assert loads == [1, 1]
    assert details.client.exists(details.detail_key(post.pk)) == 0
    clock.now += settings.CACHE_NAMESPACE_EPOCH_TTL_SECONDS + namespaces.EPOCH_SETTLE_MARGIN_SECONDS
    read(), read()
    assert loads == [1, 1, 1]  # filled once settled, then served


def test_another_process_settles_from_the_recorded_bump_time(transactional_db, settings, monkeypatch):
    """A process that first sees the epoch long after the bump trusts the bump's time on Redis's
    clock; one that sees an epoch with no recorded bump time waits a full window."""
    CacheManager().bump_namespace("feed")
    late = NamespaceEpochs()
    bumped_at = namespaces.bumped_at_key("feed")
    seconds, micros = details.client.time()
    long_ago = seconds * 1000 + micros // 1000 - 60_000
    details.client.set(bumped_at, long_ago, px=60_000)
    assert late.get(details.client, "feed") == 1
    assert late.settled("feed")
    details.client.delete(bumped_at)
    unknown = NamespaceEpochs()
    assert unknown.get(details.client, "feed") == 1
    assert not unknown.settled("feed")


# --- (d) a warm-up racing a delete -------------------------------------------------------------------


def test_a_warm_up_racing_a_delete_never_resurrects_the_post(people, monkeypatch, capsys):
    alice, bob = people
    post = make_post(alice, "popular, then deleted")
    tracker = PopularityTracker()
    tracker.record_post(post.pk)
    monkeypatch.setattr("feed.warmup.tracker", tracker)
    loader = PausedLoader(queries.post_stats_many)  # after the detail and counts reads
    monkeypatch.setattr(queries, "post_stats_many", loader)
    thread, result = in_thread(lambda: warm_posts(1))
    assert loader.has_read.wait(10)
    leased = [details.client.get(details.detail_key(post.pk)), counts.client.get(counts.counts_key(post.pk))]
    assert all(is_lease(raw) for raw in leased), "the warm-up fills under leases"
    post_id = post.pk
    services.delete_post(alice, post_id)  # its event voids both leases
    loader.resume.set()
    thread.join(10)
    assert result[0].written == 0
    monkeypatch.undo()
    assert details.client.exists(details.detail_key(post_id), counts.counts_key(post_id)) == 0
    assert get_post(client_for(bob), post_id) == (404, None)
    consistent(capsys)
