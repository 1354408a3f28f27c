"""The database reads that fill the feed caches (and answer when Redis is down).

Each returns plain JSON-able dicts in the shapes of feed/payloads.py, so a value from the cache and
one from the database are interchangeable.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from core.compiled_queries import CompiledQuery
from feed.models import Comment, Follow, Post, Reaction
from feed.payloads import POST_DETAIL_COLUMNS, comment_payload, post_detail_of_row, post_stats

# Above this many followees the author list goes to the database as a subquery instead.
FEED_INLINE_AUTHORS_MAX = 5000


def feed_page(user_id: int, page: int, size: int) -> list[dict[str, Any]]:
    """Page `page` (1-based) of `size` posts by the people `user_id` follows and by themself, newest
    (highest id) first, author joined in.

    Two indexed queries: the followee ids, then the posts WHERE author_id IN (those ids, self). With
    the ids as constants the planner sees how much each author posts and picks, per user, between
    walking the primary key backwards (followees who post a lot) and the (author, -id) index
    (followees who rarely post). With a subquery instead it has one plan for everybody, and on the
    demo data (10k users, 200k posts) its p99 was 3x and its worst case 8x the two-step's.

    Each item carries `my_reaction`, the user's own reaction kind (or None), read in the same
    query: the page is the user's alone, and their reaction events give them a new feed stamp
    (feed.handlers.StatsHandler), so a cached page never shows a reaction they changed since (the
    posts query carries it as a subquery per row: no third query).

    Both queries run from SQL compiled once per shape (core/compiled_queries.py): building and
    compiling them was more of a feed miss than running them.
    """
    offset = (page - 1) * size
    return _details_with_mine(_feed_page_rows(user_id, _authors(user_id), start=offset, stop=offset + size))


def feed_before(user_id: int, before_id: int, limit: int) -> list[dict[str, Any]]:
    """The `limit` feed posts just older than post id `before_id`, newest first: the API's deeper
    pages, by keyset (an id range per author, never an OFFSET scan). With `my_reaction`, as pages."""
    return _details_with_mine(_feed_rows_before(user_id, _authors(user_id), before_id, limit=limit))


def _followees(user_id: int):
    return Follow.objects.filter(follower_id=user_id).values_list("followee_id", flat=True)


def _followees_upto(user_id: int, *, limit: int):
    return _followees(user_id)[:limit]


_followee_ids = CompiledQuery(_followees_upto)


def _authors(user_id: int) -> list[int] | None:
    """The authors of the user's feed (their followees and themself), or None above
    FEED_INLINE_AUTHORS_MAX followees (the posts query then reads them in a subquery)."""
    author_ids = _followee_ids(user_id, limit=FEED_INLINE_AUTHORS_MAX + 1)
    return None if len(author_ids) > FEED_INLINE_AUTHORS_MAX else [*author_ids, user_id]


def _feed_posts(user_id: int, authors: list[int] | None):
    """The user's feed posts by `authors` (None: their followees in a subquery, and themself),
    with `my_reaction`."""
    if authors is None:
        by = Q(author_id__in=_followees(user_id)) | Q(author_id=user_id)
    else:
        by = Q(author_id__in=authors)
    mine = Reaction.objects.filter(post_id=OuterRef("pk"), user_id=user_id).values("kind")[:1]
    return Post.objects.filter(by).annotate(my_reaction=Subquery(mine))


def _feed_values(posts):
    return posts.values_list(*POST_DETAIL_COLUMNS, "my_reaction")


# `authors` None (the subquery) is not a parameter CompiledQuery takes: those calls run through the ORM.
def _page_values(user_id: int, authors: list[int] | None, *, start: int, stop: int):
    return _feed_values(_feed_posts(user_id, authors).order_by("-id")[start:stop])


def _values_before(user_id: int, authors: list[int] | None, before_id: int, *, limit: int):
    return _feed_values(_feed_posts(user_id, authors).filter(id__lt=before_id).order_by("-id")[:limit])


_feed_page_rows = CompiledQuery(_page_values)
_feed_rows_before = CompiledQuery(_values_before)


def _details_with_mine(rows) -> list[dict[str, Any]]:
    return [{**post_detail_of_row(row), "my_reaction": row[-1]} for row in rows]


def posts_by(author_id: int, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    """A user's own posts, newest first, older than `before_id` (keyset on the (author, -id) index)."""
    posts = Post.objects.filter(author_id=author_id).order_by("-id")
    if before_id is not None:
        posts = posts.filter(id__lt=before_id)
    return [post_detail_of_row(row) for row in posts.values_list(*POST_DETAIL_COLUMNS)[:limit]]


