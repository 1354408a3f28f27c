"""Bearer tokens in the database: issue, list, revoke, expire, and the once-a-minute last use.

Only a token's SHA-256 (`digest`) is stored; the plain value is returned once, when issued.
Deleting a row is revoking it: its post_delete receiver publishes `token.revoked`, which drops the
cached resolution and closes the sockets it opened (accounts/handlers.py).
"""

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import AppUser, AuthToken

MAX_TOKEN_LENGTH = 200


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: AppUser) -> str:
    """Create a token for `user`, valid AUTH_TOKEN_TTL_DAYS; the plain value is returned once."""
    token = secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=settings.AUTH_TOKEN_TTL_DAYS)
    AuthToken.objects.create(user=user, digest=digest_of(token), expires_at=expires_at)
    return token


def tokens_of(user_id: int) -> list[AuthToken]:
    """The user's tokens that still work, newest first."""
    return list(
        AuthToken.objects.filter(user_id=user_id, expires_at__gt=timezone.now()).order_by(
            "-created_at", "-id"
        )
    )


def revoke_token(token: str) -> bool:
    """Delete the token; True if it existed."""
    return _delete(AuthToken.objects.filter(digest=digest_of(token)))


def revoke_token_id(user_id: int, token_id: int) -> bool:
    """Delete the user's token `token_id`; False if the user has no such token."""
    return _delete(AuthToken.objects.filter(pk=token_id, user_id=user_id))


def revoke_all(user_id: int) -> int:
    """Delete every token of the user (a password change). Returns how many."""
    return AuthToken.objects.filter(user_id=user_id).delete()[0]


def _delete(tokens) -> bool:
    # QuerySet.delete() sends post_delete per row (a receiver is connected): each publishes its event.
    return tokens.delete()[0] > 0


def record_use(token_id: int, now: datetime) -> None:
    """Write `last_used_at` unless another request did within AUTH_TOKEN_TOUCH_SECONDS."""
    stale = now - timedelta(seconds=settings.AUTH_TOKEN_TOUCH_SECONDS)
    AuthToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=token_id).update(
        last_used_at=now
    )
