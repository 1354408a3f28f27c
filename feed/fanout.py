"""Fan-out on write of invalidations: when an author posts, each follower's feed gets a new
generation. Small audiences are done inline (one pipeline); large ones in Celery tasks of
FEED_FANOUT_CHUNK followers, so no single Redis command or task runs long.

This is the worker's fan-out, from the database: the backstop for every post, whether or not the
commit-time path invalidated the followers from a cached set (feed.cache.FollowerSetCache). Its
database read also fills the authors' missing follower sets, under leases taken before the read."""

from collections.abc import Iterable

from feed.cache import FollowerSetCache
from feed.models import Follow
from feed.tasks import invalidate_feeds, invalidate_feeds_now

follower_sets = FollowerSetCache()


READ_AT_ONCE = 5000


def _follows_of(author_ids: set[int]) -> Iterable[tuple[int, int]]:
    """(author id, follower id) of every follow of `author_ids`, in order. Up to READ_AT_ONCE rows
    come in one plain query (a usual batch: one round trip); more are streamed through a
    server-side cursor, so a celebrity's followers never sit in memory at once (on PostgreSQL a
    cursor costs DECLARE, FETCH and CLOSE round trips, which a small read does not need)."""
    rows = (
        Follow.objects.filter(followee_id__in=author_ids)
        .order_by("followee_id", "follower_id")
        .values_list("followee_id", "follower_id")
    )
    first = list(rows[: READ_AT_ONCE + 1])
    if len(first) <= READ_AT_ONCE:
        return first
    return rows.iterator(chunk_size=READ_AT_ONCE)


def invalidate_followers(author_ids: Iterable[int], chunk: int) -> int:
    """Invalidate the feeds of everyone following any of `author_ids` (one query for all of them),
    and fill their missing follower sets from that read. Returns the number of followers reached."""
    author_ids = set(author_ids)
    leases = follower_sets.take_fill_leases(author_ids)  # before the read: a follow since voids it
    followers: dict[int, list[int]] = {}
    for author_id, follower_id in _follows_of(author_ids):
        followers.setdefault(author_id, []).append(follower_id)
    inline: list[int] = []
    for follower_ids in followers.values():
        if len(follower_ids) <= chunk:
            inline.extend(follower_ids)
            continue
        for start in range(0, len(follower_ids), chunk):
            invalidate_feeds.delay(follower_ids[start : start + chunk])
    for start in range(0, len(inline), chunk):
        invalidate_feeds_now(inline[start : start + chunk])
    follower_sets.fill(leases, followers)
    return sum(len(ids) for ids in followers.values())
