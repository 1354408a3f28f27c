"""Telling a conversation's connected sockets about a change: once, after the change commits.

Every write path (the WebSocket's frames and the HTTP routes alike) goes through chat/services.py,
which calls `after_commit` here: a message created, edited or deleted reaches the room's sockets
exactly once, whichever door it came in by, and never for a rolled-back write. Best effort: a
channel layer that is down costs the live frame (clients catch up from history), never the write.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger("chat.broadcast")


def group_name(conversation_id: int) -> str:
    # Channel-layer group names may not contain ':', so never reuse a cache key here.
    return f"chat_{conversation_id}"


def to_room(conversation_id: int, event: dict[str, Any]) -> None:
    """group_send `event` (a channel-layer message: its `type` names the consumer method) now."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(conversation_id), event)
    except Exception:  # the channel layer's Redis is down or slow: the write stands
        logger.warning("chat broadcast failed: conversation=%s type=%s", conversation_id, event["type"])


def after_commit(conversation_id: int, event: dict[str, Any], using: str = "default") -> None:
    transaction.on_commit(lambda: to_room(conversation_id, event), using=using)


def message_created(message: dict[str, Any]) -> None:
    after_commit(message["conversation_id"], {"type": "chat.message", "message": message})


def message_edited(message: dict[str, Any]) -> None:
    after_commit(message["conversation_id"], {"type": "chat.edited", "message": message})


def message_deleted(conversation_id: int, message_id: int) -> None:
    event = {"type": "chat.deleted", "conversation_id": conversation_id, "message_id": message_id}
    after_commit(conversation_id, event)
