"""Reads for the API: through the feed caches, with the database behind every miss.

Every function here works with Redis down (the strategies degrade to their loaders) and never
serves a post whose delete has been applied to the cache: detail and counts read a tombstone as
gone, and a feed page drops any item whose counts are a tombstone or whose row is gone (so a
follower stops seeing a deleted post as soon as the delete is applied, before the fan-out renews
their feed). Every fill here is a lease-guarded fill from the database (core/caching/strategies.py).
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

from core.caching import MISSING, UNAVAILABLE, is_lease
from feed import queries
from feed.cache import MyReactionCache, PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.discover import DISCOVER_MAX_POSTS, DiscoverCache
from feed.popularity import tracker
from feed.warmup import popular_post_ids

details = PostDetailCache()
counts = ReactionCountsCache()
feeds = UserFeedCache()
mine = MyReactionCache()
discover_cache = DiscoverCache()


def feed(user_id: int, page: int, size: int) -> list[dict[str, Any]]:
    """Page `page` of the user's feed (cached under their stamp), each post with its counts and the
    user's `my_reaction`."""
    tracker.record_user(user_id)  # counted in process: no round trip (feeds to pre-warm)
    items = feeds.get_feed(user_id, page, size, lambda: queries.feed_page(user_id, page, size))
    return with_counts(items)


