"""Pre-warming: fill the caches of the most popular posts and the most active users' feeds.

A warm-up is a batch of fills, never blind writes (core/caching/strategies.py): per chunk, it takes
the leases of the keys that are absent in one pipeline, reads the database once, and fills the
keys whose lease is still there in one pipeline. A delete (or any event) that lands between the
database read and the fill finds the lease and deletes it, so the fill is dropped: a row read
before a concurrent delete is never resurrected, a version read before an edit never stored.
Present entries are left alone (events keep them current). A feed page is filled, under its
page lease, only where its user's page is not servable, stamped with the user's stamp as it was
before the query (created if missing): a write racing the warm-up makes the page unservable.
While a namespace bump settles, nothing is warmed.

Ranking comes from the popularity tracker; when Redis has none (after a flush or a restart), from
the database: posts with the most reactions and comments among the recent ones, and the users who
posted or reacted most recently.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Max

from core.caching import fill_leased_many, release_lease, take_leases
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
    """Details and counts of the top-`k` posts, where absent: fills under leases (see above)."""
    started = time.perf_counter()
    details, counts = PostDetailCache(), ReactionCountsCache()
    ids = popular_post_ids(k)
    result = WarmupResult("posts", candidates=len(ids))
    client = details.client
    for chunk in _chunks(ids):
        detail_keys = {post_id: details.detail_key(post_id) for post_id in chunk}
        counts_keys = counts.counts_keys(chunk)
        leases = {}
        if details.keys.settled():
            leases = take_leases(client, [*detail_keys.values(), *counts_keys.values()])
        leased_details = [i for i in chunk if detail_keys[i] in leases]
        leased_counts = [i for i in chunk if counts_keys[i] in leases]
        posts = Post.objects.filter(pk__in=leased_details).select_related("author")
        loaded_details = {post.pk: post_detail(post) for post in posts} if leased_details else {}
        loaded_stats = queries.post_stats_many(leased_counts) if leased_counts else {}
        fills = [
            (leases[detail_keys[i]], *details.fill_payload(loaded_details.get(i))) for i in leased_details
        ]
        fills += [(leases[counts_keys[i]], *counts.fill_payload(loaded_stats.get(i))) for i in leased_counts]
        outcomes = fill_leased_many(client, fills)
        result.written += sum(outcomes)
        # Skipped counts posts (neither entry written: current already, or someone else filling), not keys.
        owners = [*leased_details, *leased_counts]
        wrote = {post_id for post_id, filled in zip(owners, outcomes, strict=True) if filled}
        result.skipped += len(set(chunk) - wrote)
        if progress:
            progress(len(chunk))
    result.seconds = time.perf_counter() - started
    return result


def warm_feeds(k: int, size: int | None = None, progress: Progress | None = None) -> WarmupResult:
    """Page 1 of the feeds of the `k` most active users, where not servable (see above)."""
    started = time.perf_counter()
    feeds = UserFeedCache()
    size = size or settings.WARM_FEED_PAGE_SIZE
    ids = active_user_ids(k)
    result = WarmupResult("feeds", candidates=len(ids))
    client = feeds.client
    for chunk in _chunks(ids):
        if not feeds.keys.settled():
            result.skipped += len(chunk)
            continue
        page_keys = {user_id: feeds.page_key(user_id, 1, size) for user_id in chunk}
        lease_keys = {user_id: feeds.page_lease_key(user_id, 1, size) for user_id in chunk}
        look = client.pipeline(transaction=False)
        fresh = {user_id: feeds.queue_ensure_stamp(look, feeds.stamp_key(user_id)) for user_id in chunk}
        for user_id in chunk:
            look.get(page_keys[user_id])
        replies = look.execute()
        stamps: dict[int, str] = {}
        for user_id, existing, page in zip(chunk, replies[: len(chunk)], replies[len(chunk) :], strict=True):
            stamp = fresh[user_id] if existing is None else existing.decode()
            if feeds.servable_items(feeds.decode(page_keys[user_id], page), stamp) is None:
                stamps[user_id] = stamp
        leases = take_leases(client, [lease_keys[user_id] for user_id in stamps])
        result.skipped += len(chunk) - len(leases)  # servable, or a reader is filling it
        write = client.pipeline(transaction=False)
        for user_id, stamp in stamps.items():
            lease = leases.get(lease_keys[user_id])
            if lease is not None:
                feeds.queue_page(write, user_id, 1, size, stamp, queries.feed_page(user_id, 1, size))
                release_lease(write, lease)
                result.written += 1
        if len(write):
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
