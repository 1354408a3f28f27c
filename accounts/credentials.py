"""Token -> user resolution without a database query per request (issue 13).

Two cache-aside entries in Redis, each filled under a lease (a fill that raced an invalidation is
dropped, never stored), and a short copy in each process:

- `accounts:v1:token:<digest>` -> the token's id, owner, expiry and last use;
- `accounts:v1:user:<id>:auth` -> the owner's identity fields (username, is_active, staff flags...).

Invalidation goes through the event pipeline (accounts/handlers.py): `token.revoked` drops the token
entry, `user.deactivated` / `user.password_changed` / `user.updated` the user entry, in the commit's
own round trip in the writing process (and again in the worker). Each process keeps what it resolved
for AUTH_TOKEN_LOCAL_CACHE_SECONDS: that is the bound within which a revoked token, a deactivated
user or a renamed one is seen everywhere. An unknown token is never cached (no negative entries for
guessed tokens). With Redis down, each resolution reads the database.

Expiry is checked on every request against the cached expiry; the last use is written at most once
per AUTH_TOKEN_TOUCH_SECONDS per token (a Redis SET NX decides which process writes it).
"""

import threading
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.conf import settings

from accounts import tokens
from accounts.models import AppUser, AuthToken
from core.caching import CacheAsideStrategy, ttl_ms

# The user fields a request may read from request.auth. Others (password, last_login) are deferred:
# read, they load from the database; save() writes only the loaded fields, never blanks.
USER_FIELDS = ("id", "username", "is_active", "is_staff", "is_superuser", "first_name", "last_name", "email")
USER_FIELDS += ("bio",)


class Credential(NamedTuple):
    """Who a token authenticates: the user, and the token's id (for its socket group, its revoke)."""

    user: AppUser
    token_id: int | None


class _Absent(Exception):
    """No such row: the loader raises it so that nothing is cached (the lease is released)."""


class AuthCache(CacheAsideStrategy):
    namespace = "accounts"
    schema = 1

    def token_key(self, digest: str) -> str:
        return self.key("token", digest)

    def user_key(self, user_id: int) -> str:
        return self.key("user", user_id, "auth")

    def touch_key(self, token_id: int) -> str:
        return self.key("token", token_id, "touched")


auth_cache = AuthCache()


class _Local(NamedTuple):
    token: dict[str, Any]
    user: dict[str, Any]
    until: float  # monotonic


class _LocalCopies:
    """What this process resolved lately, per digest; bounded, thread-safe enough (dict ops are atomic)."""

    def __init__(self) -> None:
        self._by_digest: dict[str, _Local] = {}
        self._next_touch: dict[int, float] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> _Local | None:
        if settings.AUTH_TOKEN_LOCAL_CACHE_SECONDS <= 0:
            return None
        found = self._by_digest.get(digest)
        return found if found is not None and found.until > time.monotonic() else None

    def put(self, digest: str, token: dict[str, Any], user: dict[str, Any]) -> None:
        seconds = settings.AUTH_TOKEN_LOCAL_CACHE_SECONDS
        if seconds <= 0:
            return
        with self._lock:
            if len(self._by_digest) >= settings.AUTH_TOKEN_LOCAL_CACHE_SIZE:
                self._by_digest.clear()
                self._next_touch.clear()
            self._by_digest[digest] = _Local(token, user, time.monotonic() + seconds)

    def forget_token(self, digest: str) -> None:
        self._by_digest.pop(digest, None)

    def forget_user(self, user_id: int) -> None:
        with self._lock:
            for digest in [d for d, local in self._by_digest.items() if local.user["id"] == user_id]:
                del self._by_digest[digest]

    def touch_due(self, token: dict[str, Any], now: float) -> bool:
        """True at most once per AUTH_TOKEN_TOUCH_SECONDS per token in this process."""
        every = settings.AUTH_TOKEN_TOUCH_SECONDS
        last_used = token["last_used_at"]
        due = self._next_touch.get(token["id"], (last_used + every) if last_used else 0.0)
        if now < due:
            return False
        self._next_touch[token["id"]] = now + every
        return True

    def clear(self) -> None:
        with self._lock:
            self._by_digest.clear()
            self._next_touch.clear()


local_copies = _LocalCopies()


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _load_token(digest: str) -> dict[str, Any]:
    row = (
        AuthToken.objects.filter(digest=digest).values("id", "user_id", "expires_at", "last_used_at").first()
    )
    if row is None:
        raise _Absent
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "expires_at": _epoch(row["expires_at"]),
        "last_used_at": _epoch(row["last_used_at"]),
    }


def _load_user(user_id: int) -> dict[str, Any]:
    row = AppUser.objects.filter(pk=user_id).values(*USER_FIELDS).first()
    if row is None:
        raise _Absent
    return row


def _cached(key: str, loader) -> dict[str, Any] | None:
    try:
        return auth_cache.get_or_load(key, loader, settings.AUTH_TOKEN_CACHE_SECONDS)
    except _Absent:
        return None


def _user(fields: dict[str, Any]) -> AppUser:
    """An AppUser as if loaded from the database with only USER_FIELDS (the rest deferred)."""
    return AppUser.from_db("default", _LOADED, [fields[name] for name in _LOADED])


# from_db wants the loaded values in the model's field order.
_LOADED = [f.attname for f in AppUser._meta.concrete_fields if f.attname in USER_FIELDS]


def resolve_digest(digest: str, fresh: bool = False) -> Credential | None:
    """The credential of the token whose digest this is, or None (unknown, expired, inactive owner).
    `fresh` skips this process's copy (a socket checking again after joining its groups)."""
    local = None if fresh else local_copies.get(digest)
    if local is not None:
        token, user = local.token, local.user
    else:
        token = _cached(auth_cache.token_key(digest), lambda: _load_token(digest))
        if token is None:
            return None
        user_id = token["user_id"]
        user = _cached(auth_cache.user_key(user_id), lambda: _load_user(user_id))
        if user is None:
            return None
        local_copies.put(digest, token, user)
    now = time.time()
    if token["expires_at"] <= now or not user["is_active"]:
        return None
    if local_copies.touch_due(token, now):
        _touch(token["id"], now)
    return Credential(_user(user), token["id"])


def resolve(token: str | None, fresh: bool = False) -> Credential | None:
    if not token or len(token) > tokens.MAX_TOKEN_LENGTH:
        return None
    return resolve_digest(tokens.digest_of(token), fresh)


def active_user(user_id: int) -> AppUser | None:
    """The user if active (a session's WebSocket ticket), through the same cached entry."""
    user = _cached(auth_cache.user_key(user_id), lambda: _load_user(user_id))
    return _user(user) if user is not None and user["is_active"] else None


def _touch(token_id: int, now: float) -> None:
    key, ms = auth_cache.touch_key(token_id), ttl_ms(settings.AUTH_TOKEN_TOUCH_SECONDS)
    # Redis down: each process writes at most once a minute on its own (the UPDATE is conditional).
    won = auth_cache.guard.call("touch", key, lambda: auth_cache.client.set(key, 1, nx=True, px=ms), True)
    if won:
        tokens.record_use(token_id, datetime.fromtimestamp(now, UTC))


def forget(*, digest: str | None = None, user_id: int | None = None) -> None:
    """Drop this process's copies (the commit-time effect of an event, in the writing process)."""
    if digest is not None:
        local_copies.forget_token(digest)
    if user_id is not None:
        local_copies.forget_user(user_id)


__all__ = ["Credential", "active_user", "auth_cache", "forget", "resolve", "resolve_digest"]
