"""The chat WebSocket: one connection per user and conversation, at ws/chat/<conversation_id>/.

Authentication, best first: a single-use ticket (`?ticket=`, from POST /api/auth/ws-ticket); the
token as a subprotocol (`Sec-WebSocket-Protocol: themoon.v1, bearer.<token>`: the server answers
`themoon.v1`, never the token); the session (browsers); `Authorization: Bearer`; `?token=` (kept for
old clients; redacted from the access log). Only participants may join: anyone else is accepted and
closed at once with 4403 (4401 without credentials), because a close before the handshake completes
reaches the client as a bare HTTP 403 with no code. Database and Redis calls run in a thread pool,
never on the event loop; a `message` frame takes one hop there (throttle, membership from the
cached member set, the one-statement save) and its broadcast is sent from the loop.

Access that ends closes the socket, through the event pipeline (accounts.auth): the socket joins
its user's group and its token's; a revoked token, a deactivated user or a password change closes it
with 4401, once the worker handles the event; leaving the conversation with 4403, at the removal's
commit (chat/broadcast.py), again when the worker handles participant.removed, and at the latest
on the socket's first frame or delivery CHAT_MEMBERSHIP_RECHECK_SECONDS after it last checked: it
asks the member set again then, and a removed participant's `message` frame is refused from the
removal's commit on (chat/cache.py, ConversationMembersCache, has the bounds). A user's chat
frames are throttled (THROTTLE_WS_MESSAGE_RATE): over it, an `error` frame with `retry_after`
(seconds), and the connection stays.

Frames are JSON objects with a `type`.
- client -> server: `message` {body}, `edit` {message_id, body}, `delete` {message_id} (one's own
  messages in this conversation), `typing` {typing: true|false, default true}, `ping`.
- server -> client: `history` {messages} and `online` {user_ids} on connect; `message` {message};
  `edited` {message}; `deleted` {message_id, conversation_id}; `typing` {user_id, username,
  typing}; `presence` {user_id, username, online}; `pong`; `error` {error[, retry_after]} for a frame we
  can't use (the connection stays open).

`message`, `edited` and `deleted` reach the room from chat/broadcast.py after the write commits,
whether it came from a frame here or from the HTTP API (a frame's are handed back to this consumer
by `broadcast.collected()` and sent from its loop).
"""

import logging
import time
from typing import Any
from urllib.parse import parse_qs

import orjson
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from accounts.auth import (
    Credential,
    active_user,
    allow_frame,
    digest_of,
    redeem_ticket,
    resolve,
    resolve_digest,
    token_group,
    user_group,
)
from chat import broadcast, selectors, services
from chat.broadcast import group_name
from chat.cache import ConversationMessagesCache, OnlineStatusCache, TypingIndicatorCache
from core.errors import NotFound, ServiceError

logger = logging.getLogger("chat.consumers")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_A_PARTICIPANT = 4403
SUBPROTOCOL = "themoon.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."

messages_cache = ConversationMessagesCache()
presence = OnlineStatusCache()
typists = TypingIndicatorCache()


def off_loop(fn):
    """Run a blocking call (ORM, sync Redis) in the thread pool, never on the event loop.

    Not in the one thread Channels gives the ORM by default: saves and reads from many sockets then
    run in parallel instead of queueing behind each other. Database connections are handled around
    every call by close_old_connections (returned to the process's pool when pooling is on).
    """
    return database_sync_to_async(fn, thread_sensitive=False)


