"""The JSON shapes of feed content, shared by the API, the caches and the events: one builder per
shape, each returning a dict the one codec (core/codec.py) encodes as is. Builders run no queries."""

from collections.abc import Mapping
from typing import Any

from feed.models import Comment, Post, Reaction


def post_detail(post: Post) -> dict[str, Any]:
    """A post as the API serves it and the detail cache stores it (versioned)."""
    return {
        "id": post.pk,
        "author_id": post.author_id,
        "author": post.saved_author_name or post.author.username,
        "body": post.body,
        "created_at": post.created_at,
        "updated_at": post.updated_at,
        "version": post.version,
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
