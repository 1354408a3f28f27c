"""Reads for the API: through the feed caches, with the database behind every miss.

Every function here works with Redis down (the strategies degrade to their loaders) and never
serves a post whose delete has been applied to the cache: detail and counts read a tombstone as
gone, and a feed page drops any item whose counts are a tombstone or whose row is gone (so a
follower stops seeing a deleted post as soon as the delete is applied, before the fan-out renews
their feed). Every fill here is a lease-guarded fill from the database (core/caching/strategies.py).
"""

from typing import Any

from feed import queries
from feed.cache import PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.popularity import tracker

details = PostDetailCache()
counts = ReactionCountsCache()
feeds = UserFeedCache()


def feed(user_id: int, page: int, size: int) -> list[dict[str, Any]]:
    """Page `page` of the user's feed (cached per generation), each post with its counts."""
    tracker.record_user(user_id)  # counted in process: no round trip (feeds to pre-warm)
    items = feeds.get_feed(user_id, page, size, lambda: queries.feed_page(user_id, page, size))
    return with_counts(items)


def post(post_id: int) -> dict[str, Any] | None:
    """A post's detail with its counts, or None if it does not exist or was deleted."""
    detail = details.get_post(post_id, lambda: queries.post_detail_or_none(post_id))
    if detail is None:
        return None
    stats = counts.get_counts(post_id, lambda: queries.post_stats_or_none(post_id))
    if stats is None:  # deleted between the two reads
        return None
    tracker.record_post(post_id)  # counted in process: no round trip (posts to pre-warm)
    return {**detail, "counts": _public(stats)}


def post_exists(post_id: int) -> bool:
    return details.get_post(post_id, lambda: queries.post_detail_or_none(post_id)) is not None


def with_counts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` (post details) with their counts: one pipelined read for all of them; the misses
    loaded by one set of queries and filled under leases (a fill that raced an event is dropped).
    Deleted posts are dropped."""
    if not items:
        return []
    stats = counts.get_many_counts([item["id"] for item in items], queries.post_stats_many)
    return [{**item, "counts": _public(stats[item["id"]])} for item in items if stats[item["id"]] is not None]


def _public(stats: dict[str, Any]) -> dict[str, Any]:
    """The counters as the API shows them (without the cache's post_id and version)."""
    return {"reactions": stats["reactions"], "comments": stats["comments"]}


def comments(post_id: int, after_id: int, size: int) -> tuple[list[dict[str, Any]], int | None] | None:
    """A page of the post's comments from the database, or None if the post is gone."""
    if not post_exists(post_id):
        return None
    return queries.comments_page(post_id, after_id, size)


def profile(user_id: int, viewer_id: int | None = None) -> dict[str, Any] | None:
    found = queries.profile(user_id)
    if found is None:
        return None
    if viewer_id is not None and viewer_id != user_id:
        found["followed_by_me"] = queries.is_following(viewer_id, user_id)
    else:
        found["followed_by_me"] = False
    return found
