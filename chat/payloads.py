"""The JSON shape of a message, shared by the API, the WebSocket, the cache and the events.

Values are JSON-ready (timestamps as ISO 8601 strings in UTC with a `Z`, the way the codec
writes them), so an entry written from an event and one filled from the database are byte-identical,
and a payload can cross the channel layer (msgpack) as is.
"""

from typing import Any

from chat.models import Message
from core.codec import iso


def message_payload(message: Message) -> dict[str, Any]:
    """A message as clients and the conversation cache see it (versioned)."""
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "sender_id": message.sender_id,
        "sender": message.sender.username,
        "body": message.body,
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "version": message.version,
    }
