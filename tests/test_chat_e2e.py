"""End to end: the real ASGI server (uvicorn, a subprocess on loopback), real WebSocket clients
(`websockets`), the real Celery worker applying the events to the cache."""

import asyncio

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from accounts.auth import issue_token
from chat.cache import ConversationMessagesCache, OnlineStatusCache
from chat.models import Message
from chat.testing import make_chat_user, make_conversation
from core.events import stream_name
from tests.polling import eventually
from tests.subprocesses import uvicorn_server


@pytest.fixture
def asgi_server(transactional_db):
    """uvicorn serving themoon.asgi on a free loopback port; always terminated."""
    with uvicorn_server(
        # Only the worker updates the cache: the test proves the pipeline, not the shortcut.
        EVENTS_APPLY_ON_COMMIT="false",
    ) as port:
        yield port


class Client:
    """A WebSocket client that keeps every frame it received, by type."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.frames: list[dict] = []

    async def send(self, **frame) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def expect(self, match, timeout: float = 10) -> dict:
        """The first frame (already received or arriving within `timeout`) for which `match` is true."""
        for frame in self.frames:
            if match(frame):
                self.frames.remove(frame)
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = orjson.loads(await self.ws.recv())
                if match(frame):
                    return frame
                self.frames.append(frame)


def test_two_clients_chat_through_the_real_server_and_the_worker(asgi_server, pipeline_worker, redis_client):
    ann, bob, eve = make_chat_user("ann"), make_chat_user("bob"), make_chat_user("eve")
    conversation = make_conversation(ann, bob)
    tokens = {user.username: issue_token(user) for user in (ann, bob, eve)}
    base = f"ws://127.0.0.1:{asgi_server}/ws/chat/{conversation.pk}/?token="
    origin = f"http://127.0.0.1:{asgi_server}"

    async def open_as(name: str) -> Client:
        return Client(await connect(base + tokens[name], origin=origin, open_timeout=10))

    async def scenario() -> None:
        # A stranger is accepted, then closed with 4403 before seeing anything.
        stranger = await open_as("eve")
        with pytest.raises(ConnectionClosed) as closed:
            await stranger.expect(lambda f: True)
        assert closed.value.rcvd.code == 4403

        a = await open_as("ann")
        assert (await a.expect(lambda f: f["type"] == "history"))["messages"] == []
        b = await open_as("bob")
        await b.expect(lambda f: f["type"] == "history")
        snapshot = await b.expect(lambda f: f["type"] == "online")
        assert snapshot["user_ids"] == sorted([ann.pk, bob.pk])
        await a.expect(lambda f: f["type"] == "presence" and f.get("user_id") == bob.pk and f["online"])

        await a.send(type="typing")
        typing = await b.expect(lambda f: f["type"] == "typing")
        assert (typing["user_id"], typing["typing"]) == (ann.pk, True)

        await a.send(type="message", body="hi bob")
        await b.expect(lambda f: f["type"] == "message" and f["message"]["body"] == "hi bob")
        await b.send(type="message", body="hi ann")
        for client in (a, b):
            await client.expect(lambda f: f["type"] == "message" and f["message"]["body"] == "hi ann")
        await a.expect(lambda f: f["type"] == "message" and f["message"]["body"] == "hi bob")

        await b.send(type="nonsense")
        assert "unknown frame type" in (await b.expect(lambda f: f["type"] == "error"))["error"]
        await b.send(type="ping")
        await b.expect(lambda f: f["type"] == "pong")

        await b.ws.close()
        left = await a.expect(lambda f: f["type"] == "presence" and f.get("user_id") == bob.pk)
        assert left["online"] is False
        await a.ws.close()

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))

    assert list(Message.objects.order_by("id").values_list("body", flat=True)) == ["hi bob", "hi ann"]
    chat_stream = stream_name("chat")

    def worker_caught_up() -> bool:
        last = redis_client.xrevrange(chat_stream, count=1)
        groups = redis_client.xinfo_groups(chat_stream)
        return bool(last and groups) and all(
            g["pending"] == 0 and g["last-delivered-id"] == last[0][0] for g in groups
        )

    eventually(worker_caught_up, timeout=10)
    # The cache was filled (empty) when ann connected; only the worker wrote the messages into it.
    cached = ConversationMessagesCache().get_messages(conversation.pk)
    assert [(m["body"], m["sender"]) for m in cached] == [("hi bob", "ann"), ("hi ann", "bob")]
    eventually(lambda: not OnlineStatusCache().online_among([ann.pk, bob.pk]))
