"""The discover feed's cache: which posts are popular right now, shared by every reader.

Cache-aside with a short TTL on one key holding the ranked post ids only (from the popularity
tracker, or the database when Redis has no ranking yet). Details and counts are read through their
own caches per request, so a post edited or deleted since the ranking was taken is shown as it is
now, or not at all: the ranking can be a minute old, the content never is.
"""

from collections.abc import Callable

from core.caching import CacheAsideStrategy

# How many ranked posts the discover feed pages through.
DISCOVER_MAX_POSTS = 200


class DiscoverCache(CacheAsideStrategy):
    namespace = "feed"
    default_ttl = 60

    def ranking_key(self) -> str:
        return self.key("discover", "ranking")

    def get_ranking(self, loader: Callable[[], list[int]]) -> list[int]:
        return self.get_or_load(self.ranking_key(), loader) or []
