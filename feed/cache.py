"""Feed caches: post details, reaction counts, and per-user feed pages.

Per-post keys share the hash tag {post:ID}; a user's feed keys share {user:ID}; so the commands that
read several of them together stay within one Redis Cluster slot.

Details and counts follow the library's invariant (core/caching/strategies.py): only fills from the
database create them; events update present versioned entries, void leases and absent markers,
tombstone present entries on delete, and never create one. Feed pages are guarded by their user's
stamp instead (UserFeedCache).
"""

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import redis
from django.conf import settings

from core.caching import (
    ABSENT,
    MISSING,
    UNAVAILABLE,
    BaseCacheStrategy,
    CacheAsideStrategy,
    CacheKeyBuilder,
    HashTag,
    Lease,
    LuaScript,
    WriteThroughCacheStrategy,
    fill_under_lease,
    new_token,
    queue_release,
    read_through,
    ttl_ms,
)

_LUA = Path(__file__).resolve().parent / "lua"
_FOLLOWERS_ADD = LuaScript.load("followers_add", directory=_LUA)
_FOLLOWERS_LEASE = LuaScript.load("followers_lease", directory=_LUA)
_FOLLOWERS_FILL = LuaScript.load("followers_fill", directory=_LUA)
_FOLLOWERS_STAMP = LuaScript.load("followers_stamp", directory=_LUA)


class PostDetailCache(CacheAsideStrategy, WriteThroughCacheStrategy):
    """Cache-aside post details, updated by post.* events where present (version-aware).

    A post that does not exist leaves a short absent marker (its post.created deletes it)."""

    namespace = "feed"
    default_ttl = 2 * 3600
    negative_ttl = 30
    soft_ttl = 3600  # stale-while-revalidate: a hot post's detail is refreshed, never expires

    def detail_key(self, post_id: int) -> str:
        return self.key(HashTag("post", post_id), "detail")

    def get_post(self, post_id: int, loader: Callable[[], dict | None], read: Any = MISSING) -> dict | None:
        """The post's detail, or None if it does not exist (a deleted post reads as None).
        `read`: its bytes, read already (`get_or_load`)."""
        return self.get_or_load(self.detail_key(post_id), loader, read=read)

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
    decode_memo_size = 4096  # 20 per feed read: decoded once per process (values shared, read-only)

    def counts_key(self, post_id: int) -> str:
        return self.key(HashTag("post", post_id), "reactions")

    def counts_keys(self, post_ids: list[int], builder: CacheKeyBuilder | None = None) -> dict[int, str]:
        """counts_key of many posts with one key builder (this one's, or `builder`, got from
        `key_builder()` by the caller): a feed page's worth on a feed read, where building each
        key on its own cost about as much as reading them all."""
        builder = builder or self.key_builder()
        return {post_id: builder.build(HashTag("post", post_id), "reactions") for post_id in post_ids}

    def get_counts(self, post_id: int, loader: Callable[[], dict | None], read: Any = MISSING) -> dict | None:
        return self.get_or_load(self.counts_key(post_id), loader, read=read)

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


class MyReactionCache(CacheAsideStrategy):
    """One user's reaction to one post, `{"kind": kind or None}`: what `GET /api/posts/{id}` shows
    as `my_reaction`, without a query per request.

    Filled from the database under a lease; every reaction event of the pair deletes the entry (at
    commit, then in the worker). A delete needs no order and no version: a late or repeated one
    costs a refill, and one that lands during a fill voids its lease, so the fill is dropped."""

    namespace = "feed"
    default_ttl = 10 * 60

    def mine_key(self, user_id: int, post_id: int) -> str:
        return self.key(HashTag("post", post_id), "mine", user_id)

    def get_mine(self, user_id: int, post_id: int, loader: Callable[[], dict], read: Any = MISSING) -> dict:
        return self.get_or_load(self.mine_key(user_id, post_id), loader, read=read)

    def queue_changed(self, pipe: redis.client.Pipeline, user_id: int, post_id: int) -> None:
        self.queue_delete(pipe, self.mine_key(user_id, post_id))


