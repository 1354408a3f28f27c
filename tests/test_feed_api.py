"""The feed HTTP API through Django's test client: each endpoint's happy path and its refusals.

Every test commits (transactional_db), so events are published and their direct cache effects
applied after commit exactly as in production; no worker runs here.
"""

import json

import pytest
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from accounts.auth import issue_token
from feed.models import Comment, Follow, Post, Reaction
from feed.schemas import FeedOut, PostOut
from tests.factories import make_post, make_user

pytestmark = pytest.mark.usefixtures("transactional_db")


def client_for(user) -> Client:
    return Client(headers={"Authorization": f"Bearer {issue_token(user)}"})


def post_json(client: Client, url: str, data=None, method: str = "post"):
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, data=json.dumps(data or {}), content_type="application/json")


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def bob():
    return make_user("bob")


@pytest.fixture
def as_alice(alice):
    return client_for(alice)


@pytest.fixture
def as_bob(bob):
    return client_for(bob)


# --- authentication required ----------------------------------------------------------------

PROTECTED = [
    ("get", "/api/feed"),
    ("post", "/api/posts"),
    ("get", "/api/posts/1"),
    ("patch", "/api/posts/1"),
    ("delete", "/api/posts/1"),
    ("post", "/api/posts/1/reactions"),
    ("delete", "/api/posts/1/reactions"),
    ("get", "/api/posts/1/comments"),
    ("post", "/api/posts/1/comments"),
    ("get", "/api/users/1"),
    ("post", "/api/users/1/follow"),
    ("delete", "/api/users/1/follow"),
    ("post", "/api/auth/logout"),
    ("delete", "/api/auth/token"),
]


@pytest.mark.parametrize(("method", "url"), PROTECTED)
def test_protected_endpoints_answer_401_without_credentials(method, url):
    response = getattr(Client(enforce_csrf_checks=True), method)(url, content_type="application/json")
    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}


def test_a_bad_bearer_token_is_401():
    response = Client(headers={"Authorization": "Bearer nope"}).get("/api/feed")
    assert response.status_code == 401


def test_bearer_client_writes_without_csrf_token(alice):
    client = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {issue_token(alice)}"})
    response = post_json(client, "/api/posts", {"body": "from a script"})
    assert response.status_code == 201, response.content


# --- posts -------------------------------------------------------------------------------------


def test_create_get_update_delete_post(as_alice, alice):
    created = post_json(as_alice, "/api/posts", {"body": "  hello moon  "})
    assert created.status_code == 201
    post = created.json()
    assert post["body"] == "hello moon"
    assert post["author"] == "alice"
    assert post["author_id"] == alice.pk
    assert post["version"] == 1
    assert post["counts"] == {"reactions": dict.fromkeys(Reaction.Kind.values, 0), "comments": 0}

    assert_shape(post, PostOut)
    url = f"/api/posts/{post['id']}"
    assert as_alice.get(url).json()["body"] == "hello moon"
    assert_shape(as_alice.get(url).json(), PostOut)

    edited = post_json(as_alice, url, {"body": "edited"}, method="patch")
    assert edited.status_code == 200
    assert edited.json()["body"] == "edited"
    assert edited.json()["version"] == 2
    assert as_alice.get(url).json()["body"] == "edited"

    assert as_alice.delete(url).status_code == 204
    assert as_alice.get(url).status_code == 404
    assert not Post.objects.filter(pk=post["id"]).exists()


@pytest.mark.parametrize(
    "payload",
    [{}, {"body": ""}, {"body": "   "}, {"body": None}, {"body": 12}, {"body": "a\x00b"}, {"text": "x"}],
)
def test_create_post_rejects_bad_bodies(as_alice, payload):
    response = post_json(as_alice, "/api/posts", payload)
    assert response.status_code == 422
    assert "detail" in response.json()
    assert not Post.objects.exists()


def test_create_post_rejects_a_too_long_body(as_alice):
    response = post_json(as_alice, "/api/posts", {"body": "x" * (settings.POST_BODY_MAX_LENGTH + 1)})
    assert response.status_code == 422


def test_create_post_rejects_malformed_json(as_alice):
    response = as_alice.post("/api/posts", data="{not json", content_type="application/json")
    assert response.status_code in (400, 422)


