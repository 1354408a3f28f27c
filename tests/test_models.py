"""Model constraints and the version contract of VersionedModel (what the cache's set_if_newer needs)."""

import threading
import time

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from chat.models import Conversation, Message, Participant
from feed.models import Comment, Follow, Post, Reaction
from tests.factories import make_post, make_user

pytestmark = pytest.mark.django_db


def test_follow_is_unique_per_follower_and_followee():
    ann, bob = make_user(), make_user()
    Follow.objects.create(follower=ann, followee=bob)
    with pytest.raises(IntegrityError), transaction.atomic():
        Follow.objects.create(follower=ann, followee=bob)
    Follow.objects.create(follower=bob, followee=ann)  # the other direction is another follow
    assert Follow.objects.count() == 2


def test_nobody_follows_themselves():
    ann = make_user()
    with pytest.raises(IntegrityError), transaction.atomic():
        Follow.objects.create(follower=ann, followee=ann)
    assert not Follow.objects.exists()


def test_one_reaction_per_user_and_post():
    ann, post = make_user(), make_post()
    Reaction.objects.create(user=ann, post=post, kind=Reaction.Kind.LIKE)
    with pytest.raises(IntegrityError), transaction.atomic():
        Reaction.objects.create(user=ann, post=post, kind=Reaction.Kind.LOVE)
    Reaction.objects.create(user=make_user(), post=post, kind=Reaction.Kind.LOVE)
    Reaction.objects.create(user=ann, post=make_post(), kind=Reaction.Kind.LOVE)
    assert Reaction.objects.filter(user=ann).count() == 2


def test_a_user_joins_a_conversation_once():
    ann = make_user()
    conversation = Conversation.objects.create(title="t")
    Participant.objects.create(conversation=conversation, user=ann)
    with pytest.raises(IntegrityError), transaction.atomic():
        Participant.objects.create(conversation=conversation, user=ann)
    assert list(conversation.participants.all()) == [ann]


def test_post_version_starts_at_one_and_increases_on_every_save():
    post = make_post(body="v1")
    assert post.version == 1
    post.body = "v2"
    post.save()
    assert post.version == 2
    post.body = "v3"
    post.save(update_fields=["body"])  # version is added to update_fields
    assert post.version == 3
    post.refresh_from_db()
    assert (post.body, post.version) == ("v3", 3)


def test_queryset_update_bumps_the_version_of_each_changed_row():
    first, second = make_post(body="a"), make_post(body="b")
    untouched = make_post(body="c")
    second.save()  # version 2
    assert Post.objects.filter(pk__in=[first.pk, second.pk]).update(body="edited") == 2
    versions = dict(Post.objects.values_list("pk", "version"))
    assert versions == {first.pk: 2, second.pk: 3, untouched.pk: 1}
    assert Post.objects.filter(pk=first.pk).update(body="again") == 1
    first.refresh_from_db()
    assert first.version == 3


def test_a_stale_instance_still_gets_the_next_version():
    post = make_post()
    stale = Post.objects.get(pk=post.pk)
    post.save()  # version 2
    stale.body = "late writer"
    stale.save()
    assert stale.version == 3
    assert Post.objects.get(pk=post.pk).version == 3


def test_version_cannot_be_set_by_a_caller_on_save():
    post = make_post()
    post.version = 1000
    post.save()
    assert post.version == 2
    assert Post.objects.get(pk=post.pk).version == 2


def test_message_version_increases_too():
    ann = make_user()
    conversation = Conversation.objects.create()
    Participant.objects.create(conversation=conversation, user=ann)
    message = Message.objects.create(conversation=conversation, sender=ann, body="hi")
    assert message.version == 1
    message.body = "hi!"
    message.save(update_fields=["body"])
    assert Message.objects.get(pk=message.pk).version == 2


def test_the_version_bump_rides_on_the_update_itself():
    """One statement per save of an existing row: UPDATE ... version = version + 1 ... RETURNING."""
    post = make_post()
    post.body = "edited"
    with CaptureQueriesContext(connection) as queries:
        post.save(update_fields=["body"])
    sql = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    [update] = [s for s in sql if s.startswith("UPDATE")]
    assert '"version" = ("feed_post"."version" + 1)' in update
    assert 'RETURNING "version"' in update
    assert not [s for s in sql if s.startswith("SELECT") and "FOR UPDATE" in s]
    assert post.version == 2 == Post.objects.get(pk=post.pk).version


def test_saving_a_row_deleted_meanwhile_inserts_it_again_as_version_one():
    post = make_post()
    post.save()  # version 2
    stale = Post.objects.get(pk=post.pk)
    Post.objects.filter(pk=post.pk).delete()
    stale.save()  # Django's save: UPDATE finds no row, so INSERT
    assert stale.version == 1 == Post.objects.get(pk=post.pk).version


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_of_one_row_get_versions_in_commit_order():
    """The UPDATE holds the row lock until commit: a second save waits for the first and gets the
    next version, so the later commit always has the higher one."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks across connections: PostgreSQL (SQLite serializes whole writes)")
    post = make_post()
    first_locked, results = threading.Event(), {}

    def second_writer() -> None:
        first_locked.wait(5)
        other = Post.objects.get(pk=post.pk)
        other.body = "second"
        with transaction.atomic():
            other.save(update_fields=["body"])
        results["second"] = other.version
        connections.close_all()

    thread = threading.Thread(target=second_writer)
    thread.start()
    with transaction.atomic():
        post.body = "first"
        post.save(update_fields=["body"])
        first_locked.set()
        time.sleep(0.3)  # the second save is blocked on our row lock meanwhile
        assert "second" not in results
    thread.join(10)
    assert (post.version, results["second"]) == (2, 3)
    assert Post.objects.values_list("body", "version").get(pk=post.pk) == ("second", 3)


def test_bulk_update_is_refused_with_a_clear_error():
    post = make_post()
    post.body = "silent"
    with pytest.raises(NotImplementedError, match=r"bulk_update\(\) would publish no events"):
        Post.objects.bulk_update([post], ["body"])
    with pytest.raises(NotImplementedError, match="Follow"):
        Follow.objects.bulk_update([], ["created_at"])
    assert Post.objects.get(pk=post.pk).body != "silent"


@pytest.mark.parametrize("option", ["ignore_conflicts", "update_conflicts"])
def test_bulk_create_that_could_skip_rows_is_refused(option):
    ann, bob = make_user(), make_user()
    with pytest.raises(ValueError, match=f"{option.split('_')[0]}_conflicts"):
        Follow.objects.bulk_create([Follow(follower=ann, followee=bob)], **{option: True})
    assert not Follow.objects.exists()


def test_plain_bulk_create_gives_version_one_and_keys():
    author = make_user()
    posts = Post.objects.bulk_create([Post(author=author, body=str(i)) for i in range(3)])
    assert all(p.pk for p in posts)
    assert set(Post.objects.filter(author=author).values_list("version", flat=True)) == {1}


def test_comment_belongs_to_a_post_and_an_author():
    post, ann = make_post(), make_user()
    comment = Comment.objects.create(post=post, author=ann, body="nice")
    assert list(post.comments.all()) == [comment]
