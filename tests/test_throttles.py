"""Throttles through the public door: login per account and per address, token minting, writes per
user over HTTP and WebSocket frames; 429 + Retry-After, recovery after the window, open without Redis."""

import asyncio
import json
import time

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from ninja.throttling import SimpleRateThrottle

from accounts.auth import issue_token
from chat.testing import make_chat_user, make_conversation
from core.caching import breaker
from tests.factories import make_user

pytestmark = pytest.mark.usefixtures("transactional_db")
PASSWORD = "pass-word-123"


def post(client: Client, url: str, data=None, **extra):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json", **extra)


def test_150_wrong_passwords_lock_the_account_until_the_window_passes(settings, monkeypatch):
    settings.THROTTLE_LOGIN_ACCOUNT_RATE = "10/5m"
    clock = [time.time()]  # the throttle's own clock, so a slow machine can't slide the window
    monkeypatch.setattr(SimpleRateThrottle, "timer", staticmethod(lambda: clock[0]))
    make_user("neil")
    wrong = [post(Client(), "/api/auth/login", {"username": "neil", "password": "nope"}) for _ in range(150)]
    assert [r.status_code for r in wrong[:10]] == [401] * 10
    assert {r.status_code for r in wrong[10:]} == {429}
    refused = post(Client(), "/api/auth/login", {"username": "NEIL", "password": PASSWORD})
    assert refused.status_code == 429  # the right password too, and whatever the case
    assert 1 <= int(refused["Retry-After"]) <= 300
    assert post(Client(), "/api/auth/token", {"username": "neil", "password": PASSWORD}).status_code == 429
    clock[0] += 299
    assert post(Client(), "/api/auth/login", {"username": "neil", "password": PASSWORD}).status_code == 429
    clock[0] += 2  # the window has passed
    assert post(Client(), "/api/auth/login", {"username": "neil", "password": PASSWORD}).status_code == 200


def test_login_attempts_are_counted_per_address_across_accounts(settings):
    settings.THROTTLE_LOGIN_ADDRESS_RATE = "5/2s"
    for name in ("a1", "a2", "a3"):
        make_user(name)
    codes = [
        post(Client(), "/api/auth/login", {"username": f"a{i % 3 + 1}", "password": "x"}).status_code
        for i in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2
    other = Client(REMOTE_ADDR="10.0.0.9")  # another address is not affected
    assert post(other, "/api/auth/login", {"username": "a1", "password": PASSWORD}).status_code == 200
    # A forged X-Forwarded-For does not make a new address.
    forged = Client(HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert post(forged, "/api/auth/login", {"username": "a1", "password": PASSWORD}).status_code == 429


def test_token_minting_is_throttled_per_account(settings):
    settings.THROTTLE_TOKEN_MINT_RATE = "3/2s"
    make_user("neil")
    codes = [
        post(Client(), "/api/auth/token", {"username": "neil", "password": PASSWORD}).status_code
        for _ in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    time.sleep(2.1)
    assert post(Client(), "/api/auth/token", {"username": "neil", "password": PASSWORD}).status_code == 201


def test_writes_per_user_answer_429_with_retry_after_and_recover(settings):
    settings.THROTTLE_WRITE_RATE = "3/2s"
    user, other = make_user("neil"), make_user("buzz")
    client = Client(headers={"Authorization": f"Bearer {issue_token(user)}"})
    codes = [post(client, "/api/posts", {"body": f"p{i}"}).status_code for i in range(4)]
    assert codes == [201, 201, 201, 429]
    refused = post(client, "/api/posts", {"body": "again"})
    assert refused.json() == {"detail": "Too many requests."}
    assert 1 <= int(refused["Retry-After"]) <= 2
    assert client.get("/api/feed").status_code == 200  # reads are not writes
    buzz = Client(headers={"Authorization": f"Bearer {issue_token(other)}"})
    assert post(buzz, "/api/posts", {"body": "mine"}).status_code == 201  # per user
    time.sleep(2.1)
    assert post(client, "/api/posts", {"body": "later"}).status_code == 201


def test_chat_frames_over_the_rate_get_an_error_frame_with_retry_after(settings):
    from themoon.asgi import application

    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS}
    settings.THROTTLE_WS_MESSAGE_RATE = "2/2s"
    ann, bob = make_chat_user("ann"), make_chat_user("bob")
    conversation = make_conversation(ann, bob)
    token = issue_token(ann)

    async def scenario():
        ws = WebsocketCommunicator(
            application,
            f"/ws/chat/{conversation.pk}/?token={token}",
            headers=[(b"origin", b"http://testserver")],
        )
        assert (await ws.connect(timeout=5))[0]
        kinds = []
        for i in range(3):
            await ws.send_json_to({"type": "message", "body": f"m{i}"})
            while True:
                frame = await ws.receive_json_from(timeout=5)
                if frame["type"] in ("message", "error"):
                    kinds.append(frame)
                    break
        assert [f["type"] for f in kinds] == ["message", "message", "error"]
        assert 1 <= kinds[2]["retry_after"] <= 2
        await asyncio.sleep(2.1)
        await ws.send_json_to({"type": "message", "body": "later"})
        while (frame := await ws.receive_json_from(timeout=5))["type"] != "message":
            pass
        assert frame["message"]["body"] == "later"
        await ws.disconnect()

    from tests.test_chat_ws import run

    run(scenario())


def test_throttles_let_requests_through_when_redis_is_down(settings, unused_port):
    settings.THROTTLE_LOGIN_ACCOUNT_RATE = "1/m"
    make_user("neil")
    settings.REDIS_CLUSTER_NODES = []  # on a cluster, the dead LOCATION is then its only node
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{unused_port}/0",
        }
    }
    try:
        codes = [
            post(Client(), "/api/auth/login", {"username": "neil", "password": PASSWORD}).status_code
            for _ in range(3)
        ]
    finally:
        breaker.reset()
    assert codes == [200, 200, 200]


def test_chat_frames_are_counted_per_user_in_a_sliding_window(settings):
    from accounts import throttles

    settings.THROTTLE_WS_MESSAGE_RATE = "3/2s"
    assert [throttles.allow_frame(7) for _ in range(3)] == [(True, 0)] * 3
    allowed, retry_after = throttles.allow_frame(7)
    assert not allowed
    assert 1 <= retry_after <= 2
    assert throttles.allow_frame(8) == (True, 0)  # per user
    time.sleep(2.1)
    assert throttles.allow_frame(7) == (True, 0)


def test_chat_frames_go_through_when_redis_is_down(settings, unused_port, monkeypatch):
    from accounts import throttles
    from core.caching import GuardedRedis, RedisBreaker
    from tests.test_caching_degradation import settings_client

    settings.THROTTLE_WS_MESSAGE_RATE = "1/m"
    monkeypatch.setattr(throttles, "_frame_guard", GuardedRedis(settings_client(unused_port), RedisBreaker()))
    assert [throttles.allow_frame(7) for _ in range(3)] == [(True, 0)] * 3
