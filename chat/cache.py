"""Chat caches: a conversation's last messages, who is in it, who is online, who is typing.

`ConversationMessagesCache` keeps the newest CAP message ids of a conversation in one sorted set,
`chat:v1:{conversation:ID}:messages`, written through by message events and filled from the
database on a miss. Its members:

- a sentinel `~<id floor>:<version floor>` at score 0: the set is filled and accounts for every
  message whose id is >= the id floor (0: the whole conversation, so an empty conversation is
  cacheable too), as of the conversation's version the fill read (`Conversation.version`);
- each message as JSON at score = its id (read by score: oldest first, newest last);
- a tombstone `x:<id>` at score = id for each deleted message in the window, so a late or
  re-delivered older event can never resurrect it.

The invariant (by construction, not by timing): a window never shows a message the database has
deleted, nor an older version of one, once the events that followed its fill are applied.

- The fill reads the messages and the conversation's version in ONE snapshot
  (`chat.queries.window_snapshot`). Every message create, edit and delete bumps that version in its
  own transaction under the conversation's row lock, so versions follow commit order and every
  event carries its change's version: an event at or below the version floor is already in the
  snapshot (or superseded there) and is ignored. That is what keeps a message deleted while its
  conversation was not cached from coming back through its late `message.created` (a reclaim, a
  relay duplicate, `streams --replay-dead`): the refill after the delete has a floor above it. Ids
  are not a floor: they are taken at INSERT, not at commit.
- An event above the floor applies with a compare: a message's version only moves forward, a
  tombstone always wins, an id below the window is ignored. The window is the newest CAP ids among
  messages and tombstones, so the state a set of events leads to does not depend on their order or
  on duplicates, and a delete shrinks the visible list instead of pulling an older message in
  (handlers never read the database); new messages grow it back.
- An event never builds a list from nothing: a missing key stays missing (expired, evicted or
  never filled: the next reader fills from the database, which has every committed change). An
  event voids (deletes) a fill lease it finds (that fill may predate the event: no stale set), a
  window without a version floor, or the window when it carries no conversation version itself.

So no redelivery horizon and no durable per-conversation floor are needed: an event's only power
over an absent window is none, over a present one a compare against the floor it was filled with.
Every mutation is a single-key Lua script (one hash slot: Redis Cluster safe).
"""

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import redis
from django.conf import settings

from core.caching import (
    ABSENT,
    BYPASS,
    LEASED,
    RETRY,
    UNAVAILABLE,
    BaseCacheStrategy,
    CorruptCacheValue,
    GuardedRedis,
    HashTag,
    Lease,
    LuaScript,
    NamespaceKeys,
    fill_under_lease,
    read_through,
    release_lease,
    serializer,
    ttl_ms,
)

logger = logging.getLogger("chat.cache")

CAP = 50
SENTINEL_PREFIX = b"~"
TOMBSTONE_PREFIX = b"x:"

# chat/lua/: the window scripts, each preceded by window.lua (guard() and trim()).
_LUA = Path(__file__).resolve().parent / "lua"
_UPSERT = LuaScript.load("window_upsert", directory=_LUA, prelude=("window",))
_REMOVE = LuaScript.load("window_remove", directory=_LUA, prelude=("window",))
_FILL = LuaScript.load("window_fill", directory=_LUA)
_MEMBERS_FILL = LuaScript.load("members_fill", directory=_LUA)


class Window(NamedTuple):
    """A conversation's newest messages, oldest first; `complete`: there are no older ones;
    `version`: the conversation version they reflect (None: not a snapshot, never stored)."""

    messages: list[dict[str, Any]]
    complete: bool
    version: int | None = 0


# A loader answers (conversation id, limit) with a chat.queries.Snapshot, None (nothing to store),
# or a plain list of messages: a snapshot at version 0, which every event is newer than.
Loader = Callable[[int, int], Any]


def _load_from_db(conversation_id: int, limit: int) -> Any:
    from chat.queries import window_snapshot

    return window_snapshot(conversation_id, limit)


