"""Receivers at the edge: each turns one model change into one event, in the change's transaction.

Connected in FeedConfig.ready(). Receivers only describe what changed; what that does to the cache
lives in feed/handlers.py, where the worker (and the post-commit path) apply it.
"""

from django.db.models.signals import post_delete, post_save

from core.caching import FINAL_VERSION
from core.events import Event, publish
from feed.models import Comment, Follow, Post, Reaction
from feed.payloads import post_detail, post_stats

DOMAIN = "feed"


def post_saved(*, instance: Post, created: bool, using: str, **kwargs) -> None:
    event_type = "post.created" if created else "post.updated"
    publish(Event(event_type, instance.version, {"post": post_detail(instance)}), DOMAIN, using)


def post_deleted(*, instance: Post, using: str, **kwargs) -> None:
    data = {"post_id": instance.pk, "author_id": instance.author_id}
    publish(Event("post.deleted", FINAL_VERSION, data), DOMAIN, using)


def _stats_changed(event_type: str, post_id: int, using: str, data: dict) -> None:
    stats_version = Post.objects.using(using).bump_stats_version(post_id)
    if stats_version is None:  # the post is being deleted with it: post.deleted covers the cache
        return
    data["stats"] = post_stats(post_id, stats_version)
    publish(Event(event_type, stats_version, data), DOMAIN, using)


def reaction_saved(*, instance: Reaction, using: str, **kwargs) -> None:
    data = {"post_id": instance.post_id, "user_id": instance.user_id, "kind": instance.kind}
    _stats_changed("reaction.added", instance.post_id, using, data)


def reaction_deleted(*, instance: Reaction, using: str, **kwargs) -> None:
    data = {"post_id": instance.post_id, "user_id": instance.user_id, "kind": instance.kind}
    _stats_changed("reaction.removed", instance.post_id, using, data)


def comment_saved(*, instance: Comment, created: bool, using: str, **kwargs) -> None:
    if created:
        data = {"post_id": instance.post_id, "comment_id": instance.pk, "author_id": instance.author_id}
        _stats_changed("comment.created", instance.post_id, using, data)


def comment_deleted(*, instance: Comment, using: str, **kwargs) -> None:
    data = {"post_id": instance.post_id, "comment_id": instance.pk, "author_id": instance.author_id}
    _stats_changed("comment.deleted", instance.post_id, using, data)


def follow_saved(*, instance: Follow, created: bool, using: str, **kwargs) -> None:
    if created:
        data = {"follower_id": instance.follower_id, "followee_id": instance.followee_id}
        publish(Event("follow.created", 1, data), DOMAIN, using)


def follow_deleted(*, instance: Follow, using: str, **kwargs) -> None:
    data = {"follower_id": instance.follower_id, "followee_id": instance.followee_id}
    publish(Event("follow.deleted", FINAL_VERSION, data), DOMAIN, using)


RECEIVERS = [
    (post_save, Post, post_saved),
    (post_delete, Post, post_deleted),
    (post_save, Reaction, reaction_saved),
    (post_delete, Reaction, reaction_deleted),
    (post_save, Comment, comment_saved),
    (post_delete, Comment, comment_deleted),
    (post_save, Follow, follow_saved),
    (post_delete, Follow, follow_deleted),
]


def connect() -> None:
    for signal, sender, receiver in RECEIVERS:
        signal.connect(receiver, sender=sender, dispatch_uid=f"feed.{receiver.__name__}")