class ChatConsumer(AsyncWebsocketConsumer):
    user = None
    token_id = None
    joined = False
    is_typing = False
    recheck_at = 0.0  # time.monotonic(): ask the member set again on the next frame or delivery

    async def dispatch(self, message: dict[str, Any]) -> None:
        """AsyncConsumer.dispatch, without its `aclose_old_connections()` before every handler, and
        with the periodic membership check.

        Channels awaits that call on every frame and every delivery: a hop to asgiref's one shared
        sync thread (`sync_to_async`, thread-sensitive), six per message in a room of five, all
        queued on that one thread (13% of the server's samples in a profile of bench/chat.py). It
        is there for consumers that use the ORM from async code (the async ORM and thread-sensitive
        `database_sync_to_async` run on that thread, and close_old_connections only looks at the
        calling thread's connections; channels 4.2, django/channels#2090). This consumer never
        does: every database call goes through `off_loop` (DatabaseSyncToAsync, not
        thread-sensitive), which runs close_old_connections itself before and after the call in
        the thread that runs it (the connection returns to the pool there). So the hop would
        tidy connections this consumer never touches: frames and deliveries that touch no
        database (typing, ping, presence, every delivery) need nothing, and those that do
        (message, edit, delete, connect) get the clean-up around their query, where it matters.
        (Django raises SynchronousOnlyOperation if the ORM is ever used on the loop itself.)
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        due = self.joined and time.monotonic() >= self.recheck_at
        if due and message["type"] != "websocket.disconnect" and not await self._still_a_member():
            return
        await handler(message)

    async def _still_a_member(self) -> bool:
        """Ask the member set again (the database behind it); not a member: leave, close 4403."""
        self.recheck_at = time.monotonic() + settings.CHAT_MEMBERSHIP_RECHECK_SECONDS
        if await off_loop(selectors.is_participant)(self.conversation_id, self.user.pk):
            return True
        await self._end("you are no longer in this conversation", CLOSE_NOT_A_PARTICIPANT)
        return False

    # --- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        self.group = group_name(self.conversation_id)
        self.access_groups: list[str] = []
        credential = await off_loop(self._authenticate)()
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        if credential is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user, self.token_id = credential.user, credential.token_id
        # Join the groups through which access ends before checking access again: an event
        # committed after the check below then reaches this socket (accounts/handlers.py).
        self.access_groups = [user_group(self.user.pk)]
        if self.token_id is not None:
            self.access_groups.append(token_group(self.token_id))
        for access_group in self.access_groups:
            await self.channel_layer.group_add(access_group, self.channel_name)
        if await off_loop(self._revoked_meanwhile)():
            await self._leave_access_groups()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        members = await off_loop(selectors.participant_ids)(self.conversation_id)
        if self.user.pk not in members:
            await self._leave_access_groups()
            await self.close(code=CLOSE_NOT_A_PARTICIPANT)
            return
        self.joined = True
        self.recheck_at = time.monotonic() + settings.CHAT_MEMBERSHIP_RECHECK_SECONDS
        await self.channel_layer.group_add(self.group, self.channel_name)
        history = await off_loop(messages_cache.get_messages)(self.conversation_id)
        await self.send_json({"type": "history", "messages": history})
        await off_loop(presence.mark_online)(self.user.pk, self.channel_name)
        online = await off_loop(presence.online_among)(members)
        await self.send_json({"type": "online", "user_ids": sorted(online)})  # who is here now
        await self._broadcast_presence(online=True)

    async def disconnect(self, code: int) -> None:
        await self._leave_access_groups()
        if not self.joined:
            return
        self.joined = False
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await off_loop(typists.clear_typing)(self.conversation_id, self.user.pk)
        still_online = await off_loop(presence.mark_offline)(self.user.pk, self.channel_name)
        if not still_online:
            await self._broadcast_presence(online=False)

    async def _leave_access_groups(self) -> None:
        groups, self.access_groups = getattr(self, "access_groups", []), []
        for access_group in groups:
            await self.channel_layer.group_discard(access_group, self.channel_name)

    _token_digest: str | None = None

    def _authenticate(self) -> Credential | None:
        """The socket's credential (blocking: run off the loop)."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        if query.get("ticket"):
            ticket = redeem_ticket(query["ticket"][0])
            if ticket is None:
                return None
            if ticket.token_digest is None:
                user = active_user(ticket.user_id)
                return Credential(user, None) if user is not None else None
            self._token_digest = ticket.token_digest
            return resolve_digest(ticket.token_digest, fresh=True)
        token = self._token(query)
        if token:
            credential = resolve(token)
            if credential is not None:
                self._token_digest = digest_of(token)
            return credential
        user = self.scope.get("user")
        return Credential(user, None) if user is not None and user.is_authenticated else None

    def _revoked_meanwhile(self) -> bool:
        """Look again, past this process's copy: token revoked or user deactivated since?"""
        if self._token_digest is not None:
            return resolve_digest(self._token_digest, fresh=True) is None
        return active_user(self.user.pk) is None

    def _token(self, query: dict[str, list[str]]) -> str | None:
        for offered in self.scope.get("subprotocols") or []:
            if offered.startswith(BEARER_SUBPROTOCOL_PREFIX):
                return offered[len(BEARER_SUBPROTOCOL_PREFIX) :]
        for name, value in self.scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].decode("latin1").strip()
        if query.get("token"):
            return query["token"][0]
        return None

    # --- frames from the client ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error("send JSON text frames, not binary ones")
            return
        try:
            frame = orjson.loads(text_data)
        except orjson.JSONDecodeError as exc:  # a lone surrogate, escaped or not, lands here too
            await self.send_error(f"invalid JSON: {str(exc)[:120]}")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error('a frame is a JSON object with a string "type"')
            return
        handler = self.frame_handlers.get(frame["type"])
        if handler is None:
            known = ", ".join(sorted(self.frame_handlers))
            await self.send_error(f"unknown frame type {frame['type'][:40]!r} (known: {known})")
            return
        try:
            await handler(self, frame)
        except ServiceError as exc:
            await self._refused(exc)
        except Exception:
            logger.exception("chat frame failed: user=%s conversation=%s", self.user.pk, self.conversation_id)
            await self.send_error("the server could not handle this frame; try again")

    async def on_message(self, frame: dict[str, Any]) -> None:
        body = services.validate_body(frame.get("body"))
        retry_after, outgoing = await off_loop(self._send_message)(body)
        if retry_after:
            await self.send_json(
                {"type": "error", "error": "too many messages; slow down", "retry_after": retry_after}
            )
            return
        await broadcast.send_collected(outgoing)
        if self.is_typing:  # a sent message ends the typing; skip the round trip when there was none
            self.is_typing = False
            await off_loop(typists.clear_typing)(self.conversation_id, self.user.pk)

    def _send_message(self, body: str) -> tuple[int, broadcast.Outgoing]:
        """A message frame's blocking part, in one hop off the loop: the throttle, then the save
        (membership from the cached member set, the message and its outbox row in one statement,
        the commit-time events round trip). Returns (seconds to wait, 0 if allowed; the room's
        broadcast, to send from the loop)."""
        allowed, retry_after = allow_frame(self.user.pk)
        if not allowed:
            return retry_after, []
        with broadcast.collected() as outgoing:
            services.send_message(self.user, self.conversation_id, body)
        return 0, outgoing

    async def on_edit(self, frame: dict[str, Any]) -> None:
        body = services.validate_body(frame.get("body"))
        message_id = _message_id(frame)
        try:
            await off_loop(services.edit_message)(self.user, message_id, body, self.conversation_id)
        except NotFound:  # not one of our messages here: the conversation itself is still ours
            await self.send_error(f"message {message_id} not found")

    async def on_delete(self, frame: dict[str, Any]) -> None:
        message_id = _message_id(frame)
        try:
            await off_loop(services.delete_message)(self.user, message_id, self.conversation_id)
        except NotFound:
            await self.send_error(f"message {message_id} not found")

    async def on_typing(self, frame: dict[str, Any]) -> None:
        active = self.is_typing = frame.get("typing", True) is not False
        if active:
            await off_loop(typists.set_typing)(self.conversation_id, self.user.pk)
        else:
            await off_loop(typists.clear_typing)(self.conversation_id, self.user.pk)
        await self.channel_layer.group_send(
            self.group,
            {
                "type": "chat.typing",
                "user_id": self.user.pk,
                "username": self.user.username,
                "typing": active,
            },
        )

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await off_loop(presence.mark_online)(self.user.pk, self.channel_name)
        await self.send_json({"type": "pong"})

    frame_handlers = {
        "message": on_message,
        "edit": on_edit,
        "delete": on_delete,
        "typing": on_typing,
        "ping": on_ping,
    }

    # --- events from the group -------------------------------------------------------------------

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "message", "message": event["message"]})

    async def chat_edited(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "edited", "message": event["message"]})

    async def chat_deleted(self, event: dict[str, Any]) -> None:
        await self.send_json(_frame("deleted", event, "message_id", "conversation_id"))

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event["user_id"] != self.user.pk:  # your own typing is no news to you
            await self.send_json(_frame("typing", event, "user_id", "username", "typing"))

    async def chat_presence(self, event: dict[str, Any]) -> None:
        if event["user_id"] != self.user.pk:
            await self.send_json(_frame("presence", event, "user_id", "username", "online"))

    async def auth_ended(self, event: dict[str, Any]) -> None:
        """Our token was revoked, or our user deactivated or given a new password (accounts)."""
        await self._end(f"access ended: {event.get('reason', 'credentials revoked')}", CLOSE_UNAUTHENTICATED)

    async def chat_removed(self, event: dict[str, Any]) -> None:
        """Our user left (or was removed from) a conversation: this socket's, or another one's."""
        if event["conversation_id"] == self.conversation_id:
            await self._end("you are no longer in this conversation", CLOSE_NOT_A_PARTICIPANT)

    async def _end(self, error: str, code: int) -> None:
        """Stop delivering at once (leave every group), say why, close."""
        await self._leave_access_groups()
        if self.joined:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.send_error(error)
        await self.close(code=code)

    # --- helpers ---------------------------------------------------------------------------------

    async def _broadcast_presence(self, online: bool) -> None:
        user = self.user
        event = {"type": "chat.presence", "user_id": user.pk, "username": user.username, "online": online}
        await self.channel_layer.group_send(self.group, event)

    async def send_json(self, content: dict[str, Any]) -> None:
        try:
            await self.send(text_data=orjson.dumps(content).decode())
        except OSError:  # the client went away mid-send; its disconnect event cleans up
            logger.debug("chat client gone before a frame was sent: conversation=%s", self.conversation_id)

    async def send_error(self, error: str) -> None:
        await self.send_json({"type": "error", "error": error})

    async def _refused(self, exc: ServiceError) -> None:
        """A service's refusal as a frame, for every frame handler: the one place they are mapped.

        NotFound means the conversation is no longer ours (removed meanwhile): say so and close.
        Anything else is input the client can fix; the connection stays open.
        """
        if isinstance(exc, NotFound):
            await self.send_error("you are no longer in this conversation")
            await self.close(code=CLOSE_NOT_A_PARTICIPANT)
        else:
            await self.send_error(str(exc))


def _message_id(frame: dict[str, Any]) -> int:
    """A frame's `message_id`: a positive 64-bit integer, or the client's error to fix."""
    value = frame.get("message_id")
    if type(value) is not int or not 1 <= value < 2**63:
        raise services.InvalidChatInput("message_id must be a positive integer")
    return value


def _frame(kind: str, event: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {"type": kind, **{field: event[field] for field in fields}}
