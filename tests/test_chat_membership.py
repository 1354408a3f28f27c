"""Membership from the cached member set (chat/cache.py, ConversationMembersCache): a message costs no
membership SELECT, a removed participant stops sending at the removal's commit and stops receiving
at once (or at the socket's next check), and with Redis down the database answers: never a
non-member. Real PostgreSQL, Redis and channel layer; a dead Redis is a closed port."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.auth import issue_token
from chat import queries, selectors, services
from chat.cache import ConversationMembersCache
from chat.consistency import ConversationMembersCheck
from chat.models import Message, Participant
from chat.testing import make_chat_user, make_conversation
from core.caching import RedisBreaker
from tests.test_caching_degradation import settings_client
from tests.test_chat_ws import frame_of, join, message_is_refused_as_removed, run, socket

pytestmark = pytest.mark.django_db(transaction=True)

members = ConversationMembersCache()


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS}


@pytest.fixture
def room():
    ann, bob, eve = make_chat_user("ann"), make_chat_user("bob"), make_chat_user("eve")
    conversation = make_conversation(ann, bob)
    tokens = {u.username: issue_token(u) for u in (ann, bob, eve)}
    return {"conversation": conversation, "ann": ann, "bob": bob, "eve": eve, "tokens": tokens}


def dead_members(port: int) -> ConversationMembersCache:
    """The member set aimed at a closed port, with its own breaker (the shared one stays closed)."""
    return ConversationMembersCache(client=settings_client(port), breaker_=RedisBreaker(backoff_seconds=60))


def test_a_member_is_answered_from_the_set_without_a_query(room, redis_client):
    conversation, ann, bob = room["conversation"], room["ann"], room["bob"]
    assert members.is_member(conversation.pk, ann.pk)  # the miss fills the set
    assert redis_client.smembers(members.members_key(conversation.pk)) == {
        b"~",
        str(ann.pk).encode(),
        str(bob.pk).encode(),
    }
    with CaptureQueriesContext(connection) as queries_run:
        assert members.is_member(conversation.pk, bob.pk)
        assert members.members(conversation.pk) == sorted([ann.pk, bob.pk])
    assert len(queries_run) == 0


def test_sending_a_message_makes_no_membership_query(room):
    conversation, ann = room["conversation"], room["ann"]
    services.send_message(ann, conversation.pk, "warm")
    with CaptureQueriesContext(connection) as queries_run:
        services.send_message(ann, conversation.pk, "hello")
    assert [q["sql"] for q in queries_run if "chat_participant" in q["sql"]] == []
    if connection.vendor == "postgresql":  # the message, its version bump, its outbox row: one statement
        assert len(queries_run) == 1


def test_a_stranger_is_refused_even_by_a_filled_set(room, redis_client):
    conversation, eve = room["conversation"], room["eve"]
    assert members.is_member(conversation.pk, room["ann"].pk)
    assert not members.is_member(conversation.pk, eve.pk)  # a "no" is asked of the database too
    with pytest.raises(services.ConversationNotFound):
        services.send_message(eve, conversation.pk, "let me in")
    # A set that (wrongly) lacks a member does not lock them out: only a "yes" is trusted.
    redis_client.srem(members.members_key(conversation.pk), room["bob"].pk)
    assert members.is_member(conversation.pk, room["bob"].pk)


def test_a_removed_participant_is_refused_from_the_removals_commit(room, redis_client):
    """No worker runs here: the commit-time round trip of participant.removed deletes the set."""
    conversation, ann, bob = room["conversation"], room["ann"], room["bob"]
    assert members.is_member(conversation.pk, bob.pk)
    services.remove_participant(bob, conversation.pk, bob.pk)
    assert not redis_client.exists(members.members_key(conversation.pk))
    assert not members.is_member(conversation.pk, bob.pk)
    with pytest.raises(services.ConversationNotFound):
        services.send_message(bob, conversation.pk, "still here?")
    assert members.is_member(conversation.pk, ann.pk)
    assert members.members(conversation.pk) == [ann.pk]


def test_a_fill_that_read_before_a_removal_is_not_stored(room, redis_client):
    """The fill reads bob as a member, then his removal commits (its delete takes the fill's
    lease), then the fill tries to store what it read: dropped."""
    conversation, bob = room["conversation"], room["bob"]

    def read_then_removal_commits(conversation_id: int) -> list[int]:
        read = queries.participant_ids(conversation_id)
        services.remove_participant(bob, conversation_id, bob.pk)
        return read

    racing = ConversationMembersCache(loader=read_then_removal_commits)
    assert racing.is_member(conversation.pk, bob.pk)  # what its own read said, before the removal
    assert not redis_client.exists(racing.members_key(conversation.pk))
    assert not members.is_member(conversation.pk, bob.pk)


def test_with_redis_down_the_database_answers_and_never_lets_a_non_member_in(room, unused_port):
    conversation, ann, bob, eve = room["conversation"], room["ann"], room["bob"], room["eve"]
    dead = dead_members(unused_port)
    assert dead.is_member(conversation.pk, ann.pk)
    assert not dead.is_member(conversation.pk, eve.pk)
    assert not dead.is_member(conversation.pk + 1000, ann.pk)
    assert dead.members(conversation.pk) == sorted([ann.pk, bob.pk])
    Participant.objects.filter(conversation=conversation, user=bob).delete()
    assert not dead.is_member(conversation.pk, bob.pk)


def remove_quietly(user) -> None:
    """Delete the user's participations (signals and events as usual) from a pool thread."""
    Participant.objects.filter(user=user).delete()
    connection.close()


