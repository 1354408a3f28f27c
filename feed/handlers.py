"""What feed events do to the cache. Registered with the handler registry (core.events) in ready().

All effects are idempotent and version-aware, and none creates a detail or counts entry: an event
compare-and-sets a present versioned entry, deletes a lease or an absent marker (voiding the fill in
flight), and leaves an absent key absent; a delete tombstones a present entry (FINAL). However late
an event comes (reclaimed, a relay duplicate, a replayed dead letter, after its key expired or was
evicted) it cannot make a reader see an older version than the database: an absent key sends the
reader to the database. Feed invalidation sets a fresh random stamp (which no stored page matches).
"""

import itertools
from collections.abc import Mapping, Sequence

import redis
from django.conf import settings

from accounts.events import USER_TYPES
from core.events import Event, EventHandler, registry
from feed import events
from feed.cache import FollowerSetCache, MyReactionCache, PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.fanout import invalidate_followers

details = PostDetailCache()
counts = ReactionCountsCache()
feeds = UserFeedCache()
followers = FollowerSetCache()
mine = MyReactionCache()


class PostHandler(EventHandler):
    """post.*: update a present detail (or tombstone it); invalidate the author's own feed now and
    the followers' feeds after the batch (chunked into Celery tasks for large audiences).

    At commit time (`prepare`), an author with a cached, complete follower set of at most
    FEED_INLINE_FANOUT_MAX has the followers' feeds invalidated in the same pipeline too: they see
    the post before the write returns. On one Redis a script in that pipeline reads the set and
    stamps the feeds (no round trip of its own); on a cluster the sets are read first. The
    worker's fan-out still runs for every post (an absent or stale set, a follow racing the post):
    re-stamping a feed twice is harmless."""

    event_types = events.POST_TYPES

    def __init__(self, audiences: Mapping[int, Sequence[int]] | None = None, in_script: bool = False) -> None:
        self.audiences = audiences or {}
        self.in_script = in_script

    def prepare(self, batch: Sequence[Event]) -> "PostHandler":
        if followers.stamps_in_script():
            return PostHandler(in_script=True)
        audiences = followers.audiences(_author_id(event) for event in batch)
        return PostHandler(audiences) if audiences else self

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        if event.type == events.POST_DELETED:
            post_id, author_id = event.data["post_id"], event.data["author_id"]
            details.queue_deleted(pipe, post_id)
            counts.queue_deleted(pipe, post_id)
        else:
            post = event.data["post"]
            author_id = post["author_id"]
            details.queue_write(pipe, post)
        feeds.queue_invalidate(pipe, author_id)
        if self.in_script:
            followers.queue_stamp_followers(pipe, author_id, feeds)
        elif followers_ := self.audiences.get(author_id):
            feeds.queue_invalidate_many(pipe, followers_)

    def after_batch(self, batch: Sequence[Event]) -> None:
        authors = {_author_id(event) for event in batch}
        invalidate_followers(authors, chunk=settings.FEED_FANOUT_CHUNK)


class StatsHandler(EventHandler):
    """reaction.* and comment.*: replace the post's cached counters with the event's newer snapshot.
    A reaction also gives the reacting user a new feed stamp (their pages show `my_reaction`) and
    deletes their cached reaction to the post."""

    event_types = events.STATS_TYPES

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        counts.queue_write(pipe, event.data["stats"])
        if event.type in events.REACTION_TYPES:
            user_id = event.data["user_id"]
            feeds.queue_invalidate(pipe, user_id)
            mine.queue_changed(pipe, user_id, event.data["post_id"])


class FollowHandler(EventHandler):
    """follow.*: the follower's feed now includes (or excludes) the followee's posts (a new stamp:
    this also covers a post that raced the follow past the followee's cached follower set), and the
    followee's follower set gains the follower (if present) or goes (an unfollow)."""

    event_types = events.FOLLOW_TYPES

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        follower_id, followee_id = event.data["follower_id"], event.data["followee_id"]
        feeds.queue_invalidate(pipe, follower_id)
        if event.type == events.FOLLOW_CREATED:
            followers.queue_follow_created(pipe, followee_id, follower_id)
        else:
            followers.queue_follow_deleted(pipe, followee_id)


def _author_id(event: Event) -> int:
    return event.data["author_id"] if event.type == events.POST_DELETED else event.data["post"]["author_id"]


class AuthorRenamedHandler(EventHandler):
    """user.updated: the user's post details and the feed pages that show them carry the old name.
    The user's own feed gets a new stamp now; after the batch, the details are deleted (the next
    reader fills from the database) and the followers' feeds get new stamps (chunked into Celery
    tasks for large audiences, as posts do)."""

    event_types = USER_TYPES

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        feeds.queue_invalidate(pipe, event.data["user_id"])

    def after_batch(self, batch: Sequence[Event]) -> None:
        from feed.models import Post

        authors = {event.data["user_id"] for event in batch}
        posts = Post.objects.filter(author_id__in=authors).order_by("id").values_list("id", flat=True)
        post_ids = posts.iterator(chunk_size=2000)
        while chunk := list(itertools.islice(post_ids, 1000)):
            pipe = details.client.pipeline(transaction=False)
            for post_id in chunk:
                pipe.delete(details.detail_key(post_id))
            pipe.execute()
        invalidate_followers(authors, chunk=settings.FEED_FANOUT_CHUNK)


def register() -> None:
    for handler in (PostHandler(), StatsHandler(), FollowHandler(), AuthorRenamedHandler()):
        registry.register(handler)
