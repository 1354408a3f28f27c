"""The auth routes (django-ninja, mounted at /api/): register, session login/logout, bearer tokens.

Errors are JSON `{"detail": ...}`: 400/422 bad input, 401 wrong credentials, 409 username taken.
"""

from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest
from ninja import Router, Status
from ninja.errors import HttpError

from accounts import services
from accounts.auth import api_auth, bearer, issue_token, revoke_token
from accounts.schemas import Credentials, TokenOut, UserOut
from core.schemas import ErrorOut

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