class FeedRead(NamedTuple):
    """A feed page as `UserFeedCache.get_feed_and` answered it."""

    items: list[dict]
    # Every key the page's last MGET read, with its bytes (None: absent); {} when it failed.
    read: dict[str, bytes | None]
    # The items are the page entry's, served from the bytes in `read` (not loaded).
    cached: bool


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

    def stamp_key_around_id(self) -> tuple[str, str]:
        """What a user's stamp key holds before and after the user id (for a script that builds them)."""
        prefix, suffix = self.stamp_key(0).split("{user:0}")
        return prefix + "{user:", "}" + suffix

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

    def queue_invalidate_many(self, pipe: redis.client.Pipeline, user_ids: Iterable[int]) -> None:
        """`queue_invalidate` of each user with one key builder and one fresh token (a commit's
        followers): a token is only ever compared with its own user's stamp, and a fresh one
        was never any of theirs, so sharing it among users is as safe as one each."""
        builder, stamp, px = self.key_builder(), self.new_stamp(), self.stamp_ttl_ms()
        for user_id in user_ids:
            pipe.set(builder.build(HashTag("user", user_id), "stamp"), stamp, px=px)

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
        return self.get_feed_and(user_id, page, size, loader).items

    def get_feed_and(
        self, user_id: int, page: int, size: int, loader: Callable[[], list[dict]], also: Sequence[str] = ()
    ) -> FeedRead:
        """`get_feed`'s page, with what the page's MGET read: the stamp, the page and the `also`
        keys (FeedRead).

        `also` is read only on one Redis (a cluster's MGET cannot span slots: not read then). The
        caller's other keys then cost no round trip of their own: the feed reads the counts of the
        posts its page held last time (feed.selectors.feed_page)."""
        # One key builder and one client for the whole read: on a hit (one MGET), building three
        # keys separately (each an epoch lookup and part checks) cost about as much as the MGET.
        builder, client, user = self.key_builder(), self.client, HashTag("user", user_id)
        stamp_key, page_key = builder.build(user, "stamp"), builder.build(user, "page", page, size)
        lease_key = builder.build(user, "page", page, size, "lease")
        stamp: str | None = None
        keys = [stamp_key, page_key, *also] if isinstance(client, redis.Redis) else [stamp_key, page_key]
        read_now: dict[str, bytes | None] = {}
        cached = False

        def read() -> Any:
            nonlocal stamp
            raws = self.guard.call("get_feed", page_key, lambda: client.mget(keys), None)
            read_now.clear()
            if raws is None:
                return UNAVAILABLE
            read_now.update(zip(keys, raws, strict=True))
            stamp, items = self.read_page(page_key, raws[:2])
            return ABSENT if items is None else items

        def record(hit: bool) -> None:
            nonlocal cached
            cached = hit  # a hit is the last read's items
            self.record_lookup(hit)

        def store(lease: Lease, items: list[dict]) -> None:
            # The page and the lease's release in one round trip (both under the user's hash tag).
            def run() -> None:
                pipe = client.pipeline(transaction=False)
                if stamp is not None:
                    self.queue_set(pipe, page_key, self.page_value(stamp, items))
                queue_release(pipe, lease)
                pipe.execute()

            self.guard.call("store", page_key, run, None)

        def load() -> list[dict]:
            nonlocal stamp
            if stamp is None:  # before the database read: a write after it changes the stamp
                stamp = self.ensure_stamp(stamp_key)
            return loader()

        def fill() -> Any:
            if not self.keys.settled():
                return loader()  # a namespace bump is settling: nothing may be stored yet
            return fill_under_lease(self.guard, lease_key, load, store)

        items = read_through(read, fill, loader, record)
        return FeedRead(items, read_now, cached)

    def read_page(self, page_key: str, raws: list[bytes | None]) -> tuple[str | None, list[dict] | None]:
        """From MGET(stamp, page): (the user's current stamp or None, the page's items if servable)."""
        stamp = raws[0].decode() if raws[0] else None
        return stamp, self.servable_items(self.decode(page_key, raws[1]), stamp)


