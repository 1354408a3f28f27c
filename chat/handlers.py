"""What message events do to the conversation cache. Registered in ready() with core.events' registry.

Idempotent and version-aware by construction: the cache's Lua scripts ignore versions they already
have, never resurrect a deleted message, and never create a list from a single event.
"""

from collections.abc import Sequence

import redis

from accounts.auth import send_to_groups, user_group
from chat import events
from chat.cache import ConversationMessagesCache
from core.events import Event, EventHandler, registry

conversations = ConversationMessagesCache()


class MessageHandler(EventHandler):
    """message.created/updated write the message through; message.deleted tombstones it."""

    event_types = events.MESSAGE_TYPES

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        if event.type == events.MESSAGE_DELETED:
            conversations.remove_message(pipe, event.data["conversation_id"], event.data["message_id"])
        else:
            conversations.add_message(pipe, event.data["message"])


class ParticipantHandler(EventHandler):
    """participant.removed has no cache effect; in the worker it closes the user's sockets on that
    conversation (through their per-user group: the consumer checks the conversation id)."""

    event_types = (events.PARTICIPANT_REMOVED,)

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        return None

    def after_batch(self, batch: Sequence[Event]) -> None:
        send_to_groups(
            (
                user_group(event.data["user_id"]),
                {"type": "chat.removed", "conversation_id": event.data["conversation_id"]},
            )
            for event in batch
        )


def register() -> None:
    registry.register(MessageHandler())
    registry.register(ParticipantHandler())
