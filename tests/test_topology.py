"""The serving topology as the Procfile starts it: one port, HTTP through Django's WSGI handler on
reused threads, WebSockets through Channels on the same port; and the gunicorn alternative's
debug guard."""

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.request import Request, urlopen

import orjson
import pytest
from django.conf import settings
from websockets.asyncio.client import connect

from accounts.auth import issue_token
from chat.testing import make_chat_user, make_conversation
from tests.polling import eventually
from tests.subprocesses import database_url
from tests.test_security_server import (
    ROOT,
    clean_env,
    free_port,
    listening,
    procfile_web_command,
    start,
    stop,
)
from themoon.debug_guard import gunicorn_bind_hosts, refuse_debug_on_public_binds
from themoon.wsgi_bridge import WSGIBridge


@pytest.fixture
def web(transactional_db):
    """The Procfile's web process on a loopback port, on the test databases."""
    port = free_port()
    env = clean_env(
        DJANGO_SETTINGS_MODULE="themoon.settings_test",
        DATABASE_URL=database_url(),
        DATABASE_CONN_MAX_AGE="0",
        WEBSOCKET_ALLOWED_ORIGINS=f"http://127.0.0.1:{port}",
    )
    env.pop("DATABASE_POOL", None)
    server = start(procfile_web_command(port), env)

    def up() -> bool:
        assert server.poll() is None, stop(server)
        return listening(port)

    try:
        eventually(up, timeout=30, interval=0.1)
        yield port
    finally:
        stop(server)


def get(port: int, path: str, token: str) -> tuple[int, bytes]:
    request = Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urlopen(request, timeout=20) as answer:
        return answer.status, answer.read()


def test_the_http_app_is_django_wsgi_on_a_thread_pool():
    from themoon.asgi import application

    http = application.application_mapping["http"]
    wrapped = [c.cell_contents for c in http.__closure__ or () if isinstance(c.cell_contents, WSGIBridge)]
    assert wrapped, "HTTP must reach Django's WSGI handler through themoon/wsgi_bridge.py (themoon/asgi.py)"
    assert wrapped[0].executor._max_workers == settings.WEB_THREADS


def test_http_and_a_websocket_upgrade_share_the_procfile_port(web):
    ann, bob = make_chat_user("ann"), make_chat_user("bob")
    conversation = make_conversation(ann, bob)
    token = issue_token(ann)

    status, body = get(web, "/api/feed", token)
    assert status == 200
    assert "items" in orjson.loads(body)

    async def history() -> dict:
        url = f"ws://127.0.0.1:{web}/ws/chat/{conversation.pk}/?token={token}"
        async with connect(url, origin=f"http://127.0.0.1:{web}", open_timeout=20) as ws:
            return orjson.loads(await asyncio.wait_for(ws.recv(), timeout=20))

    assert asyncio.run(history())["type"] == "history"


def test_concurrent_http_requests_are_all_served(web):
    token = issue_token(make_chat_user("cat"))
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: get(web, "/api/feed", token)[0], range(64)))
    assert answers == [200] * 64


@pytest.mark.parametrize(
    ("binds", "hosts"),
    [
        (["127.0.0.1:8001"], ["127.0.0.1"]),
        (["[::1]:8001", "unix:/tmp/web.sock"], ["::1"]),
        (["0.0.0.0:8000", "fd://3"], ["0.0.0.0"]),
        ([":8000"], ["0.0.0.0"]),
    ],
)
def test_gunicorn_bind_hosts(binds, hosts):
    assert gunicorn_bind_hosts(binds) == hosts


def test_debug_refuses_a_public_gunicorn_bind_but_not_loopback():
    refuse_debug_on_public_binds(True, ["127.0.0.1", "::1"])
    refuse_debug_on_public_binds(False, ["0.0.0.0"])
    with pytest.raises(Exception, match=r"binds 0\.0\.0\.0"):
        refuse_debug_on_public_binds(True, ["127.0.0.1", "0.0.0.0"])


def test_gunicorn_with_debug_on_a_public_bind_refuses_to_start():
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "themoon/gunicorn.conf.py",
        "--bind",
        f"0.0.0.0:{port}",
    ]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=clean_env(DJANGO_DEBUG="true"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        server.wait(timeout=60)
    finally:
        output = stop(server)
    assert server.returncode != 0
    assert "binds 0.0.0.0" in output
    assert not listening(port)


def test_the_router_sends_ws_paths_to_the_asgi_server_and_the_rest_to_wsgi():
    from themoon.router import _upstream_for

    http, ws = ("127.0.0.1", 1), ("127.0.0.1", 2)
    assert _upstream_for(b"GET /ws/chat/1/?token=x HTTP/1.1\r\nHost: a\r\n\r\n", http, ws) == ws
    assert _upstream_for(b"GET /api/feed HTTP/1.1\r\nHost: a\r\n\r\n", http, ws) == http
    assert _upstream_for(b"GET /wsx HTTP/1.1\r\n\r\n", http, ws) == http


def test_both_protocols_pass_through_the_router_on_one_port(web):
    """The split option (bench/http.py measures it): HTTP and a WebSocket upgrade through
    themoon/router.py, here with the web process behind both of its routes."""
    ann, bob = make_chat_user("ann"), make_chat_user("bob")
    conversation = make_conversation(ann, bob)
    token = issue_token(ann)
    port = free_port()
    upstream = f"127.0.0.1:{web}"
    router = start(
        [sys.executable, "-m", "themoon.router", "--port", str(port), "--http", upstream, "--ws", upstream],
        clean_env(),
    )
    try:
        eventually(lambda: listening(port), timeout=30, interval=0.1)
        assert get(port, "/api/feed", token)[0] == 200

        async def history() -> dict:
            url = f"ws://127.0.0.1:{port}/ws/chat/{conversation.pk}/?token={token}"
            # The web process checks the Origin against its own port (the fixture's setting).
            async with connect(url, origin=f"http://127.0.0.1:{web}", open_timeout=20) as ws:
                return orjson.loads(await asyncio.wait_for(ws.recv(), timeout=20))

        assert asyncio.run(history())["type"] == "history"
    finally:
        stop(router)
