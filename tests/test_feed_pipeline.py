"""The feed's cache guarantees end to end: read-your-writes, invalidation through the real pipeline,
no stale sets, deleted means gone, and a chunked 10,000-follower fan-out.

Tests named *_through_the_pipeline turn EVENTS_APPLY_ON_COMMIT off, so that only the real Celery
worker (stream consumer + fan-out tasks) can bring the cache up to date, and poll with a deadline.
Read-your-writes tests run no worker at all: the post-commit apply path must be enough.
"""

import json
import threading
from collections.abc import Callable

import pytest
from celery.signals import task_prerun
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from accounts.auth import issue_token
from accounts.models import AppUser
from core.caching import is_tombstone
from feed import queries, selectors, services
from feed.cache import PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.models import Follow, Post
from tests.factories import make_post, make_user
from tests.polling import eventually as _eventually

details = PostDetailCache()
counts = ReactionCountsCache()


def eventually(check, timeout: float = 20.0, interval: float = 0.02):
    """tests.polling.eventually with a deadline roomy enough for a loaded, shared machine."""
    return _eventually(check, timeout=timeout, interval=interval)


feeds = UserFeedCache()


def client_for(user) -> Client:
    return Client(headers={"Authorization": f"Bearer {issue_token(user)}"})


def send(client: Client, method: str, url: str, data=None):
    response = getattr(client, method)(url, data=json.dumps(data or {}), content_type="application/json")
    assert response.status_code < 300, response.content
    return response.json() if response.content else None


def feed_bodies(client: Client) -> list[str]:
    response = client.get("/api/feed")
    assert response.status_code == 200
    return [item["body"] for item in response.json()["items"]]


def feed_items(client: Client) -> list[dict]:
    return client.get("/api/feed").json()["items"]


@pytest.fixture
def people(transactional_db):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    return alice, bob, carol


@pytest.fixture
def worker_only(settings):
    """Only the worker applies events: the writer's post-commit apply path is off."""
    settings.EVENTS_APPLY_ON_COMMIT = False


# --- read your writes, no worker ---------------------------------------------------------------


def test_writer_sees_own_post_edit_and_delete_on_the_next_request_without_a_worker(people):
    alice, _, _ = people
    as_alice = client_for(alice)
    assert feed_bodies(as_alice) == []  # cached: an empty page

    post = send(as_alice, "post", "/api/posts", {"body": "v1"})
    assert feed_bodies(as_alice) == ["v1"]
    assert as_alice.get(f"/api/posts/{post['id']}").json()["body"] == "v1"

    send(as_alice, "patch", f"/api/posts/{post['id']}", {"body": "v2"})
    assert feed_bodies(as_alice) == ["v2"]
    assert as_alice.get(f"/api/posts/{post['id']}").json()["body"] == "v2"

    send(as_alice, "delete", f"/api/posts/{post['id']}")
    assert feed_bodies(as_alice) == []
    assert as_alice.get(f"/api/posts/{post['id']}").status_code == 404


def test_reactor_and_commenter_see_their_counts_on_the_next_request_without_a_worker(people):
    alice, bob, _ = people
    as_bob = client_for(bob)
    send(as_bob, "post", f"/api/users/{alice.pk}/follow")
    post = make_post(alice)
    url = f"/api/posts/{post.pk}"
    assert as_bob.get(url).json()["counts"]["reactions"]["like"] == 0  # cached
    assert feed_items(as_bob)[0]["counts"]["comments"] == 0  # cached

    send(as_bob, "post", f"{url}/reactions", {"kind": "like"})
    assert as_bob.get(url).json()["counts"]["reactions"]["like"] == 1
    assert feed_items(as_bob)[0]["counts"]["reactions"]["like"] == 1

    send(as_bob, "post", f"{url}/comments", {"body": "nice"})
    assert as_bob.get(url).json()["counts"]["comments"] == 1
    assert feed_items(as_bob)[0]["counts"]["comments"] == 1

    send(as_bob, "delete", f"{url}/reactions")
    assert as_bob.get(url).json()["counts"]["reactions"]["like"] == 0
    assert feed_items(as_bob)[0]["counts"]["reactions"]["like"] == 0