def test_only_the_author_edits_or_deletes(as_bob, alice):
    post = make_post(alice, "mine")
    url = f"/api/posts/{post.pk}"
    edited = post_json(as_bob, url, {"body": "hijacked"}, method="patch")
    assert edited.status_code == 403
    assert edited.json() == {"detail": "only the author can change this post"}
    assert as_bob.delete(url).status_code == 403
    post.refresh_from_db()
    assert post.body == "mine"
    assert as_bob.get(url).json()["body"] == "mine"


@pytest.mark.parametrize("post_id", ["999999", "0", "-1", "abc", str(2**63), "1.5"])
def test_missing_or_invalid_post_ids(as_alice, post_id):
    for method in ("get", "patch", "delete"):
        response = post_json(as_alice, f"/api/posts/{post_id}", {"body": "x"}, method=method)
        expected = 404 if post_id == "999999" else 422
        assert response.status_code == expected, (method, post_id, response.content)


# --- reactions ---------------------------------------------------------------------------------


def test_reactions_one_per_user_and_kind_changes(as_bob, alice, bob):
    post = make_post(alice)
    url = f"/api/posts/{post.pk}/reactions"
    first = post_json(as_bob, url, {"kind": "like"})
    assert first.status_code == 201
    assert first.json()["counts"]["reactions"]["like"] == 1

    again = post_json(as_bob, url, {"kind": "love"})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["counts"]["reactions"]["like"] == 0
    assert again.json()["counts"]["reactions"]["love"] == 1
    assert Reaction.objects.get(post=post, user=bob).kind == "love"

    assert as_bob.delete(url).status_code == 204
    assert as_bob.get(f"/api/posts/{post.pk}").json()["counts"]["reactions"]["love"] == 0
    assert as_bob.delete(url).status_code == 204  # idempotent


def test_reactions_refuse_bad_kinds_and_missing_posts(as_bob, alice):
    post = make_post(alice)
    assert post_json(as_bob, f"/api/posts/{post.pk}/reactions", {"kind": "meh"}).status_code == 422
    assert post_json(as_bob, f"/api/posts/{post.pk}/reactions", {}).status_code == 422
    missing = post_json(as_bob, "/api/posts/424242/reactions", {"kind": "like"})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "post not found"}
    assert as_bob.delete("/api/posts/424242/reactions").status_code == 404


# --- comments ----------------------------------------------------------------------------------


def test_comments_are_paged_with_a_cursor(as_bob, alice):
    post = make_post(alice)
    url = f"/api/posts/{post.pk}/comments"
    bodies = [f"comment {i}" for i in range(5)]
    for body in bodies:
        assert post_json(as_bob, url, {"body": body}).status_code == 201

    first = as_bob.get(url, {"size": 2}).json()
    assert [c["body"] for c in first["items"]] == bodies[:2]
    second = as_bob.get(url, {"size": 2, "cursor": first["next"]}).json()
    assert [c["body"] for c in second["items"]] == bodies[2:4]
    last = as_bob.get(url, {"size": 2, "cursor": second["next"]}).json()
    assert [c["body"] for c in last["items"]] == bodies[4:]
    assert last["next"] is None
    assert as_bob.get(f"/api/posts/{post.pk}").json()["counts"]["comments"] == 5


def test_comments_refuse_bad_input_and_missing_posts(as_bob, alice):
    post = make_post(alice)
    url = f"/api/posts/{post.pk}/comments"
    assert post_json(as_bob, url, {"body": ""}).status_code == 422
    assert as_bob.get(url, {"cursor": -1}).status_code == 400
    assert as_bob.get(url, {"size": 0}).status_code == 422
    assert as_bob.get("/api/posts/424242/comments").status_code == 404
    assert post_json(as_bob, "/api/posts/424242/comments", {"body": "x"}).status_code == 404
    assert not Comment.objects.exists()


# --- follows and profiles ----------------------------------------------------------------------


def test_follow_unfollow_and_profile_counts(as_bob, alice, bob):
    url = f"/api/users/{alice.pk}/follow"
    first = as_bob.post(url)
    assert first.status_code == 201
    assert first.json() == {"user_id": alice.pk, "following": True, "changed": True}
    again = as_bob.post(url)
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert Follow.objects.filter(follower=bob, followee=alice).count() == 1

    profile = as_bob.get(f"/api/users/{alice.pk}").json()
    assert profile["username"] == "alice"
    assert (profile["followers"], profile["following"], profile["followed_by_me"]) == (1, 0, True)
    mine = as_bob.get(f"/api/users/{bob.pk}").json()
    assert (mine["followers"], mine["following"]) == (0, 1)

    gone = as_bob.delete(url)
    assert gone.status_code == 200
    assert gone.json()["changed"] is True
    assert as_bob.delete(url).json()["changed"] is False
    assert as_bob.get(f"/api/users/{alice.pk}").json()["followers"] == 0


