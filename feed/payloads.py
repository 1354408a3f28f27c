"""The JSON shapes of feed content, shared by the API, the caches and the events."""

from typing import Any

from django.db.models import Count

from feed.models import Comment, Post, Reaction


def post_detail(post: Post) -> dict[str, Any]:
    """A post as the API serves it and the detail cache stores it (versioned)."""
    return {
        "id": post.pk,
        "author_id": post.author_id,
        "author": post.author.username,
        "body": post.body,
        "created_at": post.created_at,
        "updated_at": post.updated_at,
        "version": post.version,
    }


def post_stats(post_id: int, stats_version: int) -> dict[str, Any]:
    """A post's counters, read now (inside the transaction that changed them, for events)."""
    reactions = {kind: 0 for kind in Reaction.Kind.values}
    for row in Reaction.objects.filter(post_id=post_id).values("kind").annotate(n=Count("id")):
        reactions[row["kind"]] = row["n"]
    return {
        "post_id": post_id,
        "reactions": reactions,
        "comments": Comment.objects.filter(post_id=post_id).count(),
        "version": stats_version,
    }
