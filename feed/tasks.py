"""Feed tasks: chunks of a large fan-out (feed/fanout.py queues them), and the scheduled warm-ups."""

from celery import shared_task
from django.conf import settings

from feed.cache import UserFeedCache
from feed.warmup import WarmupResult, warm_once

feeds = UserFeedCache()


def invalidate_feeds_now(user_ids: list[int]) -> None:
    """One pipelined round trip of O(1) commands. Raises on Redis errors (the caller retries)."""
    if not user_ids:
        return
    pipe = feeds.client.pipeline(transaction=False)
    for user_id in user_ids:
        feeds.queue_invalidate(pipe, user_id)
    pipe.execute()


@shared_task(
    name="feed.invalidate_feeds",
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    max_retries=10,
)
def invalidate_feeds(user_ids: list[int]) -> int:
    """Give each user's feed a new generation. Idempotent: running twice only invalidates twice."""
    invalidate_feeds_now(user_ids)
    return len(user_ids)


@shared_task(name="feed.warm_popular_posts", ignore_result=True)
def warm_popular_posts(k: int | None = None) -> dict:
    """Warm the top-K posts' details and counts; a lock keeps overlapping runs from doubling up."""
    return _summary(warm_once("posts", k or settings.WARM_POSTS_TOP_K))


@shared_task(name="feed.warm_active_feeds", ignore_result=True)
def warm_active_feeds(k: int | None = None) -> dict:
    """Warm page 1 of the most active users' feeds, under the same kind of lock."""
    return _summary(warm_once("feeds", k or settings.WARM_FEEDS_TOP_K))


def _summary(result: WarmupResult | None) -> dict:
    return {"skipped": "another warm-up holds the lock"} if result is None else vars(result)
