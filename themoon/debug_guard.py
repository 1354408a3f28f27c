"""Debug is for a developer's machine: refuse to start with DEBUG on where others can reach it.

Debug pages show settings (Redis URLs with their passwords), URL patterns and tracebacks. So with
DEBUG on, settings refuse to load when an allowed host is not local, and the ASGI app refuses to
load when uvicorn binds a non-loopback address; both raise ImproperlyConfigured, so the process
(web, worker, manage.py) exits before it serves anything.
"""

import ipaddress
from collections.abc import Mapping, Sequence

from django.core.exceptions import ImproperlyConfigured

LOCAL_NAMES = {"localhost", "testserver"}


def is_local_host(host: str) -> bool:
    """A name or address that only this machine answers to (loopback, `localhost`, Django's test host)."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_debug_with_public_hosts(debug: bool, allowed_hosts: Sequence[str]) -> None:
    public = [host for host in allowed_hosts if not is_local_host(host)]
    if debug and public:
        raise ImproperlyConfigured(
            f"DJANGO_DEBUG is on with non-local DJANGO_ALLOWED_HOSTS {public}: debug pages leak settings. "
            "Turn DJANGO_DEBUG off, or allow only localhost/loopback hosts."
        )


def uvicorn_bind_host(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The --host uvicorn was started with (or UVICORN_HOST), or None when this is not uvicorn."""
    if not argv or "uvicorn" not in argv[0]:
        return None
    host = environ.get("UVICORN_HOST", "127.0.0.1")  # uvicorn's own default
    for i, arg in enumerate(argv):
        if arg == "--host" and i + 1 < len(argv):
            host = argv[i + 1]
        elif arg.startswith("--host="):
            host = arg.split("=", 1)[1]
    return host


def refuse_debug_on_public_bind(debug: bool, bind_host: str | None) -> None:
    if debug and bind_host is not None and not is_local_host(bind_host):
        raise ImproperlyConfigured(
            f"DJANGO_DEBUG is on and the server binds {bind_host}: debug pages would be served to the "
            "network. Turn DJANGO_DEBUG off, or bind 127.0.0.1."
        )


def gunicorn_bind_hosts(binds: Sequence[str]) -> list[str]:
    """The hosts of gunicorn's `bind` addresses (`host:port`, `[v6]:port`, `fd://n`, `unix:path`);
    a unix socket or an inherited descriptor is left out (this machine's only)."""
    hosts = []
    for bind in binds:
        if bind.startswith(("unix:", "fd://")):
            continue
        host = bind.rsplit(":", 1)[0] if not bind.startswith("[") else bind[1 : bind.index("]")]
        hosts.append(host or "0.0.0.0")  # noqa: S104 (":8000" binds every interface)
    return hosts


def refuse_debug_on_public_binds(debug: bool, bind_hosts: Sequence[str]) -> None:
    for host in bind_hosts:
        refuse_debug_on_public_bind(debug, host)
