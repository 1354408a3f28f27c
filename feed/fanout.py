"""Fan-out on write of invalidations: when an author posts, each follower's feed gets a new
generation. Small audiences are done inline (one pipeline); large ones in Celery tasks of
FEED_FANOUT_CHUNK followers, so no single Redis command or task runs long."""

from collections.abc import Iterable

from feed.cache import UserFeedCache
from feed.models import Follow

feeds = UserFeedCache()


def invalidate_followers(author_ids: Iterable[int], chunk: int) -> int:
    """Invalidate the feeds of everyone following any of `author_ids`. Returns followers reached."""
    from feed.tasks import invalidate_feeds

    total = 0
    for author_id in author_ids:
        follower_ids = list(
            Follow.objects.filter(followee_id=author_id)
            .order_by("follower_id")
            .values_list("follower_id", flat=True)
        )
        total += len(follower_ids)
        if len(follower_ids) <= chunk:
            invalidate_feeds_now(follower_ids)
            continue
        for start in range(0, len(follower_ids), chunk):
            invalidate_feeds.delay(follower_ids[start : start + chunk])
    return total


def invalidate_feeds_now(user_ids: list[int]) -> None:
    """One pipelined round trip of O(1) commands. Raises on Redis errors (the caller retries)."""
    if not user_ids:
        return
    pipe = feeds.client.pipeline(transaction=False)
    for user_id in user_ids:
        feeds.queue_invalidate(pipe, user_id)
    pipe.execute()
