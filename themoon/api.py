"""The HTTP API (django-ninja): each app contributes a router; OpenAPI docs at /api/docs."""

from ninja import NinjaAPI

from chat.api import router as chat_router
from core.http import require_json_bodies
from feed.api import router as feed_router
from workers.api import router as ops_router

api = NinjaAPI(title="themoon", version="1.0", urls_namespace="api")
require_json_bodies(api)  # 415 for a body that is not application/json (login CSRF)
api.add_router("/", ops_router)
api.add_router("/", feed_router)
api.add_router("/", chat_router)
