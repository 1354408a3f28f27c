"""Accounts' event contract: its stream domain, its event type, and the builder.

Chat messages and feed posts show their author's username, copied into cached entries. A user
whose displayed fields change publishes `user.updated`; chat and feed each register a handler
for it (core.events' registry runs both) that drops what shows the old values. The keys below are
the wire format: change them only with `core.events.event.SCHEMA_VERSION`.
"""

from collections.abc import Iterable

from core.events import Event

DOMAIN = "accounts"

USER_UPDATED = "user.updated"
USER_TYPES = (USER_UPDATED,)

# The user fields other apps' caches show (only a change to one of these publishes).
DISPLAYED_FIELDS = ("username",)


def user_updated(user_id: int, username: str, changed: Iterable[str]) -> Event:
    """`changed`: which of DISPLAYED_FIELDS changed. The handlers only invalidate (a late or
    repeated event costs a refill, never a stale entry), so the version carries no order: 1."""
    data = {"user_id": user_id, "username": username, "changed": sorted(changed)}
    return Event(USER_UPDATED, 1, data)
