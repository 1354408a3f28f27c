"""Fan-out on write of invalidations: when an author posts, each follower's feed gets a new
generation. Small audiences are done inline (one pipeline); large ones in Celery tasks of
FEED_FANOUT_CHUNK followers, so no single Redis command or task runs long."""

from collections.abc import Iterable

from feed.models import Follow
from feed.tasks import invalidate_feeds, invalidate_feeds_now


def invalidate_followers(author_ids: Iterable[int], chunk: int) -> int:
    """Invalidate the feeds of everyone following any of `author_ids` (one query for all of them).
    Returns the number of followers reached."""
    followers: dict[int, list[int]] = {}
    rows = Follow.objects.filter(followee_id__in=set(author_ids)).order_by("followee_id", "follower_id")
    for author_id, follower_id in rows.values_list("followee_id", "follower_id").iterator(chunk_size=5000):
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
    return sum(len(ids) for ids in followers.values())