def test_follower_sees_follow_and_unfollow_on_the_next_request_without_a_worker(people):
    alice, bob, _ = people
    make_post(alice, "by alice")
    as_bob = client_for(bob)
    assert feed_bodies(as_bob) == []  # cached: an empty page

    send(as_bob, "post", f"/api/users/{alice.pk}/follow")
    assert feed_bodies(as_bob) == ["by alice"]

    send(as_bob, "delete", f"/api/users/{alice.pk}/follow")
    assert feed_bodies(as_bob) == []


# --- others see changes once the pipeline catches up -------------------------------------------


def test_followers_feed_follows_post_edit_and_delete_through_the_pipeline(
    people, worker_only, pipeline_worker
):
    alice, bob, _ = people
    Follow.objects.create(follower=bob, followee=alice)
    as_alice, as_bob = client_for(alice), client_for(bob)
    assert feed_bodies(as_bob) == []

    post = send(as_alice, "post", "/api/posts", {"body": "v1"})
    eventually(lambda: feed_bodies(as_bob) == ["v1"])
    assert as_bob.get(f"/api/posts/{post['id']}").json()["body"] == "v1"

    send(as_alice, "patch", f"/api/posts/{post['id']}", {"body": "v2"})
    eventually(lambda: feed_bodies(as_bob) == ["v2"])
    eventually(lambda: as_bob.get(f"/api/posts/{post['id']}").json()["body"] == "v2")

    send(as_alice, "delete", f"/api/posts/{post['id']}")
    eventually(lambda: feed_bodies(as_bob) == [])
    eventually(lambda: as_bob.get(f"/api/posts/{post['id']}").status_code == 404)


def test_counts_follow_reactions_and_comments_through_the_pipeline(people, worker_only, pipeline_worker):
    alice, bob, carol = people
    Follow.objects.create(follower=bob, followee=alice)
    post = make_post(alice)
    as_bob, as_carol = client_for(bob), client_for(carol)
    assert feed_items(as_bob)[0]["counts"]["reactions"]["love"] == 0

    send(as_carol, "post", f"/api/posts/{post.pk}/reactions", {"kind": "love"})
    eventually(lambda: feed_items(as_bob)[0]["counts"]["reactions"]["love"] == 1)
    send(as_carol, "post", f"/api/posts/{post.pk}/reactions", {"kind": "sad"})
    eventually(lambda: feed_items(as_bob)[0]["counts"]["reactions"] == {**_zero(), "sad": 1})
    send(as_carol, "post", f"/api/posts/{post.pk}/comments", {"body": "hm"})
    eventually(lambda: feed_items(as_bob)[0]["counts"]["comments"] == 1)
    send(as_carol, "delete", f"/api/posts/{post.pk}/reactions")
    eventually(lambda: as_bob.get(f"/api/posts/{post.pk}").json()["counts"]["reactions"] == _zero())


def test_follow_and_unfollow_renew_the_feed_through_the_pipeline(people, worker_only, pipeline_worker):
    alice, bob, _ = people
    make_post(alice, "by alice")
    as_bob = client_for(bob)
    assert feed_bodies(as_bob) == []
    generation = feeds.client.get(feeds.stamp_key(bob.pk))

    services.follow(bob, alice.pk)
    eventually(lambda: feed_bodies(as_bob) == ["by alice"])
    assert feeds.client.get(feeds.stamp_key(bob.pk)) != generation

    services.unfollow(bob, alice.pk)
    eventually(lambda: feed_bodies(as_bob) == [])


def _zero() -> dict[str, int]:
    from feed.models import Reaction

    return dict.fromkeys(Reaction.Kind.values, 0)


# --- deleted means gone ------------------------------------------------------------------------


def test_a_deleted_post_is_gone_from_detail_feeds_and_counts(people, pipeline_worker):
    alice, bob, carol = people
    Follow.objects.create(follower=bob, followee=alice)
    post = make_post(alice, "secret")
    as_alice, as_bob = client_for(alice), client_for(bob)
    send(client_for(carol), "post", f"/api/posts/{post.pk}/reactions", {"kind": "like"})
    eventually(lambda: "secret" in feed_bodies(as_bob))
    assert "secret" in feed_bodies(as_alice)
    generation = feeds.client.get(feeds.stamp_key(bob.pk))

    send(as_alice, "delete", f"/api/posts/{post.pk}")

    # Right after the delete commits: detail and counts are tombstones, no feed serves the post.
    assert as_bob.get(f"/api/posts/{post.pk}").status_code == 404
    assert is_tombstone(details.get(details.detail_key(post.pk)))
    assert is_tombstone(counts.get(counts.counts_key(post.pk)))
    assert "secret" not in feed_bodies(as_alice)
    assert "secret" not in feed_bodies(as_bob)
    # Once the fan-out ran, the follower's feed itself is renewed from the database.
    eventually(lambda: feeds.client.get(feeds.stamp_key(bob.pk)) != generation)
    assert all(item["id"] != post.pk for item in queries.feed_page(bob.pk, 1, 20))
    assert feed_bodies(as_bob) == []
    assert selectors.with_counts([{"id": post.pk}]) == []


