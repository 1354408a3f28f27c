"""Conversation windows know their floor: a message event the window's fill already reflects (its
conversation version is at or below the window's version floor) is ignored, however late it comes.

Deterministic interleavings on the real database and Redis: the commit-time apply is off, so each
test decides when each event is delivered, exactly as a reclaimed, duplicated or replayed stream
entry would be."""

import random

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test import Client

from accounts.auth import issue_token
from chat import events
from chat.cache import CAP, ConversationMessagesCache
from chat.consistency import ConversationWindowCheck
from chat.handlers import MessageHandler
from chat.models import Conversation, Message
from chat.services import delete_message, edit_message
from chat.testing import make_chat_user, make_conversation, make_message
from core.events import Event, dead_letter_stream, stream_name
from core.events.streams import EVENT_FIELD
from tests.polling import eventually

pytestmark = pytest.mark.django_db(transaction=True)

cache = ConversationMessagesCache()
handler = MessageHandler()


@pytest.fixture(autouse=True)
def _only_we_deliver(settings):
    settings.EVENTS_APPLY_ON_COMMIT = False


@pytest.fixture
def chat():
    ann, bob = make_chat_user(), make_chat_user()
    return ann, bob, make_conversation(ann, bob)


def published(redis_client) -> list[Event]:
    """Every chat event published so far, in stream order."""
    return [Event.decode(fields[EVENT_FIELD]) for _, fields in redis_client.xrange(stream_name("chat"))]


def deliver(redis_client, *batch: Event) -> list:
    pipe = redis_client.pipeline(transaction=False)
    for event in batch:
        handler.apply(pipe, event)
    return pipe.execute()


def window_ids(conversation_id: int) -> list[int]:
    return [m["id"] for m in cache.get_messages(conversation_id)]


def db_ids(conversation_id: int) -> list[int]:
    return list(
        Message.objects.filter(conversation_id=conversation_id).order_by("id").values_list("id", flat=True)
    )


def assert_consistent() -> None:
    result = ConversationWindowCheck().run()
    assert result.checked, result
    assert not result.mismatches, result


def test_every_message_change_bumps_the_conversation_version_and_its_event_carries_it(chat, redis_client):
    ann, _, conversation = chat
    message = make_message(conversation, ann, "one")
    edit_message(ann, message.pk, "one!")
    delete_message(ann, message.pk)
    conversation.refresh_from_db()
    assert conversation.version == 3
    assert [(e.type, events.conversation_version(e)) for e in published(redis_client)] == [
        (events.MESSAGE_CREATED, 1),
        (events.MESSAGE_UPDATED, 2),
        (events.MESSAGE_DELETED, 3),
    ]


def test_a_deleted_newest_message_stays_gone_after_a_refill_and_its_late_created(chat, redis_client):
    ann, bob, conversation = chat
    kept = [make_message(conversation, ann, "a").pk, make_message(conversation, bob, "b").pk]
    newest = make_message(conversation, ann, "c")
    delete_message(ann, newest.pk)  # not cached: no window, so no tombstone anywhere
    assert deliver(redis_client, *published(redis_client)) == [0, 0, 0, 0]  # absent: nothing
    assert window_ids(conversation.pk) == kept  # refill: max id is below the deleted one
    late = [e for e in published(redis_client) if e.type == events.MESSAGE_CREATED]
    assert deliver(redis_client, *late) == [0, 0, 0]  # all at or below the floor
    assert window_ids(conversation.pk) == kept
    assert_consistent()


def test_a_deleted_middle_message_stays_gone_after_a_refill_and_its_late_created(chat, redis_client):
    ann, _, conversation = chat
    first, middle, last = (make_message(conversation, ann, body) for body in "abc")
    delete_message(ann, middle.pk)
    assert window_ids(conversation.pk) == [first.pk, last.pk]
    rng = random.Random(11)
    for _ in range(3):  # re-delivered, duplicated and reordered: the same window
        batch = published(redis_client) * 2
        rng.shuffle(batch)
        deliver(redis_client, *batch)
        assert window_ids(conversation.pk) == [first.pk, last.pk]
    assert_consistent()


