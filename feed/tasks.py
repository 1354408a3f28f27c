"""Feed tasks: chunks of a large fan-out."""

from celery import shared_task

from feed.fanout import invalidate_feeds_now


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
