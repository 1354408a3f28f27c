"""Feed caches: post details, reaction counts, and per-user feed pages.

Per-post keys share the hash tag {post:ID}; a user's feed keys share {user:ID}; so the commands that
read several of them together stay within one Redis Cluster slot.

Details and counts follow the library's invariant (core/caching/strategies.py): only fills from the
database create them; events update present versioned entries, void leases and absent markers,
tombstone present entries on delete, and never create one. Feed pages are guarded by their user's
stamp instead (UserFeedCache).
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
    """Cache-aside post details, updated by post.* events where present (version-aware).

    A post that does not exist leaves a short absent marker (its post.created deletes it)."""

    namespace = "feed"
    default_ttl = 2 * 3600
    negative_ttl = 30
    soft_ttl = 3600  # stale-while-revalidate: a hot post's detail is refreshed, never expires

    def detail_key(self, post_id: int) -> str:
        return self.key(HashTag("post", post_id), "detail")

    def get_post(self, post_id: int, loader: Callable[[], dict | None]) -> dict | None:
        """The post's detail, or None if it does not exist (a deleted post reads as None)."""
        return self.get_or_load(self.detail_key(post_id), loader)

    def get_many_posts(
        self, post_ids: list[int], loader: Callable[[list[int]], dict[int, dict]]
    ) -> dict[int, dict | None]:
        """{post_id: detail or None (missing or deleted)}: one round trip when all are cached;
        the misses loaded by one `loader(ids)` call and filled under leases."""
        return self.get_many_or_load({post_id: self.detail_key(post_id) for post_id in post_ids}, loader)

    def queue_write(self, pipe: redis.client.Pipeline, detail: dict[str, Any]) -> None:
        """An event's detail: updates a present older entry only (never creates one)."""
        self.queue_update_if_newer(pipe, self.detail_key(detail["id"]), detail)

    def queue_deleted(self, pipe: redis.client.Pipeline, post_id: int) -> None:
        self.queue_tombstone(pipe, self.detail_key(post_id))


class ReactionCountsCache(CacheAsideStrategy, WriteThroughCacheStrategy):
    """A post's counters (reactions per kind, comments), replaced by newer snapshots from events.

    Events carry the absolute counts and the post's stats_version, never deltas: re-delivery and
    reordering cannot make them drift. A missing post stores nothing (its detail's marker answers).
    """

    namespace = "feed"
    default_ttl = 30 * 60
    soft_ttl = 20 * 60  # stale-while-revalidate: a hot post's counts are refreshed, never expire

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
        """An event's snapshot: updates a present older entry only (never creates one)."""
        self.queue_update_if_newer(pipe, self.counts_key(stats["post_id"]), stats)

    def get_many_counts(
        self, post_ids: list[int], loader: Callable[[list[int]], dict[int, dict]]
    ) -> dict[int, dict | None]:
        """{post_id: counts or None (missing or deleted)}: one round trip when all are cached;
        the misses loaded by one `loader(ids)` call and filled under leases."""
        return self.get_many_or_load(self.counts_keys(post_ids), loader)

    def queue_deleted(self, pipe: redis.client.Pipeline, post_id: int) -> None:
        self.queue_tombstone(pipe, self.counts_key(post_id))