def post_details_many(post_ids: list[int]) -> dict[int, dict[str, Any]]:
    """post_detail_or_none for many posts in one query; missing posts are left out."""
    rows = Post.objects.filter(pk__in=post_ids).values_list(*POST_DETAIL_COLUMNS)
    return {row[0]: post_detail_of_row(row) for row in rows}


def reactions_of(user_id: int, post_ids: list[int]) -> dict[int, str]:
    """The kind of `user_id`'s reaction to each of `post_ids` that has one (one query)."""
    if not post_ids:
        return {}
    rows = Reaction.objects.filter(user_id=user_id, post_id__in=post_ids).values_list("post_id", "kind")
    return dict(rows)


def follow_page(user_id: int, direction: str, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Who follows `user_id` (direction "followers") or whom they follow ("following"), newest
    follow first, by keyset on the follow's id. Each row: the user and the follow's id (`follow_id`)."""
    if direction == "followers":
        rows = Follow.objects.filter(followee_id=user_id, follower__is_active=True)
        other = "follower"
    else:
        rows = Follow.objects.filter(follower_id=user_id, followee__is_active=True)
        other = "followee"
    if before_id is not None:
        rows = rows.filter(id__lt=before_id)
    values = rows.order_by("-id").values_list("id", f"{other}_id", f"{other}__username")[:limit]
    return [{"follow_id": fid, "id": uid, "username": name} for fid, uid, name in values]


def post_detail_or_none(post_id: int) -> dict[str, Any] | None:
    row = Post.objects.filter(pk=post_id).values_list(*POST_DETAIL_COLUMNS).first()
    return None if row is None else post_detail_of_row(row)


def post_stats_or_none(post_id: int) -> dict[str, Any] | None:
    """The post's counters with its current stats_version, or None if the post does not exist."""
    return post_stats_many([post_id]).get(post_id)


def post_stats_many(post_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The counters of each of `post_ids` with its stats_version, in one query; missing posts are
    left out. Version and counts come from the statement's one snapshot, so they always agree
    (a reaction and its version bump commit together). It was three queries (versions first,
    then the counts): on a feed miss after a new post, a third of the read.

    One row per (post, reaction kind present), the comments counted by a subquery per post; from
    SQL compiled once per number of posts (core/compiled_queries.py)."""
    stats: dict[int, dict[str, Any]] = {}
    for post_id, version, kind, n, n_comments in _stats_rows(post_ids):
        found = stats.setdefault(post_id, post_stats(post_id, version, comments=n_comments))
        if kind is not None:
            found["reactions"][kind] = n
    return stats


def _stats_values(post_ids: list[int]):
    comments = Comment.objects.filter(post_id=OuterRef("pk")).order_by().values("post_id")
    return (
        Post.objects.filter(pk__in=post_ids)
        .values_list("id", "stats_version", "reactions__kind")
        .annotate(
            n=Count("reactions__id"),
            n_comments=Coalesce(
                Subquery(comments.annotate(n=Count("id")).values("n"), output_field=IntegerField()), Value(0)
            ),
        )
        .order_by()
    )


_stats_rows = CompiledQuery(_stats_values)


def _follow_count(field: str) -> Coalesce:
    counted = (
        Follow.objects.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def profile(user_id: int) -> dict[str, Any] | None:
    """A user's public profile with follower and following counts, or None (missing or inactive)."""
    row = (
        get_user_model()
        .objects.filter(pk=user_id, is_active=True)
        .annotate(n_followers=_follow_count("followee"), n_following=_follow_count("follower"))
        .values("id", "username", "bio", "date_joined", "n_followers", "n_following")
        .first()
    )
    if row is None:
        return None
    row["followers"], row["following"] = row.pop("n_followers"), row.pop("n_following")
    return row


def user_is_active(user_id: int) -> bool:
    return get_user_model().objects.filter(pk=user_id, is_active=True).exists()


def is_following(follower_id: int, followee_id: int) -> bool:
    return Follow.objects.filter(follower_id=follower_id, followee_id=followee_id).exists()


def comments_after(post_id: int, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Comments of a post in id order after comment id `after_id` (keyset on (post, id))."""
    rows = (
        Comment.objects.filter(post_id=post_id, id__gt=after_id)
        .select_related("author")
        .order_by("id")[:limit]
    )
    return [comment_payload(comment) for comment in rows]
