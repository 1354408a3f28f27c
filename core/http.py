"""HTTP at the edge: JSON error pages, the request body limit, and JSON-only bodies for the API.

Every error a client can meet outside a view is `{"detail": ...}` JSON with no internals (no
traceback, no URL patterns, no settings), for /api/ and for every other path.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import SimpleLazyObject, empty
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.parser import Parser


def json_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


# --- error handlers (themoon/urls.py: handler400, handler403, handler404, handler500) -------------


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    # A foreign Host header lands here too (DisallowedHost is a SuspiciousOperation).
    return json_error(400, "bad request")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(403, "permission denied")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(404, "not found")


def server_error(request: HttpRequest) -> JsonResponse:
    return json_error(500, "internal server error")


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """CSRF_FAILURE_VIEW: Django's own page is HTML."""
    return json_error(403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken")


def too_large_detail() -> str:
    return f"request body too large: at most {settings.REQUEST_BODY_MAX_BYTES} bytes"


# --- Django middleware ---------------------------------------------------------------------------


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


class RequestBodyLimitMiddleware:
    """413 from Content-Length alone, before anything reads the body (Django would raise
    RequestDataTooBig only once a view touches it). Under ASGI the body is read by Django's handler
    before any middleware runs: `asgi_body_limit` below guards that path."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = _content_length(request.META.get("CONTENT_LENGTH"))
        if length is not None and length > settings.REQUEST_BODY_MAX_BYTES:
            return json_error(413, too_large_detail())
        return self.get_response(request)


class LazyMessageMiddleware(MessageMiddleware):
    """Django's MessageMiddleware with the storage made on first use. Only the admin uses messages;
    building the cookie and session storage on every request (API requests included) cost ~4% of a
    bare view's time. Storage untouched means no message was added or read, so there is nothing
    for `process_response` to store (Django's own storage would do nothing either)."""

    def process_request(self, request: HttpRequest) -> None:
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)


# --- django-ninja: JSON bodies only ---------------------------------------------------------------


class UnsupportedMediaType(ValueError):
    pass


class JsonOnlyParser(Parser):
    """Parse an operation's body only when it is sent as `application/json` (415 otherwise).

    A browser sends `text/plain`, form or multipart bodies cross-origin without a CORS preflight;
    parsing them as JSON let a foreign page log a visitor in to the attacker's account (login CSRF).
    A JSON content type needs the preflight, which no foreign origin passes. Operations without a
    body never get here, so an empty POST (follow, logout) is unaffected.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        content_type = request.content_type or ""
        if content_type != "application/json" and not content_type.endswith("+json"):
            sent = content_type[:60] or "no content type"
            raise UnsupportedMediaType(f"send the request body as application/json, not {sent!r}")
        return super().parse_body(request)


def require_json_bodies(api: NinjaAPI) -> None:
    """Install JsonOnlyParser on `api`. ninja answers any parser error with a 400 "Cannot parse
    request body" (the parser's exception as its cause): ours becomes the 415 it stands for."""
    api.parser = JsonOnlyParser()

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc.__cause__, UnsupportedMediaType):
            return api.create_response(request, {"detail": str(exc.__cause__)}, status=415)
        return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)

    api.add_exception_handler(HttpError, http_error)


# --- ASGI ----------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def asgi_body_limit(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI HTTP app: a body over REQUEST_BODY_MAX_BYTES gets a 413 without being read.

    With a Content-Length the answer is decided from the header alone (the server enforces that the
    body is no longer). Without one (chunked) the body is buffered up to the limit and reading stops
    at the first byte past it; under the limit the buffered body is handed to `app` unchanged.
    """

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit = settings.REQUEST_BODY_MAX_BYTES
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = _content_length(value.decode("latin1"))
        if length is not None:
            if length > limit:
                await _send_too_large(send)
                return
            await app(scope, receive, send)
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break  # http.disconnect: let the app see it
            size += len(message.get("body", b""))
            if size > limit:
                await _send_too_large(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await app(scope, replay, send)

    return limited


async def _send_too_large(send: Send) -> None:
    body = JsonResponse({"detail": too_large_detail()}).content
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # The rest of the body is never read: the connection can't carry another request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
