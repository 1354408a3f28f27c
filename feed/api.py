"""The feed HTTP API (django-ninja, mounted at /api/, OpenAPI at /api/docs).

Views validate, call one service (writes) or selector (reads), and serialize; the auth routes are
in accounts/api.py. Errors are JSON `{"detail": ...}`: 400/422 bad input, 401 unauthenticated, 403
not allowed, 404 missing, 409 conflict.
"""

from django.http import HttpRequest, HttpResponse
from ninja import Path, Router, Status
from ninja.errors import HttpError

from accounts.auth import api_auth
from core.caching import CacheSerializer
from core.pagination import CursorParam, SizeParam, decode_cursor, encode_cursor, page_size
from core.schemas import ErrorOut
from feed import selectors, services
from feed.payloads import comment_payload
from feed.schemas import (
    MAX_ID,
    CommentIn,
    CommentOut,
    CommentPage,
    FeedOut,
    FollowOut,
    FollowPage,
    PostIn,
    PostOut,
    PostPage,
    ProfileOut,
    ReactionIn,
    ReactionOut,
)

router = Router(tags=["feed"])


auth = api_auth

# Services' refusals (core.errors.ServiceError) are answered by the API's one exception handler.
_ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}


def _json(payload, status: int = 200) -> HttpResponse:
    """Render posts directly: they are JSON-shaped already (that is how the cache holds them), and
    validating 20 of them through pydantic cost more than the cached read. The route's schema
    still documents the shape; tests hold the two together. Timestamps: ISO 8601, microseconds, Z.
    """
    return HttpResponse(CacheSerializer.dumps(payload), status=status, content_type="application/json")


def _ok_or_404(value, what: str):
    if value is None:
        raise HttpError(404, f"{what} not found")
    return value


PostId = Path(..., ge=1, le=MAX_ID)
UserId = Path(..., ge=1, le=MAX_ID)
CommentId = Path(..., ge=1, le=MAX_ID)


# --- feed and posts ---------------------------------------------------------------------------


def _next(position: dict | None) -> str | None:
    return None if position is None else encode_cursor(position)


def _before(cursor: str | None) -> int | None:
    position = decode_cursor(cursor, before=int)
    return None if position is None else position["before"]


def _post_for(request: HttpRequest, post_id: int) -> dict:
    return _ok_or_404(selectors.post_for(request.auth.pk, post_id), "post")


@router.get("/feed", auth=auth, response={200: FeedOut, **_ERRORS})
def get_feed(request: HttpRequest, cursor: str | None = CursorParam, size: int = SizeParam):
    """The posts of the people you follow and your own, newest first; pass `next` back as `cursor`.

    When the first page is empty (a new user), `discover` holds popular recent posts instead.
    """
    size, before, me = page_size(size), _before(cursor), request.auth.pk
    source = None
    if before is None:
        known = _rendered.get((me, size))
        page = selectors.first_page(me, size, unchanged_since=known[0] if known else None)
        if page is None:  # the same bytes as the page `known` was rendered from
            return HttpResponse(known[1], content_type="application/json")
        items, next_before, source = page
    else:
        items, next_before = selectors.feed_page(me, before, size)
    discover = []
    if before is None and not items:
        discover, _ = selectors.discover(0, size)
    shown = selectors.with_my_reactions(me, items)
    response = _json(
        {
            "items": shown,
            "next": _next(None if next_before is None else {"before": next_before}),
            "discover": selectors.with_my_reactions(me, discover) if discover else [],
        }
    )
    if source is not None and items and shown is items:  # nothing read but the page's bytes
        if len(_rendered) >= _RENDERED_MAX:
            _rendered.clear()
        _rendered[me, size] = (source, response.content)
    return response


# (user id, page size) -> (the source of the first page last rendered for them, its body): the
# next read of the same bytes answers that body (selectors.first_page). Kept only for a page made
# of cached bytes alone (no reaction query, no discover). About 20 KB an entry (the page's bytes
# and the body), 40 MB full; bytes and one dict each, little for the garbage collector to scan.
# Bounded, dropped whole; no lock (a dict's get and set are atomic).
_rendered: dict[tuple[int, int], tuple[selectors.PageSource, bytes]] = {}
_RENDERED_MAX = 2_000


@router.get("/discover", auth=auth, response={200: PostPage, **_ERRORS})
def get_discover(request: HttpRequest, cursor: str | None = CursorParam, size: int = SizeParam):
    """Popular recent posts from everyone, best first (the ranking is shared and refreshed each minute)."""
    size, position = page_size(size), decode_cursor(cursor, offset=int)
    items, next_offset = selectors.discover(0 if position is None else position["offset"], size)
    return _json(
        {
            "items": selectors.with_my_reactions(request.auth.pk, items),
            "next": _next(None if next_offset is None else {"offset": next_offset}),
        }
    )


@router.post("/posts", auth=auth, response={201: PostOut, **_ERRORS})
def create_post(request: HttpRequest, data: PostIn):
    post = services.create_post(request.auth, data.body)
    return _json(_post_for(request, post.pk), status=201)


@router.get("/posts/{post_id}", auth=auth, response={200: PostOut, **_ERRORS})
def get_post(request: HttpRequest, post_id: int = PostId):
    """The post with its counts and `my_reaction` (the kind you reacted with, or null)."""
    return _json(_post_for(request, post_id))


@router.patch("/posts/{post_id}", auth=auth, response={200: PostOut, **_ERRORS})
def update_post(request: HttpRequest, data: PostIn, post_id: int = PostId):
    """Only the author can edit a post."""
    services.update_post(request.auth, post_id, data.body)
    return _json(_post_for(request, post_id))


