"""Writes for the API. Each runs in one transaction; the models publish their events, whose direct
cache effects are applied right after commit (read-your-writes) and by the worker (everyone else).

Failures are `core.errors` ServiceErrors (`NotFound`, `Forbidden`, `InvalidInput`), each carrying
the status the API's one exception handler answers with. Integrity races (a double click, a
concurrent delete) become one of them, never an IntegrityError.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction

from core.errors import Forbidden, InvalidInput, NotFound
from feed.models import Comment, Follow, Post, Reaction
from feed.popularity import COMMENT, REACTION, tracker

# --- posts ------------------------------------------------------------------------------------


def create_post(author: AbstractUser, body: str) -> Post:
    return Post.objects.create(author=author, body=body)


def _own_post_for_update(user: AbstractUser, post_id: int) -> Post:
    post = Post.objects.select_for_update(of=("self",)).select_related("author").filter(pk=post_id).first()
    if post is None:
        raise NotFound("post not found")
    if post.author_id != user.pk:
        raise Forbidden("only the author can change this post")
    return post


def update_post(user: AbstractUser, post_id: int, body: str) -> Post:
    with transaction.atomic():
        post = _own_post_for_update(user, post_id)
        post.body = body
        post.save(update_fields=["body", "updated_at"])
    return post


def delete_post(user: AbstractUser, post_id: int) -> None:
    """Delete the post with its reactions and comments (one post.deleted event tombstones its cache)."""
    with transaction.atomic():
        _own_post_for_update(user, post_id).delete()


# --- reactions and comments -------------------------------------------------------------------


def _lock_post(post_id: int) -> None:
    """Lock the post's row: its counters change in commit order, and it can't vanish under us."""
    if Post.objects.select_for_update().filter(pk=post_id).values_list("pk", flat=True).first() is None:
        raise NotFound("post not found")


def react(user: AbstractUser, post_id: int, kind: str) -> tuple[Reaction, bool]:
    """One reaction per user and post: the first creates it, a later one changes its kind.
    Returns (reaction, created)."""
    try:
        with transaction.atomic():
            _lock_post(post_id)
            reaction = Reaction.objects.filter(user=user, post_id=post_id).first()
            created = reaction is None
            if created:
                reaction = Reaction.objects.create(user=user, post_id=post_id, kind=kind)
            elif reaction.kind != kind:
                reaction.kind = kind
                reaction.save(update_fields=["kind"])
    except IntegrityError as exc:  # the post was deleted under us (deferred FK check at commit)
        raise NotFound("post not found") from exc
    tracker.record_post(post_id, REACTION)
    return reaction, created


def unreact(user: AbstractUser, post_id: int) -> bool:
    """Remove the user's reaction if any. Returns whether there was one."""
    with transaction.atomic():
        _lock_post(post_id)
        reaction = Reaction.objects.filter(user=user, post_id=post_id).first()
        if reaction is None:
            return False
        reaction.delete()
        return True


def add_comment(user: AbstractUser, post_id: int, body: str) -> Comment:
    try:
        with transaction.atomic():
            _lock_post(post_id)
            comment = Comment.objects.create(post_id=post_id, author=user, body=body)
    except IntegrityError as exc:
        raise NotFound("post not found") from exc
    tracker.record_post(post_id, COMMENT)
    return comment


def _own_comment(user: AbstractUser, comment_id: int) -> Comment:
    """The user's comment, its post locked first (the order add_comment and delete_post take)."""
    comment = Comment.objects.select_related("author").filter(pk=comment_id).first()
    if comment is None:
        raise NotFound("comment not found")
    if comment.author_id != user.pk:
        raise Forbidden("only the author can change this comment")
    _lock_post(comment.post_id)
    return comment


def edit_comment(user: AbstractUser, comment_id: int, body: str) -> Comment:
    """Change a comment's body (its author only). No cache holds comment bodies (pages are read
    from the database) and the counts do not change, so there is no event to publish."""
    with transaction.atomic():
        comment = _own_comment(user, comment_id)
        comment.body = body
        if not Comment.objects.filter(pk=comment_id).update(body=body):
            raise NotFound("comment not found")  # deleted between the read and the lock
    return comment


def delete_comment(user: AbstractUser, comment_id: int) -> None:
    """Delete a comment (its author only); its comment.deleted event updates the post's counts."""
    with transaction.atomic():
        comment = _own_comment(user, comment_id)
        if not Comment.objects.filter(pk=comment.pk).exists():
            raise NotFound("comment not found")
        comment.delete()


# --- follows ----------------------------------------------------------------------------------


def _check_target(user: AbstractUser, target_id: int) -> None:
    if target_id == user.pk:
        raise InvalidInput("you cannot follow yourself")
    if not get_user_model().objects.filter(pk=target_id, is_active=True).exists():
        raise NotFound("user not found")


def follow(user: AbstractUser, target_id: int) -> bool:
    """Follow `target_id`; idempotent. Returns True if this call created the follow."""
    _check_target(user, target_id)
    try:
        with transaction.atomic():
            if Follow.objects.filter(follower=user, followee_id=target_id).exists():
                return False
            try:
                with transaction.atomic():
                    Follow.objects.create(follower=user, followee_id=target_id)
            except IntegrityError:  # a concurrent request followed first
                return False
            return True
    except IntegrityError as exc:  # the target was deleted under us (deferred FK check at commit)
        raise NotFound("user not found") from exc


def unfollow(user: AbstractUser, target_id: int) -> bool:
    """Stop following `target_id`; idempotent. Returns True if there was a follow to remove."""
    _check_target(user, target_id)
    with transaction.atomic():
        deleted, _ = Follow.objects.filter(follower=user, followee_id=target_id).delete()
    return deleted > 0