def feed_page(user_id: int, before_id: int | None, size: int) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the user's feed with counts and `my_reaction`, and the id to pass as `before_id`
    for the next page.

    The first page (`before_id` None) is the cached page 1 (`first_page`); deeper pages come from
    the database by keyset (posts older than `before_id`), with counts from their cache. Whether
    there is a next page is decided on the rows before deleted posts are dropped, so a delete
    never ends the feed.
    """
    if before_id is None:
        page = first_page(user_id, size)
        return page.items, page.next_before
    rows = queries.feed_before(user_id, before_id, size + 1)
    next_before = rows[size - 1]["id"] if len(rows) > size else None
    return with_counts(rows[:size]), next_before


class PageSource(NamedTuple):
    """What a first page was made of, when it was made of cached bytes alone (no load, no lease,
    no absent entry: those are the database's answers, not the bytes'). A page is a function of
    those bytes: the stamp decides whether the page entry is served, tombstones and counts are in
    their entries' bytes, and the keys carry the namespaces' epochs. The clock is its one other
    input (a counts entry coming due for a stale-while-revalidate refresh), hence `quiet_until`."""

    read: dict[str, bytes | None]  # the page's MGET: stamp, page and every counts entry it shows
    quiet_until: float  # wall ms (the counts' clock) before which none of those can come due
    lookups: int  # counts entries among them (recorded as hits when the page is unchanged)


class FirstPage(NamedTuple):
    items: list[dict[str, Any]]
    next_before: int | None
    source: PageSource | None  # None: something in it came from the database


def first_page(user_id: int, size: int, unchanged_since: PageSource | None = None) -> FirstPage | None:
    """Page 1 of the user's feed (`feed_page`), or None when its MGET read exactly the bytes of
    `unchanged_since` and none of its counts can be due yet: then the page that source made is
    the page now, and nothing is decoded, merged or loaded (a conditional read, as an ETag)."""
    tracker.record_user(user_id)
    # The counts of the posts this page held last time are read in the page's own MGET: a hot
    # page costs one round trip, and a page that changed only fetches the counts it lacks.
    builder = counts.key_builder()
    prefix, held = _page_posts.get((user_id, size), ("", {}))
    if prefix != builder.prefix:  # keys of another epoch or schema: built again
        held = counts.counts_keys(list(held), builder)
    found = feeds.get_feed_and(user_id, 1, size, lambda: queries.feed_page(user_id, 1, size), held.values())
    if (
        unchanged_since is not None
        and unchanged_since.read == found.read  # a failed read is {}: never equal
        and counts.clock() * 1000 < unchanged_since.quiet_until
    ):
        counts.record_lookups(unchanged_since.lookups, 0)
        return None
    rows, read = found.items, found.read
    ids = [row["id"] for row in rows]
    next_before = ids[-1] if len(ids) == size else None
    keys = held if list(held) == ids else counts.counts_keys(ids, builder)  # a hot page: none built
    _remember_page(user_id, size, builder.prefix, keys)
    read_counts = {post_id: read[key] for post_id, key in held.items() if key in read}
    stats = counts.get_many_or_load(keys, queries.post_stats_many, read=read_counts)
    quiet_until = _quiet_until(keys, read) if found.cached else None
    source = None if quiet_until is None else PageSource(read, quiet_until, len(keys))
    return FirstPage(_with_stats(rows, stats), next_before, source)


# (user id, page size) -> (the counts key prefix, {post id: counts key}) of the page 1 this process
# served them last: only a hint of which counts to read with the page (a wrong one costs the counts'
# own round trip; keys of another prefix are never used), so a plain dict, dropped whole at its
# bound, and no lock (a dict's get and set are atomic).
_page_posts: dict[tuple[int, int], tuple[str, dict[int, str]]] = {}
_PAGE_POSTS_MAX = 10_000


def _remember_page(user_id: int, size: int, prefix: str, keys: dict[int, str]) -> None:
    if len(_page_posts) >= _PAGE_POSTS_MAX:
        _page_posts.clear()
    _page_posts[user_id, size] = (prefix, keys)


def _quiet_until(keys: Mapping[int, str], read: Mapping[str, bytes | None]) -> float | None:
    """Until when the counts read as `read` answer the page alone (`counts.refresh_quiet_until`),
    or None if some entry was not a value in `read` (absent, leased, corrupt, not read): its
    answer came from the database."""
    metas = []
    for key in keys.values():
        raw = read.get(key)
        if raw is None or is_lease(raw):
            return None
        value, meta = counts.decode_entry(key, raw)
        if value is MISSING or value is None:
            return None
        metas.append(meta)
    return counts.refresh_quiet_until(metas)


def posts_by(author_id: int, before_id: int | None, size: int) -> tuple[list[dict[str, Any]], int | None]:
    """A user's posts with counts, newest first, and the next page's `before_id` (or None)."""
    rows = queries.posts_by(author_id, before_id, size + 1)
    next_before = rows[size - 1]["id"] if len(rows) > size else None
    return with_counts(rows[:size]), next_before


def discover(offset: int, size: int) -> tuple[list[dict[str, Any]], int | None]:
    """Popular recent posts, best first, and the next page's offset (or None).

    The ranked ids come from one short-lived shared entry (a bounded list: `offset` indexes it, no
    database OFFSET); details and counts through their caches, deleted posts dropped.
    """
    ranking = discover_cache.get_ranking(lambda: popular_post_ids(DISCOVER_MAX_POSTS))
    ids = ranking[offset : offset + size]
    next_offset = offset + size if offset + size < len(ranking) else None
    return with_counts(details_many(ids)), next_offset


def details_many(post_ids: list[int]) -> list[dict[str, Any]]:
    """The details of `post_ids` in that order: one pipelined read, the misses loaded by one query and
    filled under leases (a fill that raced an event is dropped). Deleted or missing posts are left out."""
    found = details.get_many_posts(post_ids, queries.post_details_many)
    return [found[post_id] for post_id in post_ids if found.get(post_id) is not None]


def with_my_reactions(user_id: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` each with `my_reaction` (the caller's kind, or None), from one query for the page;
    none when every item has it already (the caller's own feed pages carry it: feed.queries).

    Per caller and request: the shared cache entries (details, counts) never hold it.
    """
    if all("my_reaction" in item for item in items):
        return items
    mine = queries.reactions_of(user_id, [item["id"] for item in items])
    return [{**item, "my_reaction": mine.get(item["id"])} for item in items]


