"""The chat WebSocket consumer, driven through the project's real ASGI stack (origin check, session
middleware, routing) with Channels' WebsocketCommunicator and the Redis channel layer."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from accounts.auth import issue_token
from chat.cache import ConversationMessagesCache, OnlineStatusCache, TypingIndicatorCache
from chat.models import Message
from chat.testing import make_chat_user, make_conversation, make_message
from themoon.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://testserver")


def run(scenario):
    """Run an async scenario with an overall deadline (no pytest-asyncio needed); then close the
    database connections the consumer's ORM thread opened, so the test database can be dropped."""

    async def bounded():
        try:
            return await asyncio.wait_for(scenario, timeout=30)
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(bounded())


def socket(conversation_id: int, token: str | None = None, headers=()) -> WebsocketCommunicator:
    path = f"/ws/chat/{conversation_id}/" + (f"?token={token}" if token else "")
    return WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])


async def frame_of(ws: WebsocketCommunicator, kind: str, timeout: float = 5) -> dict:
    """The next frame of type `kind`, skipping others (presence chatter) on the way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await ws.receive_json_from(timeout=max(deadline - loop.time(), 0.01))
        if frame["type"] == kind:
            return frame


async def frames_until(ws: WebsocketCommunicator, kind: str, timeout: float = 5) -> list[dict]:
    """Every frame up to and including the next one of type `kind`."""
    frames = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(await ws.receive_json_from(timeout=timeout))
    return frames


async def message_is_refused_as_removed(ws: WebsocketCommunicator) -> None:
    """A message frame from a participant removed meanwhile: the error frame, then close 4403."""
    await ws.send_json_to({"type": "message", "body": "anyone?"})
    assert (await frame_of(ws, "error"))["error"] == "you are no longer in this conversation"
    output = await ws.receive_output(timeout=5)
    assert (output["type"], output["code"]) == ("websocket.close", 4403)
    await ws.disconnect(timeout=10)


async def eventually_async(check, timeout: float = 5) -> None:
    """Poll a synchronous check (run off the loop) until it holds, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await sync_to_async(check, thread_sensitive=False)():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def join(ws: WebsocketCommunicator) -> tuple[dict, dict]:
    connected, _ = await ws.connect(timeout=5)
    assert connected
    history = await ws.receive_json_from(timeout=5)
    online = await ws.receive_json_from(timeout=5)
    assert history["type"] == "history"
    assert online["type"] == "online"
    return history, online


async def closed_with(ws: WebsocketCommunicator) -> int:
    connected, _ = await ws.connect(timeout=5)
    assert connected  # accepted, so that the close code reaches the client
    output = await ws.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    await ws.disconnect(timeout=10)  # what the server sends next; the consumer must then stop cleanly
    return output["code"]


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    """Each test runs its own event loop: give it a channel layer with no state (locks, pools) from
    the previous test's loop. Channels rebuilds its layers when CHANNEL_LAYERS changes."""
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS}


@pytest.fixture
def room():
    ann, bob, eve = make_chat_user("ann"), make_chat_user("bob"), make_chat_user("eve")
    conversation = make_conversation(ann, bob)
    return {
        "conversation": conversation,
        "ann": ann,
        "bob": bob,
        "eve": eve,
        "tokens": {u.username: issue_token(u) for u in (ann, bob, eve)},
    }


def test_without_credentials_the_socket_is_closed_4401(room):
    assert run(closed_with(socket(room["conversation"].pk))) == 4401
    assert run(closed_with(socket(room["conversation"].pk, token="not-a-token"))) == 4401


def test_a_non_participant_is_closed_4403(room):
    conversation = room["conversation"]
    assert run(closed_with(socket(conversation.pk, room["tokens"]["eve"]))) == 4403
    assert run(closed_with(socket(conversation.pk + 1000, room["tokens"]["ann"]))) == 4403


def test_a_session_user_gets_the_history_and_presence_on_connect(room):
    conversation, ann, bob = room["conversation"], room["ann"], room["bob"]
    sent = [make_message(conversation, ann if i % 2 else bob, f"old {i}").pk for i in range(55)]
    client = Client()
    client.force_login(ann)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())

    async def scenario():
        ws = socket(conversation.pk, headers=[cookie])
        history, online = await join(ws)
        assert [m["id"] for m in history["messages"]] == sent[-50:]
        assert history["messages"][-1]["body"] == "old 54"
        assert online["user_ids"] == [ann.pk]
        await ws.disconnect(timeout=10)

    run(scenario())
    assert not OnlineStatusCache().is_online(ann.pk)


