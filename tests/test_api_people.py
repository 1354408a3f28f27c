"""Finding people and one's own things (issue 14 items 5, 6, 9): /api/me, user lookup and prefix
search, followers and followees, a user's posts, `my_reaction`, and the discover feed. Through the
HTTP API with real PostgreSQL/SQLite and Redis; every page follows the one cursor convention."""

import json

import pytest
from django.db import connection
from django.test import Client

from accounts.auth import issue_token
from accounts.models import AppUser
from core.consistency import run_checks
from feed.cache import MyReactionCache
from feed.models import Follow, Reaction
from feed.popularity import REACTION, tracker
from tests.factories import make_post, make_user

pytestmark = pytest.mark.usefixtures("transactional_db")


def client_for(user) -> Client:
    return Client(headers={"Authorization": f"Bearer {issue_token(user)}"})


def send(client: Client, method: str, url: str, data) -> object:
    return getattr(client, method)(url, data=json.dumps(data), content_type="application/json")


def all_pages(client: Client, url: str, **params) -> tuple[list[list], list[dict]]:
    """Every page of a paginated route, following `next`; (items per page, raw pages)."""
    pages, cursor = [], None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = client.get(url, query)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) >= {"items", "next"}
        pages.append(body)
        cursor = body["next"]
        if cursor is None:
            return [page["items"] for page in pages], pages
        assert len(pages) < 100


@pytest.fixture
def alice():
    return make_user("alice")


@pytest.fixture
def as_alice(alice):
    return client_for(alice)


# --- me, lookup, search ----------------------------------------------------------------------


def test_me_answers_the_signed_in_user(as_alice, alice):
    body = as_alice.get("/api/me").json()
    assert (body["id"], body["username"], body["bio"]) == (alice.pk, "alice", "")
    assert "password" not in body
    assert Client().get("/api/me").status_code == 401


def test_user_lookup_by_exact_username(as_alice):
    bob = make_user("Bob")
    found = as_alice.get("/api/usernames/Bob")
    assert found.status_code == 200
    assert (found.json()["id"], found.json()["username"]) == (bob.pk, "Bob")
    assert as_alice.get("/api/usernames/bob").status_code == 404  # exact: case matters
    assert as_alice.get("/api/usernames/nobody").json() == {"detail": "user not found"}
    AppUser.objects.filter(pk=bob.pk).update(is_active=False)
    assert as_alice.get("/api/usernames/Bob").status_code == 404


def test_user_search_by_prefix_is_case_insensitive_and_paged(as_alice):
    names = ["ann", "Anna", "annie", "anne_b", "ANT", "bob", "xann"]
    for name in names:
        make_user(name)
    pages, _ = all_pages(as_alice, "/api/users", prefix="aN", size=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    found = [user["username"] for page in pages for user in page]
    assert found == sorted(["ann", "Anna", "annie", "anne_b", "ANT"], key=str.lower)
    assert set(pages[0][0]) == {"id", "username", "bio", "date_joined"}


def test_user_search_treats_like_wildcards_as_text_and_refuses_bad_input(as_alice):
    make_user("a_b")
    make_user("axb")
    assert [u["username"] for u in as_alice.get("/api/users", {"prefix": "a_"}).json()["items"]] == ["a_b"]
    assert as_alice.get("/api/users", {"prefix": "%"}).json()["items"] == []
    assert as_alice.get("/api/users").status_code == 422
    assert as_alice.get("/api/users", {"prefix": ""}).status_code == 422
    assert as_alice.get("/api/users", {"prefix": "a\x00"}).status_code == 422
    assert as_alice.get("/api/users", {"prefix": "a", "cursor": "bm9wZQ"}).status_code == 400


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the index is PostgreSQL's")
def test_user_search_by_prefix_uses_the_pattern_index():
    from accounts import queries

    for i in range(300):
        make_user(f"user-{i:04d}")
    captured = []

    def explain(execute, sql, params, many, context):
        if "LIKE" in sql and not captured:
            captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain):
        queries.search_by_prefix("USER-01", None, 10)
    sql, params = captured[0]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE feed_appuser")
        cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")
    assert "feed_appuser_username_lower_prefix_idx" in plan, plan


# --- followers, following, a user's posts ------------------------------------------------------


