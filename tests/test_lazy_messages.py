"""Django's messages with the storage made on first use (core.http.LazyMessageMiddleware): an API
request never builds it, and a message added by one request is still shown by the next and then
cleared, as with Django's own middleware."""

from django.contrib import messages
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils.functional import empty

from core.http import LazyMessageMiddleware


def test_an_api_request_never_builds_the_message_storage(client, db):
    response = client.get("/api/health/live")
    assert response.status_code == 200
    assert response.wsgi_request._messages._wrapped is empty
    assert "messages" not in response.cookies


def _through_middlewares(view, cookies: dict[str, str] | None = None) -> HttpResponse:
    request = RequestFactory().get("/")
    request.COOKIES.update(cookies or {})
    SessionMiddleware(lambda r: HttpResponse()).process_request(request)  # the fallback storage's
    return LazyMessageMiddleware(view)(request)


def test_a_message_added_in_one_request_is_shown_by_the_next_then_cleared(db):
    def adding(request):
        messages.success(request, "saved")
        return HttpResponse("added")

    def showing(request):
        return HttpResponse(",".join(str(message) for message in messages.get_messages(request)))

    added = _through_middlewares(adding)
    stored = added.cookies["messages"].value
    assert stored

    shown = _through_middlewares(showing, {"messages": stored})
    assert shown.content == b"saved"
    assert shown.cookies["messages"].value == ""  # read once: Django deletes the cookie

    again = _through_middlewares(showing)
    assert again.content == b""
