"""Throttles: django-ninja's sliding-window `SimpleRateThrottle`, counted in Redis (Django's cache
is django-redis), rates read from settings on every check (THROTTLE_*_RATE), open when Redis is down.

- `LoginAccountThrottle` / `LoginAddressThrottle`: attempts at /api/auth/login and /api/auth/token
  per username and per client address. Every attempt counts, right or wrong: once an account is
  over its rate, the right password is refused too (429) until the window has passed.
- `TokenMintThrottle`: tokens minted per account; `TicketThrottle`: WebSocket tickets per user.
- `WriteThrottle`: every unsafe HTTP method per authenticated user (the API-wide throttle), and
  `allow_frame` the chat frames a user sends over WebSockets (THROTTLE_WS_MESSAGE_RATE): the same
  sliding window, kept as a sorted set of send times by one Lua script (one round trip per frame,
  where ninja's throttle reads and rewrites the whole history through Django's cache).

A refused request gets 429 with `Retry-After` (seconds, from ninja). Redis unreachable: the throttle
answers "allow" (and the circuit breaker spares the next requests the timeout): being unthrottled
for an outage is the price of never refusing a legitimate user because a cache is down.
The client address is REMOTE_ADDR (uvicorn puts the proxy's X-Forwarded-For there only for
--forwarded-allow-ips), never a header a client can forge.
"""

import hashlib
import logging
import math
import os
import threading
import time
from pathlib import Path

import orjson
from django.conf import settings
from django.http import HttpRequest
from ninja.throttling import SimpleRateThrottle

from core.caching import CacheKeyBuilder, GuardedRedis, LuaScript, breaker

logger = logging.getLogger("accounts.throttles")

_keys = CacheKeyBuilder("throttle")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _per_call(name: str) -> property:
    """ninja keeps a check's state on the (shared) throttle; keep it per thread instead."""
    return property(
        lambda self: getattr(self._call, name), lambda self, value: setattr(self._call, name, value)
    )


class RedisRateThrottle(SimpleRateThrottle):
    """A ninja throttle with its rate in the settings (`rate_setting`), keyed per `ident`."""

    rate_setting: str = ""

    key = _per_call("key")
    history = _per_call("history")
    now = _per_call("now")
    num_requests = _per_call("num_requests")
    duration = _per_call("duration")

    def __init__(self) -> None:
        self._call = threading.local()
        self.scope = self.rate_setting.removeprefix("THROTTLE_").removesuffix("_RATE").lower()
        super().__init__(rate=getattr(settings, self.rate_setting))

    def ident(self, request: HttpRequest) -> str | None:
        """Who is counted (None: this request is not throttled here)."""
        raise NotImplementedError

    def get_cache_key(self, request: HttpRequest) -> str | None:
        ident = self.ident(request)
        return None if ident is None else self.cache_key(ident)

    def cache_key(self, ident: str) -> str:
        return _keys.build(self.scope, hashlib.sha256(ident.encode()).hexdigest()[:32])

    def allow_request(self, request: HttpRequest) -> bool:
        self.num_requests, self.duration = self.parse_rate(getattr(settings, self.rate_setting))
        if not breaker.available():
            return True
        try:
            allowed = super().allow_request(request)
        except Exception as exc:  # django-redis' ConnectionInterrupted, a redis error: degrade open
            breaker.failure(exc, "throttle", self.scope)
            return True
        return allowed

    def client_address(self, request: HttpRequest) -> str:
        return request.META.get("REMOTE_ADDR") or "unknown"


def _login_username(request: HttpRequest) -> str | None:
    try:
        username = orjson.loads(request.body).get("username")
    except (orjson.JSONDecodeError, AttributeError, ValueError):
        return None
    return username.strip().casefold() if isinstance(username, str) and username.strip() else None


class LoginAccountThrottle(RedisRateThrottle):
    rate_setting = "THROTTLE_LOGIN_ACCOUNT_RATE"

    def ident(self, request: HttpRequest) -> str | None:
        return _login_username(request)


class LoginAddressThrottle(RedisRateThrottle):
    rate_setting = "THROTTLE_LOGIN_ADDRESS_RATE"

    def ident(self, request: HttpRequest) -> str | None:
        return self.client_address(request)


class TokenMintThrottle(RedisRateThrottle):
    rate_setting = "THROTTLE_TOKEN_MINT_RATE"

    def ident(self, request: HttpRequest) -> str | None:
        return _login_username(request)


class TicketThrottle(RedisRateThrottle):
    rate_setting = "THROTTLE_WS_TICKET_RATE"

    def ident(self, request: HttpRequest) -> str | None:
        auth = getattr(request, "auth", None)
        return f"user-{auth.pk}" if auth is not None else None


class WriteThrottle(RedisRateThrottle):
    rate_setting = "THROTTLE_WRITE_RATE"

    def ident(self, request: HttpRequest) -> str | None:
        if request.method in SAFE_METHODS:
            return None
        auth = getattr(request, "auth", None)
        return f"user-{auth.pk}" if auth is not None and getattr(auth, "pk", None) else None


class FrameThrottle(RedisRateThrottle):
    """The chat frames' rate and key; `allow_frame` counts them (not an HTTP throttle)."""

    rate_setting = "THROTTLE_WS_MESSAGE_RATE"

    def ident(self, request: HttpRequest) -> str | None:
        return None


frames = FrameThrottle()
_FRAME_WINDOW = LuaScript.load("frame_window", directory=Path(__file__).resolve().parent / "lua")
_frame_guard = GuardedRedis()  # the cache's client and breaker, as the other throttles


def allow_frame(user_id: int) -> tuple[bool, int]:
    """Whether the user may send one more chat frame now; if not, the seconds to wait (>= 1).
    One round trip; Redis unreachable: allowed, like every throttle here."""
    limit, seconds = frames.parse_rate(settings.THROTTLE_WS_MESSAGE_RATE)
    key = frames.cache_key(f"user-{user_id}")
    now = int(time.time() * 1000)
    args = [now, seconds * 1000, limit, f"{now}:{os.urandom(6).hex()}"]
    wait_ms = _frame_guard.call("throttle", key, lambda: _FRAME_WINDOW(_frame_guard.client, [key], args), 0)
    if not wait_ms:
        return True, 0
    return False, max(1, math.ceil(int(wait_ms) / 1000))


login_throttles = [LoginAddressThrottle(), LoginAccountThrottle()]
token_throttles = [*login_throttles, TokenMintThrottle()]
ticket_throttles = [TicketThrottle()]
write_throttles = [WriteThrottle()]
