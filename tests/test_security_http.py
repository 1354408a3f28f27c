"""Safe by default over HTTP: errors are JSON without internals, ops endpoints are guarded, every bad
input is a 4xx with a clear message (issue 12, items 1, 4 and 6)."""

import json

import pytest
from django.test import Client

from accounts.auth import issue_token
from accounts.models import AppUser
from chat.testing import make_chat_user, make_conversation
from tests.factories import make_post, make_user

pytestmark = pytest.mark.usefixtures("transactional_db")
PASSWORD = "pass-word-123"
INTERNALS = ("Traceback", "urlpatterns", "REDIS_URL", "redis://", "DEBUG", "<html")


def assert_json_without_internals(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    text = response.content.decode()
    assert not [word for word in INTERNALS if word in text]
    body = response.json()
    assert body["detail"]
    return body


def post_json(client: Client, url: str, data, **extra):
    return client.post(url, data=json.dumps(data), content_type="application/json", **extra)


# --- errors are JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nowhere", "/api/nowhere", "/admin/nowhere/at/all/"])
def test_an_unknown_url_is_a_json_404_without_the_url_patterns(path):
    response = Client().get(path)
    if response.status_code == 302:  # the admin sends anonymous users to its login first
        response = Client().get("/nowhere" + path)
    assert_json_without_internals(response, 404)


def test_a_foreign_host_header_is_a_json_400():
    response = Client(HTTP_HOST="attacker.example").get("/api/health/live")
    assert_json_without_internals(response, 400)


def test_a_server_error_is_a_json_500_without_a_traceback(monkeypatch):
    import feed.selectors

    def broken(*args, **kwargs):
        raise RuntimeError("REDIS_URL=redis://:secret@cache:6379/0 exploded")

    monkeypatch.setattr(feed.selectors, "first_page", broken)  # what GET /api/feed reads first
    token = issue_token(make_user())
    client = Client(raise_request_exception=False, headers={"Authorization": f"Bearer {token}"})
    response = client.get("/api/feed")
    body = assert_json_without_internals(response, 500)
    assert "secret" not in json.dumps(body)


def test_a_csrf_failure_outside_the_api_is_a_json_403():
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "x", "password": "y"})
    assert_json_without_internals(response, 403)


# --- ops endpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/api/health"])
def test_ops_endpoints_refuse_a_remote_caller(path):
    response = Client(REMOTE_ADDR="203.0.113.9").get(path)
    assert_json_without_internals(response, 403)


@pytest.mark.parametrize("path", ["/metrics", "/api/health"])
def test_ops_endpoints_refuse_loopback_requests_a_proxy_forwarded(path):
    response = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").get(path)
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/metrics", "/api/health"])
def test_ops_endpoints_answer_loopback_without_a_token(path):
    assert Client(REMOTE_ADDR="127.0.0.1").get(path).status_code in (200, 503)  # 503: no worker here


@pytest.mark.parametrize("path", ["/metrics", "/api/health"])
def test_with_ops_token_set_only_its_bearer_gets_in(settings, path):
    settings.OPS_TOKEN = "ops-secret-0123456789"
    assert Client(REMOTE_ADDR="127.0.0.1").get(path).status_code == 403  # loopback alone is not enough
    wrong = Client(REMOTE_ADDR="203.0.113.9", headers={"Authorization": "Bearer nope"})
    assert wrong.get(path).status_code == 403
    right = Client(REMOTE_ADDR="203.0.113.9", headers={"Authorization": "Bearer ops-secret-0123456789"})
    assert right.get(path).status_code in (200, 503)


def test_the_liveness_probe_stays_open_to_everybody(settings):
    settings.OPS_TOKEN = "ops-secret-0123456789"
    assert Client(REMOTE_ADDR="203.0.113.9").get("/api/health/live").status_code == 200


# --- bad input is a 4xx ---------------------------------------------------------------------------

