"""The chat caches through their public door: the message window (written through by events, filled
under a lease), presence and typing."""

import itertools
import random
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chat import events
from chat.cache import CAP, ConversationMessagesCache, OnlineStatusCache, TypingIndicatorCache
from chat.handlers import MessageHandler
from chat.services import delete_message, edit_message
from chat.testing import make_chat_user, make_conversation, make_message
from core.caching import LEASE_PREFIX
from core.events import Event

handler = MessageHandler()
_ids = itertools.count(1)


def payload(message_id: int, version: int = 1, conversation_id: int = 7, body: str | None = None) -> dict:
    return {
        "id": message_id,
        "conversation_id": conversation_id,
        "sender_id": 1,
        "sender": "ann",
        "body": body if body is not None else f"m{message_id} v{version}",
        "created_at": "2026-11-25T05:00:00.000001Z",
        "edited_at": None,
        "version": version,
    }


# These windows fill from plain lists (a snapshot at conversation version 0): every event is newer.
_changes = itertools.count(1)


def created(message_id: int, conversation_id: int = 7) -> Event:
    return events.message_created(payload(message_id, 1, conversation_id), next(_changes))


def updated(message_id: int, version: int, conversation_id: int = 7) -> Event:
    return events.message_updated(payload(message_id, version, conversation_id), next(_changes))


def deleted(message_id: int, conversation_id: int = 7) -> Event:
    return events.message_deleted(message_id, conversation_id, next(_changes))


