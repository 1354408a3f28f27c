"""The feed HTTP API (django-ninja, mounted at /api/, OpenAPI at /api/docs).

Views validate, call one service (writes) or selector (reads), and serialize. Errors are JSON
`{"detail": ...}`: 400/422 bad input, 401 unauthenticated, 403 not allowed, 404 missing, 409 conflict.
"""

import functools
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse
from ninja import Path, Query, Router, Status
from ninja.errors import HttpError

from core.caching import CacheSerializer
from feed import selectors, services
from feed.auth import api_auth, bearer, issue_token, revoke_token
from feed.payloads import comment_payload
from feed.schemas import (
    MAX_FEED_PAGE,
    MAX_ID,
    CommentIn,
    CommentOut,
    CommentPage,
    Credentials,
    FeedOut,
    FollowOut,
    Message,
    PostIn,
    PostOut,
    ProfileOut,
    ReactionIn,
    ReactionOut,
    TokenOut,
    UserOut,
)

router = Router(tags=["feed"])


auth = api_auth

_STATUS = {
    services.InvalidInput: 400,
    services.Forbidden: 403,
    services.NotFound: 404,
    services.Conflict: 409,
}
_ERRORS = {400: Message, 401: Message, 403: Message, 404: Message, 409: Message}


def _service_errors(view: Callable) -> Callable:
    """Turn a service's refusal into an HTTP error with its message."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except services.ServiceError as exc:
            raise HttpError(_STATUS.get(type(exc), 400), str(exc)) from exc

    return wrapper


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
@_service_errors
def update_post(request: HttpRequest, data: PostIn, post_id: int = PostId):
    """Only the author can edit a post."""
    services.update_post(request.auth, post_id, data.body)
    return _json(_ok_or_404(selectors.post(post_id), "post"))


@router.delete("/posts/{post_id}", auth=auth, response={204: None, **_ERRORS})
@_service_errors
def delete_post(request: HttpRequest, post_id: int = PostId):
    """Only the author can delete a post; it disappears from every cache."""
    services.delete_post(request.auth, post_id)
    return Status(204, None)


# --- reactions and comments -------------------------------------------------------------------


@router.post(
    "/posts/{post_id}/reactions", auth=auth, response={200: ReactionOut, 201: ReactionOut, **_ERRORS}
)
@_service_errors
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
@_service_errors
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
@_service_errors
def add_comment(request: HttpRequest, data: CommentIn, post_id: int = PostId):
    comment = services.add_comment(request.auth, post_id, data.body)
    return Status(201, comment_payload(comment, author=request.auth.username))


# --- users ------------------------------------------------------------------------------------


@router.get("/users/{user_id}", auth=auth, response={200: ProfileOut, **_ERRORS})
def get_profile(request: HttpRequest, user_id: int = UserId):
    return _ok_or_404(selectors.profile(user_id, viewer_id=request.auth.pk), "user")


@router.post("/users/{user_id}/follow", auth=auth, response={200: FollowOut, 201: FollowOut, **_ERRORS})
@_service_errors
def follow(request: HttpRequest, user_id: int = UserId):
    """Idempotent: 201 when this call started following, 200 when you already did."""
    created = services.follow(request.auth, user_id)
    return Status(201 if created else 200, {"user_id": user_id, "following": True, "changed": created})


@router.delete("/users/{user_id}/follow", auth=auth, response={200: FollowOut, **_ERRORS})
@_service_errors
def unfollow(request: HttpRequest, user_id: int = UserId):
    """Idempotent: `changed` says whether you were following."""
    removed = services.unfollow(request.auth, user_id)
    return {"user_id": user_id, "following": False, "changed": removed}


# --- auth -------------------------------------------------------------------------------------


@router.post("/auth/register", tags=["auth"], response={201: UserOut, **_ERRORS})
@_service_errors
def register(request: HttpRequest, data: Credentials):
    user = services.register_user(data.username, data.password)
    return Status(201, user)


def _authenticate(request: HttpRequest, data: Credentials):
    user = authenticate(request, username=data.username, password=data.password)
    if user is None:
        raise HttpError(401, "invalid username or password")
    return user


@router.post("/auth/login", tags=["auth"], response={200: UserOut, **_ERRORS})
def session_login(request: HttpRequest, data: Credentials):
    """Start a session (cookie). Unsafe requests on it then need the CSRF token (X-CSRFToken)."""
    user = _authenticate(request, data)
    login(request, user)
    return user


@router.post("/auth/logout", tags=["auth"], auth=auth, response={204: None, **_ERRORS})
def session_logout(request: HttpRequest):
    logout(request)
    return Status(204, None)


@router.post("/auth/token", tags=["auth"], response={201: TokenOut, **_ERRORS})
def create_token(request: HttpRequest, data: Credentials):
    """A bearer token for non-browser clients: send it as `Authorization: Bearer <token>`."""
    user = _authenticate(request, data)
    return Status(201, {"token": issue_token(user), "user": user})


@router.delete("/auth/token", tags=["auth"], auth=bearer, response={204: None, **_ERRORS})
def delete_token(request: HttpRequest):
    """Revoke the token this request is authenticated with."""
    revoke_token(request.headers["Authorization"].split(" ", 1)[1].strip())
    return Status(204, None)
