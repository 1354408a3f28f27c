"""A renamed user: `user.updated` flows through the pipeline and every cache that showed the old name
lets it go (chat windows, post details, feed pages), with several apps handling one event type."""

import asyncio
import threading

import pytest
import redis
from channels.testing import WebsocketCommunicator
from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts import events as accounts_events
from accounts.auth import issue_token
from chat.cache import ConversationMessagesCache
from chat.testing import make_conversation, make_message
from core.connections import primaries
from core.consistency import run_checks
from core.events import Event, EventHandler, HandlerRegistry, apply, registry, stream_name
from core.events.streams import EVENT_FIELD
from feed import events as feed_events
from feed.cache import PostDetailCache
from feed.models import Follow, Post
from tests.factories import make_post, make_user
from tests.polling import eventually
from themoon.asgi import application

# --- one event type, several apps ------------------------------------------------------------------


class _SetKey(EventHandler):
    """Sets `<app>:<key>`; fails when the event names this app in `fail`."""

    event_types = ("test.renamed",)

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        pipe.set(f"{self.app_label}:{event.data['key']}", 1, ex=60)
        if event.data.get("fail") == self.app_label:
            raise RuntimeError("handler bug")

    def after_batch(self, events) -> None:
        self.seen = [event.data["key"] for event in events]


class ChatLike(_SetKey):
    app_label = "chatlike"


class FeedLike(_SetKey):
    app_label = "feedlike"


class OtherChatLike(_SetKey):
    app_label = "chatlike"


def test_several_apps_handle_one_event_type_and_it_fails_as_a_whole(redis_client):
    handlers = HandlerRegistry()
    chat, feed = handlers.register(ChatLike()), handlers.register(FeedLike())
    assert handlers.handlers_for("test.renamed") == (chat, feed)
    batch = [
        Event("test.renamed", 1, {"key": "a"}),
        Event("test.renamed", 1, {"key": "b", "fail": "feedlike"}),
    ]
    pipe = redis_client.pipeline(transaction=False)
    effects = apply(pipe, batch, handlers)
    effects.collect(pipe.execute(raise_on_error=False))
    assert [error is not None for error in effects.errors] == [False, True]
    written = [key for node in primaries(redis_client) for key in node.scan_iter(match="*like:*")]
    assert sorted(key.decode() for key in written) == ["chatlike:a", "feedlike:a"]
    handlers.handler_for("test.renamed").after_batch(batch[:1])
    assert (chat.seen, feed.seen) == (["a"], ["a"])


def test_one_app_registers_one_handler_per_type(redis_client):
    handlers = HandlerRegistry()
    handlers.register(ChatLike())
    again = handlers.register(ChatLike())  # ready() twice: replaced, not doubled
    assert handlers.handlers_for("test.renamed") == (again,)
    assert handlers.handler_for("test.renamed") is again
    with pytest.raises(ValueError, match="already handled"):
        handlers.register(OtherChatLike())


def test_user_updated_is_handled_by_accounts_chat_and_feed():
    apps = {type(h).__module__.split(".")[0] for h in registry.handlers_for(accounts_events.USER_UPDATED)}
    assert apps == {"accounts", "chat", "feed"}  # accounts drops its cached token -> user resolution


# --- the receiver ----------------------------------------------------------------------------------


def account_events(client) -> list[Event]:
    return [Event.decode(f[EVENT_FIELD]) for _, f in client.xrange(stream_name(accounts_events.DOMAIN))]


@pytest.mark.django_db(transaction=True)
def test_only_a_change_to_a_displayed_field_publishes(redis_client):
    ann = make_user("ann")
    ann.bio = "hello"
    ann.save()
    with CaptureQueriesContext(connection) as login:
        ann.save(update_fields=["last_login"])  # what every login does
    assert not [q for q in login.captured_queries if "FOR UPDATE" in q["sql"]]
    assert account_events(redis_client) == []
    ann.username = "anna"
    ann.save(update_fields=["username"])
    [event] = account_events(redis_client)
    assert (event.type, event.data) == (
        accounts_events.USER_UPDATED,
        {"user_id": ann.pk, "username": "anna", "changed": ["username"]},
    )


