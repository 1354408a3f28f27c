"""themoon/wsgi_bridge.py: WSGI apps under ASGI with one thread hop, driven by ASGI messages as
uvicorn sends them (the real server path is tests/test_topology.py)."""

import asyncio
import sys
import threading

import pytest
from django.core.wsgi import get_wsgi_application

from themoon.wsgi_bridge import WSGIBridge


def scope(method="GET", path="/", query=b"", headers=()):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(name.lower(), value) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def serve(app, request_scope, body_chunks=(b"",), disconnect=False):
    """Run the bridge on one request: (the messages it sent, the thread names the app ran on)."""
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(body_chunks) - 1}
                for i, chunk in enumerate(body_chunks)]  # fmt: skip
    if disconnect:
        messages = [{"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(WSGIBridge(app, workers=2)(request_scope, receive, send))
    return sent


def echo(environ, start_response):
    """A WSGI app answering with what it was given."""
    body = environ["wsgi.input"].read()
    start_response(
        "201 Created",
        [("X-Method", environ["REQUEST_METHOD"]), ("X-Thread", threading.current_thread().name)],
    )
    return [environ["PATH_INFO"].encode(), b"?", environ["QUERY_STRING"].encode(), b"|",
            environ.get("HTTP_X_TWICE", "").encode(), b"|", body]  # fmt: skip


def test_the_request_reaches_the_app_and_its_answer_comes_back_whole():
    sent = serve(
        echo, scope("POST", "/a/b", b"x=1", [(b"x-twice", b"1"), (b"x-twice", b"2")]), [b"he", b"llo"]
    )
    start, body = sent
    assert start["type"] == "http.response.start"
    assert start["status"] == 201
    headers = dict(start["headers"])
    assert headers[b"x-method"] == b"POST"
    assert headers[b"x-thread"].startswith(b"WSGI")  # ran on the pool, not on the loop
    assert body == {"type": "http.response.body", "body": b"/a/b?x=1|1,2|hello"}


def test_a_client_that_disconnects_before_its_body_gets_no_answer_and_runs_nothing():
    ran = []
    assert serve(lambda environ, start: ran.append(1), scope("POST"), disconnect=True) == []
    assert ran == []


def test_a_streamed_response_is_collected_and_closed():
    closed = []

    class Chunks:
        def __iter__(self):
            yield from (b"a", b"b", b"c")

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"0")  # the legacy write() callable comes first
        return Chunks()

    sent = serve(app, scope())
    assert sent[1]["body"] == b"0abc"
    assert closed == [True]


def test_an_app_error_closes_its_iterable_and_raises_to_the_server():
    closed = []

    class Failing:
        def __iter__(self):
            yield b"partial"
            raise RuntimeError("boom")

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Failing()

    with pytest.raises(RuntimeError, match="boom"):
        serve(app, scope())
    assert closed == [True]


def test_an_app_that_never_starts_the_response_is_an_error():
    with pytest.raises(RuntimeError, match="start_response"):
        serve(lambda environ, start_response: [b"x"], scope())


def test_start_response_again_replaces_the_status_only_with_exc_info():
    def app(environ, start_response):
        start_response("200 OK", [])
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Internal Server Error", [("X-Error", "1")], sys.exc_info())
        return [b"err"]

    start, _body = serve(app, scope())
    assert start["status"] == 500
    assert dict(start["headers"]) == {b"x-error": b"1"}

    def twice(environ, start_response):
        start_response("200 OK", [])
        start_response("204 No Content", [])
        return []

    with pytest.raises(RuntimeError, match="twice"):
        serve(twice, scope())


def test_websocket_scopes_are_refused():
    async def run():
        await WSGIBridge(echo, workers=1)({"type": "websocket"}, None, None)

    with pytest.raises(ValueError, match="HTTP only"):
        asyncio.run(run())


@pytest.mark.django_db
def test_django_answers_through_it_with_its_headers_and_status():
    sent = serve(get_wsgi_application(), scope("GET", "/api/health"))
    assert sent[0]["status"] in (200, 503)
    assert dict(sent[0]["headers"])[b"content-type"].startswith(b"application/json")
    sent = serve(get_wsgi_application(), scope("GET", "/api/feed"))
    assert sent[0]["status"] == 401
    assert b"detail" in sent[1]["body"]
