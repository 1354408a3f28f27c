"""The HTTP API (django-ninja): each app contributes a router; OpenAPI docs at /api/docs."""

from ninja import NinjaAPI

from chat.api import router as chat_router
from feed.api import router as feed_router
from ops.api import router as ops_router

api = NinjaAPI(title="themoon", version="1.0", urls_namespace="api")
api.add_router("/", ops_router)
api.add_router("/", feed_router)
api.add_router("/", chat_router)
