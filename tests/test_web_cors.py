"""CORS for a frontend on another origin (django-cors-headers): off unless CORS_ALLOWED_ORIGINS
names the origin; only /api/ answers; credentials only with CORS_ALLOW_CREDENTIALS."""

import pytest
from django.test import Client

from themoon import settings as production

FRONTEND = "https://app.example.com"


def preflight(path: str = "/api/feed", origin: str = FRONTEND):
    return Client().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def test_cors_is_off_by_default(db):
    assert production.CORS_ALLOWED_ORIGINS == []
    response = Client().get("/api/health", HTTP_ORIGIN=FRONTEND)
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" not in preflight()


@pytest.fixture
def frontend_allowed(settings):
    settings.CORS_ALLOWED_ORIGINS = [FRONTEND]
    return settings


def test_an_allowed_origin_passes_the_preflight_with_a_bearer_token(db, frontend_allowed):
    response = preflight()
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == FRONTEND
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert {"authorization", "content-type"} <= set(response["Access-Control-Allow-Headers"].split(", "))
    assert "Access-Control-Allow-Credentials" not in response  # cookies stay home unless asked


def test_an_allowed_origin_reads_api_responses(db, frontend_allowed):
    response = Client().post(
        "/api/auth/token", {"username": "x", "password": "y"}, "application/json", HTTP_ORIGIN=FRONTEND
    )
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == FRONTEND


def test_other_origins_and_non_api_paths_get_no_cors_headers(db, frontend_allowed):
    assert "Access-Control-Allow-Origin" not in preflight(origin="https://evil.example.net")
    assert "Access-Control-Allow-Origin" not in Client().get("/login", HTTP_ORIGIN=FRONTEND)


def test_credentials_only_when_enabled(db, frontend_allowed):
    frontend_allowed.CORS_ALLOW_CREDENTIALS = True
    assert preflight()["Access-Control-Allow-Credentials"] == "true"
