"""The channel-layer groups through which access that ends closes open WebSockets.

A socket joins its user's group and, when a token opened it, that token's group (chat/consumers.py).
Handlers in the worker send `end_access` to a group; a consumer receiving it closes with 4401.
Group names may not contain ':' (Channels), so they are not cache keys.
"""

from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

# The channel-layer message type a consumer handles as `auth_ended`.
ACCESS_ENDED = "auth.ended"


def user_group(user_id: int) -> str:
    return f"auth_user_{user_id}"


def token_group(token_id: int) -> str:
    return f"auth_token_{token_id}"


def send_to_groups(messages: Iterable[tuple[str, dict]]) -> None:
    """group_send each (group, message) from synchronous code (the worker's after_batch)."""
    messages = list(messages)
    if not messages:
        return
    layer = get_channel_layer()

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    async_to_sync(send_all)()


def end_access(reasons: dict[str, str]) -> None:
    """Close every socket of each group, telling it why ({group: reason}), in one event loop run."""
    send_to_groups((group, {"type": ACCESS_ENDED, "reason": reason}) for group, reason in reasons.items())