@router.delete("/posts/{post_id}", auth=auth, response={204: None, **_ERRORS})
def delete_post(request: HttpRequest, post_id: int = PostId):
    """Only the author can delete a post; it disappears from every cache."""
    services.delete_post(request.auth, post_id)
    return Status(204, None)


# --- reactions and comments -------------------------------------------------------------------


@router.post(
    "/posts/{post_id}/reactions", auth=auth, response={200: ReactionOut, 201: ReactionOut, **_ERRORS}
)
def react(request: HttpRequest, data: ReactionIn, post_id: int = PostId):
    """One reaction per user and post: posting again changes its kind."""
    reaction, created = services.react(request.auth, post_id, data.kind)
    found = selectors.post(post_id)
    body = {
        "post_id": post_id,
        "kind": reaction.kind,
        "created": created,
        "counts": found["counts"] if found else None,
    }
    return Status(201 if created else 200, body)


@router.delete("/posts/{post_id}/reactions", auth=auth, response={204: None, **_ERRORS})
def unreact(request: HttpRequest, post_id: int = PostId):
    services.unreact(request.auth, post_id)
    return Status(204, None)


@router.get("/posts/{post_id}/comments", auth=auth, response={200: CommentPage, **_ERRORS})
def list_comments(
    request: HttpRequest, post_id: int = PostId, cursor: str | None = CursorParam, size: int = SizeParam
):
    """Oldest first; pass `next` back as `cursor` for the next page."""
    size, position = page_size(size), decode_cursor(cursor, after=int)
    after = 0 if position is None else position["after"]
    rows = _ok_or_404(selectors.comments(post_id, after, size + 1), "post")
    more = len(rows) > size
    items = rows[:size]
    return {"items": items, "next": _next({"after": items[-1]["id"]} if more else None)}


@router.post("/posts/{post_id}/comments", auth=auth, response={201: CommentOut, **_ERRORS})
def add_comment(request: HttpRequest, data: CommentIn, post_id: int = PostId):
    comment = services.add_comment(request.auth, post_id, data.body)
    return Status(201, comment_payload(comment, author=request.auth.username))


@router.patch("/comments/{comment_id}", auth=auth, response={200: CommentOut, **_ERRORS})
def edit_comment(request: HttpRequest, data: CommentIn, comment_id: int = CommentId):
    """Only the author can edit a comment."""
    comment = services.edit_comment(request.auth, comment_id, data.body)
    return comment_payload(comment)


@router.delete("/comments/{comment_id}", auth=auth, response={204: None, **_ERRORS})
def delete_comment(request: HttpRequest, comment_id: int = CommentId):
    """Only the author can delete a comment; the post's comment count follows."""
    services.delete_comment(request.auth, comment_id)
    return Status(204, None)


# --- users ------------------------------------------------------------------------------------


@router.get("/users/{user_id}", auth=auth, response={200: ProfileOut, **_ERRORS})
def get_profile(request: HttpRequest, user_id: int = UserId):
    return _ok_or_404(selectors.profile(user_id, viewer_id=request.auth.pk), "user")


@router.get("/users/{user_id}/posts", auth=auth, response={200: PostPage, **_ERRORS})
def user_posts(
    request: HttpRequest, user_id: int = UserId, cursor: str | None = CursorParam, size: int = SizeParam
):
    """A user's posts, newest first."""
    size, before = page_size(size), _before(cursor)
    if not selectors.user_is_active(user_id):
        raise HttpError(404, "user not found")
    items, next_before = selectors.posts_by(user_id, before, size)
    return _json(
        {
            "items": selectors.with_my_reactions(request.auth.pk, items),
            "next": _next(None if next_before is None else {"before": next_before}),
        }
    )


def _follow_page(user_id: int, direction: str, cursor: str | None, size: int) -> dict:
    size, before = page_size(size), _before(cursor)
    if not selectors.user_is_active(user_id):
        raise HttpError(404, "user not found")
    rows = selectors.follow_page(user_id, direction, before, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return {
        "items": [{"id": row["id"], "username": row["username"]} for row in rows],
        "next": _next({"before": rows[-1]["follow_id"]} if more else None),
    }


@router.get("/users/{user_id}/followers", auth=auth, response={200: FollowPage, **_ERRORS})
def followers(
    request: HttpRequest, user_id: int = UserId, cursor: str | None = CursorParam, size: int = SizeParam
):
    """Who follows the user, most recent first."""
    return _follow_page(user_id, "followers", cursor, size)


@router.get("/users/{user_id}/following", auth=auth, response={200: FollowPage, **_ERRORS})
def following(
    request: HttpRequest, user_id: int = UserId, cursor: str | None = CursorParam, size: int = SizeParam
):
    """Whom the user follows, most recently followed first."""
    return _follow_page(user_id, "following", cursor, size)


@router.post("/users/{user_id}/follow", auth=auth, response={200: FollowOut, 201: FollowOut, **_ERRORS})
def follow(request: HttpRequest, user_id: int = UserId):
    """Idempotent: 201 when this call started following, 200 when you already did."""
    created = services.follow(request.auth, user_id)
    return Status(201 if created else 200, {"user_id": user_id, "following": True, "changed": created})


@router.delete("/users/{user_id}/follow", auth=auth, response={200: FollowOut, **_ERRORS})
def unfollow(request: HttpRequest, user_id: int = UserId):
    """Idempotent: `changed` says whether you were following."""
    removed = services.unfollow(request.auth, user_id)
    return {"user_id": user_id, "following": False, "changed": removed}
