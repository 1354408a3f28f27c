"""Followers see a post before its write returns (issue 13 item 5): an author's cached, complete
follower set lets the commit-time round trip invalidate the followers' feeds; anything less (an
absent, evicted, voided or large set) leaves them to the worker's fan-out, as before.

Tests without a `pipeline_worker` run no worker at all: what they see fresh, the commit-time path
did. Those with one run the real Celery worker (stream consumer + fan-out).
"""

import pytest
from django.test import Client

from accounts.auth import issue_token
from core.events import Event, EventHandler, HandlerRegistry, apply
from feed import handlers
from feed.cache import FollowerSetCache, UserFeedCache
from feed.fanout import invalidate_followers
from feed.models import Follow, Post
from tests.factories import make_post, make_user
from tests.polling import eventually as _eventually

sets = FollowerSetCache()
feeds = UserFeedCache()


def eventually(check, timeout: float = 20.0):
    return _eventually(check, timeout=timeout, interval=0.02)


def client_for(user) -> Client:
    return Client(headers={"Authorization": f"Bearer {issue_token(user)}"})


def feed_bodies(client: Client) -> list[str]:
    response = client.get("/api/feed")
    assert response.status_code == 200
    return [item["body"] for item in response.json()["items"]]


def members(author_id: int) -> set[str]:
    return {member.decode() for member in sets.client.smembers(sets.set_key(author_id))}


def fill_followers_of(*authors) -> None:
    """What the worker's fan-out does after a post: read the followers, fill the missing sets."""
    invalidate_followers([author.pk for author in authors], chunk=1000)


@pytest.fixture(autouse=True, params=["in the pipeline", "read first"])
def fanout_path(request, monkeypatch) -> str:
    """Every test on both paths: the script in the commit's pipeline (one Redis), and the set read
    in a round trip before it (what a cluster does; forced here on one Redis too)."""
    if request.param == "read first":
        monkeypatch.setattr(FollowerSetCache, "stamps_in_script", lambda self: False)
    return "in the pipeline" if FollowerSetCache().stamps_in_script() else "read first"


@pytest.fixture
def people(transactional_db):
    return make_user("alice"), make_user("bob"), make_user("carol")


@pytest.fixture
def alice_followed(people):
    """bob and carol follow alice; alice's follower set is cached and complete; both feeds cached."""
    alice, bob, carol = people
    Follow.objects.create(follower=bob, followee=alice)
    Follow.objects.create(follower=carol, followee=alice)
    fill_followers_of(alice)
    assert members(alice.pk) == {str(bob.pk), str(carol.pk), FollowerSetCache.COMPLETE}
    as_bob, as_carol = client_for(bob), client_for(carol)
    assert feed_bodies(as_bob) == feed_bodies(as_carol) == []  # cached: empty pages
    return alice, as_bob, as_carol


# --- inline, no worker -----------------------------------------------------------------------


def test_a_follower_reads_a_new_edited_and_deleted_post_fresh_as_soon_as_the_write_returns(alice_followed):
    alice, as_bob, as_carol = alice_followed

    post = Post.objects.create(author=alice, body="v1")
    assert feed_bodies(as_bob) == ["v1"]
    assert feed_bodies(as_carol) == ["v1"]

    post.body = "v2"
    post.save()
    assert feed_bodies(as_bob) == ["v2"]

    post.delete()
    assert feed_bodies(as_bob) == []
    assert feed_bodies(as_carol) == []


def test_an_author_without_followers_gets_an_empty_complete_set(people):
    alice, _, _ = people
    fill_followers_of(alice)
    assert members(alice.pk) == {FollowerSetCache.COMPLETE}
    assert sets.audiences([alice.pk]) == {alice.pk: []}
    assert 0 < sets.client.pttl(sets.set_key(alice.pk)) <= sets.ttl_ms(None)


