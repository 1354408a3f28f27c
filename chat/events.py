"""Chat's event contract: its stream domain, its event types, and one builder per type.

Signals, handlers, tests and benches name the types through these constants and build events only
through these functions. `message` payloads are chat.payloads.message_payload dicts (JSON-ready,
versioned); the keys below are the wire format.

Every message event also carries `conversation_version`: the conversation's version its change
produced (chat/models.py, commit-ordered per conversation). A cached window records the version
it was filled at and ignores events at or below it (chat/cache.py). An event without one (published
before the field existed, or by a delete that took its conversation along) voids the window.
"""

from typing import Any

from core.events import FINAL_VERSION, Event

DOMAIN = "chat"

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
MESSAGE_DELETED = "message.deleted"

MESSAGE_TYPES = (MESSAGE_CREATED, MESSAGE_UPDATED, MESSAGE_DELETED)

# A user left a conversation (or was removed): their open sockets on it close (4403).
PARTICIPANT_REMOVED = "participant.removed"


def partition_key(event: Event) -> int:
    """Every chat event stays in order per conversation (one stream partition)."""
    data = event.data
    return data["message"]["conversation_id"] if "message" in data else data["conversation_id"]


def message_created(message: dict[str, Any], conversation_version: int | None) -> Event:
    data = {"message": message, "conversation_version": conversation_version}
    return Event(MESSAGE_CREATED, message["version"], data)


def message_updated(message: dict[str, Any], conversation_version: int | None) -> Event:
    data = {"message": message, "conversation_version": conversation_version}
    return Event(MESSAGE_UPDATED, message["version"], data)


def message_deleted(message_id: int, conversation_id: int, conversation_version: int | None) -> Event:
    data = {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "conversation_version": conversation_version,
    }
    return Event(MESSAGE_DELETED, FINAL_VERSION, data)


def conversation_version(event: Event) -> int | None:
    """The conversation version a message event carries (None: unknown, the window is voided)."""
    version = event.data.get("conversation_version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def participant_removed(conversation_id: int, user_id: int) -> Event:
    return Event(PARTICIPANT_REMOVED, FINAL_VERSION, {"conversation_id": conversation_id, "user_id": user_id})