def my_reaction(user_id: int, post_id: int, read: Any = MISSING) -> str | None:
    """The user's reaction kind on the post (or None), through its cache (feed.cache.MyReactionCache).
    `read`: the entry's bytes, read already (`post_for`)."""
    found = mine.get_mine(
        user_id, post_id, lambda: {"kind": queries.reactions_of(user_id, [post_id]).get(post_id)}, read=read
    )
    return found["kind"] if isinstance(found, dict) else None


def post(post_id: int, read: tuple[Any, Any] = (MISSING, MISSING)) -> dict[str, Any] | None:
    """A post's detail with its counts, or None if it does not exist or was deleted. `read`: the
    bytes of its detail and counts entries, read already (`post_for`)."""
    detail = details.get_post(post_id, lambda: queries.post_detail_or_none(post_id), read=read[0])
    if detail is None:
        return None
    stats = counts.get_counts(post_id, lambda: queries.post_stats_or_none(post_id), read=read[1])
    if stats is None:  # deleted between the two reads
        return None
    tracker.record_post(post_id)  # counted in process: no round trip (posts to pre-warm)
    return {**detail, "counts": _public(stats)}


def post_for(user_id: int, post_id: int) -> dict[str, Any] | None:
    """`post(post_id)` with the user's `my_reaction`. Its three entries share the post's hash tag
    (one Redis Cluster slot too), so a hot read is one MGET; each entry's miss, lease or refresh is
    then its own strategy's, as if read alone. Redis down: all three go to the database."""
    keys = [details.detail_key(post_id), counts.counts_key(post_id), mine.mine_key(user_id, post_id)]
    client = details.client
    raws = details.guard.call("get_post", keys[0], lambda: client.mget(keys), None)
    detail_raw, counts_raw, mine_raw = (UNAVAILABLE,) * 3 if raws is None else raws
    found = post(post_id, read=(detail_raw, counts_raw))
    if found is None:
        return None
    return {**found, "my_reaction": my_reaction(user_id, post_id, read=mine_raw)}


def post_exists(post_id: int) -> bool:
    return details.get_post(post_id, lambda: queries.post_detail_or_none(post_id)) is not None


def with_counts(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` (post details) with their counts: one pipelined read for all of them; the misses
    loaded by one set of queries and filled under leases (a fill that raced an event is dropped).
    Deleted posts are dropped."""
    if not items:
        return []
    return _with_stats(items, counts.get_many_counts([item["id"] for item in items], queries.post_stats_many))


def _with_stats(items: list[dict[str, Any]], stats: Mapping[int, dict | None]) -> list[dict[str, Any]]:
    """`items` each with its counts from `stats` ({post id: counts or None}); deleted posts dropped."""
    return [{**item, "counts": _public(stats[item["id"]])} for item in items if stats[item["id"]] is not None]


def _public(stats: dict[str, Any]) -> dict[str, Any]:
    """The counters as the API shows them (without the cache's post_id and version)."""
    return {"reactions": dict(stats["reactions"]), "comments": stats["comments"]}  # stats are shared


def comments(post_id: int, after_id: int, limit: int) -> list[dict[str, Any]] | None:
    """Up to `limit` comments after `after_id` from the database, or None if the post is gone."""
    if not post_exists(post_id):
        return None
    return queries.comments_after(post_id, after_id, limit)


def profile(user_id: int, viewer_id: int | None = None) -> dict[str, Any] | None:
    found = queries.profile(user_id)
    if found is None:
        return None
    if viewer_id is not None and viewer_id != user_id:
        found["followed_by_me"] = queries.is_following(viewer_id, user_id)
    else:
        found["followed_by_me"] = False
    return found


def user_is_active(user_id: int) -> bool:
    return queries.user_is_active(user_id)


def follow_page(user_id: int, direction: str, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    return queries.follow_page(user_id, direction, before_id, limit)
