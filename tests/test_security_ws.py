"""Safe by default over WebSocket: the origin check compares scheme, host and port; a message frame
with text the database can't store is an error frame, and the connection survives (issue 12)."""

import pytest
from channels.testing import WebsocketCommunicator

from accounts.auth import issue_token
from chat.models import Message
from chat.testing import make_chat_user, make_conversation
from tests.test_chat_ws import frame_of, fresh_channel_layer, join, run  # noqa: F401 (fixture)
from themoon.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann_in_a_room():
    ann, bob = make_chat_user("ann"), make_chat_user("bob")
    return make_conversation(ann, bob), issue_token(ann)


def socket(conversation_id: int, token: str, origin: bytes | None) -> WebsocketCommunicator:
    headers = [(b"origin", origin)] if origin is not None else []
    return WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/?token={token}", headers=headers)


@pytest.mark.parametrize(
    "origin",
    [
        b"http://testserver:8080",  # another port of the allowed host
        b"http://testserver:80x",
        b"https://testserver",  # another scheme
        b"http://evil.testserver",
        b"http://attacker.example",
        b"null",
        None,  # no Origin at all
    ],
)
def test_a_socket_from_another_origin_is_refused(ann_in_a_room, origin):
    conversation, token = ann_in_a_room

    async def scenario():
        ws = socket(conversation.pk, token, origin)
        connected, _ = await ws.connect(timeout=5)
        await ws.disconnect(timeout=5)
        return connected

    assert run(scenario()) is False


def test_the_allowed_origin_with_its_port_gets_in(settings, ann_in_a_room):
    conversation, token = ann_in_a_room
    assert settings.WEBSOCKET_ALLOWED_ORIGINS == ["http://testserver"]  # themoon/settings_test.py

    async def scenario():
        for origin in (b"http://testserver", b"http://testserver:80"):  # 80 is http's own port
            ws = socket(conversation.pk, token, origin)
            await join(ws)
            await ws.disconnect(timeout=10)

    run(scenario())


def test_nul_or_a_lone_surrogate_in_a_message_frame_is_an_error_frame_and_the_socket_lives(ann_in_a_room):
    conversation, token = ann_in_a_room

    async def scenario():
        ws = socket(conversation.pk, token, b"http://testserver")
        await join(ws)
        errors = []
        for text in ('{"type": "message", "body": "a\\u0000b"}', '{"type": "message", "body": "a\\ud800b"}'):
            await ws.send_to(text_data=text)
            errors.append((await frame_of(ws, "error"))["error"])
        await ws.send_json_to({"type": "message", "body": "still here"})
        assert (await frame_of(ws, "message"))["message"]["body"] == "still here"
        await ws.disconnect(timeout=10)
        return errors

    nul, surrogate = run(scenario())
    assert "NUL" in nul
    assert "surrogate" in surrogate
    assert list(Message.objects.values_list("body", flat=True)) == ["still here"]
