"""Feed caches: post details, reaction counts, and per-user feed pages.

Per-post keys share the hash tag {post:ID}; a user's feed keys share {user:ID}; so the commands that
read several of them together stay within one Redis Cluster slot.
"""

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

from core.caching import CacheAsideStrategy, HashTag
from core.caching.lua import RELEASE_LEASE
from core.caching.strategies import _MISSING
from feed.payloads import feed_page_entry


class PostDetailCache(CacheAsideStrategy):
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


class ReactionCountsCache(CacheAsideStrategy):
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
        builder = self._builder()
        return {post_id: builder.build(HashTag("post", post_id), "reactions") for post_id in post_ids}

    def get_counts(self, post_id: int, loader: Callable[[], dict | None]) -> dict | None:
        return self.get_or_load(self.counts_key(post_id), loader)

    def queue_write(self, pipe: redis.client.Pipeline, stats: dict[str, Any]) -> None:
        self.queue_set_if_newer(pipe, self.counts_key(stats["post_id"]), stats)

    def queue_deleted(self, pipe: redis.client.Pipeline, post_id: int) -> None:
        self.queue_tombstone(pipe, self.counts_key(post_id))


class UserFeedCache(CacheAsideStrategy):
    """Cache-aside feed pages, fan-out on read, invalidated in O(1) per user.

    Each user has a feed generation (a random token); a page is stored with the generation it was
    computed under and served only while that is still the user's generation. Invalidating a user's
    feed = one SET of a new token. A page computed from a database read that a concurrent write
    invalidated carries the old token and is never served: no stale set. Reading = one MGET.
    """

    namespace = "feed"
    default_ttl = 3600

    def generation_key(self, user_id: int) -> str:
        return self.key(HashTag("user", user_id), "generation")

    def page_key(self, user_id: int, page: int, size: int) -> str:
        return self.key(HashTag("user", user_id), "page", page, size)

    def queue_invalidate(self, pipe: redis.client.Pipeline, user_id: int) -> None:
        # Outlives every page (2 x TTL): a page can never see its generation come back.
        pipe.set(self.generation_key(user_id), os.urandom(8).hex(), px=self.ttl_ms(None) * 2)

    def invalidate(self, *user_ids: int) -> None:
        """Invalidate now, best effort (request path); the worker's events are authoritative."""

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for user_id in user_ids:
                self.queue_invalidate(pipe, user_id)
            pipe.execute()

        self._call("invalidate", str(user_ids[:1]), run, None)

    def get_feed(self, user_id: int, page: int, size: int, loader: Callable[[], list[dict]]) -> list[dict]:
        # One key builder and one client for the whole read: on a hit (one MGET), building three
        # keys separately (each a generation lookup and part checks) cost about as much as the MGET.
        builder, client, user = self._builder(), self.client, HashTag("user", user_id)
        generation_key, page_key = builder.build(user, "generation"), builder.build(user, "page", page, size)
        deadline = None
        while True:
            raws = self._call("get_feed", page_key, lambda: client.mget(generation_key, page_key), None)
            if raws is None:  # Redis unavailable
                self._count(0, 1)
                return loader()
            generation, items = self.read_page(page_key, raws)
            if items is not None:
                self._count(1, 0)
                return items
            lock_key = builder.build(user, "page", page, size, "lock")
            items = self._load_under_lock(lock_key, page_key, generation, loader)
            if items is not _MISSING:
                self._count(0, 1)
                return items
            now = time.monotonic()
            deadline = deadline or now + settings.CACHE_LEASE_WAIT_SECONDS
            if now >= deadline:
                self._count(0, 1)
                return loader()
            time.sleep(0.005)

    def read_page(self, page_key: str, raws: list[bytes | None]) -> tuple[str, list[dict] | None]:
        """From MGET(generation, page): (current generation, the page's items if servable)."""
        generation = raws[0].decode() if raws[0] else "0"
        cached = self._decode(page_key, raws[1])
        if isinstance(cached, dict) and cached.get("gen") == generation:
            return generation, cached["items"]
        return generation, None

    def _load_under_lock(self, lock_key: str, page_key: str, generation: str, loader: Callable):
        """Run the loader and store its page if we win the lock; _MISSING if someone else has it."""
        token = uuid.uuid4().hex
        lease_ms = int(settings.CACHE_LEASE_SECONDS * 1000)
        if not self._call(
            "lock", lock_key, lambda: self.client.set(lock_key, token, nx=True, px=lease_ms), False
        ):
            return _MISSING
        try:
            items = loader()
            self.set(page_key, feed_page_entry(generation, items))
        finally:
            self._call("unlock", lock_key, lambda: RELEASE_LEASE(self.client, [lock_key], [token]), 0)
        return items