# --- no stale sets: deterministic interleavings ------------------------------------------------


class PausedLoader:
    """A loader that reads the database, then waits (between its read and the cache fill) until
    the test lets it go. The fill runs in its own thread, the competing write in the test's."""

    def __init__(self, read: Callable[[], object]) -> None:
        self.read = read
        self.has_read = threading.Event()
        self.resume = threading.Event()

    def __call__(self):
        try:
            value = self.read()
        finally:
            connection.close()  # this thread's connection
        self.has_read.set()
        assert self.resume.wait(10), "the test never resumed the loader"
        return value

    def run_in_thread(self, fill: Callable[["PausedLoader"], object]) -> tuple[threading.Thread, list]:
        result: list = []
        thread = threading.Thread(target=lambda: result.append(fill(self)))
        thread.start()
        assert self.has_read.wait(10), "the loader never read"
        return thread, result

    def finish(self, thread: threading.Thread) -> None:
        self.resume.set()
        thread.join(10)
        assert not thread.is_alive()


@pytest.mark.parametrize("change", ["edit", "delete"])
def test_a_detail_fill_that_raced_a_write_is_not_stored(people, change):
    alice, _, _ = people
    post = make_post(alice, "old")
    details.delete(details.detail_key(post.pk))  # cold: the next read fills
    loader = PausedLoader(lambda: queries.post_detail_or_none(post.pk))
    thread, result = loader.run_in_thread(lambda load: details.get_post(post.pk, load))

    # The write commits and its event is applied (post-commit path) while the loader holds "old".
    if change == "edit":
        services.update_post(alice, post.pk, "new")
    else:
        services.delete_post(alice, post.pk)
    loader.finish(thread)

    assert result[0]["body"] == "old"  # the racing read still answers its caller
    # The write's event found the fill's lease and voided it: nothing old stored, nothing created.
    assert details.client.exists(details.detail_key(post.pk)) == 0
    if change == "edit":
        assert selectors.post(post.pk)["body"] == "new"  # the next reader fills from the database
        assert details.get(details.detail_key(post.pk))["body"] == "new"
    else:
        assert selectors.post(post.pk) is None


def test_a_detail_fill_that_raced_a_write_applied_by_the_worker_is_not_stored(
    people, worker_only, pipeline_worker
):
    alice, _, _ = people
    post = make_post(alice, "old")
    # The worker applies post.created (it renews the author's feed stamp) before the race starts.
    stamp = eventually(lambda: feeds.client.get(feeds.stamp_key(alice.pk)))
    details.delete(details.detail_key(post.pk))
    loader = PausedLoader(lambda: queries.post_detail_or_none(post.pk))
    thread, _ = loader.run_in_thread(lambda load: details.get_post(post.pk, load))

    services.update_post(alice, post.pk, "new")
    eventually(lambda: feeds.client.get(feeds.stamp_key(alice.pk)) != stamp)  # post.updated applied
    loader.finish(thread)

    assert details.client.exists(details.detail_key(post.pk)) == 0  # the fill was voided
    assert selectors.post(post.pk)["body"] == "new"
    assert details.get(details.detail_key(post.pk))["body"] == "new"


def test_an_own_feed_fill_that_raced_a_post_is_not_served(people):
    alice, _, _ = people
    make_post(alice, "first")
    loader = PausedLoader(lambda: queries.feed_page(alice.pk, 1, 20))
    thread, result = loader.run_in_thread(lambda load: feeds.get_feed(alice.pk, 1, 20, load))

    make_post(alice, "second")  # commits; its post-commit apply renews alice's feed generation
    loader.finish(thread)

    assert [item["body"] for item in result[0]] == ["first"]
    fresh = feeds.get_feed(alice.pk, 1, 20, lambda: queries.feed_page(alice.pk, 1, 20))
    assert [item["body"] for item in fresh] == ["second", "first"]