def test_with_redis_down_a_removed_participants_message_frame_is_refused(room, unused_port, monkeypatch):
    conversation, bob = room["conversation"], room["bob"]

    async def scenario():
        ws = socket(conversation.pk, room["tokens"]["bob"])
        await join(ws)
        monkeypatch.setattr(selectors, "members", dead_members(unused_port))
        await sync_to_async(remove_quietly, thread_sensitive=False)(bob)
        await message_is_refused_as_removed(ws)

    run(scenario())
    assert not Message.objects.exists()


def test_with_redis_down_a_non_member_cannot_join(room, unused_port, monkeypatch):
    monkeypatch.setattr(selectors, "members", dead_members(unused_port))

    async def scenario():
        ws = socket(room["conversation"].pk, room["tokens"]["eve"])
        connected, _ = await ws.connect(timeout=5)
        assert connected
        output = await ws.receive_output(timeout=5)
        assert (output["type"], output["code"]) == ("websocket.close", 4403)
        await ws.disconnect(timeout=10)

    run(scenario())


def test_leaving_closes_the_socket_at_commit_without_a_worker(room):
    """The writer asks for the close once the removal commits (chat/broadcast.py); the worker's
    participant.removed is the durable path, not needed for the common case."""
    conversation, bob = room["conversation"], room["bob"]
    api = Client(headers={"Authorization": f"Bearer {room['tokens']['bob']}"})

    async def scenario():
        ws = socket(conversation.pk, room["tokens"]["bob"])
        await join(ws)
        left = await sync_to_async(api.delete)(f"/api/conversations/{conversation.pk}/participants/{bob.pk}")
        assert left.status_code == 204
        assert (await frame_of(ws, "error"))["error"] == "you are no longer in this conversation"
        output = await ws.receive_output(timeout=5)
        assert (output["type"], output["code"]) == ("websocket.close", 4403)
        await ws.disconnect(timeout=10)

    run(scenario())


def test_a_socket_whose_close_never_came_stops_receiving_at_its_next_check(room, settings):
    """Every invalidation failed (the row deleted without its signal, the set gone as by its TTL,
    no close sent): the removed participant's socket asks again on its first delivery after
    CHAT_MEMBERSHIP_RECHECK_SECONDS, and that delivery is not sent to it."""
    settings.CHAT_MEMBERSHIP_RECHECK_SECONDS = 0.3
    conversation, ann, bob = room["conversation"], room["ann"], room["bob"]

    def removed_behind_everyones_back() -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM chat_participant WHERE user_id = %s", [bob.pk])
        connection.close()  # this pool thread's: the test database is dropped at the end
        members.invalidate(conversation.pk)

    async def scenario():
        a, b = socket(conversation.pk, room["tokens"]["ann"]), socket(conversation.pk, room["tokens"]["bob"])
        await join(b)
        await join(a)
        await sync_to_async(removed_behind_everyones_back, thread_sensitive=False)()
        await asyncio.sleep(0.4)
        await a.send_json_to({"type": "message", "body": "just us now"})
        assert (await frame_of(a, "message"))["message"]["body"] == "just us now"
        frames = []
        while (output := await b.receive_output(timeout=5))["type"] != "websocket.close":
            frames.append(output["text"])
        assert output["code"] == 4403
        assert not [f for f in frames if "just us now" in f]
        await a.disconnect(timeout=10)
        await b.disconnect(timeout=10)

    run(scenario())
    assert list(Message.objects.values_list("sender_id", flat=True)) == [ann.pk]


def test_the_consistency_check_compares_each_filled_set_with_the_database(room, redis_client):
    conversation, bob = room["conversation"], room["bob"]
    assert members.is_member(conversation.pk, bob.pk)
    check = ConversationMembersCheck()
    assert (check.run().checked, check.run().mismatches) == (1, [])
    with connection.cursor() as cursor:  # removed without its event: the set is stale
        cursor.execute("DELETE FROM chat_participant WHERE user_id = %s", [bob.pk])
    [mismatch] = check.run().mismatches
    assert members.members_key(conversation.pk) in mismatch
