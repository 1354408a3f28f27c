"""The consistency checker finds nothing on a converged cache, and finds what a silent change broke."""

import pytest
from django.core.management import CommandError, call_command
from django.db import models

from core.consistency import run_checks
from feed import queries, selectors
from feed.cache import PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.models import Post, Reaction
from tests.factories import make_post, make_user


def _results() -> dict:
    return {result.name: result for result in run_checks(sample=50)}


def test_converged_cache_has_no_mismatches(transactional_db, redis_client, capsys):
    author, fan = make_user(), make_user()
    post = make_post(author, body="steady")
    gone = make_post(author, body="deleted")
    for read in (post, gone):  # readers fill them; events then update what is cached
        selectors.post(read.pk)
    Reaction.objects.create(user=fan, post=post, kind="wow")
    gone.delete()
    feeds = UserFeedCache()
    feeds.get_feed(author.pk, 1, 20, lambda: queries.feed_page(author.pk, 1, 20))
    results = _results()
    assert results["post details"].checked == 2  # the live post and the tombstone
    assert results["reaction counts"].checked == 2
    assert results["feed pages"].checked == 1
    assert all(not result.mismatches for result in results.values())
    call_command("check_cache_consistency")
    assert "0 mismatches" in capsys.readouterr().out


def test_a_change_that_bypassed_the_pipeline_is_reported(transactional_db, redis_client):
    post = make_post(body="original")
    PostDetailCache().get_post(post.pk, lambda: queries.post_detail_or_none(post.pk))
    ReactionCountsCache().get_counts(post.pk, lambda: queries.post_stats_or_none(post.pk))
    # A raw UPDATE publishes nothing: exactly the kind of bug the checker exists to catch.
    models.QuerySet.update(Post.objects.filter(pk=post.pk), body="changed behind the cache's back")
    results = _results()
    assert len(results["post details"].mismatches) == 1
    assert "original" in results["post details"].mismatches[0]
    assert not results["reaction counts"].mismatches
    with pytest.raises(CommandError) as raised:
        call_command("check_cache_consistency")
    assert raised.value.returncode == 1


def test_stale_feed_page_of_the_current_generation_is_reported(transactional_db, redis_client):
    user = make_user()
    make_post(user, body="first")
    feeds = UserFeedCache()
    feeds.get_feed(user.pk, 1, 20, lambda: queries.feed_page(user.pk, 1, 20))
    models.QuerySet.bulk_create(Post.objects.all(), [Post(author=user, body="silent", version=1)])
    assert len(_results()["feed pages"].mismatches) == 1
    feeds.invalidate(user.pk)  # a new generation: the stale page can no longer be served
    assert _results()["feed pages"].checked == 0


def test_conversation_windows_are_checked(transactional_db, redis_client):
    from chat.cache import ConversationMessagesCache
    from chat.models import Message
    from chat.services import create_conversation, send_message

    alice, bob = make_user(), make_user()
    conversation = create_conversation(alice, [bob.pk])
    for i in range(3):
        send_message(alice, conversation.pk, f"m{i}")
    ConversationMessagesCache().get_messages(conversation.pk)
    assert _results()["conversation lists"].checked == 1
    assert not _results()["conversation lists"].mismatches
    sneaky = Message.objects.filter(conversation=conversation).first()
    models.QuerySet.update(Message.objects.filter(pk=sneaky.pk), body="edited without an event")
    assert len(_results()["conversation lists"].mismatches) == 1


def test_sample_bounds_every_kind_of_entry_and_zero_checks_all(transactional_db, redis_client, capsys):
    from chat.cache import ConversationMessagesCache
    from chat.services import create_conversation, send_message
    from feed import selectors

    author = make_user()
    posts = [make_post(author, body=f"p{i}") for i in range(4)]
    for post in posts:
        Reaction.objects.create(user=make_user(), post=post, kind="like")
        assert selectors.post(post.pk) is not None  # read through: both entries cached
    for _ in range(3):
        conversation = create_conversation(author, [make_user().pk])
        send_message(author, conversation.pk, "hi")
        ConversationMessagesCache().get_messages(conversation.pk)
    call_command("check_cache_consistency", "--sample", "2")
    out = capsys.readouterr().out
    for kind in ("post details", "reaction counts", "conversation lists"):
        assert f"{kind}: 2 checked" in out, out
    call_command("check_cache_consistency", "--sample", "0")
    out = capsys.readouterr().out
    assert "post details: 4 checked" in out, out
    assert "conversation lists: 3 checked" in out, out
    with pytest.raises(CommandError):
        call_command("check_cache_consistency", "--sample", "-1")
