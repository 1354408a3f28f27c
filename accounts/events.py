"""Accounts' event contract: its stream domain, its event types, and one builder per type.

- `user.updated`: a field other apps' caches show (the username) changed; chat and feed each register
  a handler for it (core.events' registry runs both) that drops what shows the old value, and
  accounts drops its cached token -> user resolution.
- `token.revoked`, `user.deactivated`, `user.password_changed`: they end access that was granted
  earlier; accounts/handlers.py drops the cached resolution and closes the affected WebSockets.

Ids only; a token travels as its digest (the SHA-256 stored in the database), never as the token.
Every handler only invalidates or closes (a late or repeated event costs a refill, never a stale
entry), so no version orders them. The keys below are the wire format: change them only with
`core.events.event.SCHEMA_VERSION`.
"""

from collections.abc import Iterable

from core.events import FINAL_VERSION, Event

DOMAIN = "accounts"

TOKEN_REVOKED = "token.revoked"
USER_DEACTIVATED = "user.deactivated"
USER_PASSWORD_CHANGED = "user.password_changed"
USER_UPDATED = "user.updated"

USER_TYPES = (USER_UPDATED,)
ACCESS_TYPES = (TOKEN_REVOKED, USER_DEACTIVATED, USER_PASSWORD_CHANGED, USER_UPDATED)

# The user fields other apps' caches show (only a change to one of these publishes user.updated).
DISPLAYED_FIELDS = ("username",)


def partition_key(event: Event) -> int:
    """Every accounts event stays in order per user (one stream partition)."""
    return event.data["user_id"]


def token_revoked(token_id: int, user_id: int, digest: str) -> Event:
    return Event(TOKEN_REVOKED, FINAL_VERSION, {"token_id": token_id, "user_id": user_id, "digest": digest})


def user_deactivated(user_id: int) -> Event:
    return Event(USER_DEACTIVATED, FINAL_VERSION, {"user_id": user_id})


def user_password_changed(user_id: int) -> Event:
    return Event(USER_PASSWORD_CHANGED, FINAL_VERSION, {"user_id": user_id})


def user_updated(user_id: int, username: str, changed: Iterable[str]) -> Event:
    """`changed`: which of DISPLAYED_FIELDS changed."""
    data = {"user_id": user_id, "username": username, "changed": sorted(changed)}
    return Event(USER_UPDATED, FINAL_VERSION, data)