def test_follow_refuses_self_and_missing_users(as_bob, bob):
    self_follow = as_bob.post(f"/api/users/{bob.pk}/follow")
    assert self_follow.status_code == 400
    assert self_follow.json() == {"detail": "you cannot follow yourself"}
    assert as_bob.post("/api/users/424242/follow").status_code == 404
    assert as_bob.delete("/api/users/424242/follow").status_code == 404
    assert as_bob.get("/api/users/424242").status_code == 404
    assert as_bob.get("/api/users/x").status_code == 422


# --- the feed ----------------------------------------------------------------------------------


def test_feed_holds_followed_and_own_posts_newest_first(as_bob, alice, bob):
    carol = make_user("carol")
    Follow.objects.create(follower=bob, followee=alice)
    posts = [make_post(alice, "a1"), make_post(carol, "c1"), make_post(bob, "b1"), make_post(alice, "a2")]
    response = as_bob.get("/api/feed")
    assert response.status_code == 200
    body = response.json()
    assert [item["body"] for item in body["items"]] == ["a2", "b1", "a1"]
    assert [item["id"] for item in body["items"]] == sorted(
        (p.pk for p in posts if p.author_id != carol.pk), reverse=True
    )
    assert body["items"][0]["counts"]["comments"] == 0
    assert (body["next"], body["discover"]) == (None, [])
    assert_shape(body, FeedOut)
    for item in body["items"]:
        assert_shape(item, PostOut)


def assert_shape(payload: dict, schema) -> None:
    """Posts are rendered without a pydantic pass: hold them to their documented schema."""
    schema.model_validate(payload)
    assert set(payload) == set(schema.model_fields)
    if "counts" in payload:
        assert set(payload["counts"]) == {"reactions", "comments"}


def test_feed_pages_and_caps_size(as_alice, alice):
    for i in range(7):
        make_post(alice, f"p{i}")
    first = as_alice.get("/api/feed", {"size": 3}).json()
    assert [i["body"] for i in first["items"]] == ["p6", "p5", "p4"]
    assert first["next"] is not None
    second = as_alice.get("/api/feed", {"size": 3, "cursor": first["next"]}).json()
    assert [i["body"] for i in second["items"]] == ["p3", "p2", "p1"]
    third = as_alice.get("/api/feed", {"size": 3, "cursor": second["next"]}).json()
    assert [i["body"] for i in third["items"]] == ["p0"]
    assert third["next"] is None
    for i in range(settings.API_PAGE_SIZE_MAX):
        make_post(alice, f"more{i}")
    capped = as_alice.get("/api/feed", {"size": 10_000}).json()
    assert len(capped["items"]) == settings.API_PAGE_SIZE_MAX


@pytest.mark.parametrize("query", [{"size": 0}, {"size": -3}, {"size": "x"}, {"cursor": "x" * 600}])
def test_feed_refuses_bad_paging(as_alice, query):
    response = as_alice.get("/api/feed", query)
    assert response.status_code == 422
    assert "detail" in response.json()