def apply(client: redis.Redis, *events: Event) -> list:
    """What the stream consumer does: queue the handler's effects on one pipeline, run it."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        handler.apply(pipe, event)
    return pipe.execute()


def cache_with(initial: list[dict] | None = None) -> ConversationMessagesCache:
    """A cache whose database is a list: filled once with `initial` (oldest first)."""
    rows = list(initial or [])
    return ConversationMessagesCache(loader=lambda cid, limit: rows[-limit:])


def ids(messages: list[dict]) -> list[int]:
    return [m["id"] for m in messages]


def test_an_event_never_builds_a_list_from_nothing(redis_client):
    cache = cache_with()
    assert apply(redis_client, created(1), deleted(2)) == [0, 0]
    assert redis_client.exists(cache.messages_key(7)) == 0


def test_an_empty_conversation_is_cached_and_then_written_through(redis_client):
    loads = []
    cache = ConversationMessagesCache(loader=lambda cid, limit: loads.append(cid) or [])
    assert cache.get_messages(7) == []
    assert cache.get_messages(7) == []
    assert loads == [7]  # the second read was a hit
    apply(redis_client, created(1), created(2))
    assert ids(cache.get_messages(7)) == [1, 2]
    assert 0 < redis_client.ttl(cache.messages_key(7)) <= 30 * 60


def test_the_window_keeps_the_newest_fifty_in_order(redis_client):
    cache = cache_with()
    cache.get_messages(7)
    apply(redis_client, *(created(i) for i in range(1, 61)))
    assert ids(cache.get_messages(7)) == list(range(11, 61))
    assert redis_client.zcard(cache.messages_key(7)) == CAP + 1  # the messages and the sentinel
    # An event for a message below the window is ignored rather than opening a gap.
    apply(redis_client, updated(5, 2))
    assert ids(cache.get_messages(7)) == list(range(11, 61))


def test_redelivered_and_reordered_events_give_the_same_list(redis_client):
    cache = cache_with()
    events = [created(i) for i in range(1, 71)]
    events += [updated(i, 2) for i in range(30, 70, 3)] + [updated(40, 3)]
    events += [deleted(i) for i in (33, 45, 69)]
    cache.get_messages(7)
    apply(redis_client, *events)
    expected = cache.get_messages(7)
    assert len(expected) == CAP - 3
    assert 45 not in ids(expected)
    assert next(m for m in expected if m["id"] == 40)["version"] == 3

    rng = random.Random(4)
    for _ in range(5):
        redis_client.flushdb()
        cache.get_messages(7)
        shuffled = events + rng.sample(events, 40)  # every event at least once, some twice
        rng.shuffle(shuffled)
        apply(redis_client, *shuffled)
        assert cache.get_messages(7) == expected


def test_a_deleted_message_is_never_resurrected(redis_client):
    cache = cache_with()
    cache.get_messages(7)
    apply(redis_client, created(1), created(2), created(3), updated(2, 2), deleted(2))
    apply(redis_client, created(2), updated(2, 2), updated(2, 5))  # late and re-delivered
    assert ids(cache.get_messages(7)) == [1, 3]


def test_tombstones_stay_bounded(redis_client):
    cache = cache_with()
    cache.get_messages(7)
    apply(redis_client, *(created(i) for i in range(1, 201)))
    apply(redis_client, *(deleted(i) for i in range(151, 201)))
    apply(redis_client, *(deleted(i) for i in range(201, 401)))  # deletes of ids never seen
    assert redis_client.zcard(cache.messages_key(7)) == CAP + 1  # tombstones hold window slots
    # Whatever the window dropped to stay bounded, nothing deleted came back.
    apply(redis_client, *(created(i) for i in range(151, 401)))
    assert not set(ids(cache.get_messages(7))) & set(range(151, 401))


def test_a_fill_voided_by_a_concurrent_event_leaves_nothing_stale(redis_client):
    rows = [payload(1), payload(2)]

    def slow_database(conversation_id, limit):
        snapshot = list(rows)
        # While the loader runs, message 3 commits and its event is applied: it finds the lease.
        rows.append(payload(3))
        assert apply(redis_client, created(3)) == [-1]
        return snapshot[-limit:]

    cache = ConversationMessagesCache(loader=slow_database)
    assert ids(cache.get_messages(7)) == [1, 2]  # the reader gets what it loaded...
    assert redis_client.exists(cache.messages_key(7)) == 0  # ...but it was not stored
    fresh = ConversationMessagesCache(loader=lambda cid, limit: rows[-limit:])
    assert ids(fresh.get_messages(7)) == [1, 2, 3]


def test_concurrent_misses_wait_for_the_lease_holder(redis_client, settings):
    settings.CACHE_LEASE_WAIT_SECONDS = 0.2
    cache = cache_with([payload(1)])
    key = cache.messages_key(7)
    redis_client.set(key, LEASE_PREFIX + b"someone-else", px=5000)
    calls = []
    waiting = ConversationMessagesCache(loader=lambda cid, limit: calls.append(1) or [payload(1)])
    assert ids(waiting.get_messages(7)) == [1]  # gave up waiting, read the database
    assert calls == [1]
    assert redis_client.get(key).startswith(LEASE_PREFIX)  # and did not touch the lease


def test_a_long_conversation_fills_the_newest_fifty_and_knows_older_exist(redis_client):
    cache = cache_with([payload(i) for i in range(1, 61)])
    window = cache.get_window(7)
    assert ids(window.messages) == list(range(11, 61))
    assert not window.complete
    apply(redis_client, created(5))  # older than the window: ignored
    apply(redis_client, created(61))
    assert ids(cache.get_messages(7)) == list(range(12, 62))


def test_redis_down_reads_from_the_database(redis_client):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0))
    cache = ConversationMessagesCache(client=dead, loader=lambda cid, limit: [payload(1), payload(2)])
    assert ids(cache.get_messages(7)) == [1, 2]
    presence, typing = OnlineStatusCache(client=dead), TypingIndicatorCache(client=dead)
    assert presence.mark_online(1) is False
    assert presence.online_among([1, 2]) == set()
    assert typing.set_typing(7, 1) is False
    assert typing.typing_in(7) == []


@pytest.mark.django_db(transaction=True)
def test_saves_edits_and_deletes_reach_the_cache_after_commit(redis_client):
    ann, bob = make_chat_user(), make_chat_user()
    conversation = make_conversation(ann, bob)
    cache = ConversationMessagesCache()
    assert cache.get_messages(conversation.pk) == []
    first = make_message(conversation, ann, "hello")
    second = make_message(conversation, bob, "hi ann")
    edit_message(ann, first.pk, "hello!")
    delete_message(bob, second.pk)
    [cached] = cache.get_messages(conversation.pk)
    assert (cached["id"], cached["body"], cached["version"], cached["sender"]) == (
        first.pk,
        "hello!",
        2,
        ann.username,
    )
    assert cached["edited_at"] is not None


@pytest.mark.django_db(transaction=True)
def test_sixty_messages_leave_the_newest_fifty_in_the_cache(redis_client):
    ann, bob = make_chat_user(), make_chat_user()
    conversation = make_conversation(ann, bob)
    cache = ConversationMessagesCache()
    cache.get_messages(conversation.pk)  # cached (empty), then written through by each commit
    sent = [make_message(conversation, ann if i % 2 else bob, f"n{i}").pk for i in range(60)]
    assert ids(cache.get_messages(conversation.pk)) == sent[-50:]
    redis_client.flushdb()  # and a cold fill agrees
    assert ids(cache.get_messages(conversation.pk)) == sent[-50:]


def test_presence_counts_connections_and_expires(redis_client):
    presence = OnlineStatusCache()
    presence.mark_online(1, "tab-a")
    presence.mark_online(1, "tab-b")
    presence.mark_online(2, "tab-c")
    assert presence.online_among([1, 2, 3]) == {1, 2}
    assert presence.mark_offline(1, "tab-a") is True  # still there on tab-b
    assert presence.is_online(1)
    assert presence.mark_offline(1, "tab-b") is False
    assert not presence.is_online(1)
    assert 0 < redis_client.ttl(presence.online_key(2)) <= 60
    # A connection whose last refresh is older than the TTL no longer counts.
    redis_client.zadd(presence.online_key(3), {"stale": 1})
    redis_client.expire(presence.online_key(3), 60)
    assert not presence.is_online(3)


def test_typing_lists_who_types_and_every_key_expires(redis_client):
    typing = TypingIndicatorCache()
    typing.set_typing(7, 1)
    typing.set_typing(7, 2)
    typing.set_typing(8, 3)
    assert typing.typing_in(7) == [1, 2]
    typing.clear_typing(7, 1)
    assert typing.typing_in(7) == [2]
    assert 0 < redis_client.ttl(typing.typing_key(7)) <= 10
    for key in redis_client.scan_iter():
        assert redis_client.ttl(key) > 0, key


def test_concurrent_misses_run_the_loader_once(redis_client):
    calls = []
    start = threading.Barrier(8)

    def slow_database(conversation_id, limit):
        calls.append(conversation_id)
        time.sleep(0.1)
        return [payload(1), payload(2)]

    cache = ConversationMessagesCache(loader=slow_database)
    results = []

    def reader():
        start.wait()
        results.append(ids(cache.get_messages(7)))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [[1, 2]] * 8
    assert calls == [7]  # one fill; the others waited for it
