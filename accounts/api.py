"""The auth routes (django-ninja, mounted at /api/): register, session login/logout, bearer tokens.

Errors are JSON `{"detail": ...}`: 400/422 bad input, 401 wrong credentials, 409 username taken.
"""

from typing import Annotated

from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest
from ninja import Path, Query, Router, Status
from ninja.errors import HttpError

from accounts import queries, services
from accounts.auth import api_auth, bearer, issue_token, revoke_token
from accounts.schemas import Credentials, PublicUserOut, TokenOut, UserOut, UserSearchPage
from core.pagination import CursorParam, SizeParam, decode_cursor, encode_cursor, page_size
from core.schemas import ErrorOut
from core.validation import text_field

router = Router(tags=["auth"])

_ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}


@router.post("/auth/register", response={201: UserOut, **_ERRORS})
def register(request: HttpRequest, data: Credentials):
    user = services.register_user(data.username, data.password)
    return Status(201, user)


def _authenticate(request: HttpRequest, data: Credentials):
    user = authenticate(request, username=data.username, password=data.password)
    if user is None:
        raise HttpError(401, "invalid username or password")
    return user


@router.post("/auth/login", response={200: UserOut, **_ERRORS})
def session_login(request: HttpRequest, data: Credentials):
    """Start a session (cookie). Unsafe requests on it then need the CSRF token (X-CSRFToken)."""
    user = _authenticate(request, data)
    login(request, user)
    return user


@router.post("/auth/logout", auth=api_auth, response={204: None, **_ERRORS})
def session_logout(request: HttpRequest):
    logout(request)
    return Status(204, None)


@router.post("/auth/token", response={201: TokenOut, **_ERRORS})
def create_token(request: HttpRequest, data: Credentials):
    """A bearer token for non-browser clients: send it as `Authorization: Bearer <token>`."""
    user = _authenticate(request, data)
    return Status(201, {"token": issue_token(user), "user": user})


@router.delete("/auth/token", auth=bearer, response={204: None, **_ERRORS})
def delete_token(request: HttpRequest):
    """Revoke the token this request is authenticated with."""
    revoke_token(request.headers["Authorization"].split(" ", 1)[1].strip())
    return Status(204, None)


# --- finding people ---------------------------------------------------------------------------

users_router = Router(tags=["users"], auth=api_auth)

SearchText = text_field(min_length=1, max_length=150)


@users_router.get("/me", response={200: PublicUserOut, **_ERRORS})
def me(request: HttpRequest):
    """The signed-in user (session or bearer token)."""
    return request.auth


@users_router.get("/usernames/{username}", response={200: PublicUserOut, **_ERRORS})
def user_by_username(request: HttpRequest, username: Annotated[SearchText, Path()]):
    """An active user by exact username (case-sensitive); 404 if there is none."""
    found = queries.user_by_username(username)
    if found is None:
        raise HttpError(404, "user not found")
    return found


@users_router.get("/users", response={200: UserSearchPage, **_ERRORS})
def search_users(
    request: HttpRequest,
    prefix: Annotated[SearchText, Query(description="username prefix, any case")],
    cursor: str | None = CursorParam,
    size: int = SizeParam,
):
    """Active users whose username starts with `prefix` (case-insensitive), in username order."""
    size, position = page_size(size), decode_cursor(cursor, name=str, id=int)
    after = None if position is None else (position["name"], position["id"])
    rows = queries.search_by_prefix(prefix, after, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    last = rows[-1] if more else None
    return {
        "items": [{key: row[key] for key in queries.PUBLIC_FIELDS} for row in rows],
        "next": None if last is None else encode_cursor({"name": last["name"], "id": last["id"]}),
    }
