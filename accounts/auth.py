"""Authentication for the API and the WebSocket: the session cookie, or a bearer token.

Browsers use the session (POST /api/auth/login); other clients get a token (POST /api/auth/token)
and send it as `Authorization: Bearer <token>` (HTTP) or `?token=<token>` (WebSocket).
"""

import hashlib
import secrets

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from accounts.models import AppUser, AuthToken


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: AppUser) -> str:
    """Create a token for `user`; the plain value is returned once and never stored."""
    token = secrets.token_urlsafe(32)
    AuthToken.objects.create(user=user, digest=_digest(token))
    return token


def revoke_token(token: str) -> bool:
    """Delete the token; True if it existed."""
    return AuthToken.objects.filter(digest=_digest(token)).delete()[0] > 0


def user_for_token(token: str | None) -> AppUser | None:
    """The active user owning `token`, or None."""
    if not token or len(token) > 200:
        return None
    found = AuthToken.objects.select_related("user").filter(digest=_digest(token)).first()
    return found.user if found and found.user.is_active else None


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> AppUser | None:
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


class LoggedInSession(SessionAuth):
    """The session, CSRF-checked only when there is a logged-in session to protect.

    ninja's `django_auth` runs the CSRF check before looking at the user, so a bearer-token client
    (no CSRF cookie) got 403 on every POST instead of reaching the token check, and an anonymous
    caller got 403 instead of 401.
    """

    def __call__(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


bearer = BearerToken()
# Bearer first: a token client never meets the session's CSRF check; browsers use the session.
api_auth = [bearer, LoggedInSession()]