def test_an_absent_follower_set_leaves_the_followers_to_the_worker(people):
    alice, bob, _ = people
    Follow.objects.create(follower=bob, followee=alice)
    as_bob = client_for(bob)
    assert feed_bodies(as_bob) == []
    assert not sets.client.exists(sets.set_key(alice.pk))  # a follow event never creates the set

    make_post(alice, "by alice")
    assert feed_bodies(as_bob) == []  # not invalidated inline: the worker's fan-out's job (below)
    assert sets.audiences([alice.pk]) == {}


def test_an_evicted_follower_set_leaves_the_followers_to_the_worker(alice_followed):
    alice, as_bob, _ = alice_followed
    sets.client.delete(sets.set_key(alice.pk))  # what allkeys-lru does to a whole key

    make_post(alice, "by alice")
    assert feed_bodies(as_bob) == []  # the worker's job
    assert sets.audiences([alice.pk]) == {}


def test_a_set_without_the_complete_sentinel_is_never_used(alice_followed):
    alice, as_bob, _ = alice_followed
    sets.client.srem(sets.set_key(alice.pk), FollowerSetCache.COMPLETE)

    make_post(alice, "by alice")
    assert feed_bodies(as_bob) == []
    assert sets.audiences([alice.pk]) == {}


def test_a_follow_racing_a_post_past_the_set_read_still_ends_with_a_fresh_feed(
    alice_followed, monkeypatch, fanout_path
):
    alice, as_bob, _ = alice_followed
    dave = make_user("dave")
    as_dave = client_for(dave)
    assert feed_bodies(as_dave) == []
    if fanout_path == "read first":
        read_audiences = handlers.followers.audiences

        def audiences_then_a_follow(author_ids):
            found = read_audiences(author_ids)  # read without dave ...
            Follow.objects.create(follower=dave, followee=alice)  # ... who follows before the post's pipeline
            return found

        monkeypatch.setattr(handlers.followers, "audiences", audiences_then_a_follow)
    else:
        queue_script = handlers.followers.queue_stamp_followers

        def a_follow_then_the_script(pipe, author_id, feeds_):
            Follow.objects.create(
                follower=dave, followee=alice
            )  # commits after the post, before its pipeline
            queue_script(pipe, author_id, feeds_)

        monkeypatch.setattr(handlers.followers, "queue_stamp_followers", a_follow_then_the_script)
    make_post(alice, "raced")
    monkeypatch.undo()

    assert feed_bodies(as_bob) == ["raced"]
    assert feed_bodies(as_dave) == ["raced"]  # the follow's own event re-stamped dave's feed
    assert str(dave.pk) in members(alice.pk)  # and added him to the present set


def test_a_new_follower_joins_the_set_and_sees_the_next_post_at_once(alice_followed):
    alice, _, _ = alice_followed
    dave = make_user("dave")
    Follow.objects.create(follower=dave, followee=alice)
    assert str(dave.pk) in members(alice.pk)
    as_dave = client_for(dave)
    assert feed_bodies(as_dave) == []

    make_post(alice, "for dave too")
    assert feed_bodies(as_dave) == ["for dave too"]


def test_an_unfollow_drops_the_set_and_the_unfollower_never_sees_the_authors_posts(alice_followed):
    alice, as_bob, as_carol = alice_followed
    bob_id = Follow.objects.get(followee=alice, follower__username="bob").follower_id
    make_post(alice, "before")
    assert feed_bodies(as_bob) == feed_bodies(as_carol) == ["before"]

    Follow.objects.filter(followee=alice, follower_id=bob_id).delete()
    assert not sets.client.exists(sets.set_key(alice.pk))
    assert feed_bodies(as_bob) == []

    make_post(alice, "after")
    assert feed_bodies(as_bob) == []
    assert feed_bodies(as_carol) == ["before"]  # the set is gone: carol waits for the worker now


