"""A hot first feed page read from the same bytes as before is answered with the same page
(feed.selectors `_served`, feed.api `_rendered`): no counts merge, no JSON, and nothing stale. Every
change to what the page is made of (a count, a delete, the stamp, an evicted entry, an epoch, a
refresh coming due, Redis down) gives the page the database or the new bytes say.

Real Redis and database; every test commits (events applied at commit, as in production).
"""

import math
import random

import pytest
import redis
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.auth import issue_token
from core.caching import CacheManager, breaker, swr
from feed import selectors
from feed.models import Comment, Follow, Post, Reaction
from tests.factories import make_post, make_user

pytestmark = pytest.mark.usefixtures("transactional_db")

SIZE = 20


@pytest.fixture
def viewer():
    return make_user("viewer")


@pytest.fixture
def author(viewer):
    author = make_user("author")
    Follow.objects.create(follower=viewer, followee=author)
    return author


@pytest.fixture
def posts(author):
    return [make_post(author, f"post {i}") for i in range(3)]


def hot(viewer_id: int):
    """Page 1 read until it is served from its bytes alone (the first read fills the caches, the
    second reads the counts with the page), then once more: (the last two answers)."""
    for _ in range(2):
        selectors.feed_page(viewer_id, None, SIZE)
    before = selectors.feed_page(viewer_id, None, SIZE)
    return before, selectors.feed_page(viewer_id, None, SIZE)