def test_followers_and_following_are_paged_newest_first(as_alice, alice):
    fans = [make_user(f"fan{i}") for i in range(5)]
    for fan in fans:
        Follow.objects.create(follower=fan, followee=alice)
    idols = [make_user(f"idol{i}") for i in range(3)]
    for idol in idols:
        Follow.objects.create(follower=alice, followee=idol)

    pages, _ = all_pages(as_alice, f"/api/users/{alice.pk}/followers", size=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [u["username"] for page in pages for u in page] == [f"fan{i}" for i in reversed(range(5))]
    pages, _ = all_pages(as_alice, f"/api/users/{alice.pk}/following")
    assert [u["id"] for u in pages[0]] == [idol.pk for idol in reversed(idols)]
    assert as_alice.get("/api/users/424242/followers").status_code == 404
    assert as_alice.get("/api/users/424242/following").status_code == 404


def test_a_users_posts_are_paged_by_keyset_with_counts(as_alice, alice):
    bob = make_user("bob")
    posts = [make_post(bob, f"b{i}") for i in range(5)]
    make_post(alice, "not bob's")
    Reaction.objects.create(user=alice, post=posts[0], kind="wow")
    pages, _ = all_pages(as_alice, f"/api/users/{bob.pk}/posts", size=2)
    assert [[p["body"] for p in page] for page in pages] == [["b4", "b3"], ["b2", "b1"], ["b0"]]
    last = pages[-1][0]
    assert (last["counts"]["reactions"]["wow"], last["my_reaction"]) == (1, "wow")
    assert as_alice.get("/api/users/424242/posts").status_code == 404


# --- my_reaction: per caller, never in the shared entries ---------------------------------------


def test_my_reaction_is_the_callers_own_in_detail_and_feed(as_alice, alice):
    bob = make_user("bob")
    as_bob = client_for(bob)
    Follow.objects.create(follower=bob, followee=alice)
    post = make_post(alice, "react to me")
    url = f"/api/posts/{post.pk}"
    assert as_alice.get(url).json()["my_reaction"] is None
    assert send(as_bob, "post", f"{url}/reactions", {"kind": "love"}).status_code == 201

    # Both read the same cached detail and feed page; each sees only their own reaction.
    assert as_bob.get(url).json()["my_reaction"] == "love"
    assert as_alice.get(url).json()["my_reaction"] is None
    assert as_bob.get("/api/feed").json()["items"][0]["my_reaction"] == "love"
    assert as_alice.get("/api/feed").json()["items"][0]["my_reaction"] is None
    assert send(as_alice, "post", f"{url}/reactions", {"kind": "laugh"}).status_code == 201
    assert as_alice.get("/api/feed").json()["items"][0]["my_reaction"] == "laugh"
    assert as_bob.get("/api/feed").json()["items"][0]["my_reaction"] == "love"
    assert as_bob.delete(f"{url}/reactions").status_code == 204
    assert as_bob.get(url).json()["my_reaction"] is None


def test_a_hot_feed_page_costs_no_query_and_carries_my_reaction(as_alice, alice, django_assert_num_queries):
    """The caller's own feed page holds their reactions (it is theirs alone); their reaction events
    give them a new feed stamp, so the page they read next is refilled with the change."""
    posts = [make_post(alice, f"p{i}") for i in range(10)]
    for post in posts:
        Reaction.objects.create(user=alice, post=post, kind="like")
    as_alice.get("/api/feed")  # fills the page and counts caches (and the token's)
    with django_assert_num_queries(0):
        items = as_alice.get("/api/feed").json()["items"]
    assert [item["my_reaction"] for item in items] == ["like"] * 10
    Reaction.objects.filter(user=alice, post=posts[-1]).update(kind="wow")
    Reaction.objects.filter(user=alice, post=posts[0]).delete()
    items = as_alice.get("/api/feed").json()["items"]
    assert [item["my_reaction"] for item in items] == ["wow", *["like"] * 8, None]


def test_a_hot_post_detail_costs_no_query_and_follows_my_reaction(as_alice, alice, django_assert_num_queries):
    post = make_post(make_user("bob"), "react to me")
    url = f"/api/posts/{post.pk}"
    assert as_alice.get(url).json()["my_reaction"] is None  # fills detail, counts and mine
    with django_assert_num_queries(0):
        assert as_alice.get(url).json()["my_reaction"] is None
    Reaction.objects.create(user=alice, post=post, kind="sad")  # its event deletes alice's entry
    assert as_alice.get(url).json()["my_reaction"] == "sad"
    Reaction.objects.filter(user=alice, post=post).update(kind="wow")
    assert as_alice.get(url).json()["my_reaction"] == "wow"
    Reaction.objects.filter(user=alice, post=post).delete()
    assert as_alice.get(url).json()["my_reaction"] is None
    assert not [r for r in run_checks() if r.mismatches]
    mine = MyReactionCache()
    mine.set(mine.mine_key(alice.pk, post.pk), {"kind": "angry"})  # what a lost delete would leave
    assert [r.name for r in run_checks() if r.mismatches] == ["my reactions"]


# --- discover ----------------------------------------------------------------------------------


@pytest.fixture
def fresh_tracker(redis_client):
    """Points other tests counted in this process (and not sent yet) must not rank here."""
    tracker.flush()
    redis_client.flushdb()


def test_discover_ranks_popular_posts_and_fills_an_empty_feed(alice, fresh_tracker):
    newcomer = make_user("newcomer")
    as_new = client_for(newcomer)
    quiet, hot, warm = make_post(alice, "quiet"), make_post(alice, "hot"), make_post(alice, "warm")
    tracker.record_post(hot.pk, 10 * REACTION)
    tracker.record_post(warm.pk, REACTION)
    tracker.record_post(quiet.pk)

    pages, _ = all_pages(as_new, "/api/discover", size=2)
    assert [[p["body"] for p in page] for page in pages] == [["hot", "warm"], ["quiet"]]
    feed = as_new.get("/api/feed").json()
    assert (feed["items"], feed["next"]) == ([], None)
    assert [p["body"] for p in feed["discover"]] == ["hot", "warm", "quiet"]
    assert feed["discover"][0]["my_reaction"] is None

    # A followed author's post makes the feed non-empty: no discover then.
    Follow.objects.create(follower=newcomer, followee=alice)
    assert as_new.get("/api/feed").json()["discover"] == []


def test_discover_is_cached_but_never_serves_a_deleted_or_stale_post(as_alice, alice, fresh_tracker):
    post, other = make_post(alice, "first"), make_post(alice, "second")
    tracker.record_post(post.pk, 10.0)
    tracker.record_post(other.pk, 1.0)
    as_bob = client_for(make_user("bob"))
    assert [p["body"] for p in as_bob.get("/api/discover").json()["items"]] == ["first", "second"]

    send(as_alice, "patch", f"/api/posts/{post.pk}", {"body": "first, edited"})
    assert [p["body"] for p in as_bob.get("/api/discover").json()["items"]] == ["first, edited", "second"]
    assert as_alice.delete(f"/api/posts/{post.pk}").status_code == 204
    assert [p["body"] for p in as_bob.get("/api/discover").json()["items"]] == ["second"]


def test_discover_falls_back_to_the_database_without_a_ranking(as_alice, alice, fresh_tracker):
    post = make_post(alice, "only one")
    Reaction.objects.create(user=make_user("fan"), post=post, kind="like")
    assert [p["id"] for p in as_alice.get("/api/discover").json()["items"]] == [post.pk]


# --- comments: edit and delete -------------------------------------------------------------------


def test_comments_are_edited_and_deleted_by_their_author_only(as_alice, alice):
    bob = make_user("bob")
    as_bob = client_for(bob)
    post = make_post(alice)
    comment = send(as_bob, "post", f"/api/posts/{post.pk}/comments", {"body": "frist"}).json()
    url = f"/api/comments/{comment['id']}"

    assert send(as_alice, "patch", url, {"body": "hijack"}).status_code == 403
    edited = send(as_bob, "patch", url, {"body": "first"})
    assert edited.status_code == 200
    assert (edited.json()["body"], edited.json()["author"]) == ("first", "bob")
    page = as_alice.get(f"/api/posts/{post.pk}/comments").json()
    assert [c["body"] for c in page["items"]] == ["first"]
    assert send(as_bob, "patch", url, {"body": ""}).status_code == 422

    assert as_alice.delete(url).status_code == 403
    assert as_alice.get(f"/api/posts/{post.pk}").json()["counts"]["comments"] == 1
    assert as_bob.delete(url).status_code == 204
    assert as_alice.get(f"/api/posts/{post.pk}/comments").json()["items"] == []
    assert as_alice.get(f"/api/posts/{post.pk}").json()["counts"]["comments"] == 0
    assert as_bob.delete(url).status_code == 404
    assert send(as_bob, "patch", url, {"body": "again"}).status_code == 404