BAD_TEXT = [("\x00", "nul"), ("\ud800", "unicode")]


@pytest.fixture
def alice():
    user = make_chat_user("alice")
    return user, Client(headers={"Authorization": f"Bearer {issue_token(user)}"})


def _text_routes(alice_user) -> list[tuple[str, dict]]:
    bob = make_chat_user("bob")
    conversation = make_conversation(alice_user, bob)
    post = make_post(alice_user)
    return [
        (f"/api/conversations/{conversation.pk}/messages", {"body": "hi {}"}),
        ("/api/conversations", {"participant_ids": [bob.pk], "title": "t {}"}),
        ("/api/posts", {"body": "post {}"}),
        (f"/api/posts/{post.pk}/comments", {"body": "comment {}"}),
    ]


@pytest.mark.parametrize(("bad", "word"), BAD_TEXT)
def test_nul_or_a_lone_surrogate_in_any_text_field_is_a_422_that_says_why(alice, bad, word):
    user, client = alice
    for url, template in _text_routes(user):
        payload = {k: v.format(bad) if isinstance(v, str) else v for k, v in template.items()}
        response = post_json(client, url, payload)
        body = assert_json_without_internals(response, 422)
        assert word in json.dumps(body).lower(), (url, body)
    for field in ("username", "password"):
        credentials = {"username": "neil", "password": PASSWORD, field: f"x{bad}y-long-enough"}
        for url in ("/api/auth/register", "/api/auth/login", "/api/auth/token"):
            response = post_json(Client(), url, credentials)
            assert response.status_code == 422, (url, field)
            assert word in json.dumps(response.json()).lower()


def test_a_body_over_the_limit_is_a_413_decided_from_content_length(settings, alice):
    settings.REQUEST_BODY_MAX_BYTES = 1000
    _, client = alice
    response = client.post(
        "/api/posts", data=b"{}", content_type="application/json", CONTENT_LENGTH=str(200 * 1024 * 1024)
    )
    body = assert_json_without_internals(response, 413)
    assert "1000" in body["detail"]
    response = post_json(client, "/api/posts", {"body": "x" * 2000})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"\xed\xa0\x80", "application/json", 400),  # a surrogate in raw bytes is not UTF-8
        (b"[1, 2]", "application/json", 422),
        (b'"a string"', "application/json", 422),
        (b'{"body": "hello"}', "text/plain", 415),
        (b'{"body": "hello"}', "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_bodies_are_a_4xx(alice, data, content_type, status):
    _, client = alice
    response = client.post("/api/posts", data=data, content_type=content_type)
    assert_json_without_internals(response, status)


# --- login CSRF and look-alike usernames ----------------------------------------------------------


def test_login_refuses_a_text_plain_body_and_sets_no_session():
    make_user("buzz")
    client = Client(HTTP_ORIGIN="https://attacker.example")
    body = json.dumps({"username": "buzz", "password": PASSWORD})
    simple_types = ("text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded")
    for content_type in simple_types:
        response = client.post("/api/auth/login", data=body, content_type=content_type)
        assert response.status_code == 415
        assert "application/json" in response.json()["detail"]
        assert "sessionid" not in response.cookies
    assert post_json(client, "/api/auth/login", {"username": "buzz", "password": PASSWORD}).status_code == 200


LOOK_ALIKES = ["d\u0435mo1", "dem\u03bf1", "\uff44emo1", "demo\u200b1", "ad\u0131min", "d\u00e9.mo"]


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_registration_refuses_look_alike_usernames(name):
    make_user("demo1")
    response = post_json(Client(), "/api/auth/register", {"username": name, "password": PASSWORD})
    assert response.status_code == 400
    assert "ASCII" in response.json()["detail"]
    assert AppUser.objects.count() == 1


def test_registration_accepts_the_safe_charset():
    response = post_json(Client(), "/api/auth/register", {"username": "Ann_B.c-9", "password": PASSWORD})
    assert response.status_code == 201
