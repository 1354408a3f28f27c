"""The chat HTTP API (django-ninja, bearer-token auth), through the project's URLs."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.auth import issue_token
from chat.cache import ConversationMessagesCache
from chat.models import Participant
from chat.testing import make_chat_user, make_conversation, make_message

# Transactional: the events that write the cache through are sent when a transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    def __init__(self, user) -> None:
        self.user = user
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)}")

    def get(self, path: str, **params):
        return self.client.get(f"/api{path}", params)

    def post(self, path: str, data=None):
        return self.client.post(
            f"/api{path}", data if data is not None else {}, content_type="application/json"
        )


@pytest.fixture
def people():
    ann, bob, cat, eve = (make_chat_user(n) for n in ("ann", "bob", "cat", "eve"))
    return {"ann": ann, "bob": bob, "cat": cat, "eve": eve}


def test_every_endpoint_needs_credentials(people):
    anonymous = Client()
    assert anonymous.get("/api/conversations").status_code == 401
    assert anonymous.post("/api/conversations", {}, content_type="application/json").status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer nope").get("/api/conversations/1/messages").status_code == 401


def test_create_a_conversation(people):
    api = Api(people["ann"])
    response = api.post("/conversations", {"participant_ids": [people["bob"].pk, people["cat"].pk]})
    assert response.status_code == 201, response.content
    body = response.json()
    assert [p["username"] for p in body["participants"]] == ["ann", "bob", "cat"]
    assert body["last_message"] is None
    assert body["unread"] == 0
    assert Participant.objects.filter(conversation_id=body["id"]).count() == 3


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        ({"participant_ids": [10**9]}, 400, "unknown users"),
        ({"participant_ids": []}, 422, ""),
        ({"participant_ids": ["x"]}, 422, ""),
        ({"participant_ids": [0]}, 422, ""),
        ({"participant_ids": [2**70]}, 422, ""),
        ({}, 422, ""),
        ({"participant_ids": "ann"}, 422, ""),
        ("self", 400, "at least one other"),
    ],
)
def test_creating_a_conversation_with_bad_input_is_refused(people, payload, status, says):
    api = Api(people["ann"])
    if payload == "self":
        payload = {"participant_ids": [people["ann"].pk]}
    response = api.post("/conversations", payload)
    assert response.status_code == status, response.content
    assert "detail" in response.json()
    assert says in str(response.json()["detail"])


def test_my_conversations_with_preview_and_unread_counts(people):
    ann, bob, cat, eve = people["ann"], people["bob"], people["cat"], people["eve"]
    with_bob = make_conversation(ann, bob)
    with_cat = make_conversation(ann, cat)
    make_conversation(bob, eve)  # not ann's
    make_message(with_bob, bob, "one")
    make_message(with_bob, ann, "mine, not unread")
    make_message(with_bob, bob, "two")
    make_message(with_cat, cat, "newest of all")
    listed = Api(ann).get("/conversations").json()
    assert [c["id"] for c in listed] == [with_cat.pk, with_bob.pk]
    assert listed[0]["last_message"]["body"] == "newest of all"
    assert listed[0]["unread"] == 1
    assert listed[1]["last_message"]["body"] == "two"
    assert listed[1]["unread"] == 2


def test_history_first_page_comes_from_the_cache_and_older_pages_from_the_database(people):
    ann, bob = people["ann"], people["bob"]
    conversation = make_conversation(ann, bob)
    sent = [make_message(conversation, ann if i % 3 else bob, f"m{i}").pk for i in range(60)]
    api = Api(ann)
    path = f"/conversations/{conversation.pk}/messages"

    first = api.get(path, size=20).json()  # a miss: fills the cache
    with CaptureQueriesContext(connection) as queries:
        again = api.get(path, size=20).json()
    assert again == first
    assert not [q for q in queries.captured_queries if "chat_message" in q["sql"]]  # served by Redis

    pages, cursor = [first], first["next"]
    while cursor is not None:
        page = api.get(path, size=20, cursor=cursor).json()
        pages.append(page)
        cursor = page["next"]
    assert [m["id"] for p in reversed(pages) for m in p["items"]] == sent
    assert [len(p["items"]) for p in pages] == [20, 20, 20]


def test_history_rejects_bad_paging_input(people):
    conversation = make_conversation(people["ann"], people["bob"])
    api = Api(people["ann"])
    path = f"/conversations/{conversation.pk}/messages"
    assert api.get(path, size=0).status_code == 422
    assert api.get(path, size="ten").status_code == 422
    for cursor in ("0", "-4", "eyJiZWZvcmUiOjB9x", "eyJhZnRlciI6MX0"):  # not ours, or another route's
        response = api.get(path, cursor=cursor)
        assert response.status_code == 400
        assert "cursor" in response.json()["detail"]


def test_history_caps_the_page_size(people, settings):
    ann, bob = people["ann"], people["bob"]
    conversation = make_conversation(ann, bob)
    for i in range(settings.API_PAGE_SIZE_MAX + 5):
        make_message(conversation, ann, f"m{i}")
    page = Api(ann).get(f"/conversations/{conversation.pk}/messages", size=500).json()
    assert len(page["items"]) == settings.API_PAGE_SIZE_MAX
    assert page["next"] is not None


def test_sent_messages_are_read_back_at_once(people):
    ann, bob = people["ann"], people["bob"]
    conversation = make_conversation(ann, bob)
    api = Api(ann)
    path = f"/conversations/{conversation.pk}/messages"
    assert api.get(path).json() == {"items": [], "next": None}  # the cache is filled (empty)
    response = api.post(path, {"body": "hello bob"})
    assert response.status_code == 201, response.content
    sent = response.json()
    assert (sent["body"], sent["sender"], sent["version"]) == ("hello bob", "ann", 1)
    assert Api(bob).get(path).json()["items"] == [sent]  # written through on commit
    assert ConversationMessagesCache().get_messages(conversation.pk) == [sent]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"body": ""}, 400),
        ({"body": "  \n "}, 400),
        ({"body": "x" * 4001}, 400),
        ({}, 422),
        ({"body": 5}, 422),
    ],
)
def test_sending_a_bad_message_is_refused(people, payload, status):
    conversation = make_conversation(people["ann"], people["bob"])
    response = Api(people["ann"]).post(f"/conversations/{conversation.pk}/messages", payload)
    assert response.status_code == status, response.content
    assert response.json()["detail"]


def test_mark_read_moves_the_marker_forward_only(people):
    ann, bob = people["ann"], people["bob"]
    conversation = make_conversation(ann, bob)
    first = make_message(conversation, bob, "one")
    make_message(conversation, bob, "two")
    api = Api(ann)
    assert api.get("/conversations").json()[0]["unread"] == 2
    response = api.post(f"/conversations/{conversation.pk}/read", {"message_id": first.pk})
    assert response.json() == {"last_read_message_id": first.pk}
    assert api.get("/conversations").json()[0]["unread"] == 1
    latest = api.post(f"/conversations/{conversation.pk}/read").json()["last_read_message_id"]
    assert latest > first.pk
    assert api.get("/conversations").json()[0]["unread"] == 0
    # Never backwards.
    assert api.post(f"/conversations/{conversation.pk}/read", {"message_id": first.pk}).json() == {
        "last_read_message_id": latest
    }
    other = make_message(make_conversation(ann, people["cat"]), people["cat"], "elsewhere")
    refused = api.post(f"/conversations/{conversation.pk}/read", {"message_id": other.pk})
    assert refused.status_code == 400
    assert "not in this conversation" in refused.json()["detail"]


def test_a_conversation_i_am_not_in_is_not_found(people):
    ann, bob, eve = people["ann"], people["bob"], people["eve"]
    conversation = make_conversation(ann, bob)
    make_message(conversation, ann, "private")
    api = Api(eve)
    for missing in (conversation.pk, conversation.pk + 1000):
        expected = {"detail": f"conversation {missing} not found"}
        assert api.get(f"/conversations/{missing}/messages").json() == expected
        response = api.post(f"/conversations/{missing}/messages", {"body": "let me in"})
        assert (response.status_code, response.json()) == (404, expected)
        response = api.post(f"/conversations/{missing}/read")
        assert (response.status_code, response.json()) == (404, expected)
    assert api.get(f"/conversations/{conversation.pk}/messages").status_code == 404
    assert api.get("/conversations").json() == []
