"""Chat's event contract: its stream domain, its event types, and one builder per type.

Signals, handlers, tests and benches name the types through these constants and build events only
through these functions. `message` payloads are chat.payloads.message_payload dicts (JSON-ready,
versioned); the keys below are the wire format.
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


def message_created(message: dict[str, Any]) -> Event:
    return Event(MESSAGE_CREATED, message["version"], {"message": message})


def message_updated(message: dict[str, Any]) -> Event:
    return Event(MESSAGE_UPDATED, message["version"], {"message": message})


def message_deleted(message_id: int, conversation_id: int) -> Event:
    return Event(
        MESSAGE_DELETED, FINAL_VERSION, {"message_id": message_id, "conversation_id": conversation_id}
    )


def participant_removed(conversation_id: int, user_id: int) -> Event:
    return Event(PARTICIPANT_REMOVED, FINAL_VERSION, {"conversation_id": conversation_id, "user_id": user_id})
