"""Feed caches: post details, reaction counts, and per-user feed pages.

Per-post keys share the hash tag {post:ID}; a user's feed keys share {user:ID}; so the commands that
read several of them together stay within one Redis Cluster slot.
"""

import os
from collections.abc import Callable
from typing import Any

import redis

from core.caching import (
    ABSENT,
    UNAVAILABLE,
    CacheAsideStrategy,
    HashTag,
    Lease,
    WriteThroughCacheStrategy,
    fill_under_lease,
    read_through,
    release_lease,
)


class PostDetailCache(CacheAsideStrategy, WriteThroughCacheStrategy):
    """Cache-aside post details, written through by post.* events (version-aware)."""

    namespace = "feed"
    default_ttl = 2 * 3600

    def detail_key(self, post_id: int) -> str:
        return self.key(HashTag("post", post_id), "detail")

    def get_post(self, post_id: int, loader: Callable[[], dict | None]) -> dict | None:
        """The post's detail, or None if it does not exist (a deleted post reads as None)."""
        return self.get_or_load(self.detail_key(post_id), loader)

    def queue_write(self, pipe: redis.client.Pipeline, detail: dict[str, Any]) -> None:
        self.queue_set_if_newer(pipe, self.detail_key(detail["id"]), detail)

    def queue_deleted(self, pipe: redis.client.Pipeline, post_id: int) -> None:
        self.queue_tombstone(pipe, self.detail_key(post_id))


class ReactionCountsCache(CacheAsideStrategy, WriteThroughCacheStrategy):
    """A post's counters (reactions per kind, comments), replaced by newer snapshots from events.

    Events carry the absolute counts and the post's stats_version, never deltas: re-delivery and
    reordering cannot make them drift.
    """

    namespace = "feed"
    default_ttl = 30 * 60

    def counts_key(self, post_id: int) -> str:
        return self.key(HashTag("post", post_id), "reactions")

    def counts_keys(self, post_ids: list[int]) -> dict[int, str]:
        """counts_key of many posts with one key builder: a feed page's worth on every feed read,
        where building each key on its own cost about as much as reading them all."""
        builder = self.key_builder()
        return {post_id: builder.build(HashTag("post", post_id), "reactions") for post_id in post_ids}

    def get_counts(self, post_id: int, loader: Callable[[], dict | None]) -> dict | None:
        return self.get_or_load(self.counts_key(post_id), loader)

    def queue_write(self, pipe: redis.client.Pipeline, stats: dict[str, Any]) -> None:
        self.queue_set_if_newer(pipe, self.counts_key(stats["post_id"]), stats)

    def queue_deleted(self, pipe: redis.client.Pipeline, post_id: int) -> None:
        self.queue_tombstone(pipe, self.counts_key(post_id))


class UserFeedCache(CacheAsideStrategy):
    """Cache-aside feed pages, fan-out on read, invalidated in O(1) per user.

    Each user has a feed stamp (a random token); a page is stored with the stamp it was computed
    under and served only while that is still the user's stamp. Invalidating a user's feed = one
    SET of a new stamp. A page computed from a database read that a concurrent write invalidated
    carries the old stamp and is never served: no stale set. Reading = one MGET. A page's fill is
    guarded by a lease in its own key (the page key keeps its value while a refill runs).
    """

    namespace = "feed"
    default_ttl = 3600

    def stamp_key(self, user_id: int) -> str:
        return self.key(HashTag("user", user_id), "stamp")

    def page_key(self, user_id: int, page: int, size: int) -> str:
        return self.key(HashTag("user", user_id), "page", page, size)

    @staticmethod
    def page_value(stamp: str, items: list[dict]) -> dict[str, Any]:
        """What a page key stores: its items and the stamp they were computed under."""
        return {"stamp": stamp, "items": items}

    @staticmethod
    def servable_items(cached: object, stamp: str) -> list[dict] | None:
        """A decoded page entry's items if it was computed under `stamp`, else None (dead)."""
        if isinstance(cached, dict) and cached.get("stamp") == stamp:
            return cached["items"]
        return None

    def queue_invalidate(self, pipe: redis.client.Pipeline, user_id: int) -> None:
        # Outlives every page (2 x TTL): a page can never see its stamp come back.
        pipe.set(self.stamp_key(user_id), os.urandom(8).hex(), px=self.ttl_ms(None) * 2)

    def invalidate(self, *user_ids: int) -> None:
        """Invalidate now, best effort (request path); the worker's events are authoritative."""

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for user_id in user_ids:
                self.queue_invalidate(pipe, user_id)
            pipe.execute()

        self.guard.call("invalidate", str(user_ids[:1]), run, None)

    def queue_page(
        self, pipe: redis.client.Pipeline, user_id: int, page: int, size: int, stamp: str, items: list
    ) -> None:
        """Queue storing a page computed under `stamp` (a warm-up's write)."""
        self.queue_set(pipe, self.page_key(user_id, page, size), self.page_value(stamp, items))

    def get_feed(self, user_id: int, page: int, size: int, loader: Callable[[], list[dict]]) -> list[dict]:
        # One key builder and one client for the whole read: on a hit (one MGET), building three
        # keys separately (each an epoch lookup and part checks) cost about as much as the MGET.
        builder, client, user = self.key_builder(), self.client, HashTag("user", user_id)
        stamp_key, page_key = builder.build(user, "stamp"), builder.build(user, "page", page, size)
        lease_key = builder.build(user, "page", page, size, "lease")
        stamp = "0"

        def read() -> Any:
            nonlocal stamp
            raws = self.guard.call("get_feed", page_key, lambda: client.mget(stamp_key, page_key), None)
            if raws is None:
                return UNAVAILABLE
            stamp, items = self.read_page(page_key, raws)
            return ABSENT if items is None else items

        def store(lease: Lease, items: list[dict]) -> None:
            self.set(page_key, self.page_value(stamp, items))
            self.guard.call("release", lease_key, lambda: release_lease(client, lease), False)

        def fill() -> Any:
            return fill_under_lease(self.guard, lease_key, loader, store)

        return read_through(read, fill, loader, self.record_lookup)

    def read_page(self, page_key: str, raws: list[bytes | None]) -> tuple[str, list[dict] | None]:
        """From MGET(stamp, page): (the user's current stamp, the page's items if servable)."""
        stamp = raws[0].decode() if raws[0] else "0"
        return stamp, self.servable_items(self.decode(page_key, raws[1]), stamp)
