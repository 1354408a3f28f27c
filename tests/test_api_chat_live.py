"""Chat from every path (issue 14 items 7, 10, 11): a message sent, edited or deleted over HTTP or
as a WebSocket frame reaches every connected socket of the conversation exactly once, through the
real ASGI stack and the Redis channel layer; unknown socket paths are refused, never a 500."""

import asyncio
import json
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.auth import issue_token
from chat.cache import ConversationMessagesCache
from chat.models import Message
from chat.testing import make_chat_user, make_conversation, make_message
from tests.test_chat_ws import ORIGIN, frame_of, join, run
from themoon.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def room():
    ann, bob = make_chat_user("ann"), make_chat_user("bob")
    conversation = make_conversation(ann, bob)
    return {
        "conversation": conversation,
        "ann": ann,
        "bob": bob,
        "ann_token": issue_token(ann),
        "bob_token": issue_token(bob),
    }


def socket(conversation_id: int, token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/?token={token}", headers=[ORIGIN])


def http(token: str, method: str, path: str, data=None):
    client = Client(headers={"Authorization": f"Bearer {token}"})
    body = None if data is None else json.dumps(data)
    return getattr(client, method)(f"/api{path}", data=body, content_type="application/json")


async def http_async(*args, **kwargs):
    return await sync_to_async(http, thread_sensitive=False)(*args, **kwargs)


async def no_more_frames_of(ws: WebsocketCommunicator, kind: str, wait: float = 0.5) -> None:
    """No frame of type `kind` arrives within `wait` seconds (others are skipped). Polls with
    receive_nothing: a receive that times out would cancel the application."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while loop.time() < deadline:
        if await ws.receive_nothing(timeout=0.05, interval=0.01):
            continue
        frame = await ws.receive_json_from(timeout=1)
        assert frame["type"] != kind, frame


def test_a_message_sent_over_http_reaches_the_connected_sockets_once(room):
    conversation = room["conversation"]
    path = f"/conversations/{conversation.pk}/messages"

    async def scenario():
        ann, bob = socket(conversation.pk, room["ann_token"]), socket(conversation.pk, room["bob_token"])
        await join(ann)
        await join(bob)
        response = await http_async(room["bob_token"], "post", path, {"body": "from http"})
        assert response.status_code == 201
        sent = response.json()
        for ws in (ann, bob):
            assert (await frame_of(ws, "message"))["message"] == sent
            await no_more_frames_of(ws, "message")
        await ann.disconnect()
        await bob.disconnect()

    run(scenario())


def test_a_message_sent_over_the_socket_is_broadcast_exactly_once(room):
    conversation = room["conversation"]

    async def scenario():
        ann, bob = socket(conversation.pk, room["ann_token"]), socket(conversation.pk, room["bob_token"])
        await join(ann)
        await join(bob)
        await ann.send_json_to({"type": "message", "body": "from the socket"})
        for ws in (ann, bob):
            assert (await frame_of(ws, "message"))["message"]["body"] == "from the socket"
            await no_more_frames_of(ws, "message")
        await ann.disconnect()
        await bob.disconnect()

    run(scenario())


def test_edits_and_deletes_over_http_reach_the_sockets_and_the_cache(room):
    conversation = room["conversation"]
    message = make_message(conversation, room["ann"], "tpyo")
    path = f"/conversations/{conversation.pk}/messages/{message.pk}"

    async def scenario():
        bob = socket(conversation.pk, room["bob_token"])
        await join(bob)
        refused = await http_async(room["bob_token"], "patch", path, {"body": "not yours"})
        assert refused.status_code == 404  # someone else's message: not found for you
        edited = await http_async(room["ann_token"], "patch", path, {"body": "typo"})
        assert edited.status_code == 200
        assert (edited.json()["body"], edited.json()["version"]) == ("typo", 2)
        assert edited.json()["edited_at"] is not None
        frame = await frame_of(bob, "edited")
        assert frame["message"] == edited.json()
        assert (await http_async(room["bob_token"], "delete", path)).status_code == 404
        assert (await http_async(room["ann_token"], "delete", path)).status_code == 204
        frame = await frame_of(bob, "deleted")
        assert frame == {"type": "deleted", "message_id": message.pk, "conversation_id": conversation.pk}
        assert (await http_async(room["ann_token"], "delete", path)).status_code == 404
        await bob.disconnect()

    run(scenario())
    assert not Message.objects.filter(pk=message.pk).exists()
    assert ConversationMessagesCache().get_messages(conversation.pk) == []
    page = http(room["bob_token"], "get", f"/conversations/{conversation.pk}/messages").json()
    assert page["items"] == []


def test_edit_and_delete_frames_change_ones_own_messages_only(room):
    conversation = room["conversation"]
    mine = make_message(conversation, room["ann"], "first draft")
    theirs = make_message(conversation, room["bob"], "bob's")
    elsewhere = make_message(make_conversation(room["ann"], make_chat_user("cat")), room["ann"], "other room")

    async def scenario():
        ann, bob = socket(conversation.pk, room["ann_token"]), socket(conversation.pk, room["bob_token"])
        await join(ann)
        await join(bob)
        await ann.send_json_to({"type": "edit", "message_id": mine.pk, "body": "final"})
        for ws in (ann, bob):
            frame = await frame_of(ws, "edited")
            assert (frame["message"]["id"], frame["message"]["body"]) == (mine.pk, "final")
        for bad in (
            {"type": "edit", "message_id": theirs.pk, "body": "mine now"},
            {"type": "edit", "message_id": elsewhere.pk, "body": "wrong room"},
            {"type": "edit", "message_id": "1", "body": "x"},
            {"type": "edit", "message_id": mine.pk, "body": ""},
            {"type": "delete", "message_id": theirs.pk},
            {"type": "delete"},
        ):
            await ann.send_json_to(bad)
            error = await frame_of(ann, "error")
            assert error["error"], bad
        await ann.send_json_to({"type": "delete", "message_id": mine.pk})
        for ws in (ann, bob):
            frame = await frame_of(ws, "deleted")
            assert frame["message_id"] == mine.pk
        await ann.disconnect()
        await bob.disconnect()

    run(scenario())
    assert sorted(Message.objects.values_list("body", flat=True)) == ["bob's", "other room"]


def test_a_rolled_back_send_broadcasts_nothing(room):
    from django.db import transaction

    from chat import services

    conversation = room["conversation"]

    async def scenario():
        bob = socket(conversation.pk, room["bob_token"])
        await join(bob)

        def send_and_roll_back():
            with transaction.atomic():
                services.send_message(room["ann"], conversation.pk, "never happened")
                transaction.set_rollback(True)

        await sync_to_async(send_and_roll_back, thread_sensitive=False)()
        await no_more_frames_of(bob, "message")
        await bob.disconnect()

    run(scenario())


@pytest.mark.parametrize("path", ["/ws/chat/1", "/ws/chat/x/", "/ws/nothing", "/ws/chat/1/extra"])
def test_an_unknown_socket_path_is_refused_without_an_error_log(room, path, caplog):
    async def scenario():
        ws = WebsocketCommunicator(application, f"{path}?token={room['ann_token']}", headers=[ORIGIN])
        connected, _ = await ws.connect(timeout=5)
        assert not connected
        await ws.disconnect()

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
