"""WriteThroughCacheStrategy.save_and_cache: the database first, the cache only once it commits."""

import pytest
from django.db import transaction

from core.caching import WriteThroughCacheStrategy
from feed.models import Post
from tests.factories import make_user


class PostBodies(WriteThroughCacheStrategy):
    namespace = "wt"
    default_ttl = 60


class Boom(Exception):
    pass


@pytest.fixture
def strategy():
    return PostBodies()


def test_save_and_cache_writes_the_database_then_the_cache(transactional_db, strategy, redis_client):
    author = make_user()
    key = strategy.key("post", "fixed")
    post = strategy.save_and_cache(
        lambda: Post.objects.create(author=author, body="hello"),
        key,
        lambda p: {"id": p.pk, "body": p.body, "version": p.version},
    )
    assert Post.objects.filter(pk=post.pk, body="hello").exists()
    assert strategy.get(key) == {"id": post.pk, "body": "hello", "version": 1}
    assert 0 < redis_client.pttl(key) <= 60_000


def test_cache_is_written_only_after_the_outer_transaction_commits(transactional_db, strategy):
    author = make_user()
    key = strategy.key("post", "outer")
    with transaction.atomic():
        strategy.save_and_cache(
            lambda: Post.objects.create(author=author, body="pending"),
            key,
            lambda p: {"body": p.body, "version": p.version},
        )
        assert strategy.get(key, "absent") == "absent"  # not yet committed: nothing cached
    assert strategy.get(key) == {"body": "pending", "version": 1}


def test_rolled_back_transaction_writes_nothing_to_the_cache(transactional_db, strategy, redis_client):
    author = make_user()
    key = strategy.key("post", "rollback")
    with pytest.raises(Boom), transaction.atomic():
        strategy.save_and_cache(
            lambda: Post.objects.create(author=author, body="doomed"),
            key,
            lambda p: {"body": p.body, "version": p.version},
        )
        raise Boom
    assert not Post.objects.filter(body="doomed").exists()
    assert redis_client.exists(key) == 0


def test_write_that_raises_writes_nothing_to_the_cache(transactional_db, strategy, redis_client):
    author = make_user()
    key = strategy.key("post", "raises")

    def write():
        Post.objects.create(author=author, body="half done")
        raise Boom

    with pytest.raises(Boom):
        strategy.save_and_cache(write, key, lambda p: {"version": 1})
    assert not Post.objects.filter(body="half done").exists()
    assert redis_client.exists(key) == 0


def test_rolled_back_savepoint_inside_a_committed_transaction_writes_nothing(
    transactional_db, strategy, redis_client
):
    author = make_user()
    kept_key, dropped_key = strategy.key("post", "kept"), strategy.key("post", "dropped")
    with transaction.atomic():
        strategy.save_and_cache(
            lambda: Post.objects.create(author=author, body="kept"),
            kept_key,
            lambda p: {"body": p.body, "version": p.version},
        )
        with pytest.raises(Boom), transaction.atomic():
            strategy.save_and_cache(
                lambda: Post.objects.create(author=author, body="dropped"),
                dropped_key,
                lambda p: {"body": p.body, "version": p.version},
            )
            raise Boom
    assert Post.objects.filter(body="kept").exists()
    assert not Post.objects.filter(body="dropped").exists()
    assert strategy.get(kept_key) == {"body": "kept", "version": 1}
    assert redis_client.exists(dropped_key) == 0


def test_a_later_save_replaces_the_cached_version(transactional_db, strategy):
    author = make_user()
    key = strategy.key("post", "versions")
    to_cache = lambda p: {"body": p.body, "version": p.version}  # noqa: E731
    post = strategy.save_and_cache(lambda: Post.objects.create(author=author, body="v1"), key, to_cache)

    def edit():
        post.body = "v2"
        post.save()
        return post

    strategy.save_and_cache(edit, key, to_cache)
    assert strategy.get(key) == {"body": "v2", "version": 2}