def post_events(client, post_id: int) -> list[Event]:
    entries = client.xrange(stream_name(feed_events.DOMAIN))
    return [
        e
        for e in (Event.decode(f[EVENT_FIELD]) for _, f in entries)
        if e.data.get("post", {}).get("id") == post_id
    ]


@pytest.mark.django_db(transaction=True)
def test_an_edit_racing_a_rename_never_carries_the_older_name(redis_client):
    """The rename holds the user's row lock when the edit saves, and the edit's instance still has
    the old name in memory: the edit waits for the rename (its UPDATE reads the name FOR SHARE) and
    its post.updated carries the new name, so it can never overwrite a detail filled after the
    rename with the old one."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks across connections: PostgreSQL (SQLite serializes whole writes)")
    ann = make_user("ann")
    post = make_post(ann, "moon")
    stale = Post.objects.select_related("author").get(pk=post.pk)  # author "ann", in memory
    renaming, edited = threading.Event(), threading.Event()

    def edit() -> None:
        renaming.wait(5)
        stale.body = "moon, edited"
        stale.save(update_fields=["body"])
        edited.set()
        connections.close_all()

    editor = threading.Thread(target=edit)
    editor.start()
    with transaction.atomic():
        ann.username = "anna"
        ann.save(update_fields=["username"])
        renaming.set()
        assert not edited.wait(0.5)  # blocked on the rename's row lock
    editor.join(10)
    [created, updated] = post_events(redis_client, post.pk)
    assert (created.data["post"]["author"], updated.data["post"]["author"]) == ("ann", "anna")
    assert updated.data["post"]["version"] == 2


# --- through the public door, with the real worker -------------------------------------------------


@pytest.fixture
def pipeline_settings(settings):
    settings.EVENTS_BLOCK_MS = 200
    settings.EVENTS_APPLY_ON_COMMIT = False  # only the worker: the test proves the pipeline
    return settings


def test_a_rename_reaches_posts_feeds_and_chat_after_the_pipeline_drains(pipeline_worker, redis_client):
    ann, bob = make_user("ann"), make_user("bob")
    Follow.objects.create(follower=bob, followee=ann)
    post = make_post(ann, "moon")
    conversation = make_conversation(ann, bob)
    make_message(conversation, ann, "hi bob")
    as_bob = Client(HTTP_AUTHORIZATION=f"Bearer {issue_token(bob)}")
    as_ann = Client(HTTP_AUTHORIZATION=f"Bearer {issue_token(ann)}")
    history = f"/api/conversations/{conversation.pk}/messages"

    def names() -> dict[str, list[str]]:
        return {
            "post": [as_bob.get(f"/api/posts/{post.pk}").json()["author"]],
            "bob's feed": [item["author"] for item in as_bob.get("/api/feed").json()["items"]],
            "ann's feed": [item["author"] for item in as_ann.get("/api/feed").json()["items"]],
            "chat": [m["sender"] for m in as_bob.get(history).json()["items"]],
        }

    def everywhere(name: str) -> dict[str, list[str]]:
        return {door: [name] for door in ("post", "bob's feed", "ann's feed", "chat")}

    eventually(lambda: names() == everywhere("ann"), timeout=20)  # and now all of it is cached
    assert redis_client.exists(PostDetailCache().detail_key(post.pk))
    assert redis_client.exists(ConversationMessagesCache().messages_key(conversation.pk))

    ann.username = "anna"
    ann.save()

    eventually(lambda: names() == everywhere("anna"), timeout=20)
    token = issue_token(bob)

    async def websocket_history() -> list[str]:
        ws = WebsocketCommunicator(
            application,
            f"/ws/chat/{conversation.pk}/?token={token}",
            headers=[(b"origin", b"http://testserver")],
        )
        connected, _ = await ws.connect(timeout=5)
        assert connected
        frame = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return [m["sender"] for m in frame["messages"]]

    try:
        assert asyncio.run(asyncio.wait_for(websocket_history(), timeout=20)) == ["anna"]
    finally:
        connections.close_all()
    assert not [r for r in run_checks() if r.mismatches]
