"""Writes for the API. Each runs in one transaction; the models publish their events, whose direct
cache effects are applied right after commit (read-your-writes) and by the worker (everyone else).

Failures are specific exceptions (`NotFound`, `Forbidden`, `Conflict`, `InvalidInput`) that the API
maps to status codes. Integrity races (a double click, a concurrent delete) become one of them,
never an IntegrityError.
"""

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from core.validation import validate_new_username
from feed.models import AppUser, Comment, Follow, Post, Reaction
from feed.popularity import COMMENT, REACTION, tracker


class ServiceError(Exception):
    """A write refused for a reason the caller can act on; str() is the message."""


class NotFound(ServiceError):
    pass


class Forbidden(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class InvalidInput(ServiceError):
    pass


# --- accounts ---------------------------------------------------------------------------------


def register_user(username: str, password: str) -> AppUser:
    """Create an account. Raises InvalidInput (bad username or weak password) or Conflict (taken)."""
    user = AppUser(username=username)
    try:
        validate_new_username(username)
        AppUser.username_validator(username)
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from exc
    if AppUser.objects.filter(username__iexact=username).exists():
        raise Conflict("username already taken")
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # registered concurrently
        raise Conflict("username already taken") from exc
    return user


# --- posts ------------------------------------------------------------------------------------


def create_post(author: AppUser, body: str) -> Post:
    return Post.objects.create(author=author, body=body)


def _own_post_for_update(user: AppUser, post_id: int) -> Post:
    post = Post.objects.select_for_update(of=("self",)).select_related("author").filter(pk=post_id).first()
    if post is None:
        raise NotFound("post not found")
    if post.author_id != user.pk:
        raise Forbidden("only the author can change this post")
    return post


def update_post(user: AppUser, post_id: int, body: str) -> Post:
    with transaction.atomic():
        post = _own_post_for_update(user, post_id)
        post.body = body
        post.save(update_fields=["body", "updated_at"])
    return post


def delete_post(user: AppUser, post_id: int) -> None:
    """Delete the post with its reactions and comments (one post.deleted event tombstones its cache)."""
    with transaction.atomic():
        _own_post_for_update(user, post_id).delete()


# --- reactions and comments -------------------------------------------------------------------


def _lock_post(post_id: int) -> None:
    """Lock the post's row: its counters change in commit order, and it can't vanish under us."""
    if Post.objects.select_for_update().filter(pk=post_id).values_list("pk", flat=True).first() is None:
        raise NotFound("post not found")


def react(user: AppUser, post_id: int, kind: str) -> tuple[Reaction, bool]:
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


def unreact(user: AppUser, post_id: int) -> bool:
    """Remove the user's reaction if any. Returns whether there was one."""
    with transaction.atomic():
        _lock_post(post_id)
        reaction = Reaction.objects.filter(user=user, post_id=post_id).first()
        if reaction is None:
            return False
        reaction.delete()
        return True


def add_comment(user: AppUser, post_id: int, body: str) -> Comment:
    try:
        with transaction.atomic():
            _lock_post(post_id)
            comment = Comment.objects.create(post_id=post_id, author=user, body=body)
    except IntegrityError as exc:
        raise NotFound("post not found") from exc
    tracker.record_post(post_id, COMMENT)
    return comment


# --- follows ----------------------------------------------------------------------------------


def _check_target(user: AppUser, target_id: int) -> None:
    if target_id == user.pk:
        raise InvalidInput("you cannot follow yourself")
    if not AppUser.objects.filter(pk=target_id, is_active=True).exists():
        raise NotFound("user not found")


def follow(user: AppUser, target_id: int) -> bool:
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


def unfollow(user: AppUser, target_id: int) -> bool:
    """Stop following `target_id`; idempotent. Returns True if there was a follow to remove."""
    _check_target(user, target_id)
    with transaction.atomic():
        deleted, _ = Follow.objects.filter(follower=user, followee_id=target_id).delete()
    return deleted > 0
