"""Telling a conversation's connected sockets about a change: once, after the change commits.

Every write path (the WebSocket's frames and the HTTP routes alike) goes through chat/services.py,
which calls `after_commit` here: a message created, edited or deleted reaches the room's sockets
exactly once, whichever door it came in by, and never for a rolled-back write. Best effort: a
channel layer that is down costs the live frame (clients catch up from history), never the write.

A caller with an event loop of its own (the chat consumer, whose writes run in a thread) wraps the
write in `collected()`: what commits inside is handed back instead of sent from the thread (one
hop back to the loop and a wait for it, per message), and `send_collected` sends it on the loop.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from accounts.auth import user_group

logger = logging.getLogger("chat.broadcast")

Outgoing = list[tuple[str, dict[str, Any]]]
_collector: ContextVar[Outgoing | None] = ContextVar("chat_broadcasts", default=None)


def group_name(conversation_id: int) -> str:
    # Channel-layer group names may not contain ':', so never reuse a cache key here.
    return f"chat_{conversation_id}"


def to_room(conversation_id: int, event: dict[str, Any]) -> None:
    """group_send `event` (a channel-layer message: its `type` names the consumer method) now."""
    to_group(group_name(conversation_id), event)


def to_group(group: str, event: dict[str, Any]) -> None:
    collecting = _collector.get()
    if collecting is not None:
        collecting.append((group, event))
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:  # the channel layer's Redis is down or slow: the write stands
        logger.warning("chat broadcast failed: group=%s type=%s", group, event["type"])


@contextmanager
def collected() -> Iterator[Outgoing]:
    """Inside, the broadcasts of what commits are collected (in order) instead of sent: the caller
    sends them with `send_collected` once it is back on its event loop."""
    outgoing: Outgoing = []
    token = _collector.set(outgoing)
    try:
        yield outgoing
    finally:
        _collector.reset(token)


async def send_collected(outgoing: Sequence[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for group, event in outgoing:
        try:
            await layer.group_send(group, event)
        except Exception:  # as in to_group: the write stands
            logger.warning("chat broadcast failed: group=%s type=%s", group, event["type"])


def after_commit(conversation_id: int, event: dict[str, Any], using: str = "default") -> None:
    transaction.on_commit(lambda: to_room(conversation_id, event), using=using)


def message_created(message: dict[str, Any]) -> None:
    after_commit(message["conversation_id"], {"type": "chat.message", "message": message})


def message_edited(message: dict[str, Any]) -> None:
    after_commit(message["conversation_id"], {"type": "chat.edited", "message": message})


def message_deleted(conversation_id: int, message_id: int) -> None:
    event = {"type": "chat.deleted", "conversation_id": conversation_id, "message_id": message_id}
    after_commit(conversation_id, event)


def participant_removed(conversation_id: int, user_id: int, using: str = "default") -> None:
    """Once the removal commits, close the user's sockets on the conversation (their user group:
    the consumer checks the conversation id). At once and best effort: the worker sends the same
    for participant.removed (chat/handlers.py), the durable path, and every socket asks again
    within CHAT_MEMBERSHIP_RECHECK_SECONDS anyway."""
    event = {"type": "chat.removed", "conversation_id": conversation_id}
    transaction.on_commit(lambda: to_group(user_group(user_id), event), using=using)