class ConversationMessagesCache(BaseCacheStrategy):
    """The newest CAP messages of each conversation, oldest first; see the module docstring.

    Filled on a miss through the shared read-through loop and lease, written by events with its
    own sorted-set scripts (not the key/value compare-and-set of WriteThroughCacheStrategy)."""

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

        def read() -> Any:
            members = self.guard.call("read", key, lambda: self._read(key), None)
            if members is None:
                return UNAVAILABLE
            if members is LEASED or not members:
                return members or ABSENT
            return self._decode_members(key, members) or BYPASS

        def load() -> Window:
            return self._load(conversation_id)

        return read_through(
            read, lambda: fill_under_lease(self.guard, key, load, self._fill), load, self.record_lookup
        )

    def _load(self, conversation_id: int) -> Window:
        # One more than we keep: whether older messages exist decides the floor.
        loaded = self._loader(conversation_id, CAP + 1)
        if loaded is None:
            return Window([], True, None)
        version, rows = (0, loaded) if isinstance(loaded, list) else loaded
        return Window(rows[-CAP:], len(rows) <= CAP, version)

    def _read(self, key: str) -> list[bytes] | Any:
        try:
            return self.client.zrangebyscore(key, 0, "+inf")
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):  # a fill lease (a string) holds the key
                return LEASED
            raise

    def _decode_members(self, key: str, members: list[bytes]) -> Any:
        if not members[0].startswith(SENTINEL_PREFIX):
            logger.warning("conversation cache without its sentinel read as a miss: key=%s", key)
            return None
        floors = parse_sentinel(members[0])
        if floors is None:  # written before windows had a version floor: unusable, refill
            logger.info("conversation cache without a version floor dropped: key=%s", key)
            self.guard.call("drop", key, lambda: self.client.delete(key), 0)
            return RETRY
        try:
            messages = [serializer.loads(m) for m in members[1:] if not m.startswith(TOMBSTONE_PREFIX)]
            return Window(messages, complete=floors[0] == 0, version=floors[1])
        except CorruptCacheValue as exc:
            logger.warning("corrupt conversation cache read as a miss: key=%s error=%s", key, exc)
            return None

    def _fill(self, lease: Lease, window: Window) -> None:
        if window.version is None:  # not a snapshot (see chat.queries.window_snapshot): store nothing
            self.guard.call("release", lease.key, lambda: release_lease(self.client, lease), False)
            return
        floor = 0 if window.complete else window.messages[0]["id"]
        args: list[Any] = [lease.token, self.ttl_ms(None), f"{floor}:{window.version}"]
        for message in window.messages:
            args += [message["id"], serializer.dumps(message)]
        self.guard.call("fill", lease.key, lambda: _FILL(self.client, [lease.key], args), 0)

    # --- writes, queued on the stream consumer's pipeline (errors propagate) -------------------

    def add_message(
        self, pipe: redis.client.Pipeline, message: dict[str, Any], conversation_version: int | None
    ) -> None:
        """Add or replace `message` if the conversation is cached, the change is newer than the
        window's fill (`conversation_version` above its floor) and this message version is newer.
        `conversation_version` None (unknown) voids the window."""
        args = [message["id"], int(message["version"]), serializer.dumps(message), self.ttl_ms(None)]
        version = "" if conversation_version is None else int(conversation_version)
        _UPSERT(pipe, [self.messages_key(message["conversation_id"])], [*args, CAP, version])

    def remove_message(
        self,
        pipe: redis.client.Pipeline,
        conversation_id: int,
        message_id: int,
        conversation_version: int | None,
    ) -> None:
        """Drop the message and remember it as deleted, if the conversation is cached and the delete
        is newer than the window's fill; `conversation_version` None voids the window."""
        version = "" if conversation_version is None else int(conversation_version)
        args = [message_id, self.ttl_ms(None), CAP, version]
        _REMOVE(pipe, [self.messages_key(conversation_id)], args)

    def queue_invalidate(self, pipe: redis.client.Pipeline, conversation_id: int) -> None:
        """Delete the window (a sender renamed: the next reader fills from the database)."""
        pipe.delete(self.messages_key(conversation_id))

    def invalidate(self, conversation_id: int) -> int:
        key = self.messages_key(conversation_id)
        return self.delete(key)


