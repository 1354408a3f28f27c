"""Pre-warming: fill the caches of the most popular posts and the most active users' feeds.

Warming only fills what is missing or older than the database: details and counts go through the
version compare-and-set (a newer entry is never overwritten), and a feed page is written only when
its user's current page is absent or of an old stamp, stamped with the stamp read before
the database query (a write racing the warm-up makes the page unservable, never stale).
Everything is pipelined: one round trip to look, one to write, per chunk.

Ranking comes from the popularity tracker; when Redis has none (after a flush or a restart), from
the database: posts with the most reactions and comments among the recent ones, and the users who
posted or reacted most recently.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Max

from feed import queries
from feed.cache import PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.models import Post, Reaction
from feed.payloads import post_detail
from feed.popularity import tracker

CHUNK = 200
Progress = Callable[[int], None]


@dataclass
class WarmupResult:
    what: str
    candidates: int = 0
    written: int = 0  # cache keys
    skipped: int = 0  # posts or feeds whose entries were all current
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.what}: {self.candidates} candidates, {self.written} keys written, "
            f"{self.skipped} {self.what} skipped (already current), {self.seconds:.2f}s"
        )


def popular_post_ids(k: int) -> list[int]:
    ranked = tracker.top_posts(k)
    if ranked:
        return ranked
    recent = Post.objects.order_by("-id").values("id")[: settings.WARM_RECENT_POSTS]
    return list(
        Post.objects.filter(id__in=recent)
        .annotate(score=Count("reactions", distinct=True) + Count("comments", distinct=True))
        .order_by("-score", "-id")
        .values_list("id", flat=True)[:k]
    )


def active_user_ids(k: int) -> list[int]:
    ranked = tracker.active_users(k)
    if ranked:
        return ranked
    posters = Post.objects.values("author_id").annotate(last=Max("id")).order_by("-last")[:k]
    reactors = Reaction.objects.values("user_id").annotate(last=Max("id")).order_by("-last")[:k]
    seen: dict[int, None] = {}
    for user_id in [row["author_id"] for row in posters] + [row["user_id"] for row in reactors]:
        seen.setdefault(user_id, None)
    return list(seen)[:k]


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def warm_posts(k: int, progress: Progress | None = None) -> WarmupResult:
    """Details and counts of the top-`k` posts, version-checked (never overwrites a newer entry)."""
    started = time.perf_counter()
    details, counts = PostDetailCache(), ReactionCountsCache()
    ids = popular_post_ids(k)
    result = WarmupResult("posts", candidates=len(ids))
    for chunk in _chunks(ids):
        posts = Post.objects.filter(pk__in=chunk).select_related("author")
        loaded_details = {post.pk: post_detail(post) for post in posts}
        loaded_stats = queries.post_stats_many(chunk)
        pipe, owners = details.client.pipeline(transaction=False), []
        for detail in loaded_details.values():
            details.queue_write(pipe, detail)
            owners.append(detail["id"])
        for stats in loaded_stats.values():
            counts.queue_write(pipe, stats)
            owners.append(stats["post_id"])
        outcomes = pipe.execute()
        result.written += sum(1 for outcome in outcomes if outcome == 1)
        # Skipped counts posts (both entries already current), not keys.
        wrote = {post_id for post_id, outcome in zip(owners, outcomes, strict=True) if outcome == 1}
        result.skipped += len(set(owners) - wrote)
        if progress:
            progress(len(chunk))
    result.seconds = time.perf_counter() - started
    return result


def warm_feeds(k: int, size: int | None = None, progress: Progress | None = None) -> WarmupResult:
    """Page 1 of the feeds of the `k` most active users, where missing or of an old stamp."""
    started = time.perf_counter()
    feeds = UserFeedCache()
    size = size or settings.WARM_FEED_PAGE_SIZE
    ids = active_user_ids(k)
    result = WarmupResult("feeds", candidates=len(ids))
    for chunk in _chunks(ids):
        look = feeds.client.pipeline(transaction=False)
        for user_id in chunk:
            look.mget(feeds.stamp_key(user_id), feeds.page_key(user_id, 1, size))
        write = feeds.client.pipeline(transaction=False)
        for user_id, raws in zip(chunk, look.execute(), strict=True):
            current, servable = feeds.read_page(feeds.page_key(user_id, 1, size), raws)
            if servable is not None:
                result.skipped += 1
                continue
            items = queries.feed_page(user_id, 1, size)
            feeds.queue_page(write, user_id, 1, size, current, items)
            result.written += 1
        if write.command_stack:
            write.execute()
        if progress:
            progress(len(chunk))
    result.seconds = time.perf_counter() - started
    return result


LOCKS = {"posts": "warm_popular_posts", "feeds": "warm_active_feeds"}


def warm_once(what: str, k: int, progress: Progress | None = None) -> WarmupResult | None:
    """Run one warm-up ("posts" or "feeds") under its lock, shared by the beat task and the
    command: None if another run holds the lock (two beats, or a run still going)."""
    from workers.locks import single_flight

    warm = warm_posts if what == "posts" else warm_feeds
    with single_flight(LOCKS[what], ttl_seconds=600) as mine:
        return warm(k, progress=progress) if mine else None