class FollowerSetCache(BaseCacheStrategy):
    """Who follows an author, for invalidating their feeds inside the post's commit-time round trip.

    A Redis SET per author (`{user:ID}` like the author's feed keys), with a TTL, holding follower
    ids and a sentinel: COMPLETE (the set is every follower: usable inline) or LARGE alone (more
    than FEED_INLINE_FANOUT_MAX followers: the worker fans out). Only a fill from the database
    creates one, under a lease taken before the read (`take_fill_leases`, `fill`: the worker's
    fan-out, which reads the followers anyway). follow.created voids a fill in flight and adds to a
    present set; follow.deleted deletes the set. So a present complete set is a superset of the
    followers (a late or duplicate event only adds an ex-follower: one extra invalidation), and an
    absent, evicted or unreadable one means "not known": the caller leaves it to the worker.
    """

    namespace = "feed"
    default_ttl = 3600
    COMPLETE = "*"
    LARGE = "+"

    def set_key(self, author_id: int) -> str:
        return self.key(HashTag("user", author_id), "followers")

    def lease_key(self, author_id: int) -> str:
        return self.key(HashTag("user", author_id), "followers", "lease")

    @staticmethod
    def max_inline() -> int:
        return settings.FEED_INLINE_FANOUT_MAX

    def audiences(self, author_ids: Iterable[int]) -> dict[int, list[int]]:
        """{author: follower ids} for the authors whose set is present and complete, within the
        inline bound; one pipelined read. Absent, large or unreadable sets are left out (never
        raises: Redis trouble leaves everyone to the worker)."""
        authors = sorted(set(author_ids))
        if not authors or self.max_inline() <= 0:
            return {}
        builder = self.key_builder()
        keys = [builder.build(HashTag("user", author_id), "followers") for author_id in authors]

        def read() -> list:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.smembers(key)
            return pipe.execute()

        found = self.guard.call("followers", keys[0], read, None)
        if found is None:
            return {}
        complete, limit = self.COMPLETE.encode(), self.max_inline()
        audiences = {}
        for author_id, members in zip(authors, found, strict=True):
            if complete in members and len(members) - 1 <= limit:
                audiences[author_id] = [int(member) for member in members if member != complete]
        return audiences

    def stamps_in_script(self) -> bool:
        """Whether `queue_stamp_followers` can run: inline fan-out on, and the cache on one Redis."""
        return self.max_inline() > 0 and isinstance(self.client, redis.Redis)

    def queue_stamp_followers(
        self, pipe: redis.client.Pipeline, author_id: int, feeds: "UserFeedCache"
    ) -> None:
        """`audiences` and the followers' `queue_invalidate` in one script of the commit's own
        pipeline (one Redis only: `stamps_in_script`): no round trip of its own before the commit's.
        The set is read when the pipeline runs, after the commit: never older than `audiences`'s."""
        prefix, suffix = feeds.stamp_key_around_id()
        args = [self.COMPLETE, self.max_inline(), feeds.new_stamp(), feeds.stamp_ttl_ms(), prefix, suffix]
        _FOLLOWERS_STAMP(pipe, [self.set_key(author_id)], args)

    def queue_follow_created(self, pipe: redis.client.Pipeline, followee_id: int, follower_id: int) -> None:
        keys = [self.set_key(followee_id), self.lease_key(followee_id)]
        args = [follower_id, self.COMPLETE, self.LARGE, self.max_inline(), self.ttl_ms(None)]
        _FOLLOWERS_ADD(pipe, keys, args)

    def queue_follow_deleted(self, pipe: redis.client.Pipeline, followee_id: int) -> None:
        """The set goes (and a fill in flight with it): the next fill reads the database."""
        pipe.unlink(self.set_key(followee_id), self.lease_key(followee_id))

    def take_fill_leases(self, author_ids: Iterable[int]) -> dict[int, Lease]:
        """Leases on the sets of those authors that have none, one round trip, taken BEFORE the
        database read they guard. {} when inline fan-out is off or Redis fails."""
        authors = sorted(set(author_ids))
        if not authors or self.max_inline() <= 0:
            return {}
        builder = self.key_builder()
        keys = {a: builder.build(HashTag("user", a), "followers") for a in authors}
        leases = {
            a: Lease(builder.build(HashTag("user", a), "followers", "lease"), new_token()) for a in authors
        }
        if not self.keys.settled():  # a namespace bump is settling: nothing may be stored yet
            return {}
        ms = ttl_ms(settings.CACHE_LEASE_SECONDS)

        def take() -> list:
            pipe = self.client.pipeline(transaction=False)
            for author_id, lease in leases.items():
                _FOLLOWERS_LEASE(pipe, [keys[author_id], lease.key], [lease.token, ms])
            return pipe.execute()

        taken = self.guard.call("followers_lease", leases[authors[0]].key, take, None)
        if taken is None:
            return {}
        return {author_id: lease for (author_id, lease), ok in zip(leases.items(), taken, strict=True) if ok}

    def fill(self, leases: Mapping[int, Lease], followers: Mapping[int, list[int]]) -> int:
        """Store each leased author's followers as read from the database (an author absent from
        `followers` has none); more than the inline bound stores the LARGE marker. One round trip;
        a lease voided meanwhile stores nothing. Returns how many sets were stored."""
        if not leases:
            return 0
        limit, ms = self.max_inline(), self.ttl_ms(None)

        def store() -> int:
            pipe = self.client.pipeline(transaction=False)
            for author_id, lease in leases.items():
                ids = followers.get(author_id, [])
                members = [self.LARGE] if len(ids) > limit else [*ids, self.COMPLETE]
                _FOLLOWERS_FILL(pipe, [self.set_key(author_id), lease.key], [lease.token, ms, *members])
            return sum(1 for stored in pipe.execute() if stored)

        return self.guard.call("followers_fill", next(iter(leases.values())).key, store, 0)
