"""The auth routes (django-ninja, mounted at /api/): register, session login/logout, bearer tokens,
WebSocket tickets, password change.

Errors are JSON `{"detail": ...}`: 400/422 bad input, 401 wrong credentials, 403 wrong current
password, 404 not your token, 409 username taken, 429 too many attempts (with Retry-After),
503 tickets unavailable (Redis down).
"""

from typing import Annotated

from django.conf import settings
from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.http import HttpRequest
from ninja import Path, Query, Router, Status
from ninja.errors import HttpError

from accounts import queries, services, throttles, tickets, tokens
from accounts.auth import api_auth, bearer, issue_token, revoke_token, token_id_of
from accounts.schemas import (
    Credentials,
    PasswordChange,
    PublicUserOut,
    TicketOut,
    TokenInfo,
    TokenOut,
    UserOut,
    UserSearchPage,
)
from core.pagination import CursorParam, SizeParam, decode_cursor, encode_cursor, page_size
from core.schemas import ErrorOut
from core.validation import text_field

router = Router(tags=["auth"])

_ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 429: ErrorOut}


@router.post(
    "/auth/register", response={201: UserOut, **_ERRORS}, throttle=[throttles.LoginAddressThrottle()]
)
def register(request: HttpRequest, data: Credentials):
    user = services.register_user(data.username, data.password)
    return Status(201, user)


def _authenticate(request: HttpRequest, data: Credentials):
    user = authenticate(request, username=data.username, password=data.password)
    if user is None:
        raise HttpError(401, "invalid username or password")
    return user


@router.post("/auth/login", response={200: UserOut, **_ERRORS}, throttle=throttles.login_throttles)
def session_login(request: HttpRequest, data: Credentials):
    """Start a session (cookie). Unsafe requests on it then need the CSRF token (X-CSRFToken).
    Attempts are throttled per username and per address, right or wrong (429 + Retry-After)."""
    user = _authenticate(request, data)
    login(request, user)
    return user


@router.post("/auth/logout", auth=api_auth, response={204: None, **_ERRORS})
def session_logout(request: HttpRequest):
    logout(request)
    return Status(204, None)


@router.post("/auth/token", response={201: TokenOut, **_ERRORS}, throttle=throttles.token_throttles)
def create_token(request: HttpRequest, data: Credentials):
    """A bearer token for non-browser clients: send it as `Authorization: Bearer <token>`. It
    expires after AUTH_TOKEN_TTL_DAYS; a password change revokes it."""
    user = _authenticate(request, data)
    return Status(201, {"token": issue_token(user), "user": user})


@router.delete("/auth/token", auth=bearer, response={204: None, **_ERRORS})
def delete_token(request: HttpRequest):
    """Revoke the token this request is authenticated with."""
    revoke_token(request.headers["Authorization"].split(" ", 1)[1].strip())
    return Status(204, None)


@router.get("/auth/tokens", auth=api_auth, response={200: list[TokenInfo], **_ERRORS})
def list_tokens(request: HttpRequest):
    """My tokens that still work: id, created, last used (to the minute), expiry. Never the secret."""
    current = token_id_of(request)
    return [
        {
            "id": t.pk,
            "created_at": t.created_at,
            "last_used_at": t.last_used_at,
            "expires_at": t.expires_at,
            "current": t.pk == current,
        }
        for t in tokens.tokens_of(request.auth.pk)
    ]


@router.delete("/auth/tokens/{token_id}", auth=api_auth, response={204: None, **_ERRORS})
def delete_token_by_id(request: HttpRequest, token_id: int):
    """Revoke one of my tokens; its sockets close (4401). 404 for a token that is not mine."""
    if not tokens.revoke_token_id(request.auth.pk, token_id):
        raise HttpError(404, f"token {token_id} not found")
    return Status(204, None)


@router.post("/auth/password", auth=api_auth, response={204: None, **_ERRORS})
def change_password(request: HttpRequest, data: PasswordChange):
    """Change my password: every token of mine is revoked and my sockets close; this browser's
    session stays logged in (others end)."""
    user = services.change_password(request.auth.pk, data.current_password, data.new_password)
    if token_id_of(request) is None:
        update_session_auth_hash(request, user)
    return Status(204, None)


@router.post(
    "/auth/ws-ticket",
    auth=api_auth,
    response={200: TicketOut, 503: ErrorOut, **_ERRORS},
    throttle=throttles.ticket_throttles,
)
def create_ws_ticket(request: HttpRequest):
    """A single-use ticket for one WebSocket connect (`?ticket=`), valid AUTH_WS_TICKET_SECONDS:
    the way to keep a token out of URLs (and logs)."""
    token_id = token_id_of(request)
    digest = None
    if token_id is not None:
        digest = tokens.digest_of(request.headers["Authorization"].split(" ", 1)[1].strip())
    ticket = tickets.issue_ticket(request.auth.pk, digest)  # TicketsUnavailable: 503
    return {"ticket": ticket, "expires_in": settings.AUTH_WS_TICKET_SECONDS}


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
