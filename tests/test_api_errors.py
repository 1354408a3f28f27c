"""Errors through the public door (issue 14 items 11, 12): 422s in one stable, documented shape
that names what the client sent (never the views' parameters), and JSON 404s under /api/."""

import json

import pytest
from django.test import Client

from accounts.auth import issue_token
from tests.factories import make_user
from themoon.api import ValidationErrorOut

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture
def client():
    return Client(headers={"Authorization": f"Bearer {issue_token(make_user('alice'))}"})


def openapi() -> dict:
    return Client().get("/api/openapi.json").json()


def test_every_operation_that_takes_input_documents_its_422():
    schema = openapi()
    assert "ValidationErrorOut" in schema["components"]["schemas"]
    documented = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
            assert ("422" in operation["responses"]) == takes_input, (method, path)
            documented += takes_input
    assert documented > 20


def test_a_422_has_the_documented_shape_without_internal_names(client):
    response = client.post("/api/posts", data=json.dumps({"bod": "x"}), content_type="application/json")
    assert response.status_code == 422
    body = response.json()
    ValidationErrorOut.model_validate(body)
    assert body["errors"][0]["loc"] == ["body", "body"]  # where: the body; what: its `body` field
    assert "data" not in json.dumps(body)
    assert body["detail"].startswith("invalid input: body.body")


def test_query_and_path_422s_name_the_parameter_the_client_sent(client):
    body = client.get("/api/feed", {"size": 0}).json()
    assert body["errors"][0]["loc"] == ["query", "size"]
    body = client.get("/api/posts/0").json()
    assert body["errors"][0]["loc"] == ["path", "post_id"]
    missing = client.post("/api/posts", data="{}", content_type="application/json").json()
    assert [e["loc"] for e in missing["errors"]] == [["body", "body"]]


@pytest.mark.parametrize("path", ["/api/nothing", "/api/posts/1/nothing", "/api/feed/", "/api/v2/feed"])
def test_unknown_paths_under_api_answer_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()
