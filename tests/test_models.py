"""Model constraints and the version contract of VersionedModel (what the cache's set_if_newer needs)."""

import pytest
from django.db import IntegrityError, transaction

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
