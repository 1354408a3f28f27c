"""The feed's event contract: its stream domain, its event types, and one builder per type.

Signals, handlers, tests and benches name the types through these constants and build events only
through these functions, so each type's payload shape is written down once. Payloads are JSON-ready
dicts (see feed/payloads.py); the keys below are the wire format: change them only with
`core.events.event.SCHEMA_VERSION`.
"""

from typing import Any

from core.events import FINAL_VERSION, Event

DOMAIN = "feed"

POST_CREATED = "post.created"
POST_UPDATED = "post.updated"
POST_DELETED = "post.deleted"
REACTION_ADDED = "reaction.added"
REACTION_REMOVED = "reaction.removed"
COMMENT_CREATED = "comment.created"
COMMENT_DELETED = "comment.deleted"
FOLLOW_CREATED = "follow.created"
FOLLOW_DELETED = "follow.deleted"

POST_TYPES = (POST_CREATED, POST_UPDATED, POST_DELETED)
REACTION_TYPES = (REACTION_ADDED, REACTION_REMOVED)
STATS_TYPES = (*REACTION_TYPES, COMMENT_CREATED, COMMENT_DELETED)
FOLLOW_TYPES = (FOLLOW_CREATED, FOLLOW_DELETED)


def partition_key(event: Event) -> int:
    """The entity whose events stay in order in one stream partition: the post (its detail and its
    counters), or the follower (whose feed a follow changes)."""
    data = event.data
    if event.type in FOLLOW_TYPES:
        return data["follower_id"]
    return data["post"]["id"] if "post" in data else data["post_id"]


def post_created(post: dict[str, Any]) -> Event:
    """`post` is a post detail (feed.payloads.post_detail) carrying its row version."""
    return Event(POST_CREATED, post["version"], {"post": post})


def post_updated(post: dict[str, Any]) -> Event:
    return Event(POST_UPDATED, post["version"], {"post": post})


def post_deleted(post_id: int, author_id: int) -> Event:
    return Event(POST_DELETED, FINAL_VERSION, {"post_id": post_id, "author_id": author_id})


def _reaction(event_type: str, post_id: int, user_id: int, kind: str, stats: dict[str, Any]) -> Event:
    data = {"post_id": post_id, "user_id": user_id, "kind": kind, "stats": stats}
    return Event(event_type, stats["version"], data)


def reaction_added(post_id: int, user_id: int, kind: str, stats: dict[str, Any]) -> Event:
    """`stats` is the post's counters after the change (feed.payloads.post_stats), versioned."""
    return _reaction(REACTION_ADDED, post_id, user_id, kind, stats)


def reaction_removed(post_id: int, user_id: int, kind: str, stats: dict[str, Any]) -> Event:
    return _reaction(REACTION_REMOVED, post_id, user_id, kind, stats)


def _comment(event_type: str, post_id: int, comment_id: int, author_id: int, stats: dict[str, Any]) -> Event:
    data = {"post_id": post_id, "comment_id": comment_id, "author_id": author_id, "stats": stats}
    return Event(event_type, stats["version"], data)


def comment_created(post_id: int, comment_id: int, author_id: int, stats: dict[str, Any]) -> Event:
    return _comment(COMMENT_CREATED, post_id, comment_id, author_id, stats)


def comment_deleted(post_id: int, comment_id: int, author_id: int, stats: dict[str, Any]) -> Event:
    return _comment(COMMENT_DELETED, post_id, comment_id, author_id, stats)


def follow_created(follower_id: int, followee_id: int) -> Event:
    return Event(FOLLOW_CREATED, 1, {"follower_id": follower_id, "followee_id": followee_id})


def follow_deleted(follower_id: int, followee_id: int) -> Event:
    return Event(FOLLOW_DELETED, FINAL_VERSION, {"follower_id": follower_id, "followee_id": followee_id})