def test_a_large_audience_is_marked_and_left_to_the_worker(people, settings):
    settings.FEED_INLINE_FANOUT_MAX = 1
    alice, bob, carol = people
    Follow.objects.create(follower=bob, followee=alice)
    Follow.objects.create(follower=carol, followee=alice)
    fill_followers_of(alice)
    assert members(alice.pk) == {FollowerSetCache.LARGE}
    as_bob = client_for(bob)
    assert feed_bodies(as_bob) == []

    make_post(alice, "to many")
    assert feed_bodies(as_bob) == []  # the worker's job
    assert sets.audiences([alice.pk]) == {}


def test_a_set_that_outgrows_the_bound_turns_into_the_large_marker(people, settings):
    settings.FEED_INLINE_FANOUT_MAX = 1
    alice, bob, carol = people
    Follow.objects.create(follower=bob, followee=alice)
    fill_followers_of(alice)
    assert members(alice.pk) == {str(bob.pk), FollowerSetCache.COMPLETE}

    Follow.objects.create(follower=carol, followee=alice)
    assert members(alice.pk) == {FollowerSetCache.LARGE}
    assert 0 < sets.client.pttl(sets.set_key(alice.pk)) <= sets.ttl_ms(None)


def test_a_follow_during_a_fill_voids_it(people):
    alice, bob, _ = people
    leases = sets.take_fill_leases([alice.pk])
    assert set(leases) == {alice.pk}
    read_before_the_follow: dict[int, list[int]] = {}  # the fill's database read saw no follower
    Follow.objects.create(follower=bob, followee=alice)  # its event voids the lease

    assert sets.fill(leases, read_before_the_follow) == 0
    assert not sets.client.exists(sets.set_key(alice.pk))
    assert not sets.client.exists(sets.lease_key(alice.pk))


def test_a_present_set_takes_no_fill_lease(alice_followed):
    alice, _, _ = alice_followed
    assert sets.take_fill_leases([alice.pk]) == {}


def test_inline_fanout_off_uses_no_set(alice_followed, settings):
    settings.FEED_INLINE_FANOUT_MAX = 0
    alice, as_bob, _ = alice_followed
    make_post(alice, "by alice")
    assert feed_bodies(as_bob) == []


def test_the_write_succeeds_when_the_set_read_fails(alice_followed, monkeypatch, fanout_path):
    alice, as_bob, _ = alice_followed
    if fanout_path == "read first":

        def broken(author_ids):
            raise RuntimeError("injected")

        monkeypatch.setattr(handlers.followers, "audiences", broken)
    else:  # the script fails inside the commit's pipeline: WRONGTYPE on a set that is not one
        sets.client.set(sets.set_key(alice.pk), "not a set")
    post = make_post(alice, "still written")
    monkeypatch.undo()
    assert Post.objects.filter(pk=post.pk).exists()
    assert feed_bodies(as_bob) == []  # not prepared: the worker's job
    assert feeds.client.exists(feeds.stamp_key(alice.pk))


# --- the worker stays the backstop -----------------------------------------------------------


def test_the_worker_fans_out_an_uncached_audience_and_fills_its_set(people, pipeline_worker):
    alice, bob, _ = people
    Follow.objects.create(follower=bob, followee=alice)
    as_bob = client_for(bob)
    assert feed_bodies(as_bob) == []

    make_post(alice, "first")
    eventually(lambda: feed_bodies(as_bob) == ["first"])
    eventually(lambda: members(alice.pk) == {str(bob.pk), FollowerSetCache.COMPLETE})

    make_post(alice, "second")
    assert feed_bodies(as_bob) == ["second", "first"]  # inline now, before the worker


def test_the_worker_fans_out_a_large_audience(people, pipeline_worker, settings):
    settings.FEED_INLINE_FANOUT_MAX = 1
    alice, bob, carol = people
    Follow.objects.create(follower=bob, followee=alice)
    Follow.objects.create(follower=carol, followee=alice)
    as_bob, as_carol = client_for(bob), client_for(carol)
    assert feed_bodies(as_bob) == feed_bodies(as_carol) == []

    make_post(alice, "to many")
    eventually(lambda: feed_bodies(as_bob) == feed_bodies(as_carol) == ["to many"])
    eventually(lambda: members(alice.pk) == {FollowerSetCache.LARGE})