@pytest.mark.parametrize("cursor", ["0", "not base64!", "eyJwYWdlIjozfQ", "W10", "eyJiZWZvcmUiOiJ4In0"])
def test_feed_refuses_cursors_it_did_not_hand_out(as_alice, cursor):
    response = as_alice.get("/api/feed", {"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_feed_items_carry_current_counts(as_bob, alice, bob):
    Follow.objects.create(follower=bob, followee=alice)
    post = make_post(alice)
    assert as_bob.get("/api/feed").json()["items"][0]["counts"]["reactions"]["wow"] == 0
    post_json(as_bob, f"/api/posts/{post.pk}/reactions", {"kind": "wow"})
    post_json(as_bob, f"/api/posts/{post.pk}/comments", {"body": "!"})
    counts = as_bob.get("/api/feed").json()["items"][0]["counts"]
    assert counts["reactions"]["wow"] == 1
    assert counts["comments"] == 1


# --- degrade, don't fail -----------------------------------------------------------------------


def test_every_endpoint_works_with_redis_down(monkeypatch, alice, bob):
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05, socket_timeout=0.05)
    monkeypatch.setattr("core.caching.guarded.cache_client", lambda: dead)
    monkeypatch.setattr("core.events.roundtrip.events_client", lambda: dead)
    as_bob = client_for(bob)

    assert as_bob.post(f"/api/users/{alice.pk}/follow").status_code == 201
    post = make_post(alice, "written while redis is down")
    feed = as_bob.get("/api/feed")
    assert feed.status_code == 200
    assert [i["body"] for i in feed.json()["items"]] == ["written while redis is down"]
    created = post_json(as_bob, "/api/posts", {"body": "mine"})
    assert created.status_code == 201
    mine = created.json()["id"]
    assert (
        post_json(as_bob, f"/api/posts/{mine}", {"body": "edited"}, method="patch").json()["body"] == "edited"
    )
    assert post_json(as_bob, f"/api/posts/{post.pk}/reactions", {"kind": "sad"}).status_code == 201
    assert post_json(as_bob, f"/api/posts/{post.pk}/comments", {"body": "c"}).status_code == 201
    detail = as_bob.get(f"/api/posts/{post.pk}").json()
    assert detail["counts"]["reactions"]["sad"] == 1
    assert detail["counts"]["comments"] == 1
    assert as_bob.get(f"/api/posts/{post.pk}/comments").json()["items"][0]["body"] == "c"
    assert as_bob.get(f"/api/users/{alice.pk}").json()["followers"] == 1
    assert as_bob.delete(f"/api/posts/{mine}").status_code == 204
    assert as_bob.get(f"/api/posts/{mine}").status_code == 404
    assert as_bob.delete(f"/api/users/{alice.pk}/follow").status_code == 200
    assert as_bob.get("/api/feed").json()["items"] == []


# --- never a 500 -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries({"body": json_values}),
        st.fixed_dictionaries({"kind": json_values}),
    ),
    post_id=st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), st.text(max_size=12)),
)
def test_fuzzed_writes_never_answer_500(as_alice, body, post_id):
    from urllib.parse import quote

    path_id = quote(post_id, safe="")
    for method, url in [
        ("post", "/api/posts"),
        ("patch", f"/api/posts/{path_id}"),
        ("post", f"/api/posts/{path_id}/reactions"),
        ("post", f"/api/posts/{path_id}/comments"),
        ("post", "/api/auth/token"),
    ]:
        response = post_json(as_alice, url, body, method=method)
        assert response.status_code < 500, (method, url, body, response.content[:300])


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.text(max_size=12), size=st.text(max_size=12), cursor=st.text(max_size=12))
def test_fuzzed_query_strings_never_answer_500(as_alice, page, size, cursor):
    assert as_alice.get("/api/feed", {"cursor": page, "size": size}).status_code < 500
    assert as_alice.get("/api/posts/1/comments", {"cursor": cursor, "size": size}).status_code < 500


def test_feed_query_gives_the_same_page_with_a_subquery_for_many_followees(monkeypatch, alice, bob):
    from feed import queries

    carol = make_user("carol")
    Follow.objects.create(follower=bob, followee=alice)
    Follow.objects.create(follower=bob, followee=carol)
    for i in range(6):
        make_post([alice, bob, carol, make_user()][i % 4], f"p{i}")
    inline = queries.feed_page(bob.pk, 1, 3) + queries.feed_page(bob.pk, 2, 3)
    monkeypatch.setattr(queries, "FEED_INLINE_AUTHORS_MAX", 1)
    assert queries.feed_page(bob.pk, 1, 3) + queries.feed_page(bob.pk, 2, 3) == inline
    assert [item["body"] for item in inline] == ["p5", "p4", "p2", "p1", "p0"]


