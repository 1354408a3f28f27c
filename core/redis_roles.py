"""The start-up check of the two Redis roles, and what /api/health reports about them.

The events server (EVENTS_REDIS_URL) holds durable state: streams, consumer groups, dead letters,
consumer heartbeats, outbox sent marks, namespace epochs. An evicting `maxmemory-policy` (anything
but `noeviction`; the `volatile-*` ones too, since the marks and heartbeats carry TTLs) would drop
them under memory pressure, so the web process and the worker **refuse to start**
(ImproperlyConfigured) unless EVENTS_REDIS_ALLOW_EVICTION is set, which turns the refusal into a
loud warning.
The cache (REDIS_URL) may evict; without any `maxmemory` it grows without bound, which only
**warns** (a cache that fills the machine is an operations problem, not a correctness one).
A server that cannot be asked (down at start, or CONFIG and INFO both disabled) is a warning: the
process starts, degraded, rather than refuse to run while Redis is away.
"""

import logging
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.connections import UNAVAILABLE, cache_client, events_client, roles_shared

logger = logging.getLogger("core.redis_roles")

SAFE_EVENTS_POLICY = "noeviction"


def describe(client: redis.Redis) -> dict[str, Any]:
    """`reachable`, `maxmemory` (bytes, 0 = unbounded), `maxmemory_policy` and where they were read
    from (`CONFIG GET`, else `INFO memory` when CONFIG is disabled, as on some managed Redis)."""
    try:
        client.ping()
    except (redis.RedisError, *UNAVAILABLE) as exc:
        return {"reachable": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        config = client.config_get("maxmemory*")
        policy, limit, source = config.get("maxmemory-policy"), config.get("maxmemory"), "config"
    except redis.ResponseError:  # CONFIG renamed away or refused
        try:
            info = client.info("memory")
        except redis.ResponseError as exc:
            return {"reachable": True, "maxmemory_policy": None, "error": f"CONFIG and INFO refused: {exc}"}
        policy, limit, source = info.get("maxmemory_policy"), info.get("maxmemory"), "info (CONFIG disabled)"
    return {
        "reachable": True,
        "maxmemory": int(limit) if limit not in (None, "") else None,
        "maxmemory_policy": policy.decode() if isinstance(policy, bytes) else policy,
        "source": source,
    }


def where(url: str) -> str:
    """host:port/db of a Redis URL, without credentials (safe to log and report)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def roles_report(
    cache_redis: redis.Redis | None = None, events_redis: redis.Redis | None = None
) -> dict[str, Any]:
    """Per role: where, reachability, memory limit and policy, `evicting` (events) and `unbounded`
    (cache); plus whether they share a server. The shared clients unless given others."""
    cache = {"url": where(settings.REDIS_URL), **describe(cache_redis or cache_client())}
    events = {"url": where(settings.EVENTS_REDIS_URL), **describe(events_redis or events_client())}
    events["evicting"] = events.get("maxmemory_policy") not in (None, SAFE_EVENTS_POLICY)
    cache["unbounded"] = cache.get("maxmemory") == 0
    return {"shared": roles_shared(), "cache": cache, "events": events}


def check_redis_roles(process: str) -> dict[str, Any]:
    """Refuse (ImproperlyConfigured) or warn at start, as the module docstring says. Returns the
    report it judged."""
    report = roles_report()
    events, cache = report["events"], report["cache"]
    if not events["reachable"]:
        logger.warning(
            "%s: events Redis %s unreachable at start (%s)", process, events["url"], events["error"]
        )
    elif events.get("maxmemory_policy") is None:
        logger.warning(
            "%s: cannot tell the events Redis %s's maxmemory-policy (%s): make sure it is noeviction",
            process,
            events["url"],
            events.get("error"),
        )
    elif events["evicting"]:
        message = (
            f"The events Redis {events['url']} (EVENTS_REDIS_URL) runs maxmemory-policy "
            f"{events['maxmemory_policy']}: under memory pressure it would evict streams, consumer "
            "groups, dead letters and outbox marks. Run it with maxmemory-policy noeviction (and AOF), "
            "point EVENTS_REDIS_URL at a Redis that does, or set EVENTS_REDIS_ALLOW_EVICTION=true "
            "to start anyway."
        )
        if not settings.EVENTS_REDIS_ALLOW_EVICTION:
            raise ImproperlyConfigured(message)
        logger.warning("%s: EVENTS_REDIS_ALLOW_EVICTION=true, starting anyway. %s", process, message)
    if cache["reachable"] and cache.get("unbounded"):
        logger.warning(
            "%s: the cache Redis %s (REDIS_URL) has no maxmemory: the cache grows without bound. "
            "Give it maxmemory and maxmemory-policy allkeys-lru.",
            process,
            cache["url"],
        )
    return report
