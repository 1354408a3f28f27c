"""The feed HTTP API (django-ninja, mounted at /api/, OpenAPI at /api/docs).

Views validate, call one service (writes) or selector (reads), and serialize; the auth routes are
in accounts/api.py. Errors are JSON `{"detail": ...}`: 400/422 bad input, 401 unauthenticated, 403
not allowed, 404 missing, 409 conflict.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Path, Query, Router, Status
from ninja.errors import HttpError

from accounts.auth import api_auth
from core.caching import CacheSerializer
from core.schemas import ErrorOut
from feed import selectors, services
from feed.payloads import comment_payload
from feed.schemas import (
    MAX_FEED_PAGE,
    MAX_ID,
    CommentIn,
    CommentOut,
    CommentPage,
    FeedOut,
    FollowOut,
    PostIn,
    PostOut,
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


# --- feed and posts ---------------------------------------------------------------------------


@router.get("/feed", auth=auth, response={200: FeedOut, **_ERRORS})
def get_feed(
    request: HttpRequest,
    page: int = Query(1, ge=1, le=MAX_FEED_PAGE),
    size: int = Query(20, ge=1, description="capped at API_PAGE_SIZE_MAX"),
):
    """The posts of the people you follow and your own, newest first."""
    size = min(size, settings.API_PAGE_SIZE_MAX)
    items = selectors.feed(request.auth.pk, page, size)
    next_page = page + 1 if len(items) == size else None
    return _json({"page": page, "size": size, "next_page": next_page, "items": items})


@router.post("/posts", auth=auth, response={201: PostOut, **_ERRORS})
def create_post(request: HttpRequest, data: PostIn):
    post = services.create_post(request.auth, data.body)
    return _json(_ok_or_404(selectors.post(post.pk), "post"), status=201)


@router.get("/posts/{post_id}", auth=auth, response={200: PostOut, **_ERRORS})
def get_post(request: HttpRequest, post_id: int = PostId):
    return _json(_ok_or_404(selectors.post(post_id), "post"))


@router.patch("/posts/{post_id}", auth=auth, response={200: PostOut, **_ERRORS})
def update_post(request: HttpRequest, data: PostIn, post_id: int = PostId):
    """Only the author can edit a post."""
    services.update_post(request.auth, post_id, data.body)
    return _json(_ok_or_404(selectors.post(post_id), "post"))


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
    request: HttpRequest,
    post_id: int = PostId,
    cursor: int = Query(0, ge=0, le=MAX_ID, description="next_cursor of the previous page"),
    size: int = Query(20, ge=1, description="capped at API_PAGE_SIZE_MAX"),
):
    """Oldest first; pass next_cursor back as cursor for the next page."""
    size = min(size, settings.API_PAGE_SIZE_MAX)
    items, next_cursor = _ok_or_404(selectors.comments(post_id, cursor, size), "post")
    return {"items": items, "next_cursor": next_cursor}


@router.post("/posts/{post_id}/comments", auth=auth, response={201: CommentOut, **_ERRORS})
def add_comment(request: HttpRequest, data: CommentIn, post_id: int = PostId):
    comment = services.add_comment(request.auth, post_id, data.body)
    return Status(201, comment_payload(comment, author=request.auth.username))


# --- users ------------------------------------------------------------------------------------


@router.get("/users/{user_id}", auth=auth, response={200: ProfileOut, **_ERRORS})
def get_profile(request: HttpRequest, user_id: int = UserId):
    return _ok_or_404(selectors.profile(user_id, viewer_id=request.auth.pk), "user")


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