def test_a_follower_feed_fill_that_raced_a_post_is_not_served(people, pipeline_worker):
    alice, bob, _ = people
    Follow.objects.create(follower=bob, followee=alice)
    make_post(alice, "first")
    eventually(lambda: feed_bodies(client_for(bob)) == ["first"])
    feeds.invalidate(bob.pk)
    generation = feeds.client.get(feeds.stamp_key(bob.pk))
    loader = PausedLoader(lambda: queries.feed_page(bob.pk, 1, 20))
    thread, _ = loader.run_in_thread(lambda load: feeds.get_feed(bob.pk, 1, 20, load))

    make_post(alice, "second")
    eventually(lambda: feeds.client.get(feeds.stamp_key(bob.pk)) != generation)  # fan-out ran
    loader.finish(thread)

    assert feed_bodies(client_for(bob)) == ["second", "first"]


def test_a_counts_fill_from_an_older_read_does_not_replace_newer_counts(people, monkeypatch):
    alice, bob, _ = people
    post = make_post(alice)
    counts.delete(counts.counts_key(post.pk))
    read_stats = queries.post_stats_many
    loader = PausedLoader(lambda: read_stats([post.pk]))
    monkeypatch.setattr(queries, "post_stats_many", lambda ids: loader())
    thread, result = loader.run_in_thread(lambda load: selectors.with_counts([{"id": post.pk}]))

    services.react(bob, post.pk, "laugh")  # commits; its snapshot (newer version) is applied
    loader.finish(thread)

    assert result[0][0]["counts"]["reactions"]["laugh"] == 0  # the racing read's own answer
    assert counts.client.exists(counts.counts_key(post.pk)) == 0  # its fill was voided by the event
    assert selectors.with_counts([{"id": post.pk}])[0]["counts"]["reactions"]["laugh"] == 1
    assert counts.get(counts.counts_key(post.pk))["reactions"]["laugh"] == 1


# --- fan-out to 10,000 followers -----------------------------------------------------------------


@pytest.mark.slow
def test_a_post_by_an_author_with_10000_followers_invalidates_them_all_in_chunks(
    transactional_db, pipeline_worker
):
    chunk = django_settings.FEED_FANOUT_CHUNK
    author = make_user("famous")
    # Setup without events: plain users, and follows through the base QuerySet.bulk_create (the
    # publishing one would send 10,000 follow.created events we are not testing here).
    AppUser.objects.bulk_create(
        [AppUser(username=f"fan{i}", password="!") for i in range(10_000)], batch_size=2000
    )
    fan_ids = list(AppUser.objects.filter(username__startswith="fan").values_list("id", flat=True))
    from django.db import models

    models.QuerySet.bulk_create(
        Follow.objects.all(), [Follow(follower_id=i, followee=author) for i in fan_ids], batch_size=2000
    )
    pipe = feeds.client.pipeline(transaction=False)
    for fan_id in fan_ids:
        pipe.set(feeds.stamp_key(fan_id), "before", ex=600)
    pipe.execute()

    batches: list[int] = []
    lock = threading.Lock()

    def record(sender=None, args=None, **kwargs):
        if sender is not None and sender.name == "feed.invalidate_feeds":
            with lock:
                batches.append(len(args[0]))

    task_prerun.connect(record, weak=False)
    try:
        make_post(author, "hello, all of you")

        def all_renewed() -> bool:
            keys = [feeds.stamp_key(i) for i in fan_ids]
            values = []
            for start in range(0, len(keys), chunk):
                pipe = feeds.client.pipeline(transaction=False)  # GETs: the stamps span many slots
                for key in keys[start : start + chunk]:
                    pipe.get(key)
                values += pipe.execute()
            return sum(value == b"before" for value in values) == 0

        eventually(all_renewed, timeout=60, interval=0.2)
        eventually(lambda: sum(batches) == len(fan_ids), timeout=10)
    finally:
        task_prerun.disconnect(record)

    assert len(batches) == -(-len(fan_ids) // chunk)
    assert max(batches) <= chunk
    assert Post.objects.filter(author=author).count() == 1
