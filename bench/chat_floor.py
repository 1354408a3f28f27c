"""bench/chat.py's baselines: the minimal Channels consumers a chat could be, on the same layer.

Served by the bench's uvicorn next to the product (`application` below: `/ws/floor/...` here,
everything else to themoon.asgi), so both share the process, the channel layer (channels-redis on
the same Redis) and the database, and one run can interleave them. Nothing here is reachable in a
deployment.

- `/ws/floor/<conversation_id>/?user=<id>`: join the room's group; each `message` frame is
  group_sent to the room as is (no database, no authentication, no cache, no throttle);
- `/ws/floor-insert/<conversation_id>/?user=<id>`: the same with one INSERT per message (a plain
  row in chat_message, autocommit, off the loop like the product's writes) before the group_send.

Both answer with the frames bench/chat.py reads (`history` on connect, `message` {message} to the
room), and pay what every Channels consumer pays: AsyncConsumer.dispatch's close_old_connections
hop on every message they handle.
"""

from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from django.db import connection
from django.urls import re_path
from django.utils import timezone

from themoon.asgi import application as product


def _insert(conversation_id: int, sender_id: int, body: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO chat_message (conversation_id, sender_id, body, created_at, version) "
            "VALUES (%s, %s, %s, %s, 1) RETURNING id",
            [conversation_id, sender_id, body, timezone.now()],
        )
        return cursor.fetchone()[0]


class FloorConsumer(AsyncWebsocketConsumer):
    """The least a Channels chat room does: receive, group_send, deliver."""

    insert = False

    async def connect(self) -> None:
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        query = parse_qs(self.scope["query_string"].decode())
        self.user_id = int(query["user"][0])
        self.group = f"floor_{self.conversation_id}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data='{"type":"history","messages":[]}')

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = orjson.loads(text_data)
        message = {"conversation_id": self.conversation_id, "sender_id": self.user_id, "body": frame["body"]}
        if self.insert:
            save = database_sync_to_async(_insert, thread_sensitive=False)
            message["id"] = await save(self.conversation_id, self.user_id, frame["body"])
        await self.channel_layer.group_send(self.group, {"type": "chat.message", "message": message})

    async def chat_message(self, event: dict) -> None:
        await self.send(text_data=orjson.dumps({"type": "message", "message": event["message"]}).decode())


class FloorInsertConsumer(FloorConsumer):
    insert = True


floor = URLRouter(
    [
        re_path(r"^ws/floor/(?P<conversation_id>[0-9]+)/$", FloorConsumer.as_asgi()),
        re_path(r"^ws/floor-insert/(?P<conversation_id>[0-9]+)/$", FloorInsertConsumer.as_asgi()),
    ]
)


async def application(scope, receive, send):
    if scope["type"] == "websocket" and scope["path"].startswith("/ws/floor"):
        return await floor(scope, receive, send)
    return await product(scope, receive, send)
