"""Accounts' event contract: its stream domain, its event types, and one builder per type.

They end access that was granted earlier: the handlers (accounts/handlers.py) drop the cached
token -> user resolution and close the affected WebSockets. Ids only; a token travels as its
digest (the SHA-256 stored in the database), never as the token.
"""

from core.events import FINAL_VERSION, Event

DOMAIN = "accounts"

TOKEN_REVOKED = "token.revoked"
USER_DEACTIVATED = "user.deactivated"
USER_PASSWORD_CHANGED = "user.password_changed"
USER_UPDATED = "user.updated"

# Each ends something for good (a deleted token, a state change): nothing to order by version.
ACCESS_TYPES = (TOKEN_REVOKED, USER_DEACTIVATED, USER_PASSWORD_CHANGED, USER_UPDATED)


def token_revoked(token_id: int, user_id: int, digest: str) -> Event:
    return Event(TOKEN_REVOKED, FINAL_VERSION, {"token_id": token_id, "user_id": user_id, "digest": digest})


def user_deactivated(user_id: int) -> Event:
    return Event(USER_DEACTIVATED, FINAL_VERSION, {"user_id": user_id})


def user_password_changed(user_id: int) -> Event:
    return Event(USER_PASSWORD_CHANGED, FINAL_VERSION, {"user_id": user_id})


def user_updated(user_id: int, username: str) -> Event:
    """A change to what other parts show of the user (the username)."""
    return Event(USER_UPDATED, FINAL_VERSION, {"user_id": user_id, "username": username})
