"""Chat caches: a conversation's last messages, who is online, who is typing.

`ConversationMessagesCache` keeps the newest CAP message ids of a conversation in one sorted set,
`chat:v1:{conversation:ID}:messages`, written through by message events and filled from the
database on a miss. Its members:

- a sentinel `~<floor>` at score 0: the set is filled and accounts for every message whose id is
  >= floor (floor 0: the whole conversation), so an empty conversation is cacheable too;
- each message as JSON at score = its id (read by score: oldest first, newest last);
- a tombstone `x:<id>` at score = id for each deleted message in the window, so a late or
  re-delivered older event can never resurrect it.

The window is the newest CAP ids among messages and tombstones: which state a set of events leads
to does not depend on their order or on duplicates (versions only move forward, a tombstone always
wins, an id below the window is ignored). So a delete shrinks the visible list instead of pulling an
older message in (handlers never read the database); new messages grow it back.

Every mutation is a single-key Lua script (one hash slot: Redis Cluster safe). An event never builds
a list from nothing (a missing key stays missing) and voids a fill lease it finds (that fill may
predate the event: no stale set).
"""

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import redis
from django.conf import settings

from core.caching import HashTag, WriteThroughCacheStrategy
from core.caching.lua import RELEASE_LEASE, LuaScript
from core.caching.serializers import CorruptCacheValue, serializer
from core.caching.strategies import LEASE_PREFIX

logger = logging.getLogger("chat.cache")

CAP = 50
SENTINEL_PREFIX = b"~"
TOMBSTONE_PREFIX = b"x:"

# Shared by the scripts below.
_WINDOW = """
local key = KEYS[1]
local function guard()
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then return nil, 0 end
  local sentinel = kind == 'zset' and redis.call('ZRANGEBYSCORE', key, 0, 0)[1]
  if not sentinel or string.sub(sentinel, 1, 1) ~= '~' then
    -- a fill lease (or a value that is not ours): void it, the next reader fills from the database
    redis.call('DEL', key)
    return nil, -1
  end
  return sentinel, tonumber(string.sub(sentinel, 2))
end

local function trim(sentinel, cap)
  -- rank 0 is the sentinel (score 0); every message and tombstone scores its id (>= 1)
  local count = redis.call('ZCARD', key) - 1
  if count > cap then
    redis.call('ZREMRANGEBYRANK', key, 1, count - cap)
    local floor = tonumber(redis.call('ZRANGE', key, 1, 1, 'WITHSCORES')[2])
    redis.call('ZREM', key, sentinel)
    redis.call('ZADD', key, 0, string.format('~%d', floor))
  end
end
"""

# ARGV: id, version, message JSON, ttl ms, cap.
# Returns 1 stored, 0 ignored (missing key, below the window, deleted, not newer), -1 lease voided.
_UPSERT = LuaScript(
    _WINDOW
    + """
local sentinel, floor = guard()
if not sentinel then return floor end
local id, version = tonumber(ARGV[1]), tonumber(ARGV[2])
if id < floor then return 0 end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, id, id)) do
  if string.sub(member, 1, 2) == 'x:' then return 0 end
  local ok, decoded = pcall(cjson.decode, member)
  if ok and type(decoded) == 'table' and tonumber(decoded['version'])
      and tonumber(decoded['version']) >= version then
    return 0
  end
end
redis.call('ZREMRANGEBYSCORE', key, id, id)
redis.call('ZADD', key, id, ARGV[3])
trim(sentinel, tonumber(ARGV[5]))
redis.call('PEXPIRE', key, ARGV[4])
return 1
"""
)

# ARGV: id, ttl ms, cap. Returns 1 tombstoned, 0 ignored, -1 lease voided.
_REMOVE = LuaScript(
    _WINDOW
    + """
local sentinel, floor = guard()
if not sentinel then return floor end
local id = tonumber(ARGV[1])
if id < floor then return 0 end
redis.call('ZREMRANGEBYSCORE', key, id, id)
redis.call('ZADD', key, id, 'x:' .. ARGV[1])
trim(sentinel, tonumber(ARGV[3]))
redis.call('PEXPIRE', key, ARGV[2])
return 1
"""
)

