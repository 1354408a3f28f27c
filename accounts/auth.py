"""Authentication for the API and the WebSocket: the session cookie, or a bearer token.

Browsers use the session (POST /api/auth/login); other clients get a token (POST /api/auth/token)
and send it as `Authorization: Bearer <token>` (HTTP). WebSockets: a single-use ticket
(POST /api/auth/ws-ticket, `?ticket=`), the token as a `Sec-WebSocket-Protocol` value, or (kept
for old clients, redacted from logs) `?token=` (chat/consumers.py).
A token resolves through a cache (accounts/credentials.py): no database query per request.
"""

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from accounts.credentials import Credential, active_user, resolve, resolve_digest
from accounts.models import AppUser
from accounts.sockets import ACCESS_ENDED, send_to_groups, token_group, user_group
from accounts.throttles import allow_frame
from accounts.tickets import redeem_ticket
from accounts.tokens import digest_of, issue_token, revoke_token

# The door other apps use (chat's consumer and handlers): nothing else of accounts is imported.
__all__ = [
    "ACCESS_ENDED",
    "Credential",
    "active_user",
    "allow_frame",
    "api_auth",
    "bearer",
    "digest_of",
    "issue_token",
    "redeem_ticket",
    "resolve",
    "resolve_digest",
    "revoke_token",
    "send_to_groups",
    "token_group",
    "token_id_of",
    "user_for_token",
    "user_group",
]


def user_for_token(token: str | None) -> AppUser | None:
    """The active user owning `token` (unexpired), or None."""
    credential = resolve(token)
    return credential.user if credential is not None else None


def token_id_of(request: HttpRequest) -> int | None:
    """The id of the token this request authenticated with (None for a session)."""
    return getattr(request, "auth_token_id", None)


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> AppUser | None:
        credential = resolve(token)
        if credential is None:
            return None
        request.user = credential.user
        request.auth_token_id = credential.token_id
        return credential.user


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
