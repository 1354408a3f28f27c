"""Who may read the operational endpoints (/metrics, the detailed /api/health).

With OPS_TOKEN set: a request carrying `Authorization: Bearer <OPS_TOKEN>`, from anywhere. Without
it: only a request made on this machine (a loopback REMOTE_ADDR) that no proxy forwarded (no
Forwarded / X-Forwarded-For header), because behind a reverse proxy on the same host every request
arrives from loopback. Everybody else gets a 403. The liveness probe is not guarded.
"""

import functools
import hmac
import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.http import json_error


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def ops_allowed(request: HttpRequest) -> bool:
    token = settings.OPS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    forwarded = "HTTP_FORWARDED" in request.META or "HTTP_X_FORWARDED_FOR" in request.META
    return not forwarded and _loopback(request.META.get("REMOTE_ADDR", ""))


def ops_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Decorate a view (Django or django-ninja) so that only `ops_allowed` requests reach it."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs):
        if not ops_allowed(request):
            return json_error(403, "operational endpoint: send Authorization: Bearer <OPS_TOKEN>")
        return view(request, *args, **kwargs)

    return guarded
