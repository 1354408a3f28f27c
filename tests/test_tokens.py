"""Tokens through the public door: they expire, are listed and revoked by their owner, die with a
password change, record their last use at most once a minute, resolve without a database query, stay
out of URLs (tickets, subprotocol) and out of the access log of the server the Procfile starts."""

import json
import time
from datetime import timedelta

import pytest
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.auth import issue_token
from accounts.credentials import local_copies
from accounts.models import AppUser, AuthToken
from chat.testing import make_conversation
from tests.factories import make_user
from tests.polling import eventually
from tests.subprocesses import database_url
from tests.test_chat_ws import join, run
from tests.test_security_server import clean_env, free_port, listening, procfile_web_command, start, stop
from themoon.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pass-word-123"
ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS}


def bearer(token: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})


def post(client: Client, url: str, data=None):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json")


def test_tokens_are_listed_without_their_secret_and_revoked_by_their_owner_only():
    neil, buzz = make_user("neil"), make_user("buzz")
    first, second, theirs = issue_token(neil), issue_token(neil), issue_token(buzz)
    listed = bearer(first).get("/api/auth/tokens").json()
    assert len(listed) == 2
    assert set(listed[0]) == {"id", "created_at", "last_used_at", "expires_at", "current"}
    assert first not in json.dumps(listed)
    assert second not in json.dumps(listed)
    assert [t["current"] for t in listed] == [False, True]  # newest first; `first` is this one
    other_id = AuthToken.objects.get(user=buzz).pk
    assert bearer(first).delete(f"/api/auth/tokens/{other_id}").status_code == 404
    assert bearer(theirs).get("/api/feed").status_code == 200
    assert bearer(first).delete(f"/api/auth/tokens/{listed[0]['id']}").status_code == 204
    assert bearer(second).get("/api/feed").status_code == 401
    assert bearer(first).get("/api/feed").status_code == 200


def test_a_token_expires_after_the_configured_days(settings):
    settings.AUTH_TOKEN_TTL_DAYS = 7
    token = issue_token(make_user("neil"))
    row = AuthToken.objects.get()
    assert abs(row.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    AuthToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer(token).get("/api/feed").status_code == 401
    assert bearer(token).get("/api/auth/tokens").status_code == 401


def test_a_password_change_kills_every_token_and_a_hash_upgrade_does_not():
    neil = make_user("neil")
    tokens = [issue_token(neil) for _ in range(2)]
    assert bearer(tokens[0]).get("/api/feed").status_code == 200  # cached now
    wrong = post(bearer(tokens[0]), "/api/auth/password", {"current_password": "x", "new_password": "y" * 12})
    assert wrong.status_code == 403
    # A login that upgrades the stored hash is no password change.
    user = AppUser.objects.get(pk=neil.pk)
    assert user.check_password(PASSWORD)
    user.save(update_fields=["password"])
    assert bearer(tokens[0]).get("/api/feed").status_code == 200
    changed = post(
        bearer(tokens[0]),
        "/api/auth/password",
        {"current_password": PASSWORD, "new_password": "new-pass-word-1"},
    )
    assert changed.status_code == 204
    assert [bearer(t).get("/api/feed").status_code for t in tokens] == [401, 401]
    assert (
        post(Client(), "/api/auth/token", {"username": "neil", "password": "new-pass-word-1"}).status_code
        == 201
    )


def test_set_password_and_save_anywhere_kills_the_tokens():
    neil = make_user("neil")
    token = issue_token(neil)
    assert bearer(token).get("/api/feed").status_code == 200
    user = AppUser.objects.get(pk=neil.pk)
    user.set_password("another-pass-word")
    user.save()
    assert bearer(token).get("/api/feed").status_code == 401
    assert not AuthToken.objects.exists()


def test_a_cached_token_costs_no_query_and_its_last_use_is_written_once_a_minute(settings):
    settings.AUTH_TOKEN_LOCAL_CACHE_SECONDS = 0  # through Redis every time
    token = issue_token(make_user("neil"))
    client = bearer(token)
    assert client.get("/api/auth/tokens").status_code == 200
    first_use = AuthToken.objects.get().last_used_at
    assert first_use is not None
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get("/api/posts/999999").status_code == 404
    auth_tables = ('FROM "feed_authtoken"', 'FROM "feed_appuser"', 'UPDATE "feed_authtoken"')
    assert not [q["sql"] for q in queries if any(t in q["sql"] for t in auth_tables)]
    assert AuthToken.objects.get().last_used_at == first_use


def test_a_revoked_token_stops_working_in_another_process_within_the_bound(settings):
    """The Procfile's web process resolves the token (and keeps its copy); this process revokes it."""
    token = issue_token(make_user("neil"))
    port = free_port()
    env = clean_env(DATABASE_URL=database_url(), DATABASE_POOL="false")
    server = start(procfile_web_command(port), env)
    try:
        eventually(lambda: server.poll() is None and listening(port), timeout=30, interval=0.1)
        import urllib.error
        import urllib.request

        def status() -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/auth/tokens?token={token}",
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                return urllib.request.urlopen(request, timeout=5).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status() == 200
        assert status() == 200  # from its own copy now
        AuthToken.objects.all().delete()
        revoked_at = time.monotonic()
        eventually(lambda: status() == 401, timeout=10, interval=0.05)
        assert time.monotonic() - revoked_at <= settings.AUTH_TOKEN_LOCAL_CACHE_SECONDS + 1
    finally:
        log = stop(server)
    # The access log of that server: the request line is there, the token is not.
    assert "/api/auth/tokens?token=[redacted]" in log
    assert token not in log


def test_a_websocket_token_in_the_url_is_not_in_the_server_log():
    port = free_port()
    server = start(procfile_web_command(port), clean_env(DATABASE_URL=database_url(), DATABASE_POOL="false"))
    secret = "s3cr3t-token-value-for-the-log-test"
    try:
        eventually(lambda: server.poll() is None and listening(port), timeout=30, interval=0.1)
        import socket as sockets

        with sockets.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                (
                    f"GET /ws/chat/1/?ticket={secret}&token={secret} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example\r\n\r\n"
                ).encode()
            )
            conn.recv(4096)
        time.sleep(0.3)
    finally:
        log = stop(server)
    assert "WebSocket /ws/chat/1/?ticket=[redacted]&token=[redacted]" in log
    assert secret not in log


