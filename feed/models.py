"""The social graph and its content: follows, posts, reactions, comments.

Users are `settings.AUTH_USER_MODEL` (accounts.AppUser); feed never imports the model class.
"""

from typing import NamedTuple

from django.conf import settings
from django.db import connections, models
from django.db.models import Count

from core.models import PublishingModel, PublishingQuerySet, VersionedModel


class Follow(PublishingModel):
    follower = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="following")
    followee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="followers")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the index for "whom does X follow" (the feed query).
            models.UniqueConstraint(fields=["follower", "followee"], name="follow_once"),
            models.CheckConstraint(
                condition=~models.Q(follower=models.F("followee")), name="follow_not_self"
            ),
        ]
        # "who follows X": the fan-out of X's posts.
        indexes = [models.Index(fields=["followee", "follower"], name="follow_followee_idx")]

    def __str__(self) -> str:
        return f"{self.follower_id} -> {self.followee_id}"


class PostQuerySet(PublishingQuerySet):
    def bump_stats_version(self, post_id: int) -> int | None:
        """Increase a post's stats_version in the current transaction and return the new value.

        The UPDATE locks the post's row until commit, so concurrent reactions and comments on one
        post serialize and their count snapshots are taken in commit order.
        """
        table = self.model._meta.db_table
        with connections[self.db].cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET stats_version = stats_version + 1 WHERE id = %s "  # noqa: S608
                "RETURNING stats_version",
                [post_id],
            )
            row = cursor.fetchone()
        return row[0] if row else None

    def counters(self, post_id: int) -> tuple[dict[str, int], int]:
        """(reactions per kind present, comments) of a post, counted now."""
        reactions = (
            Reaction.objects.using(self.db).filter(post_id=post_id).values("kind").annotate(n=Count("id"))
        )
        comments = Comment.objects.using(self.db).filter(post_id=post_id).count()
        return {row["kind"]: row["n"] for row in reactions}, comments

    def stats_changed(self, post_id: int) -> "StatsChange | None":
        """A reaction or comment of the post changed in this transaction: bump its stats_version
        (locking the row, see bump_stats_version) and snapshot its counters under that version.
        None if the post is gone (being deleted with it: its post.deleted covers the cache)."""
        version = self.bump_stats_version(post_id)
        if version is None:
            return None
        reactions, comments = self.counters(post_id)
        return StatsChange(version, reactions, comments)


class StatsChange(NamedTuple):
    version: int
    reactions: dict[str, int]
    comments: int


class Post(VersionedModel):
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="posts")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Version of the post's counters (reactions, comments): bumped by every change to them.
    stats_version = models.PositiveBigIntegerField(default=0, editable=False)

    objects = PostQuerySet.as_manager()
    # The author's username as the last save's UPDATE read it, under a share lock (PostgreSQL;
    # `update_returning`): what the post.updated event carries. None: read `author.username`.
    saved_author_name: str | None = None

    class Meta:
        # The feed: the newest posts of a set of authors; also a profile's posts.
        indexes = [models.Index(fields=["author", "-id"], name="post_author_recent_idx")]

    def __str__(self) -> str:
        return f"post {self.pk} by {self.author_id}"

    def update_returning(self, connection) -> list:
        """The author's name, read FOR SHARE in the edit's UPDATE: a rename commits wholly before
        the edit (the edit reads the new name) or after it (its user.updated follows the edit's
        event), so no post.updated carries a name older than the database's at its commit. SQLite
        serializes writers, so the receiver's read inside the transaction is as good there."""
        if connection.vendor != "postgresql":
            return []
        quote = connection.ops.quote_name
        users = quote(self._meta.get_field("author").related_model._meta.db_table)
        author = f"{quote(self._meta.db_table)}.{quote(self._meta.get_field('author').column)}"
        sql = f"(SELECT {quote('username')} FROM {users} WHERE {users}.{quote('id')} = {author} FOR SHARE)"  # noqa: S608
        return [(sql, self._author_name_read)]

    def _author_name_read(self, name: str) -> None:
        self.saved_author_name = name


class Reaction(PublishingModel):
    class Kind(models.TextChoices):
        LIKE = "like"
        LOVE = "love"
        LAUGH = "laugh"
        WOW = "wow"
        SAD = "sad"
        ANGRY = "angry"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="reactions")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LIKE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "post"], name="react_once")]
        indexes = [models.Index(fields=["post", "kind"], name="reaction_post_kind_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind} {self.post_id}"


class Comment(PublishingModel):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comments")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["post", "id"], name="comment_post_idx")]

    def __str__(self) -> str:
        return f"comment {self.pk} on {self.post_id}"