def _concurrently(calls: list) -> list[int]:
    """Run the calls at once from their own threads (own DB connections); their status codes."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []

    def run(call):
        try:
            barrier.wait(5)
            statuses.append(call().status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses


@pytest.fixture
def postgres_only():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers: SQLite serializes whole transactions")


@pytest.mark.usefixtures("postgres_only")
def test_racing_double_writes_never_answer_500(alice, bob):
    post = make_post(alice)
    clients = [client_for(bob) for _ in range(6)]
    follows = _concurrently([lambda c=c: c.post(f"/api/users/{alice.pk}/follow") for c in clients])
    assert sorted(follows) == [200] * 5 + [201]
    assert Follow.objects.filter(follower=bob, followee=alice).count() == 1

    kinds = ["like", "love", "wow", "sad", "angry", "laugh"]
    reactions = _concurrently(
        [
            lambda c=c, k=k: post_json(c, f"/api/posts/{post.pk}/reactions", {"kind": k})
            for c, k in zip(clients, kinds, strict=True)
        ]
    )
    assert sorted(reactions) == [200] * 5 + [201]
    assert Reaction.objects.filter(post=post, user=bob).count() == 1

    registrations = _concurrently(
        [lambda: post_json(Client(), "/api/auth/register", {"username": "twin", "password": "pass-word-123"})]
        * 6
    )
    assert sorted(registrations) == [201] + [409] * 5


def test_openapi_documents_every_feed_route():
    schema = Client().get("/api/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/feed", "/api/posts/{post_id}", "/api/posts/{post_id}/reactions", "/api/auth/token"):
        assert path in paths
    assert Client().get("/api/docs").status_code == 200


def test_counts_keys_are_the_counts_key_of_each_post():
    from feed.cache import ReactionCountsCache

    cache = ReactionCountsCache()
    assert cache.counts_keys([3, 1, 2]) == {i: cache.counts_key(i) for i in (3, 1, 2)}


def _recording(monkeypatch, redis_client, *caches):
    """A real client on the test's Redis that records what `caches` send from now on."""
    from tests.test_caching_strategies import recorder_for

    recorder = recorder_for(redis_client)
    for cache in caches:
        monkeypatch.setattr(cache.guard, "_client", recorder)
    return recorder


def test_a_hot_feed_page_reads_its_counts_in_the_pages_own_round_trip(
    monkeypatch, redis_client, as_bob, alice, bob
):
    import redis

    from feed import selectors

    Follow.objects.create(follower=bob, followee=alice)
    posts = [make_post(alice) for _ in range(3)]
    as_bob.get("/api/feed")  # filled; this process now knows which posts the page holds
    recorder = _recording(monkeypatch, redis_client, selectors.feeds, selectors.counts)

    items = as_bob.get("/api/feed").json()["items"]

    assert [item["id"] for item in items] == [post.pk for post in reversed(posts)]
    reads = [args for args in recorder.commands if args[0].upper() in ("GET", "MGET")]
    counts_keys = set(selectors.counts.counts_keys([post.pk for post in posts]).values())
    if isinstance(redis_client, redis.Redis):
        assert len(reads) == 1
        assert counts_keys <= set(reads[0][1:])
    else:  # a cluster's MGET cannot span slots: the counts are read on their own
        assert not counts_keys & set(reads[0][1:])


def test_a_hot_post_read_is_one_mget_of_its_detail_counts_and_my_reaction(
    monkeypatch, redis_client, as_bob, alice, bob
):
    from feed import selectors

    post = make_post(alice)
    post_json(as_bob, f"/api/posts/{post.pk}/reactions", {"kind": "love"})
    as_bob.get(f"/api/posts/{post.pk}")  # every entry filled
    recorder = _recording(monkeypatch, redis_client, selectors.details, selectors.counts, selectors.mine)

    body = as_bob.get(f"/api/posts/{post.pk}").json()

    assert (body["id"], body["my_reaction"], body["counts"]["reactions"]["love"]) == (post.pk, "love", 1)
    assert [args[0].upper() for args in recorder.commands] == ["MGET"]  # on a cluster too: one slot
    assert set(recorder.commands[0][1:]) == {
        selectors.details.detail_key(post.pk),
        selectors.counts.counts_key(post.pk),
        selectors.mine.mine_key(bob.pk, post.pk),
    }


