"""What message events do to the conversation cache. Registered in ready() with core.events' registry.

Idempotent and version-aware by construction: the cache's Lua scripts ignore events the window's
fill already reflects (its conversation version floor) and message versions they already have,
never resurrect a deleted message, and never create a list from a single event (chat/cache.py).
"""

import redis

from chat import events
from chat.cache import ConversationMessagesCache
from core.events import Event, EventHandler, registry

conversations = ConversationMessagesCache()


class MessageHandler(EventHandler):
    """message.created/updated write the message through; message.deleted tombstones it."""

    event_types = events.MESSAGE_TYPES

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        version = events.conversation_version(event)
        if event.type == events.MESSAGE_DELETED:
            data = event.data
            conversations.remove_message(pipe, data["conversation_id"], data["message_id"], version)
        else:
            conversations.add_message(pipe, event.data["message"], version)


def register() -> None:
    registry.register(MessageHandler())
