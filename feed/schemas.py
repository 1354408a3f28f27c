"""Request and response shapes of the feed API (validated by pydantic, documented in OpenAPI)."""

from datetime import datetime

from django.conf import settings
from ninja import Schema
from pydantic import Field

from core.pagination import PageOut
from core.validation import text_field
from feed.models import Reaction

# Database ids are signed 64-bit: a larger number in a path is a 422, not a database error.
MAX_ID = 2**63 - 1


Body = text_field(strip_whitespace=True, min_length=1, max_length=settings.POST_BODY_MAX_LENGTH)

# --- posts ------------------------------------------------------------------------------------


class PostIn(Schema):
    body: Body


class Counts(Schema):
    reactions: dict[str, int]
    comments: int


class PostOut(Schema):
    id: int
    author_id: int
    author: str
    body: str
    created_at: datetime
    updated_at: datetime
    version: int
    counts: Counts
    my_reaction: str | None = Field(description="the caller's reaction kind, or null")


class PostPage(PageOut):
    items: list[PostOut]


class FeedOut(PostPage):
    discover: list[PostOut] = Field(
        description="on the first page of an empty feed: popular recent posts (as GET /api/discover)"
    )


class ReactionIn(Schema):
    kind: Reaction.Kind = Field(description="one of " + ", ".join(Reaction.Kind.values))


class ReactionOut(Schema):
    post_id: int
    kind: str
    created: bool
    counts: Counts | None


class CommentIn(Schema):
    body: Body


class CommentOut(Schema):
    id: int
    post_id: int
    author_id: int
    author: str
    body: str
    created_at: datetime


class CommentPage(PageOut):
    items: list[CommentOut]


# --- users ------------------------------------------------------------------------------------


class ProfileOut(Schema):
    id: int
    username: str
    bio: str
    date_joined: datetime
    followers: int
    following: int
    followed_by_me: bool


class FollowUserOut(Schema):
    id: int
    username: str


class FollowPage(PageOut):
    items: list[FollowUserOut]


class FollowOut(Schema):
    user_id: int
    following: bool
    changed: bool
