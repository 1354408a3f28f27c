"""The web process's entry point: one port, HTTP on Django's WSGI handler, WebSockets on Channels.

HTTP runs where Django is fast: the WSGI handler on a pool of WEB_THREADS reused threads, one thread
hop per request (themoon/wsgi_bridge.py). Under Django's ASGI handler every sync middleware, view and signal
receiver was a hop of its own and the API served ~0.2x of this (README, "Processes"; bench/http.py).
WebSockets stay on the event loop, where Channels belongs.

HTTP bodies over REQUEST_BODY_MAX_BYTES get a 413 before Django reads them; a WebSocket opens only
from an Origin in WEBSOCKET_ALLOWED_ORIGINS (scheme, host and port). With DJANGO_DEBUG on, loading
refuses a non-loopback bind (themoon/debug_guard.py).
"""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "themoon.settings")
# Initialise Django before importing anything that touches models (routing, consumers).
django_wsgi_app = get_wsgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from core.http import asgi_body_limit  # noqa: E402
from core.redis_roles import check_redis_roles  # noqa: E402
from themoon.debug_guard import refuse_debug_on_public_bind, uvicorn_bind_host  # noqa: E402
from themoon.heap import freeze_startup_heap  # noqa: E402
from themoon.routing import websocket_urlpatterns  # noqa: E402
from themoon.wsgi_bridge import WSGIBridge  # noqa: E402

refuse_debug_on_public_bind(settings.DEBUG, uvicorn_bind_host(sys.argv, os.environ))
check_redis_roles("web")  # an evicting events Redis refuses the start (core/redis_roles.py)


class ExactOriginValidator(OriginValidator):
    """Channels' check, given full origins (scheme://host:port) only: it then compares scheme, host
    and port. A malformed Origin (`http://host:80x`) is refused instead of raising ValueError."""

    def valid_origin(self, parsed_origin) -> bool:
        try:
            return super().valid_origin(parsed_origin)
        except ValueError:
            return False


application = ProtocolTypeRouter(
    {
        "http": asgi_body_limit(WSGIBridge(django_wsgi_app, workers=settings.WEB_THREADS)),
        "websocket": ExactOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.WEBSOCKET_ALLOWED_ORIGINS
        ),
    }
)
freeze_startup_heap()  # last: what the process keeps for its life, out of the collector's walk
