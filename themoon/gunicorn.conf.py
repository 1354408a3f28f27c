"""gunicorn settings for the HTTP process (Procfile `web`, docker-compose `web`).

gthread: one process per core (WEB_CONCURRENCY), WEB_THREADS threads each; every request runs on a
reused thread, so persistent DB connections and the Redis pool are per thread, bounded. Timeouts
match uvicorn's (keep-alive 5 s); request line and headers are bounded; the body limit is
core.http.RequestBodyLimitMiddleware. With DJANGO_DEBUG on, start-up refuses a non-loopback bind
(themoon/debug_guard.py).
"""

import os

wsgi_app = "themoon.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('WSGI_PORT', '8001')}")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
keepalive = 5
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
backlog = 2048
limit_request_line = 8190
limit_request_fields = 100
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn's own Server header is always sent; nothing to switch off here.


def on_starting(server) -> None:
    """Before any socket is served: refuse DEBUG on a public bind (the web command's --bind too)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "themoon.settings")
    from django.conf import settings

    from themoon.debug_guard import gunicorn_bind_hosts, refuse_debug_on_public_binds

    refuse_debug_on_public_binds(settings.DEBUG, gunicorn_bind_hosts(server.cfg.bind))