# ARGV: lease, ttl ms, floor, then id, JSON pairs. Fills only while our lease is still the value.
_FILL = LuaScript("""
local key = KEYS[1]
if redis.call('TYPE', key)['ok'] ~= 'string' or redis.call('GET', key) ~= ARGV[1] then
  return 0
end
redis.call('DEL', key)
local members = {0, '~' .. ARGV[3]}
for i = 4, #ARGV do members[#members + 1] = ARGV[i] end
redis.call('ZADD', key, unpack(members))
redis.call('PEXPIRE', key, ARGV[2])
return 1
""")

_LEASED = object()


class Window(NamedTuple):
    """A conversation's newest messages, oldest first; `complete`: there are no older ones."""

    messages: list[dict[str, Any]]
    complete: bool


Loader = Callable[[int, int], list[dict[str, Any]]]


def _load_from_db(conversation_id: int, limit: int) -> list[dict[str, Any]]:
    from chat.queries import latest_messages

    return latest_messages(conversation_id, limit)


class ConversationMessagesCache(WriteThroughCacheStrategy):
    """The newest CAP messages of each conversation, oldest first; see the module docstring."""

    namespace = "chat"
    default_ttl = 30 * 60

    def __init__(self, *args, loader: Loader = _load_from_db, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loader = loader

    def messages_key(self, conversation_id: int) -> str:
        return self.key(HashTag("conversation", conversation_id), "messages")

    # --- reads ---------------------------------------------------------------------------------

    def get_messages(self, conversation_id: int) -> list[dict[str, Any]]:
        """The conversation's newest messages (at most CAP), oldest first."""
        return self.get_window(conversation_id).messages

    def get_window(self, conversation_id: int) -> Window:
        """The cached window, filled under a lease on a miss (one loader for N concurrent misses,
        the others wait briefly, then read the database). Redis unavailable: the database answers.
        Never raises for Redis trouble."""
        key = self.messages_key(conversation_id)
        deadline = None
        while True:
            members = self._call("read", key, lambda: self._read(key), None)
            if members is None:  # Redis unavailable
                self._count(0, 1)
                return self._load(conversation_id)
            if members is not _LEASED and members:
                window = self._decode_members(key, members)
                self._count(window is not None, window is None)
                return window or self._load(conversation_id)
            if not members:  # absent: try to become the one that fills it
                lease = LEASE_PREFIX + uuid.uuid4().hex.encode()
                if self._take_lease(key, lease):
                    self._count(0, 1)
                    return self._load_and_fill(conversation_id, key, lease)
            now = time.monotonic()
            deadline = deadline or now + settings.CACHE_LEASE_WAIT_SECONDS
            if now >= deadline:
                self._count(0, 1)
                return self._load(conversation_id)
            time.sleep(0.005)

    def _load(self, conversation_id: int) -> Window:
        # One more than we keep: whether older messages exist decides the floor.
        loaded = self._loader(conversation_id, CAP + 1)
        return Window(loaded[-CAP:], len(loaded) <= CAP)

    def _read(self, key: str) -> list[bytes] | object:
        try:
            return self.client.zrangebyscore(key, 0, "+inf")
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):  # a fill lease (a string) holds the key
                return _LEASED
            raise

    def _decode_members(self, key: str, members: list[bytes]) -> Window | None:
        if not members[0].startswith(SENTINEL_PREFIX):
            logger.warning("conversation cache without its sentinel read as a miss: key=%s", key)
            return None
        try:
            messages = [serializer.loads(m) for m in members[1:] if not m.startswith(TOMBSTONE_PREFIX)]
            return Window(messages, complete=members[0] == SENTINEL_PREFIX + b"0")
        except CorruptCacheValue as exc:
            logger.warning("corrupt conversation cache read as a miss: key=%s error=%s", key, exc)
            return None

    def _take_lease(self, key: str, lease: bytes) -> bool:
        lease_ms = int(settings.CACHE_LEASE_SECONDS * 1000)
        return bool(
            self._call("lease", key, lambda: self.client.set(key, lease, nx=True, px=lease_ms), False)
        )

    def _load_and_fill(self, conversation_id: int, key: str, lease: bytes) -> Window:
        try:
            window = self._load(conversation_id)
        except BaseException:
            self._call("release", key, lambda: RELEASE_LEASE(self.client, [key], [lease]), 0)
            raise
        floor = 0 if window.complete else window.messages[0]["id"]
        args: list[Any] = [lease, self.ttl_ms(None), floor]
        for message in window.messages:
            args += [message["id"], serializer.dumps(message)]
        self._call("fill", key, lambda: _FILL(self.client, [key], args), 0)
        return window

    # --- writes, queued on the stream consumer's pipeline (errors propagate) -------------------

    def add_message(self, pipe: redis.client.Pipeline, message: dict[str, Any]) -> None:
        """Add or replace `message` if the conversation is cached and this version is newer."""
        args = [message["id"], int(message["version"]), serializer.dumps(message), self.ttl_ms(None)]
        _UPSERT(pipe, [self.messages_key(message["conversation_id"])], [*args, CAP])

    def remove_message(self, pipe: redis.client.Pipeline, conversation_id: int, message_id: int) -> None:
        """Drop the message and remember it as deleted, if the conversation is cached."""
        args = [message_id, self.ttl_ms(None), CAP]
        _REMOVE(pipe, [self.messages_key(conversation_id)], args)

    def invalidate(self, conversation_id: int) -> int:
        key = self.messages_key(conversation_id)
        return self.delete(key)