def test_a_message_whose_transaction_commits_after_a_later_id_is_not_lost(chat, redis_client):
    ann, bob, conversation = chat
    make_message(conversation, ann, "before")
    slow_id = reserve_message_id()  # the slow transaction took its id first...
    fast = make_message(conversation, bob, "fast")  # ...a later id commits first
    assert fast.pk > slow_id
    filled = window_ids(conversation.pk)  # a fill between the two commits
    assert slow_id not in filled
    assert fast.pk in filled
    with transaction.atomic():
        slow = Message.objects.create(id=slow_id, conversation=conversation, sender=ann, body="slow")
    assert deliver(redis_client, *published(redis_client)) == [0, 0, 1]  # only the slow one is news
    assert window_ids(conversation.pk) == db_ids(conversation.pk)
    assert slow.pk in window_ids(conversation.pk)
    assert_consistent()


def reserve_message_id() -> int:
    """The id an INSERT would take now, taken (what a transaction that has not committed holds)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nextval(pg_get_serial_sequence('chat_message', 'id'))")
            return cursor.fetchone()[0]
    reserved = Message.objects.create(conversation=make_conversation(), sender=make_chat_user(), body="-")
    Message.objects.filter(pk=reserved.pk).delete()  # SQLite's AUTOINCREMENT never reuses it
    return reserved.pk


def test_an_edit_delivered_late_never_rolls_the_window_back(chat, redis_client):
    ann, _, conversation = chat
    message = make_message(conversation, ann, "v1")
    edit_message(ann, message.pk, "v2")
    [_] = cache.get_messages(conversation.pk)  # filled at the first edit
    edit_message(ann, message.pk, "v3")
    created, first_edit, second_edit = published(redis_client)
    assert deliver(redis_client, second_edit) == [1]
    assert deliver(redis_client, first_edit, created, second_edit) == [0, 0, 0]
    [cached] = cache.get_messages(conversation.pk)
    assert (cached["body"], cached["version"]) == ("v3", 3)
    assert_consistent()


def test_an_evicted_window_refilled_then_sent_every_old_event_stays_right(chat, redis_client):
    ann, bob, conversation = chat
    cache.get_messages(conversation.pk)  # cached empty: every change below is written through
    sent = [make_message(conversation, ann if i % 2 else bob, f"n{i}") for i in range(CAP + 10)]
    for message in sent[-5:-2]:
        delete_message(message.sender, message.pk)
    edit_message(sent[-1].sender, sent[-1].pk, "edited")
    deliver(redis_client, *published(redis_client))
    assert window_ids(conversation.pk) == db_ids(conversation.pk)[-(CAP - 3) :]  # tombstones hold slots
    redis_client.delete(cache.messages_key(conversation.pk))  # evicted (or expired)
    assert window_ids(conversation.pk) == db_ids(conversation.pk)[-CAP:]  # the refill's floor is above all
    rng = random.Random(5)
    batch = published(redis_client)
    rng.shuffle(batch)
    assert set(deliver(redis_client, *batch)) == {0}
    assert window_ids(conversation.pk) == db_ids(conversation.pk)[-CAP:]
    assert cache.get_messages(conversation.pk)[-1]["body"] == "edited"
    assert_consistent()


def test_a_replayed_dead_letter_of_a_deleted_message_does_not_bring_it_back(chat, redis_client):
    from workers.consumer import StreamConsumer

    ann, bob, conversation = chat
    keep = make_message(conversation, ann, "keep")
    doomed = make_message(conversation, bob, "doomed")
    entry_id, fields = redis_client.xrange(stream_name("chat"))[-1]  # doomed's message.created
    delete_message(bob, doomed.pk)
    consumer = StreamConsumer(name="floor-test", streams=[stream_name("chat")])
    consumer.ensure_groups()
    consumer.process(consumer.read(pending=False))  # drained: the window was never cached
    assert window_ids(conversation.pk) == [keep.pk]
    redis_client.xadd(  # as the consumer dead-letters an entry whose handler kept failing
        dead_letter_stream(),
        {"stream": stream_name("chat"), "entry_id": entry_id, EVENT_FIELD: fields[EVENT_FIELD], "error": "x"},
    )
    call_command("streams", "--replay-dead")
    replayed = consumer.read(pending=False)
    assert [Event.decode(entry.payload).type for entry in replayed] == [events.MESSAGE_CREATED]
    assert consumer.process(replayed) == 0  # applied (and judged already reflected), nothing to retry
    assert window_ids(conversation.pk) == [keep.pk]
    assert_consistent()


def test_an_event_or_window_without_a_version_voids_the_window(chat, redis_client):
    ann, _, conversation = chat
    message = make_message(conversation, ann, "hi")
    cache.get_messages(conversation.pk)
    legacy = Event(events.MESSAGE_CREATED, 1, {"message": published(redis_client)[0].data["message"]})
    assert deliver(redis_client, legacy) == [-1]
    assert redis_client.exists(cache.messages_key(conversation.pk)) == 0
    key = cache.messages_key(conversation.pk)
    redis_client.zadd(key, {b"~0": 0})  # a window cached before windows had a version floor
    redis_client.expire(key, 60)
    assert window_ids(conversation.pk) == [message.pk]  # dropped unread and refilled
    assert redis_client.zrangebyscore(key, 0, 0)[0] == f"~0:{conversation_version(conversation)}".encode()


def conversation_version(conversation: Conversation) -> int:
    conversation.refresh_from_db()
    return conversation.version


# --- through both doors, with the real worker -----------------------------------------------------


def test_http_and_websocket_history_never_serve_a_deleted_message_after_the_events_drain(
    pipeline_worker, redis_client
):
    import asyncio

    from channels.testing import WebsocketCommunicator

    from themoon.asgi import application

    ann, bob = make_chat_user(), make_chat_user()
    conversation = make_conversation(ann, bob)
    kept = make_message(conversation, ann, "kept")
    newest = make_message(conversation, bob, "newest")
    [created_raw] = [f[EVENT_FIELD] for _, f in redis_client.xrange(stream_name("chat"))][-1:]
    delete_message(bob, newest.pk)
    path = f"/api/conversations/{conversation.pk}/messages"
    http = Client(HTTP_AUTHORIZATION=f"Bearer {issue_token(ann)}")
    assert [m["id"] for m in http.get(path).json()["items"]] == [kept.pk]  # filled after the delete
    redis_client.xadd(stream_name("chat"), {EVENT_FIELD: created_raw})  # a relay duplicate, late

    def drained() -> bool:
        last = redis_client.xrevrange(stream_name("chat"), count=1)[0][0]
        groups = redis_client.xinfo_groups(stream_name("chat"))
        return bool(groups) and all(g["pending"] == 0 and g["last-delivered-id"] == last for g in groups)

    eventually(drained, timeout=15)
    assert redis_client.exists(cache.messages_key(conversation.pk))  # still cached: the event was judged
    assert [m["id"] for m in http.get(path).json()["items"]] == [kept.pk]

    token = issue_token(bob)

    async def history() -> list[int]:
        ws = WebsocketCommunicator(
            application,
            f"/ws/chat/{conversation.pk}/?token={token}",
            headers=[(b"origin", b"http://testserver")],
        )
        connected, _ = await ws.connect(timeout=5)
        assert connected
        frame = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        assert frame["type"] == "history"
        return [m["id"] for m in frame["messages"]]

    try:
        assert asyncio.run(asyncio.wait_for(history(), timeout=20)) == [kept.pk]
    finally:
        connections.close_all()  # the consumer's ORM thread's, so the test database can be dropped
    assert_consistent()