def test_a_ticket_opens_one_socket_once():
    neil, buzz = make_user("neil"), make_user("buzz")
    conversation = make_conversation(neil, buzz)
    response = post(bearer(issue_token(neil)), "/api/auth/ws-ticket")
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 30

    async def scenario():
        path = f"/ws/chat/{conversation.pk}/?ticket={body['ticket']}"
        ws = WebsocketCommunicator(application, path, headers=[ORIGIN])
        await join(ws)
        await ws.disconnect()
        again = WebsocketCommunicator(application, path, headers=[ORIGIN])
        assert (await again.connect(timeout=5))[0]
        assert (await again.receive_output(timeout=5))["code"] == 4401  # spent
        await again.disconnect()

    run(scenario())


def test_a_session_gets_a_ticket_and_the_token_can_ride_the_subprotocol():
    neil, buzz = make_user("neil"), make_user("buzz")
    conversation = make_conversation(neil, buzz)
    browser = Client()
    assert post(browser, "/api/auth/login", {"username": "neil", "password": PASSWORD}).status_code == 200
    ticket = post(browser, "/api/auth/ws-ticket").json()["ticket"]  # the session's (test client: no CSRF)
    token = issue_token(neil)

    async def scenario():
        ws = WebsocketCommunicator(
            application,
            f"/ws/chat/{conversation.pk}/",
            headers=[ORIGIN],
            subprotocols=["themoon.v1", f"bearer.{token}"],
        )
        connected, subprotocol = await ws.connect(timeout=5)
        assert (connected, subprotocol) == (True, "themoon.v1")  # never the token
        assert (await ws.receive_json_from(timeout=5))["type"] == "history"
        await ws.disconnect()
        by_ticket = WebsocketCommunicator(
            application, f"/ws/chat/{conversation.pk}/?ticket={ticket}", headers=[ORIGIN]
        )
        await join(by_ticket)
        await by_ticket.disconnect()

    run(scenario())


def test_local_copies_are_bounded(settings):
    settings.AUTH_TOKEN_LOCAL_CACHE_SIZE = 3
    neil = make_user("neil")
    for token in [issue_token(neil) for _ in range(5)]:
        assert bearer(token).get("/api/feed").status_code == 200
    assert len(local_copies._by_digest) <= 3
