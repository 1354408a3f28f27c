"""Accounts and credentials: register, session login/logout (with CSRF), bearer tokens."""

import json

import pytest
from django.test import Client

from accounts.models import AppUser, AuthToken
from tests.factories import make_user

pytestmark = pytest.mark.usefixtures("transactional_db")
PASSWORD = "pass-word-123"


def post(client: Client, url: str, data=None, **extra):
    return client.post(url, data=json.dumps(data or {}), content_type="application/json", **extra)


def test_register_creates_a_user_that_can_log_in():
    response = post(Client(), "/api/auth/register", {"username": "neil", "password": PASSWORD})
    assert response.status_code == 201
    assert response.json()["username"] == "neil"
    user = AppUser.objects.get(username="neil")
    assert user.check_password(PASSWORD)
    assert response.json()["id"] == user.pk


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"username": "neil", "password": "short"}, 400),  # too short for the validators
        ({"username": "bad name!", "password": PASSWORD}, 400),
        ({"username": "", "password": PASSWORD}, 422),
        ({"username": "neil"}, 422),
        ({"username": "x" * 151, "password": PASSWORD}, 422),
        ({"username": "ne\x00il", "password": PASSWORD}, 422),
    ],
)
def test_register_refuses_bad_input(payload, status):
    response = post(Client(), "/api/auth/register", payload)
    assert response.status_code == status
    assert response.json()["detail"]
    assert not AppUser.objects.exists()


def test_register_refuses_a_taken_username_with_409():
    make_user("neil")
    for name in ("neil", "NEIL"):
        response = post(Client(), "/api/auth/register", {"username": name, "password": PASSWORD})
        assert response.status_code == 409
        assert response.json() == {"detail": "username already taken"}


def test_session_login_then_csrf_checked_writes_then_logout():
    user = make_user("buzz")
    client = Client(enforce_csrf_checks=True)
    login = post(client, "/api/auth/login", {"username": "buzz", "password": PASSWORD})
    assert login.status_code == 200
    assert login.json() == {"id": user.pk, "username": "buzz"}
    assert client.get("/api/feed").status_code == 200  # safe method: no CSRF needed

    refused = post(client, "/api/posts", {"body": "no csrf token"})
    assert refused.status_code == 403
    token = _csrf_token(client)
    created = post(client, "/api/posts", {"body": "with csrf"}, headers={"X-CSRFToken": token})
    assert created.status_code == 201, created.content

    assert post(client, "/api/auth/logout", headers={"X-CSRFToken": _csrf_token(client)}).status_code == 204
    assert client.get("/api/feed").status_code == 401


def _csrf_token(client: Client) -> str:
    """A CSRF cookie for the test client, the way a browser gets one from a rendered page."""
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    if "csrftoken" not in client.cookies:
        client.cookies["csrftoken"] = _get_new_csrf_string()
    return _mask_cipher_secret(client.cookies["csrftoken"].value)


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "buzz", "password": "wrong-password"},
        {"username": "nobody", "password": PASSWORD},
    ],
)
def test_login_and_token_refuse_bad_credentials_with_401(payload):
    make_user("buzz")
    for url in ("/api/auth/login", "/api/auth/token"):
        response = post(Client(), url, payload)
        assert response.status_code == 401
        assert response.json() == {"detail": "invalid username or password"}


def test_an_inactive_user_cannot_log_in_or_use_a_token():
    user = make_user("buzz")
    token = post(Client(), "/api/auth/token", {"username": "buzz", "password": PASSWORD}).json()["token"]
    AppUser.objects.filter(pk=user.pk).update(is_active=False)
    assert post(Client(), "/api/auth/login", {"username": "buzz", "password": PASSWORD}).status_code == 401
    assert Client(headers={"Authorization": f"Bearer {token}"}).get("/api/feed").status_code == 401


def test_token_lifecycle_issue_use_revoke():
    user = make_user("buzz")
    issued = post(Client(), "/api/auth/token", {"username": "buzz", "password": PASSWORD})
    assert issued.status_code == 201
    body = issued.json()
    assert body["token_type"] == "bearer"
    assert body["user"] == {"id": user.pk, "username": "buzz"}
    token = body["token"]
    assert not AuthToken.objects.filter(digest=token).exists()  # only its hash is stored

    client = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {token}"})
    assert client.get("/api/feed").status_code == 200
    assert post(client, "/api/posts", {"body": "by token"}).status_code == 201

    assert client.delete("/api/auth/token").status_code == 204
    assert client.get("/api/feed").status_code == 401
    assert AuthToken.objects.count() == 0


def test_revoking_one_token_keeps_the_others():
    make_user("buzz")
    tokens = [
        post(Client(), "/api/auth/token", {"username": "buzz", "password": PASSWORD}).json()["token"]
        for _ in range(2)
    ]
    first, second = (Client(headers={"Authorization": f"Bearer {t}"}) for t in tokens)
    assert first.delete("/api/auth/token").status_code == 204
    assert first.get("/api/feed").status_code == 401
    assert second.get("/api/feed").status_code == 200


def test_deleting_a_token_needs_a_bearer_token():
    user = make_user("buzz")
    client = Client()
    client.force_login(user)
    assert client.delete("/api/auth/token").status_code == 401


def test_a_token_client_writes_to_chat_without_csrf_and_anonymous_gets_401():
    from accounts.auth import issue_token

    ann, bob = make_user(), make_user()
    client = Client(enforce_csrf_checks=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {issue_token(ann)}"}
    created = post(client, "/api/conversations", {"participant_ids": [bob.pk]}, **headers)
    assert created.status_code == 201, created.content
    assert post(client, "/api/conversations", {"participant_ids": [bob.pk]}).status_code == 401