def test_a_follower_evicted_from_the_set_is_still_reached_by_the_worker(alice_followed, pipeline_worker):
    alice, as_bob, as_carol = alice_followed
    sets.client.srem(
        sets.set_key(alice.pk),
        str(Follow.objects.get(followee=alice, follower__username="carol").follower_id),
    )

    make_post(alice, "by alice")
    assert feed_bodies(as_bob) == ["by alice"]  # inline
    eventually(lambda: feed_bodies(as_carol) == ["by alice"])  # the backstop


# --- the registry's prepare hook -------------------------------------------------------------


class _Counting(EventHandler):
    event_types = ("thing.happened",)
    app_label = "tests"

    def __init__(self, extra: int = 0, fail: bool = False) -> None:
        self.extra, self.fail = extra, fail

    def prepare(self, events):
        if self.fail:
            raise RuntimeError("injected")
        return _Counting(extra=len(events))

    def apply(self, pipe, event):
        pipe.incr("tests:applied")
        for _ in range(self.extra):
            pipe.incr("tests:prepared")


class _Other(_Counting):
    event_types = ("other.happened",)
    app_label = "other"


def test_prepared_registry_applies_bound_handlers_and_leaves_the_original_alone(redis_client):
    registry = HandlerRegistry()
    original = registry.register(_Counting())
    other = registry.register(_Other())
    events = [Event("thing.happened", 1, {}), Event("thing.happened", 1, {})]
    prepared = registry.prepared(events)
    assert prepared is not registry
    assert registry.handler_for("thing.happened") is original
    assert prepared.handler_for("other.happened") is other  # not concerned: the same handler
    assert prepared.handlers_for("thing.happened") != (original,)

    pipe = redis_client.pipeline(transaction=False)
    applied = apply(pipe, events, prepared)
    pipe.execute()
    assert applied.failed() == []
    assert int(redis_client.get("tests:applied")) == 2
    assert int(redis_client.get("tests:prepared")) == 4


def test_a_failing_prepare_leaves_the_handler_unprepared(redis_client):
    registry = HandlerRegistry()
    registry.register(_Counting(fail=True))
    events = [Event("thing.happened", 1, {})]
    assert registry.prepared(events) is registry
    assert registry.prepared([]) is registry


@pytest.mark.parametrize("read_at_once", [2, 5000])
def test_the_fan_out_reads_every_follower_in_one_query_or_streamed(
    transactional_db, monkeypatch, read_at_once
):
    """Up to READ_AT_ONCE follows come in one plain query; more are streamed (a server-side cursor
    on PostgreSQL): either way every follower is reached and the sets are filled complete."""
    import feed.fanout as fanout

    monkeypatch.setattr(fanout, "READ_AT_ONCE", read_at_once)
    alice, bob = make_user("alice"), make_user("bob")
    fans = [make_user(f"fan{i}") for i in range(3)]
    for fan in fans:
        Follow.objects.create(follower=fan, followee=alice)
    Follow.objects.create(follower=fans[0], followee=bob)
    stamps = {fan.pk: feeds.ensure_stamp(feeds.stamp_key(fan.pk)) for fan in fans}

    assert invalidate_followers([alice.pk, bob.pk], chunk=1000) == 4

    assert members(alice.pk) == {*(str(fan.pk) for fan in fans), FollowerSetCache.COMPLETE}
    assert members(bob.pk) == {str(fans[0].pk), FollowerSetCache.COMPLETE}
    for fan in fans:  # every follower's feed has a new stamp
        assert feeds.client.get(feeds.stamp_key(fan.pk)).decode() != stamps[fan.pk]
