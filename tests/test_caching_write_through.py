"""Write-through: the database first, the cache only once it commits, through the real path
(a model save -> commit -> event -> the handler's `queue_write` -> version compare-and-set).

An event updates what is cached and never creates an entry: a post nobody read stays uncached, and
the next reader fills it from the database, which already has the write (read-your-writes).
EVENTS_APPLY_ON_COMMIT (on by default) applies the events in the commit's own round trip, so these
tests need no worker."""

import pytest
from django.db import transaction

from core.caching import WriteThroughCacheStrategy
from feed import queries
from feed.cache import PostDetailCache
from feed.models import Post
from tests.factories import make_user


class Boom(Exception):
    pass


@pytest.fixture
def details():
    return PostDetailCache()


def read(details: PostDetailCache, post_id: int) -> dict | None:
    """A reader's GET: the cached detail, or the database's, filled."""
    return details.get_post(post_id, lambda: queries.post_detail_or_none(post_id))


def cached(details: PostDetailCache, post_id: int) -> dict | None:
    value = details.get(details.detail_key(post_id), "absent")
    return value if value == "absent" else {k: value[k] for k in ("id", "body", "version")}


def test_post_detail_cache_is_a_write_through_strategy(details):
    assert isinstance(details, WriteThroughCacheStrategy)


def test_a_committed_save_writes_the_database_then_the_cache(transactional_db, details, redis_client):
    post = Post.objects.create(author=make_user(), body="hello")
    assert Post.objects.filter(pk=post.pk, body="hello").exists()
    assert cached(details, post.pk) == "absent"  # post.created never creates an entry
    read(details, post.pk)
    post.body = "hello again"
    post.save()
    assert cached(details, post.pk) == {"id": post.pk, "body": "hello again", "version": 2}
    assert 0 < redis_client.pttl(details.detail_key(post.pk)) <= PostDetailCache.default_ttl * 1000


def test_cache_is_written_only_after_the_outer_transaction_commits(transactional_db, details):
    post = Post.objects.create(author=make_user(), body="draft")
    read(details, post.pk)
    with transaction.atomic():
        post.body = "pending"
        post.save()
        assert cached(details, post.pk)["body"] == "draft"  # not yet committed: the cache is untouched
    assert cached(details, post.pk) == {"id": post.pk, "body": "pending", "version": 2}


def test_rolled_back_transaction_writes_nothing_to_the_cache(transactional_db, details, redis_client):
    author = make_user()
    with pytest.raises(Boom), transaction.atomic():
        post = Post.objects.create(author=author, body="doomed")
        raise Boom
    assert not Post.objects.filter(body="doomed").exists()
    assert redis_client.exists(details.detail_key(post.pk)) == 0


def test_write_that_raises_writes_nothing_to_the_cache(transactional_db, details, redis_client):
    author = make_user()
    created = []

    def write():
        created.append(Post.objects.create(author=author, body="half done"))
        raise Boom

    with pytest.raises(Boom), transaction.atomic():
        write()
    assert not Post.objects.filter(body="half done").exists()
    assert redis_client.exists(details.detail_key(created[0].pk)) == 0


def test_rolled_back_savepoint_inside_a_committed_transaction_writes_nothing(
    transactional_db, details, redis_client
):
    author = make_user()
    with transaction.atomic():
        kept = Post.objects.create(author=author, body="kept")
        with pytest.raises(Boom), transaction.atomic():
            dropped = Post.objects.create(author=author, body="dropped")
            raise Boom
    assert Post.objects.filter(body="kept").exists()
    assert not Post.objects.filter(body="dropped").exists()
    assert read(details, kept.pk)["body"] == "kept"
    assert cached(details, kept.pk) == {"id": kept.pk, "body": "kept", "version": 1}
    assert redis_client.exists(details.detail_key(dropped.pk)) == 0


def test_a_later_save_replaces_the_cached_version(transactional_db, details):
    post = Post.objects.create(author=make_user(), body="v1")
    assert read(details, post.pk)["body"] == "v1"
    post.body = "v2"
    post.save()
    assert cached(details, post.pk) == {"id": post.pk, "body": "v2", "version": 2}


def test_an_older_version_never_overwrites_a_newer_one(transactional_db, details, redis_client):
    post = Post.objects.create(author=make_user(), body="v1")
    first = read(details, post.pk)
    post.body = "v2"
    post.save()
    pipe = redis_client.pipeline(transaction=False)
    details.queue_write(pipe, first)  # a late, re-delivered post.created
    assert pipe.execute() == [0]
    assert details.update_if_newer(details.detail_key(post.pk), first) == 0
    assert cached(details, post.pk) == {"id": post.pk, "body": "v2", "version": 2}
