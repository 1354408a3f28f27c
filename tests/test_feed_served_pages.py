"""A hot first feed page read from the same bytes as the page before is that page again
(`feed.selectors.first_page(unchanged_since=...)`, and GET /api/feed answers the body it rendered
then): no counts merge, no JSON, and nothing stale. Every change to what the page is made of (a
count, a delete, the stamp, an evicted entry, an epoch, a refresh coming due, Redis down) gives
the page the database or the new bytes say.

Real Redis and database; every test commits (events applied at commit, as in production).
"""

import math
import random

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.auth import issue_token
from core.caching import CacheManager, breaker, swr
from feed import api, selectors
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


class Reader:
    """Reads page 1 as GET /api/feed does: conditionally on the source of the page it had."""

    def __init__(self, viewer_id: int) -> None:
        self.viewer_id = viewer_id
        self.page: selectors.FirstPage | None = None

    def read(self) -> selectors.FirstPage:
        since = self.page.source if self.page is not None else None
        page = selectors.first_page(self.viewer_id, SIZE, unchanged_since=since)
        if page is not None:
            self.page = page
        self.unchanged = page is None
        return self.page


def one_read() -> bool:
    """Whether a page's counts are read in its own MGET (one Redis). A cluster's MGET cannot span
    slots: the counts are read apart, no page is made of one read's bytes, and every read makes
    the page whole; the tests then check that it is still right."""
    return not settings.REDIS_CLUSTER


def hot(viewer_id: int) -> Reader:
    """A reader whose page is made of cached bytes alone (the first read fills the caches, the
    second reads the counts with the page)."""
    reader = Reader(viewer_id)
    reader.read()
    assert (reader.read().source is not None) == one_read()
    return reader


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
    return [item["counts"]["comments"] for item in page.items]


@pytest.mark.standalone_only(reason="on a cluster no page is made of one MGET's bytes (one_read)")
def test_the_same_bytes_are_the_same_page_with_no_counts_work(viewer, posts, monkeypatch):
    reader = hot(viewer.pk)
    before = reader.page
    monkeypatch.setattr(selectors.counts, "get_many_or_load", lambda *a, **k: pytest.fail("counts work"))
    assert reader.read() is before
    assert reader.unchanged
    assert [item["id"] for item in before.items] == [post.pk for post in reversed(posts)]
    # Without a source to compare with, the page is made again, and it is the same page.
    monkeypatch.undo()
    assert selectors.first_page(viewer.pk, SIZE) == before


def test_a_count_a_delete_and_a_new_stamp_each_change_the_page(viewer, author, posts):
    reader = hot(viewer.pk)
    Comment.objects.create(post=posts[0], author=author, body="hi")  # its counts entry, at commit
    assert comments_shown(reader.read()) == [0, 0, 1]
    assert not reader.unchanged
    posts[1].delete()  # a tombstone in its counts entry
    assert [item["id"] for item in reader.read().items] == [posts[2].pk, posts[0].pk]
    reader.read()
    selectors.feeds.invalidate(viewer.pk)  # a new stamp: the page entry is no longer served
    with connection.cursor() as cursor:  # an edit the caches are never told of
        cursor.execute(f"UPDATE {Post._meta.db_table} SET body = %s WHERE id = %s", ["unseen", posts[2].pk])
    assert reader.read().items[0]["body"] == "unseen"


def test_an_evicted_counts_entry_is_answered_by_the_database_not_by_the_page_before(
    viewer, author, posts, redis_client
):
    reader = hot(viewer.pk)
    redis_client.delete(selectors.counts.counts_key(posts[0].pk))  # evicted
    comment_behind_the_cache(posts[0], author)
    page = reader.read()
    assert comments_shown(page) == [0, 0, 1]
    assert page.source is None  # loaded: not a page of bytes alone


def test_a_new_counts_epoch_reads_new_keys_not_the_page_before(viewer, author, posts):
    reader = hot(viewer.pk)
    comment_behind_the_cache(posts[0], author)
    CacheManager().bump_namespace(selectors.counts.namespace)  # the old epoch's keys are orphaned
    assert comments_shown(reader.read()) == [0, 0, 1]


def test_a_counts_entry_coming_due_is_refreshed_though_its_bytes_did_not_change(
    viewer, author, posts, monkeypatch
):
    """The clock is the page's one input besides its bytes: past a counts entry's soft expiry, the
    read refreshes it from the database (stale-while-revalidate), as a read of the whole page
    does. Fails if the source's `quiet_until` is not checked."""
    reader = hot(viewer.pk)
    comment_behind_the_cache(posts[0], author)
    reader.read()
    assert reader.unchanged == one_read()  # one Redis: the same bytes, the page before
    later = selectors.counts.clock() + selectors.counts.soft_ttl + 1
    monkeypatch.setattr(selectors.counts, "clock", lambda: later)
    assert comments_shown(reader.read()) == [0, 0, 1]


def test_with_redis_down_the_page_comes_from_the_database(viewer, author, posts, monkeypatch, unused_port):
    reader = hot(viewer.pk)
    comment_behind_the_cache(posts[0], author)
    dead = redis.Redis(port=unused_port, socket_connect_timeout=0.05, socket_timeout=0.05)
    monkeypatch.setattr(selectors.feeds.guard, "_client", dead)
    monkeypatch.setattr(selectors.counts.guard, "_client", dead)
    try:
        assert comments_shown(reader.read()) == [0, 0, 1]
    finally:
        breaker.reset()


def test_the_api_body_follows_the_page(viewer, author, posts, monkeypatch):
    """GET /api/feed answers an unchanged page with the body it rendered for it; any change of the
    page (a reaction by someone else, then the viewer's own) renders it again."""
    client = Client(headers={"Authorization": f"Bearer {issue_token(viewer)}"})
    bodies = [client.get("/api/feed").content for _ in range(3)]
    with monkeypatch.context() as patched:
        if one_read():
            patched.setattr(api, "_json", lambda *a, **k: pytest.fail("rendered again"))
        bodies.append(client.get("/api/feed").content)
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
    assert swr.quiet_until(swr.SoftExpiry(soft=meta.soft, delta=0.0), beta) == meta.soft
    leased = swr.SoftExpiry(soft=meta.soft, delta=meta.delta, lease="x", until=meta.soft + 5_000)
    assert swr.quiet_until(leased, beta) == meta.soft + 5_000  # held off by the live lease
    assert not swr.due(leased, meta.soft + 4_999, beta, largest)
