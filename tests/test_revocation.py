"""Access that ends closes open sockets, through the event pipeline and a real worker: leaving a
conversation (4403), revoking a token, deactivating a user, changing a password (4401). Real
WebSocket clients (Channels' communicator on the project's ASGI stack and Redis channel layer)."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.auth import issue_token
from accounts.models import AppUser
from chat.testing import make_chat_user, make_conversation
from tests.test_chat_ws import join, run
from themoon.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://testserver")
# The documented bound: the worker handles the event (a few ms when it is idle); generous for CI.
BOUND_SECONDS = 5


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS}


@pytest.fixture
def room(pipeline_worker):
    ann, bob = make_chat_user("ann"), make_chat_user("bob")
    first, second = make_conversation(ann, bob), make_conversation(ann, bob)
    return {"ann": ann, "bob": bob, "first": first, "second": second, "token": issue_token(ann)}


def socket(conversation_id: int, token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/?token={token}", headers=[ORIGIN])


async def closes_with(ws: WebsocketCommunicator) -> tuple[int, list[dict]]:
    """Frames until the close, then its code (within the bound)."""
    frames = []
    while True:
        output = await ws.receive_output(timeout=BOUND_SECONDS)
        if output["type"] == "websocket.close":
            return output["code"], frames
        frames.append(json.loads(output["text"]))


def api(token: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})


def test_leaving_a_conversation_closes_its_socket_4403_and_no_other(room):
    ann, token = room["ann"], room["token"]

    async def scenario():
        here, there = socket(room["first"].pk, token), socket(room["second"].pk, token)
        await join(here)
        await join(there)
        left = await sync_to_async(api(token).delete)(
            f"/api/conversations/{room['first'].pk}/participants/{ann.pk}"
        )
        assert left.status_code == 204
        code, frames = await closes_with(here)
        assert code == 4403
        assert frames[-1] == {"type": "error", "error": "you are no longer in this conversation"}
        await there.send_json_to({"type": "ping"})  # the other conversation's socket stays
        while (await there.receive_json_from(timeout=5))["type"] != "pong":
            pass
        await there.disconnect()
        await here.disconnect()

    run(scenario())


def test_a_participant_cannot_remove_somebody_else():
    ann, bob, eve = make_chat_user("ann"), make_chat_user("bob"), make_chat_user("eve")
    conversation = make_conversation(ann, bob)
    url = f"/api/conversations/{conversation.pk}/participants/{bob.pk}"
    assert api(issue_token(ann)).delete(url).status_code == 403
    assert api(issue_token(eve)).delete(url).status_code == 404  # a stranger learns nothing
    own = f"/api/conversations/{conversation.pk}/participants/{eve.pk}"
    assert api(issue_token(eve)).delete(own).status_code == 404


def test_revoking_a_token_closes_its_sockets_4401_and_keeps_the_others(room):
    ann, token = room["ann"], room["token"]
    other_token = issue_token(ann)

    async def scenario():
        revoked, kept = socket(room["first"].pk, token), socket(room["first"].pk, other_token)
        await join(revoked)
        await join(kept)
        tokens = await sync_to_async(api(other_token).get)("/api/auth/tokens")
        token_id = next(t["id"] for t in tokens.json() if not t["current"])
        gone = await sync_to_async(api(other_token).delete)(f"/api/auth/tokens/{token_id}")
        assert gone.status_code == 204
        code, frames = await closes_with(revoked)
        assert code == 4401
        assert frames[-1]["error"] == "access ended: token revoked"
        await kept.send_json_to({"type": "ping"})
        while (await kept.receive_json_from(timeout=5))["type"] != "pong":
            pass
        await kept.disconnect()
        await revoked.disconnect()

    run(scenario())


def test_deactivating_a_user_closes_all_their_sockets_4401(room):
    def deactivate():
        user = AppUser.objects.get(pk=room["ann"].pk)
        user.is_active = False
        user.save()

    async def scenario():
        sockets = [socket(room["first"].pk, room["token"]), socket(room["second"].pk, room["token"])]
        for ws in sockets:
            await join(ws)
        await sync_to_async(deactivate)()
        for ws in sockets:
            code, frames = await closes_with(ws)
            assert (code, frames[-1]["error"]) == (4401, "access ended: account deactivated")
            await ws.disconnect()

    run(scenario())
    assert api(room["token"]).get("/api/feed").status_code == 401


def test_a_password_change_closes_the_sockets_and_kills_every_token(room):
    token = room["token"]

    async def scenario():
        ws = socket(room["first"].pk, token)
        await join(ws)
        changed = await sync_to_async(api(token).post)(
            "/api/auth/password",
            data={"current_password": "pass-word-123", "new_password": "a-new-pass-word-456"},
            content_type="application/json",
        )
        assert changed.status_code == 204
        code, _ = await closes_with(ws)
        assert code == 4401
        await ws.disconnect()
        refused = socket(room["first"].pk, token)
        connected, _ = await refused.connect(timeout=5)
        assert connected
        assert (await refused.receive_output(timeout=5))["code"] == 4401
        await refused.disconnect()

    run(scenario())
    assert api(token).get("/api/feed").status_code == 401


def test_a_socket_opened_with_a_ticket_closes_when_its_token_is_revoked(room):
    token = room["token"]
    ticket = api(token).post("/api/auth/ws-ticket", content_type="application/json").json()["ticket"]

    async def scenario():
        ws = WebsocketCommunicator(
            application, f"/ws/chat/{room['first'].pk}/?ticket={ticket}", headers=[ORIGIN]
        )
        await join(ws)
        assert (await sync_to_async(api(token).delete)("/api/auth/token")).status_code == 204
        code, _ = await closes_with(ws)
        assert code == 4401
        await ws.disconnect()

    run(asyncio.wait_for(scenario(), 20))
