"""The JSON shapes of feed content, shared by the API, the caches and the events: one builder per
shape, each returning a dict the one codec (core/codec.py) encodes as is. Builders run no queries."""

from collections.abc import Mapping, Sequence
from typing import Any

from feed.models import Comment, Post, Reaction


def post_detail(post: Post) -> dict[str, Any]:
    """A post as the API serves it and the detail cache stores it (versioned)."""
    author = post.saved_author_name or post.author.username
    return post_detail_of_row(
        (post.pk, post.author_id, author, post.body, post.created_at, post.updated_at, post.version)
    )


# `post_detail`'s values as columns, for the reads that fill the caches: a row of these (values_list)
# is one without a Post or its author's whole row loaded (a feed page's model instances were a
# fifth of its query's time), and `post_detail_of_row` makes it the same dict.
POST_DETAIL_COLUMNS = ("id", "author_id", "author__username", "body", "created_at", "updated_at", "version")


def post_detail_of_row(row: Sequence[Any]) -> dict[str, Any]:
    """`post_detail` of a row whose first values are POST_DETAIL_COLUMNS' (the shape's one place)."""
    return {
        "id": row[0],
        "author_id": row[1],
        "author": row[2],
        "body": row[3],
        "created_at": row[4],
        "updated_at": row[5],
        "version": row[6],
    }


def post_stats(post_id: int, version: int, reactions: Mapping[str, int] | None = None, comments: int = 0):
    """A post's counters (every reaction kind, zero when absent) under its stats_version."""
    reactions = reactions or {}
    return {
        "post_id": post_id,
        "reactions": {kind: reactions.get(kind, 0) for kind in Reaction.Kind.values},
        "comments": comments,
        "version": version,
    }


def comment_payload(comment: Comment, author: str | None = None) -> dict[str, Any]:
    """A comment as the API serves it; `author` (the username) saves a join when the caller has it."""
    return {
        "id": comment.pk,
        "post_id": comment.post_id,
        "author_id": comment.author_id,
        "author": comment.author.username if author is None else author,
        "body": comment.body,
        "created_at": comment.created_at,
    }