class UserFeedCache(CacheAsideStrategy):
    """Cache-aside feed pages, fan-out on read, invalidated in O(1) per user.

    Each user has a feed stamp (a random token); a page is stored with the stamp it was computed
    under and served only while that is still the user's stamp. Invalidating a user's feed = one
    SET of a new stamp. A page computed from a database read that a concurrent write invalidated
    carries the old stamp and is never served: no stale set. Reading = one MGET. A page's fill is
    guarded by a lease in its own key (the page key keeps its value while a refill runs).

    A missing stamp (expired, evicted) is never read as a value: nothing is served, and the filler
    first creates one (SET NX: a fresh random token, or whichever another reader created first)
    and stores its page under the stamp that is in Redis. Since tokens are random, a page stored
    under a stamp that is gone can never match a later one.
    """

    namespace = "feed"
    default_ttl = 3600

    def stamp_key(self, user_id: int) -> str:
        return self.key(HashTag("user", user_id), "stamp")

    def page_key(self, user_id: int, page: int, size: int) -> str:
        return self.key(HashTag("user", user_id), "page", page, size)

    def page_lease_key(self, user_id: int, page: int, size: int) -> str:
        """Where a page's fill holds its lease (the page keeps its value while a refill runs)."""
        return self.key(HashTag("user", user_id), "page", page, size, "lease")

    @staticmethod
    def page_value(stamp: str, items: list[dict]) -> dict[str, Any]:
        """What a page key stores: its items and the stamp they were computed under."""
        return {"stamp": stamp, "items": items}

    @staticmethod
    def servable_items(cached: object, stamp: str | None) -> list[dict] | None:
        """A decoded page entry's items if it was computed under `stamp` (the user's current
        one), else None (dead). No stamp (None) serves nothing."""
        if stamp is not None and isinstance(cached, dict) and cached.get("stamp") == stamp:
            return cached["items"]
        return None

    @staticmethod
    def new_stamp() -> str:
        return os.urandom(8).hex()

    def stamp_ttl_ms(self) -> int:
        # Outlives every page (2 x TTL): a page can never see its stamp come back.
        return self.ttl_ms(None) * 2

    def queue_invalidate(self, pipe: redis.client.Pipeline, user_id: int) -> None:
        pipe.set(self.stamp_key(user_id), self.new_stamp(), px=self.stamp_ttl_ms())

    def queue_ensure_stamp(self, pipe: redis.client.Pipeline, stamp_key: str) -> str:
        """Queue SET NX GET of a fresh stamp, returned: the command's result is the stamp that was
        there (bytes), or None when ours was created (then ours is the user's stamp)."""
        fresh = self.new_stamp()
        pipe.set(stamp_key, fresh, nx=True, px=self.stamp_ttl_ms(), get=True)
        return fresh

    def ensure_stamp(self, stamp_key: str) -> str | None:
        """The user's stamp, created if missing (None if Redis fails: then store nothing)."""
        fresh = self.new_stamp()

        def run() -> str:
            existing = self.client.set(stamp_key, fresh, nx=True, px=self.stamp_ttl_ms(), get=True)
            return existing.decode() if existing is not None else fresh

        return self.guard.call("ensure_stamp", stamp_key, run, None)

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
        """Queue storing a page computed under `stamp`, read from Redis before the database query
        (a warm-up's fill, under the page's lease)."""
        self.queue_set(pipe, self.page_key(user_id, page, size), self.page_value(stamp, items))

    def get_feed(self, user_id: int, page: int, size: int, loader: Callable[[], list[dict]]) -> list[dict]:
        # One key builder and one client for the whole read: on a hit (one MGET), building three
        # keys separately (each an epoch lookup and part checks) cost about as much as the MGET.
        builder, client, user = self.key_builder(), self.client, HashTag("user", user_id)
        stamp_key, page_key = builder.build(user, "stamp"), builder.build(user, "page", page, size)
        lease_key = builder.build(user, "page", page, size, "lease")
        stamp: str | None = None

        def read() -> Any:
            nonlocal stamp
            raws = self.guard.call("get_feed", page_key, lambda: client.mget(stamp_key, page_key), None)
            if raws is None:
                return UNAVAILABLE
            stamp, items = self.read_page(page_key, raws)
            return ABSENT if items is None else items

        def store(lease: Lease, items: list[dict]) -> None:
            if stamp is not None:
                self.set(page_key, self.page_value(stamp, items))
            self.guard.call("release", lease_key, lambda: release_lease(client, lease), False)

        def load() -> list[dict]:
            nonlocal stamp
            if stamp is None:  # before the database read: a write after it changes the stamp
                stamp = self.ensure_stamp(stamp_key)
            return loader()

        def fill() -> Any:
            if not self.keys.settled():
                return loader()  # a namespace bump is settling: nothing may be stored yet
            return fill_under_lease(self.guard, lease_key, load, store)

        return read_through(read, fill, loader, self.record_lookup)

    def read_page(self, page_key: str, raws: list[bytes | None]) -> tuple[str | None, list[dict] | None]:
        """From MGET(stamp, page): (the user's current stamp or None, the page's items if servable)."""
        stamp = raws[0].decode() if raws[0] else None
        return stamp, self.servable_items(self.decode(page_key, raws[1]), stamp)