# The member of a complete fill (user ids are digits only).
_MEMBERS_FILLED = "~"


def _members_from_db(conversation_id: int) -> list[int]:
    from chat.queries import participant_ids

    return participant_ids(conversation_id)


def _participant_in_db(conversation_id: int, user_id: int) -> bool:
    from chat.queries import is_participant

    return is_participant(conversation_id, user_id)


class ConversationMembersCache(BaseCacheStrategy):
    """Who is in each conversation: a Redis set `chat:v1:{conversation:ID}:members` of user ids,
    with the member `~` marking a complete fill, so that one SMISMEMBER answers "filled?" and
    "member?" together. What the chat path asks instead of a SELECT on every message.

    Only a "yes" is trusted: a user the set does not hold is asked of the database (strangers are
    rare, and a participant added to an existing conversation then still gets in). So the cache
    can only ever be wrong by keeping a removed participant, and that is bounded:

    - removing a participant publishes participant.removed in its transaction (chat/signals.py);
      its handler deletes the set (chat/handlers.py), at commit in the writing process (the
      commit-time round trip, EVENTS_APPLY_ON_COMMIT) and again in the worker;
    - a fill takes a lease in the key first and stores only while the lease is still there, so a
      removal that committed after the fill's read deletes the lease and the fill is dropped;
    - Redis unreachable: the database answers (never a member by default); a writer whose
      commit-time round trip failed reads from the database until it has applied its own events
      (core/events/recovery.py), and the relay + worker apply them for everyone else;
    - every set expires after CHAT_MEMBERS_TTL_SECONDS whatever happens.
    """

    namespace = "chat"

    def __init__(self, *args, loader: Callable[[int], list[int]] = _members_from_db, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loader = loader

    def members_key(self, conversation_id: int) -> str:
        return self.key(HashTag("conversation", conversation_id), "members")

    def is_member(self, conversation_id: int, user_id: int) -> bool:
        """Whether `user_id` is in the conversation: from the set (filled under a lease on a miss),
        a "no" confirmed by the database. Never raises for Redis trouble (the database answers)."""
        key = self.members_key(conversation_id)

        def read() -> Any:
            found = self.guard.call("is_member", key, lambda: self._probe(key, user_id), None)
            return UNAVAILABLE if found is None else found

        def fill() -> Any:
            loaded = fill_under_lease(self.guard, key, lambda: self._loader(conversation_id), self._fill)
            return loaded if loaded is LEASED else user_id in loaded

        def load() -> bool:
            return user_id in self._loader(conversation_id)

        if read_through(read, fill, load, self.record_lookup):
            return True
        return _participant_in_db(conversation_id, user_id)

    def members(self, conversation_id: int) -> list[int]:
        """Every member's id, ascending (the set, or the database on a miss)."""
        key = self.members_key(conversation_id)

        def read() -> Any:
            found = self.guard.call("members", key, lambda: self._all(key), None)
            return UNAVAILABLE if found is None else found

        def load() -> list[int]:
            return self._loader(conversation_id)

        return read_through(
            read, lambda: fill_under_lease(self.guard, key, load, self._fill), load, self.record_lookup
        )

    def _probe(self, key: str, user_id: int) -> Any:
        try:
            filled, member = self.client.smismember(key, [_MEMBERS_FILLED, user_id])
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):  # a fill lease (a string) holds the key
                return LEASED
            raise
        if not filled:
            return self._absent()
        return bool(member)

    def _all(self, key: str) -> Any:
        try:
            raw = self.client.smembers(key)
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                return LEASED
            raise
        if _MEMBERS_FILLED.encode() not in raw:
            return self._absent()
        return sorted(int(member) for member in raw if member != _MEMBERS_FILLED.encode())

    def _absent(self) -> Any:
        # A namespace bump still settling: processes on the previous epoch delete the previous
        # keys, so they could not void a fill of the new one: read the database, store nothing.
        return ABSENT if self.keys.settled() else BYPASS

    def _fill(self, lease: Lease, member_ids: list[int]) -> None:
        if not member_ids:  # nobody (or no such conversation): nothing worth a key
            self.guard.call("release", lease.key, lambda: release_lease(self.client, lease), False)
            return
        args = [lease.token, ttl_ms(settings.CHAT_MEMBERS_TTL_SECONDS), *member_ids]
        self.guard.call("fill", lease.key, lambda: _MEMBERS_FILL(self.client, [lease.key], args), 0)

    # --- writes, queued on the stream consumer's pipeline (errors propagate) -------------------

    def queue_invalidate(self, pipe: redis.client.Pipeline, conversation_id: int) -> None:
        """Delete the set (a participant left): the next check fills it from the database, and a
        fill in flight loses its lease."""
        pipe.delete(self.members_key(conversation_id))

    def invalidate(self, conversation_id: int) -> int:
        return self.delete(self.members_key(conversation_id))


