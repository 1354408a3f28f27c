"""Receivers at the edge: each turns one model change into one event, in the change's transaction.

Connected in FeedConfig.ready(). Receivers only build and publish: the events' shapes are in
feed/events.py, the stats bump is the model layer's (`PostQuerySet.stats_changed`), and what an event
does to the cache lives in feed/handlers.py, where the worker (and the post-commit path) apply it.
"""

from django.db.models.signals import post_delete, post_save

from core.events import publish
from core.models import one_statement_receiver
from feed import events
from feed.models import Comment, Follow, Post, Reaction
from feed.payloads import post_detail, post_stats


@one_statement_receiver
def post_saved(*, instance: Post, created: bool, using: str, **kwargs) -> None:
    build = events.post_created if created else events.post_updated
    publish(build(post_detail(instance)), events.DOMAIN, using)


def post_deleted(*, instance: Post, using: str, **kwargs) -> None:
    publish(events.post_deleted(instance.pk, instance.author_id), events.DOMAIN, using)


def _stats_after_change(post_id: int, using: str) -> dict | None:
    change = Post.objects.using(using).stats_changed(post_id)
    return None if change is None else post_stats(post_id, *change)


def reaction_saved(*, instance: Reaction, using: str, **kwargs) -> None:
    if (stats := _stats_after_change(instance.post_id, using)) is not None:
        event = events.reaction_added(instance.post_id, instance.user_id, instance.kind, stats)
        publish(event, events.DOMAIN, using)


def reaction_deleted(*, instance: Reaction, using: str, **kwargs) -> None:
    if (stats := _stats_after_change(instance.post_id, using)) is not None:
        event = events.reaction_removed(instance.post_id, instance.user_id, instance.kind, stats)
        publish(event, events.DOMAIN, using)


def comment_saved(*, instance: Comment, created: bool, using: str, **kwargs) -> None:
    if created and (stats := _stats_after_change(instance.post_id, using)) is not None:
        event = events.comment_created(instance.post_id, instance.pk, instance.author_id, stats)
        publish(event, events.DOMAIN, using)


def comment_deleted(*, instance: Comment, using: str, **kwargs) -> None:
    if (stats := _stats_after_change(instance.post_id, using)) is not None:
        event = events.comment_deleted(instance.post_id, instance.pk, instance.author_id, stats)
        publish(event, events.DOMAIN, using)


def follow_saved(*, instance: Follow, created: bool, using: str, **kwargs) -> None:
    if created:
        publish(events.follow_created(instance.follower_id, instance.followee_id), events.DOMAIN, using)


def follow_deleted(*, instance: Follow, using: str, **kwargs) -> None:
    publish(events.follow_deleted(instance.follower_id, instance.followee_id), events.DOMAIN, using)


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