def test_a_namespace_bump_retires_the_remembered_counts_keys(monkeypatch, redis_client, as_bob, alice, bob):
    """The counts keys remembered with a page are of the epoch they were built in: after the feed
    namespace moves on, none of them is read (an old epoch's entry may hold old counts)."""
    from core.caching import CacheManager, epochs
    from feed import selectors

    Follow.objects.create(follower=bob, followee=alice)
    post = make_post(alice)
    as_bob.get("/api/feed")
    old_key = selectors.counts.counts_key(post.pk)
    CacheManager().bump_namespace("feed")
    epochs.forget()  # this process learns the new epoch now, not after its trust TTL
    assert selectors.counts.counts_key(post.pk) != old_key
    recorder = _recording(monkeypatch, redis_client, selectors.feeds, selectors.counts)

    [item] = as_bob.get("/api/feed").json()["items"]

    assert item["id"] == post.pk
    sent = {arg for args in recorder.commands for arg in args[1:]}
    assert old_key not in sent


def test_a_feed_page_read_with_its_remembered_counts_is_current(as_bob, alice, bob):
    """The counts read with the page are the ones of the posts it held last time: a reaction since
    shows, a deleted post (its counts tombstoned) is dropped, and a post it did not hold gets its
    counts read on their own."""
    carol = make_user("carol")
    Follow.objects.create(follower=bob, followee=alice)
    kept, deleted = make_post(alice), make_post(alice)
    assert [item["id"] for item in as_bob.get("/api/feed").json()["items"]] == [deleted.pk, kept.pk]
    post_json(client_for(carol), f"/api/posts/{kept.pk}/reactions", {"kind": "wow"})
    assert post_json(client_for(alice), f"/api/posts/{deleted.pk}", method="delete").status_code == 204

    items = {item["id"]: item for item in as_bob.get("/api/feed").json()["items"]}
    assert deleted.pk not in items
    assert items[kept.pk]["counts"]["reactions"]["wow"] == 1

    Follow.objects.create(follower=bob, followee=carol)  # bob's feed is re-stamped: a new page
    newer = make_post(carol)
    items = {item["id"]: item for item in as_bob.get("/api/feed").json()["items"]}
    assert set(items) == {newer.pk, kept.pk}
    assert items[newer.pk]["counts"]["reactions"]["wow"] == 0
    assert items[kept.pk]["counts"]["reactions"]["wow"] == 1


def test_the_database_reads_give_each_post_as_post_detail_does(alice, bob):
    """The fills read value rows (feed.payloads.POST_DETAIL_COLUMNS), not Post instances: the same
    dict as post_detail of the instance, in every read that fills a cache."""
    from feed import queries
    from feed.payloads import post_detail

    Follow.objects.create(follower=bob, followee=alice)
    older, newer = make_post(alice), make_post(alice)
    Reaction.objects.create(post=older, user=bob, kind="sad")
    expected = {
        post.pk: post_detail(Post.objects.select_related("author").get(pk=post.pk)) for post in (older, newer)
    }

    assert queries.post_detail_or_none(older.pk) == expected[older.pk]
    assert queries.post_details_many([older.pk, newer.pk, 10**9]) == expected
    assert queries.posts_by(alice.pk, None, 10) == [expected[newer.pk], expected[older.pk]]
    mine = {older.pk: "sad", newer.pk: None}
    page = [{**expected[p.pk], "my_reaction": mine[p.pk]} for p in (newer, older)]
    assert queries.feed_page(bob.pk, 1, 10) == page
    assert queries.feed_before(bob.pk, newer.pk, 10) == page[1:]


def test_post_stats_are_read_in_one_query_with_their_version(django_assert_num_queries, alice, bob):
    from feed import queries

    carol = make_user("carol")
    busy, quiet = make_post(alice), make_post(alice)
    for user, kind in ((bob, "wow"), (carol, "wow"), (alice, "sad")):
        Reaction.objects.create(post=busy, user=user, kind=kind)
    Comment.objects.create(post=busy, author=bob, body="!")
    busy.refresh_from_db()

    with django_assert_num_queries(1):
        stats = queries.post_stats_many([busy.pk, quiet.pk, 10**9])

    assert set(stats) == {busy.pk, quiet.pk}  # a missing post is left out
    assert stats[busy.pk]["reactions"] == {**dict.fromkeys(Reaction.Kind.values, 0), "wow": 2, "sad": 1}
    assert stats[busy.pk]["comments"] == 1
    assert stats[busy.pk]["version"] == busy.stats_version > 0
    assert stats[quiet.pk]["reactions"] == dict.fromkeys(Reaction.Kind.values, 0)
    assert stats[quiet.pk]["comments"] == 0
    assert queries.post_stats_or_none(busy.pk) == stats[busy.pk]
    assert queries.post_stats_or_none(10**9) is None
