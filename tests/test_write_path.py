"""Writes in one round trip (issue 13 item 3): on PostgreSQL a post or message create writes its row,
its counter bump and its outbox row in ONE statement; the ORM path (SQLite, another receiver
listening, or EVENTS_ONE_STATEMENT_CREATE off) publishes the same events."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

import core.events.publisher as publisher
from chat import events as chat_events
from chat.models import Conversation, Message, Participant
from core.events import Event, stream_name
from core.events.streams import EVENT_FIELD
from core.models import OutboxEvent
from feed import events as feed_events
from feed.models import Post
from tests.factories import make_user

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement create is PostgreSQL's"
)


@pytest.fixture
def settings_on(settings):
    settings.EVENTS_APPLY_ON_COMMIT = False
    settings.EVENTS_ONE_STATEMENT_CREATE = True
    return settings


def stream(client, domain: str) -> list[tuple[bytes, Event]]:
    return [
        (fields[EVENT_FIELD], Event.decode(fields[EVENT_FIELD]))
        for _, fields in client.xrange(stream_name(domain))
    ]


def conversation_of(*users) -> Conversation:
    conversation = Conversation.objects.create()
    Participant.objects.bulk_create(Participant(conversation=conversation, user=user) for user in users)
    return conversation


def keep_in_outbox(monkeypatch) -> None:
    """Redis 'down' for the commit-time send: the events stay in the outbox."""
    monkeypatch.setattr(publisher, "send", lambda items, using=None: 0)


@on_postgresql
def test_post_create_in_autocommit_is_one_statement_with_its_outbox_row(
    transactional_db, settings_on, redis_client, monkeypatch
):
    author = make_user()
    keep_in_outbox(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        post = Post.objects.create(author=author, body="one trip")
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert isinstance(post.pk, int)
    assert Post.objects.get(pk=post.pk).body == "one trip"
    [row] = OutboxEvent.objects.all()
    event = Event.decode(bytes(row.payload))
    assert (event.type, event.version) == (feed_events.POST_CREATED, 1)
    assert event.data["post"]["id"] == post.pk
    assert event.data["post"]["author"] == author.username


@on_postgresql
def test_post_create_sends_the_bytes_its_outbox_row_holds(transactional_db, settings_on, redis_client):
    author = make_user()
    post = Post.objects.create(author=author, body='quotes " and \\ and \u00e9')
    [(raw, event)] = stream(redis_client, feed_events.DOMAIN)
    assert event.data["post"]["id"] == post.pk
    assert event.data["post"]["body"] == post.body
    assert b"\\u0000" not in raw, "no placeholder left"


@on_postgresql
def test_message_create_bumps_the_conversation_and_writes_its_outbox_row_in_one_statement(
    transactional_db, settings_on, redis_client, monkeypatch
):
    alice, bob = make_user(), make_user()
    conversation = conversation_of(alice, bob)
    keep_in_outbox(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        message = Message.objects.create(conversation=conversation, sender=alice, body="hi")
    assert len(queries) == 1, [q["sql"] for q in queries]
    conversation.refresh_from_db()
    assert conversation.version == 1
    [row] = OutboxEvent.objects.all()
    event = Event.decode(bytes(row.payload))
    assert event.type == chat_events.MESSAGE_CREATED
    assert chat_events.conversation_version(event) == 1
    assert event.data["message"]["id"] == message.pk
    assert event.data["message"]["sender"] == alice.username


@on_postgresql
def test_message_stream_copy_equals_its_outbox_row(transactional_db, settings_on, redis_client, monkeypatch):
    alice, bob = make_user(), make_user()
    conversation = conversation_of(alice, bob)
    rows: list[bytes] = []
    real_send = publisher.send

    def spy(items, using="default"):
        rows.extend(bytes(OutboxEvent.objects.get(pk=item.outbox_id).payload) for item in items)
        return real_send(items, using)

    monkeypatch.setattr(publisher, "send", spy)
    for i in range(3):
        Message.objects.create(conversation=conversation, sender=alice, body=f"m{i}")
    sent = stream(redis_client, chat_events.DOMAIN)
    assert [raw for raw, _ in sent] == rows
    assert [chat_events.conversation_version(e) for _, e in sent] == [1, 2, 3]


@on_postgresql
def test_one_statement_create_in_a_rolled_back_transaction_leaves_nothing(
    transactional_db, settings_on, redis_client
):
    author = make_user()
    with pytest.raises(RuntimeError), transaction.atomic():
        Post.objects.create(author=author, body="never")
        assert OutboxEvent.objects.count() == 1, "the outbox row shares the transaction"
        raise RuntimeError("roll back")
    assert not Post.objects.exists()
    assert not OutboxEvent.objects.exists()
    assert redis_client.xlen(stream_name(feed_events.DOMAIN)) == 0


@on_postgresql
def test_failed_one_statement_create_commits_nothing_and_keeps_the_transaction_usable(
    transactional_db, settings_on, redis_client
):
    alice = make_user()
    message = Message(conversation_id=987654, sender=alice, body="nowhere")
    with pytest.raises(IntegrityError):
        message.save()
    assert message.pk is None
    assert message._state.adding
    assert not Message.objects.exists()
    assert not OutboxEvent.objects.exists()
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            Message.objects.create(conversation_id=987654, sender=alice, body="nowhere either")
        Post.objects.create(author=alice, body="the transaction goes on")
    assert Post.objects.count() == 1


@on_postgresql
def test_another_receiver_listening_takes_the_orm_path(transactional_db, settings_on, redis_client):
    seen: list[int] = []

    def listener(*, instance, created, **kwargs):
        seen.append(Post.objects.filter(pk=instance.pk).count())  # needs the row to exist

    post_save.connect(listener, sender=Post, dispatch_uid="test.listener")
    try:
        post = Post.objects.create(author=make_user(), body="orm")
    finally:
        post_save.disconnect(sender=Post, dispatch_uid="test.listener")
    assert seen == [1]
    [(_, event)] = stream(redis_client, feed_events.DOMAIN)
    assert event.data["post"]["id"] == post.pk


@pytest.mark.parametrize("one_statement", [True, False], ids=["one-statement", "orm"])
def test_both_paths_publish_the_same_events(transactional_db, settings_on, redis_client, one_statement):
    settings_on.EVENTS_ONE_STATEMENT_CREATE = one_statement
    alice, bob = make_user(), make_user()
    conversation = conversation_of(alice, bob)
    post = Post.objects.create(author=alice, body="p")
    with transaction.atomic():
        first = Message.objects.create(conversation=conversation, sender=alice, body="a")
        second = Message.objects.create(conversation=conversation, sender=bob, body="b")
    [(_, created)] = stream(redis_client, feed_events.DOMAIN)
    assert created.data["post"] == {**created.data["post"], "id": post.pk, "version": 1, "body": "p"}
    messages = [e for _, e in stream(redis_client, chat_events.DOMAIN)]
    assert [(e.data["message"]["id"], e.data["message"]["sender"]) for e in messages] == [
        (first.pk, alice.username),
        (second.pk, bob.username),
    ]
    assert [chat_events.conversation_version(e) for e in messages] == [1, 2]
    assert OutboxEvent.objects.count() == 3


def _prepared_creates() -> list[str]:
    """The one-statement creates prepared on this connection (PostgreSQL's own view of it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'WITH new_row%%'")
        return [statement for (statement,) in cursor.fetchall()]


@on_postgresql
def test_each_create_shape_is_prepared_once_per_connection_and_reused(
    transactional_db, settings_on, redis_client
):
    alice, bob = make_user(), make_user()
    conversation = conversation_of(alice, bob)
    posts = [Post.objects.create(author=alice, body=f"post {i}") for i in range(3)]
    Message.objects.create(conversation=conversation, sender=alice, body="hi")
    Message.objects.create(conversation=conversation, sender=bob, body="hi back")
    prepared = _prepared_creates()
    assert len(prepared) == 2, prepared  # one per shape: the post's, the message's
    assert sum("feed_post" in statement for statement in prepared) == 1
    # The prepared statement's values are bound, not pasted in: each row is its own.
    assert [Post.objects.get(pk=p.pk).body for p in posts] == ["post 0", "post 1", "post 2"]
    assert list(Message.objects.order_by("pk").values_list("sender__username", flat=True)) == [
        alice.username,
        bob.username,
    ]


@on_postgresql
def test_with_prepared_statements_off_the_create_is_still_one_statement_unprepared(
    transactional_db, settings_on, redis_client
):
    author = make_user()
    connection.ensure_connection()
    raw = connection.connection
    before, raw.prepare_threshold = raw.prepare_threshold, None  # DATABASE_PREPARED_STATEMENTS=false
    try:
        with CaptureQueriesContext(connection) as queries:
            post = Post.objects.create(author=author, body="plain")
        assert _prepared_creates() == []
    finally:
        raw.prepare_threshold = before
    assert len(queries) == 1
    assert Post.objects.get(pk=post.pk).body == "plain"


def _lose_prepared_statements() -> None:
    """What a pooler resetting the server connection does: the server forgets this connection's
    prepared statements, psycopg does not know."""
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")


@on_postgresql
@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "in-a-transaction"])
def test_a_create_whose_prepared_statement_the_server_dropped_is_written_once_unprepared(
    transactional_db, settings_on, redis_client, caplog, in_transaction
):
    author = make_user()
    Post.objects.create(author=author, body="prepared")
    assert len(_prepared_creates()) == 1
    before = connection.connection.prepare_threshold
    _lose_prepared_statements()
    try:
        with caplog.at_level("WARNING", logger="core.one_statement"):
            if in_transaction:
                with transaction.atomic():
                    Post.objects.create(author=author, body="again")
                    Post.objects.create(author=author, body="also")  # the transaction is usable
            else:
                Post.objects.create(author=author, body="again")
                Post.objects.create(author=author, body="also")
        assert "dropped this connection's prepared statements" in caplog.text
        assert _prepared_creates() == []  # this connection prepares no more
    finally:
        connection.connection.prepare_threshold = before
    assert list(Post.objects.order_by("pk").values_list("body", flat=True)) == ["prepared", "again", "also"]
    created = [e.data["post"]["id"] for _, e in stream(redis_client, feed_events.DOMAIN)]
    assert created == [p.pk for p in Post.objects.order_by("pk")]  # one event each, none twice
