"""What bench/http.py serves next to the product: the baselines and the async prototype.

Loaded only by the bench's servers (settings `bench.http_settings`, which mounts this urlconf over
themoon.urls); nothing here is reachable in a deployment. BENCH_HTTP_KEY names the Redis key
holding the hot `GET /api/feed` response bytes that every baseline returns.
"""

import os

import orjson
import redis.asyncio
from django.http import HttpRequest, HttpResponse
from django.urls import path

from themoon.urls import urlpatterns as product_urlpatterns

KEY = os.environ.get("BENCH_HTTP_KEY", "bench:http:feed")


def bare(request: HttpRequest) -> HttpResponse:
    """A bare Django sync view: the cached bytes from Redis, as they are (the floor of the stack)."""
    from core.connections import cache_client

    return HttpResponse(cache_client().get(KEY), content_type="application/json")


_async_client: redis.asyncio.Redis | None = None


def _aclient() -> redis.asyncio.Redis:
    # One client per process, made on first use inside the server's event loop.
    global _async_client
    if _async_client is None:
        from django.conf import settings

        _async_client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    return _async_client


async def bare_async(request: HttpRequest) -> HttpResponse:
    """The same bytes from an async view through redis.asyncio: the floor of a fully async path."""
    return HttpResponse(await _aclient().get(KEY), content_type="application/json")


async def feed_async(request: HttpRequest) -> HttpResponse:
    """Prototype (b): the hot `GET /api/feed` with no sync hop of our own. The bearer token through
    the async ORM, the page (stamp + page MGET) and the counts (one pipeline) through redis.asyncio,
    decoded by the product's own cache classes. Hot path only: a miss answers 503, never a page."""
    from accounts.models import AuthToken
    from accounts.tokens import digest_of
    from feed.selectors import _public, counts, feeds

    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
    found = await AuthToken.objects.select_related("user").filter(digest=digest_of(token)).afirst()
    if found is None or not found.user.is_active:
        return HttpResponse(b'{"detail":"Unauthorized"}', status=401, content_type="application/json")
    from core.caching.keys import HashTag

    builder, user = feeds.key_builder(), HashTag("user", found.user_id)
    page_key = builder.build(user, "page", 1, 20)
    client = _aclient()
    raws = await client.mget(builder.build(user, "stamp"), page_key)
    _stamp, items = feeds.read_page(page_key, raws)
    if items is None:
        return HttpResponse(b'{"detail":"cold"}', status=503, content_type="application/json")
    keys = counts.counts_keys([item["id"] for item in items])
    async with client.pipeline(transaction=False) as pipe:
        for key in keys.values():
            pipe.get(key)
        values = await pipe.execute()
    stats = dict(
        zip(keys, (counts.decode(k, v) for k, v in zip(keys.values(), values, strict=True)), strict=True)
    )
    if any(not isinstance(s, dict) for s in stats.values()):
        return HttpResponse(b'{"detail":"cold"}', status=503, content_type="application/json")
    page = [{**item, "counts": _public(stats[item["id"]])} for item in items]
    body = {"page": 1, "size": 20, "next_page": 2 if len(page) == 20 else None, "items": page}
    return HttpResponse(orjson.dumps(body), content_type="application/json")


urlpatterns = [
    path("bench/bare", bare),
    path("bench/bare-async", bare_async),
    path("bench/feed-async", feed_async),
    *product_urlpatterns,
]
