"""What message events do to the conversation cache. Registered in ready() with core.events' registry.

Idempotent and version-aware by construction: the cache's Lua scripts ignore events the window's
fill already reflects (its conversation version floor) and message versions they already have,
never resurrect a deleted message, and never create a list from a single event (chat/cache.py).
"""

import itertools
from collections.abc import Sequence

import redis

from accounts.auth import send_to_groups, user_group
from accounts.events import USER_TYPES
from chat import events, queries
from chat.cache import ConversationMembersCache, ConversationMessagesCache
from core.events import Event, EventHandler, registry

conversations = ConversationMessagesCache()
members = ConversationMembersCache()

# Windows deleted per pipeline round trip when a user is renamed.
RENAME_CHUNK = 1000


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


class SenderRenamedHandler(EventHandler):
    """user.updated: every window of the user's conversations shows the old name: delete them (the
    next reader fills from the database). A delete also voids a fill in flight (its lease), and
    message events committed after the rename carry the new name (chat.models.message_changed
    reads it under FOR SHARE), so no window keeps the old name once this has run."""

    event_types = USER_TYPES

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        return None  # which windows needs the database: after_batch

    def after_batch(self, batch: Sequence[Event]) -> None:
        ids = queries.conversation_ids_of(event.data["user_id"] for event in batch)
        while chunk := list(itertools.islice(ids, RENAME_CHUNK)):
            pipe = conversations.client.pipeline(transaction=False)
            for conversation_id in chunk:
                conversations.queue_invalidate(pipe, conversation_id)
            pipe.execute()


class ParticipantHandler(EventHandler):
    """participant.removed deletes the conversation's cached member set (at commit in the writing
    process, and in the worker: chat/cache.py, ConversationMembersCache); in the worker it also
    closes the user's sockets on that conversation (through their per-user group: the consumer
    checks the conversation id), which the writing process already asked for at commit
    (chat/broadcast.py: this is the durable path)."""

    event_types = (events.PARTICIPANT_REMOVED,)

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        members.queue_invalidate(pipe, event.data["conversation_id"])

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
    registry.register(SenderRenamedHandler())
    registry.register(ParticipantHandler())
