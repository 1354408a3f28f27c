"""Consistency checks for the feed caches (registered in FeedConfig.ready())."""

import re

from core.caching import (
    BaseCacheStrategy,
    CorruptCacheValue,
    is_lease,
    is_tombstone,
    serializer,
    split_soft_expiry,
)
from core.consistency import CacheCheck, CheckResult, register, sampled
from feed import queries
from feed.cache import MyReactionCache, PostDetailCache, ReactionCountsCache, UserFeedCache

_POST = re.compile(rb"\{post:(\d+)\}")
_PAGE = re.compile(rb"\{user:(\d+)\}:page:(\d+):(\d+)$")
_MINE = re.compile(rb"\{post:(\d+)\}:mine:(\d+)$")


def _entries(client, pattern: str):
    """(key, decoded value) for every servable entry matching `pattern` (leases skipped)."""
    for key in client.scan_iter(match=pattern, count=1000):
        raw = client.get(key)
        if raw is None or is_lease(raw):
            continue
        try:
            yield key, split_soft_expiry(serializer.loads(raw))[0]
        except CorruptCacheValue:
            yield key, raw


class _PerPostCheck(CacheCheck):
    """A per-post entry: a tombstone (or a cached null) must match a missing row; anything else
    must serve what the database says now."""

    suffix = ""

    def cache(self) -> BaseCacheStrategy:
        raise NotImplementedError

    def load(self, post_id: int) -> dict | None:
        raise NotImplementedError

    def served(self, value: dict) -> object:
        """The part of an entry (cached or loaded) that readers see."""
        return value

    def run(self, sample: int | None = None) -> CheckResult:
        cache, result = self.cache(), CheckResult(self.name)
        for key, cached in sampled(_entries(cache.client, cache.key_pattern(self.suffix)), result, sample):
            expected = self.load(int(_POST.search(key).group(1)))
            result.checked += 1
            if is_tombstone(cached) or cached is None:
                if expected is not None:
                    result.mismatch(key.decode(), cached, expected)
                continue
            normalized = None if expected is None else serializer.loads(serializer.dumps(expected))
            served = self.served(cached) if isinstance(cached, dict) else cached
            if normalized is None or served != self.served(normalized):
                result.mismatch(key.decode(), served, normalized)
        return result


class PostDetailCheck(_PerPostCheck):
    name, suffix = "post details", "{post:*}:detail"

    def cache(self) -> BaseCacheStrategy:
        return PostDetailCache()

    def load(self, post_id: int) -> dict | None:
        return queries.post_detail_or_none(post_id)


class ReactionCountsCheck(_PerPostCheck):
    """Counts only: a cached snapshot may carry an older stats version with the same counts."""

    name, suffix = "reaction counts", "{post:*}:reactions"

    def cache(self) -> BaseCacheStrategy:
        return ReactionCountsCache()

    def load(self, post_id: int) -> dict | None:
        return queries.post_stats_or_none(post_id)

    def served(self, value: dict) -> object:
        return value.get("reactions"), value.get("comments")


class MyReactionCheck(CacheCheck):
    """A user's cached reaction to a post must be the one in the database."""

    name = "my reactions"

    def run(self, sample: int | None = None) -> CheckResult:
        cache, result = MyReactionCache(), CheckResult(self.name)
        for key, cached in sampled(
            _entries(cache.client, cache.key_pattern("{post:*}:mine:*")), result, sample
        ):
            match = _MINE.search(key)
            if match is None:
                continue
            post_id, user_id = (int(g) for g in match.groups())
            if queries.post_detail_or_none(post_id) is None:
                continue  # a deleted post's: never served (its detail answers first)
            expected = {"kind": queries.reactions_of(user_id, [post_id]).get(post_id)}
            result.checked += 1
            if cached != expected:
                result.mismatch(key.decode(), cached, expected)
        return result


class FeedPageCheck(CacheCheck):
    """Sampled: a page is compared only while its stamp is current (otherwise, or with no stamp at
    all, it is dead: readers never serve it)."""

    name = "feed pages"

    def run(self, sample: int | None = None) -> CheckResult:
        cache, result = UserFeedCache(), CheckResult(self.name)
        for key, cached in sampled(
            _entries(cache.client, cache.key_pattern("{user:*}:page:*")), result, sample
        ):
            match = _PAGE.search(key)
            if match is None:  # a fill's lease key
                continue
            user_id, page, size = (int(g) for g in match.groups())
            stamp = cache.client.get(cache.stamp_key(user_id))
            items = cache.servable_items(cached, stamp.decode() if stamp else None)  # no stamp: dead
            if items is None:
                continue
            result.checked += 1
            expected = serializer.loads(serializer.dumps(queries.feed_page(user_id, page, size)))
            if items != expected:
                result.mismatch(key.decode(), items, expected)
        return result


def register_checks() -> None:
    for check in (PostDetailCheck(), ReactionCountsCheck(), MyReactionCheck(), FeedPageCheck()):
        register(check)
