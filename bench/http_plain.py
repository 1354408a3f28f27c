"""bench/http.py's other baseline: a plain ASGI callable (no Django) answering the hot feed's bytes
read through redis.asyncio (REDIS_URL, key BENCH_HTTP_KEY)."""

import os

import redis.asyncio

KEY = os.environ.get("BENCH_HTTP_KEY", "bench:http:feed")
_client: redis.asyncio.Redis | None = None


async def application(scope, receive, send) -> None:
    global _client
    if _client is None:  # made inside the server's event loop
        _client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    body = await _client.get(KEY) or b""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