def parse_sentinel(sentinel: bytes) -> tuple[int, int] | None:
    """A window sentinel's (id floor, version floor); None for one without a version floor."""
    ids, _, version = sentinel[len(SENTINEL_PREFIX) :].partition(b":")
    if not (ids.isdigit() and version.isdigit()):
        return None
    return int(ids), int(version)


class _ExpiringSets:
    """What presence and typing share: a guarded client, the chat namespace's keys, one TTL.
    They are plain TTL keys (no reads through the loop, no events), so they compose those parts
    instead of inheriting a strategy."""

    namespace = "chat"
    schema = 1
    default_ttl = 60

    def __init__(self, client: redis.Redis | None = None, breaker_=None) -> None:
        self.guard = GuardedRedis(client, breaker_)
        self.keys = NamespaceKeys(self.namespace, self.schema, self.guard)
        self._ttl_ms = ttl_ms(self.default_ttl)

    @property
    def client(self) -> redis.Redis:
        return self.guard.client

    def key(self, *parts: object) -> str:
        return self.keys.build(*parts)


class OnlineStatusCache(_ExpiringSets):
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
            pipe.zadd(key, {connection: now + self._ttl_ms})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.pexpire(key, self._ttl_ms)
            pipe.execute()
            return True

        return self.guard.call("mark_online", key, run, False)

    def mark_offline(self, user_id: int, connection: str = "-") -> bool:
        """Forget this connection. Returns True if the user is still online on another one."""
        key, now = self.online_key(user_id), _now_ms()

        def run() -> bool:
            pipe = self.client.pipeline(transaction=False)
            pipe.zrem(key, connection)
            pipe.zcount(key, f"({now}", "+inf")
            return pipe.execute()[1] > 0

        return self.guard.call("mark_offline", key, run, False)

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

        return self.guard.call("online_among", self.online_key(user_ids[0]), run, set())


class TypingIndicatorCache(_ExpiringSets):
    """Who is typing in a conversation: a sorted set of user ids scored by expiry (ms), 10 s each."""

    namespace = "chat"
    default_ttl = 10

    def typing_key(self, conversation_id: int) -> str:
        return self.key(HashTag("conversation", conversation_id), "typing")

    def set_typing(self, conversation_id: int, user_id: int) -> bool:
        key, now = self.typing_key(conversation_id), _now_ms()

        def run() -> bool:
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(key, {str(user_id): now + self._ttl_ms})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.pexpire(key, self._ttl_ms)
            pipe.execute()
            return True

        return self.guard.call("set_typing", key, run, False)

    def clear_typing(self, conversation_id: int, user_id: int) -> bool:
        key = self.typing_key(conversation_id)
        return bool(self.guard.call("clear_typing", key, lambda: self.client.zrem(key, str(user_id)), 0))

    def typing_in(self, conversation_id: int) -> list[int]:
        """Ids of the users typing now, in no particular order ([] when Redis is unavailable)."""
        key = self.typing_key(conversation_id)
        now = _now_ms()
        raw = self.guard.call("typing_in", key, lambda: self.client.zrangebyscore(key, f"({now}", "+inf"), [])
        return sorted(int(member) for member in raw)


def _now_ms() -> int:
    return int(time.time() * 1000)