def comment_behind_the_cache(post, author) -> None:
    """A comment the caches are never told of (raw SQL: no signal, no event), as if its event
    were lost: only a read of the database shows it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Comment._meta.db_table} (post_id, author_id, body, created_at)"
            " VALUES (%s, %s, %s, %s)",
            [post.pk, author.pk, "unseen", timezone.now()],
        )


def comments_shown(page) -> list[int]:
    return [item["counts"]["comments"] for item in page[0]]


def test_the_same_bytes_are_answered_with_the_same_page_and_no_counts_work(viewer, posts, monkeypatch):
    before, again = hot(viewer.pk)
    assert again is before  # the same objects: merged and checked once
    monkeypatch.setattr(selectors.counts, "get_many_or_load", lambda *a, **k: pytest.fail("counts work"))
    assert selectors.feed_page(viewer.pk, None, SIZE) is before
    assert [item["id"] for item in before[0]] == [post.pk for post in reversed(posts)]


def test_a_count_a_delete_and_a_new_stamp_each_change_the_page(viewer, author, posts):
    hot(viewer.pk)
    Comment.objects.create(post=posts[0], author=author, body="hi")  # its counts entry, at commit
    after = selectors.feed_page(viewer.pk, None, SIZE)
    assert comments_shown(after) == [0, 0, 1]
    posts[1].delete()  # a tombstone in its counts entry
    shown = selectors.feed_page(viewer.pk, None, SIZE)[0]
    assert [item["id"] for item in shown] == [posts[2].pk, posts[0].pk]
    selectors.feeds.invalidate(viewer.pk)  # a new stamp: the page entry is no longer served
    with connection.cursor() as cursor:  # an edit the caches are never told of
        cursor.execute(f"UPDATE {Post._meta.db_table} SET body = %s WHERE id = %s", ["unseen", posts[2].pk])
    assert selectors.feed_page(viewer.pk, None, SIZE)[0][0]["body"] == "unseen"


def test_an_evicted_counts_entry_is_answered_by_the_database_not_by_the_page_before(
    viewer, author, posts, redis_client
):
    hot(viewer.pk)
    key = selectors.counts.counts_key(posts[0].pk)
    redis_client.delete(key)  # evicted
    comment_behind_the_cache(posts[0], author)
    assert comments_shown(selectors.feed_page(viewer.pk, None, SIZE)) == [0, 0, 1]


def test_a_new_counts_epoch_reads_new_keys_not_the_page_before(viewer, author, posts):
    hot(viewer.pk)
    comment_behind_the_cache(posts[0], author)
    CacheManager().bump_namespace(selectors.counts.namespace)  # the old epoch's keys are orphaned
    assert comments_shown(selectors.feed_page(viewer.pk, None, SIZE)) == [0, 0, 1]


def test_a_counts_entry_coming_due_is_refreshed_though_its_bytes_did_not_change(
    viewer, author, posts, monkeypatch
):
    """The clock is the page's one input besides its bytes: past a counts entry's soft expiry, the
    read refreshes it from the database (stale-while-revalidate), as a read without the memo does.
    Fails if the served page is used without its `quiet_until`."""
    hot(viewer.pk)
    comment_behind_the_cache(posts[0], author)
    later = selectors.counts.clock() + selectors.counts.soft_ttl + 1
    monkeypatch.setattr(selectors.counts, "clock", lambda: later)
    assert comments_shown(selectors.feed_page(viewer.pk, None, SIZE)) == [0, 0, 1]


def test_with_redis_down_the_page_comes_from_the_database(viewer, author, posts, monkeypatch, unused_port):
    hot(viewer.pk)
    comment_behind_the_cache(posts[0], author)
    dead = redis.Redis(port=unused_port, socket_connect_timeout=0.05, socket_timeout=0.05)
    monkeypatch.setattr(selectors.feeds.guard, "_client", dead)
    monkeypatch.setattr(selectors.counts.guard, "_client", dead)
    try:
        assert comments_shown(selectors.feed_page(viewer.pk, None, SIZE)) == [0, 0, 1]
    finally:
        breaker.reset()


def test_the_api_body_follows_the_page(viewer, author, posts):
    """GET /api/feed answers a served page with the body it rendered for it; any change of the page
    (here a reaction by someone else, then the viewer's own) renders it again."""
    client = Client(headers={"Authorization": f"Bearer {issue_token(viewer)}"})
    bodies = [client.get("/api/feed").content for _ in range(4)]
    assert len(set(bodies)) == 1
    Reaction.objects.create(user=author, post=posts[2], kind="love")
    items = client.get("/api/feed").json()["items"]
    assert items[0]["counts"]["reactions"]["love"] == 1
    assert items[0]["my_reaction"] is None
    client.get("/api/feed")
    Reaction.objects.create(user=viewer, post=posts[2], kind="wow")
    items = client.get("/api/feed").json()["items"]
    assert (items[0]["counts"]["reactions"]["love"], items[0]["counts"]["reactions"]["wow"]) == (1, 1)
    assert items[0]["my_reaction"] == "wow"
    other = Client(headers={"Authorization": f"Bearer {issue_token(author)}"})
    assert other.get("/api/feed").json()["items"][0]["my_reaction"] == "love"  # per user


class Draw(random.Random):
    """An rng that always draws `value`."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_quiet_until_is_before_the_earliest_refresh_any_draw_can_make():
    meta = swr.SoftExpiry(soft=1_000_000.0, delta=50.0)
    beta = 1.5
    quiet = swr.quiet_until(meta, beta)
    assert quiet == pytest.approx(1_000_000 - 50 * 1.5 * swr.QUIET_MARGIN)
    largest = Draw(1.0 - 2.0**-53)  # random()'s largest value: XFetch's earliest refresh
    assert not swr.due(meta, quiet, beta, largest)
    earliest = meta.soft - 50 * 1.5 * 53 * math.log(2)
    assert swr.due(meta, earliest + 1, beta, largest)  # the bound is within 0.3 * delta * beta
    assert quiet < earliest < quiet + 0.3 * 50 * 1.5
    assert swr.quiet_until(meta, 0.0) == meta.soft  # no early refresh without beta or delta
    assert swr.quiet_until(meta._replace(delta=0.0), beta) == meta.soft
    leased = meta._replace(lease="x", until=meta.soft + 5_000)
    assert swr.quiet_until(leased, beta) == meta.soft + 5_000  # held off by the live lease
    assert not swr.due(leased, meta.soft + 4_999, beta, largest)