def test_a_message_is_saved_and_broadcast_to_every_member(room):
    conversation, ann, bob = room["conversation"], room["ann"], room["bob"]

    async def scenario():
        a = socket(conversation.pk, room["tokens"]["ann"])
        b = socket(conversation.pk, headers=[(b"authorization", f"Bearer {room['tokens']['bob']}".encode())])
        await join(a)
        await join(b)
        joined = await frame_of(a, "presence")
        assert (joined["user_id"], joined["online"]) == (bob.pk, True)
        await a.send_json_to({"type": "message", "body": "hello bob"})
        for ws in (a, b):
            frame = await frame_of(ws, "message")
            assert frame["message"]["body"] == "hello bob"
            assert frame["message"]["sender_id"] == ann.pk
        await a.disconnect(timeout=10)
        left = await frame_of(b, "presence")
        assert (left["user_id"], left["online"]) == (ann.pk, False)
        await b.disconnect(timeout=10)

    run(scenario())
    [saved] = Message.objects.filter(conversation=conversation)
    assert (saved.body, saved.sender_id) == ("hello bob", ann.pk)
    # The cache was filled on connect and written through after the save committed.
    assert [m["body"] for m in ConversationMessagesCache().get_messages(conversation.pk)] == ["hello bob"]


def test_typing_reaches_the_others_and_ping_refreshes_presence(room):
    conversation, ann = room["conversation"], room["ann"]

    async def scenario():
        a = socket(conversation.pk, room["tokens"]["ann"])
        b = socket(conversation.pk, room["tokens"]["bob"])
        await join(a)
        await join(b)
        await a.send_json_to({"type": "typing"})
        typing = await frame_of(b, "typing")
        assert (typing["user_id"], typing["username"], typing["typing"]) == (ann.pk, "ann", True)
        assert TypingIndicatorCache().typing_in(conversation.pk) == [ann.pk]
        await a.send_json_to({"type": "message", "body": "done typing"})
        # Ann's group events reach her in order: an echo of her own typing would come before this.
        before_her_message = await frames_until(a, "message")
        assert "typing" not in [f["type"] for f in before_her_message]
        await frame_of(b, "message")
        await eventually_async(lambda: TypingIndicatorCache().typing_in(conversation.pk) == [])
        await a.send_json_to({"type": "ping"})
        assert (await frame_of(a, "pong")) == {"type": "pong"}
        await a.disconnect(timeout=10)
        await b.disconnect(timeout=10)

    run(scenario())


def test_bad_frames_get_an_error_and_the_connection_survives(room, settings):
    settings.CHAT_MESSAGE_MAX_LENGTH = 20
    conversation = room["conversation"]

    async def scenario():
        ws = socket(conversation.pk, room["tokens"]["ann"])
        await join(ws)
        bad = [
            ("text", "{not json"),
            ("text", "[1, 2]"),
            ("text", '{"body": "no type"}'),
            ("text", '{"type": "dance"}'),
            ("text", '{"type": "message"}'),
            ("text", '{"type": "message", "body": "   "}'),
            ("text", '{"type": "message", "body": 42}'),
            ("text", '{"type": "message", "body": "' + "x" * 21 + '"}'),
            ("bytes", b"\x00\x01"),
        ]
        errors = []
        for kind, data in bad:
            await (ws.send_to(text_data=data) if kind == "text" else ws.send_to(bytes_data=data))
            errors.append(await frame_of(ws, "error"))
        assert all(isinstance(e["error"], str) and e["error"] for e in errors)
        assert "invalid JSON" in errors[0]["error"]
        assert "dance" in errors[3]["error"]
        assert "at most 20" in errors[7]["error"]
        await ws.send_json_to({"type": "message", "body": "still here"})
        assert (await frame_of(ws, "message"))["message"]["body"] == "still here"
        await ws.disconnect(timeout=10)

    run(scenario())
    assert list(Message.objects.values_list("body", flat=True)) == ["still here"]


def test_an_idle_connection_stays_open_past_the_channel_layer_poll(room):
    """channels-redis blocks 5 s in BZPOPMIN; with redis-py 8's default 5 s socket timeout every idle
    consumer died with TimeoutError (django/channels_redis#422) unless CHANNEL_LAYERS sets a longer one."""
    conversation = room["conversation"]

    async def scenario():
        ws = socket(conversation.pk, room["tokens"]["ann"])
        await join(ws)
        assert await ws.receive_nothing(timeout=7, interval=0.5)
        await ws.send_json_to({"type": "ping"})
        assert (await frame_of(ws, "pong")) == {"type": "pong"}
        await ws.disconnect(timeout=10)

    run(scenario())


def test_a_member_removed_meanwhile_gets_an_error_frame_and_a_4403_close(room):
    """The service's NotFound for a message sent after removal is mapped to a frame in one place."""
    from chat.models import Participant

    conversation = room["conversation"]

    async def scenario():
        ws = socket(conversation.pk, room["tokens"]["bob"])
        await join(ws)
        await sync_to_async(Participant.objects.filter(user=room["bob"]).delete, thread_sensitive=False)()
        await message_is_refused_as_removed(ws)

    run(scenario())
    assert not Message.objects.exists()