class OnlineStatusCache(WriteThroughCacheStrategy):
    """Who is online: per user, a sorted set of live connections scored by their expiry (ms).

    A user with two tabs stays online when one closes; a connection that vanished without a goodbye
    lapses after the TTL unless refreshed (ping). Every write refreshes the key's TTL.
    """

    namespace = "chat"
    default_ttl = 60

    def online_key(self, user_id: int) -> str:
        return self.key("online", user_id)

    def mark_online(self, user_id: int, connection: str = "-") -> bool:
        key, now = self.online_key(user_id), _now_ms()

        def run() -> bool:
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(key, {connection: now + self.ttl_ms(None)})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.pexpire(key, self.ttl_ms(None))
            pipe.execute()
            return True

        return self._call("mark_online", key, run, False)

    def mark_offline(self, user_id: int, connection: str = "-") -> bool:
        """Forget this connection. Returns True if the user is still online on another one."""
        key, now = self.online_key(user_id), _now_ms()

        def run() -> bool:
            pipe = self.client.pipeline(transaction=False)
            pipe.zrem(key, connection)
            pipe.zcount(key, f"({now}", "+inf")
            return pipe.execute()[1] > 0

        return self._call("mark_offline", key, run, False)

    def is_online(self, user_id: int) -> bool:
        return user_id in self.online_among([user_id])

    def online_among(self, user_ids: Iterable[int]) -> set[int]:
        """The subset of `user_ids` online now, in one pipelined round trip (keys span slots)."""
        user_ids = list(dict.fromkeys(user_ids))
        if not user_ids:
            return set()
        now = _now_ms()

        def run() -> set[int]:
            pipe = self.client.pipeline(transaction=False)
            for user_id in user_ids:
                pipe.zcount(self.online_key(user_id), f"({now}", "+inf")
            return {uid for uid, n in zip(user_ids, pipe.execute(), strict=True) if n}

        return self._call("online_among", self.online_key(user_ids[0]), run, set())


class TypingIndicatorCache(WriteThroughCacheStrategy):
    """Who is typing in a conversation: a sorted set of user ids scored by expiry (ms), 10 s each."""

    namespace = "chat"
    default_ttl = 10

    def typing_key(self, conversation_id: int) -> str:
        return self.key(HashTag("conversation", conversation_id), "typing")

    def set_typing(self, conversation_id: int, user_id: int) -> bool:
        key, now = self.typing_key(conversation_id), _now_ms()

        def run() -> bool:
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(key, {str(user_id): now + self.ttl_ms(None)})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.pexpire(key, self.ttl_ms(None))
            pipe.execute()
            return True

        return self._call("set_typing", key, run, False)

    def clear_typing(self, conversation_id: int, user_id: int) -> bool:
        key = self.typing_key(conversation_id)
        return bool(self._call("clear_typing", key, lambda: self.client.zrem(key, str(user_id)), 0))

    def typing_in(self, conversation_id: int) -> list[int]:
        """Ids of the users typing now, in no particular order ([] when Redis is unavailable)."""
        key = self.typing_key(conversation_id)
        now = _now_ms()
        raw = self._call("typing_in", key, lambda: self.client.zrangebyscore(key, f"({now}", "+inf"), [])
        return sorted(int(member) for member in raw)


def _now_ms() -> int:
    return int(time.time() * 1000)
