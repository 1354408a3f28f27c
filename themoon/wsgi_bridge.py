"""Django's WSGI handler under the ASGI server, with one thread hop per request.

a2wsgi (the bridge this replaces) runs the WSGI app in a thread and hands every message back to the
event loop on its own: the response start, each body chunk and the end each cost a cross-thread
round trip (`run_coroutine_threadsafe(...).result()`), and a request body is read the same way, chunk
by chunk. Measured on the hot API (bench/http.py), that bridge cost more than Django's whole
request. Here the loop reads the request body (bounded before: core.http.asgi_body_limit), one
pool thread runs the whole WSGI call and collects the response, and the loop sends it: one hop each
way, as `loop.run_in_executor` does for any blocking call.

Collecting the response is what makes one hop possible: every response of this product is whole
(JSON, pages, WhiteNoise's static files, /metrics); a streaming response would be held in memory
until it ends, so an endless one (server-sent events) must not be served through this bridge.
"""

import asyncio
import contextvars
import io
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import build_environ

Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class WSGIBridge:
    """An ASGI HTTP app running `app` (a WSGI callable) on `workers` reused threads."""

    def __init__(self, app: Callable, workers: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            raise ValueError(f"WSGIBridge serves HTTP only, not {scope['type']!r}")
        body = await _request_body(receive)
        if body is None:
            return  # the client went away before its body arrived: nobody to answer
        environ = build_environ(scope, io.BytesIO(body))
        environ["wsgi.errors"] = sys.stderr
        call = contextvars.copy_context().run
        status, headers, content = await asyncio.get_running_loop().run_in_executor(
            self.executor, call, self._run, environ
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _run(self, environ: dict[str, Any]) -> Response:
        """The whole WSGI call, in a pool thread: (status, headers, body)."""
        started: list[tuple[int, list[tuple[bytes, bytes]]]] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            if started and exc_info is None:
                raise RuntimeError("start_response called twice without exc_info")
            code = int(status.split(" ", 1)[0])
            encoded = [
                (name.strip().lower().encode("latin1"), value.strip().encode("latin1"))
                for name, value in headers
            ]
            started[:] = [(code, encoded)]
            return written.append  # the legacy write() callable

        iterable: Iterable[bytes] = self.app(environ, start_response)
        try:
            written.extend(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        code, headers = started[0]
        return code, headers, b"".join(written)


async def _request_body(receive: Callable) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
