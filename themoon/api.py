"""The HTTP API (django-ninja): each app contributes a router; OpenAPI docs at /api/docs.

A service's refusal (`core.errors.ServiceError`) is answered here, once for every app:
`{"detail": str(exc)}` with the status its class carries.
"""

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from accounts.api import router as accounts_router
from accounts.api import users_router
from chat.api import router as chat_router
from core.errors import ServiceError
from core.http import require_json_bodies
from feed.api import router as feed_router
from ops.api import router as ops_router

api = NinjaAPI(title="themoon", version="1.0", urls_namespace="api")
require_json_bodies(api)  # 415 for a body that is not application/json (login CSRF)
api.add_router("/", ops_router)
api.add_router("/", accounts_router)
api.add_router("/", users_router)
api.add_router("/", feed_router)
api.add_router("/", chat_router)


def service_refused(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=exc.status)


api.add_exception_handler(ServiceError, service_refused)
