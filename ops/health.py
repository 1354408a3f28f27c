"""Is themoon healthy? Database, both Redis roles, stream lag and live consumers, in one report."""

import time
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from core.connections import UNAVAILABLE, cache_client, events_client
from core.events import all_streams
from core.events.streams import consumer_heartbeats, partition_count
from core.redis_roles import roles_report


def pipeline_state(client: redis.Redis) -> dict[str, Any]:
    """Lag (entries not yet delivered) and pending (delivered, not acknowledged) of our consumer
    group, summed over every partition of every stream (each a single-slot command, so on a
    cluster each goes to its partition's master); live consumers: heartbeats within
    HEALTH_CONSUMER_IDLE_MS."""
    group = settings.EVENTS_CONSUMER_GROUP
    lag = pending = 0
    since_ms = int(time.time() * 1000) - settings.HEALTH_CONSUMER_IDLE_MS
    live = client.zcount(consumer_heartbeats(), since_ms, "+inf")
    for stream in all_streams():
        try:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
        except redis.ResponseError:  # the stream does not exist yet
            continue
        info = groups.get(group)
        if info is None:
            continue
        lag += info.get("lag") or 0
        pending += info["pending"]
    return {"lag": lag, "pending": pending, "live_consumers": live, "partitions": partition_count()}


def health_report() -> tuple[dict[str, Any], bool]:
    """(report, healthy). Never raises: each failing part is reported as such."""
    report: dict[str, Any] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = "ok"
    except DatabaseError as exc:
        report["database"] = f"error: {exc}"
    client = cache_client()
    try:
        client.ping()
        report["redis"] = "ok"
    except (redis.RedisError, *UNAVAILABLE) as exc:
        report["redis"] = f"error: {exc}"
    events = events_client()
    try:
        events.ping()
        report["events_redis"] = "ok"
        report.update(pipeline_state(events))
    except (redis.RedisError, *UNAVAILABLE) as exc:  # a cluster that lost every node: not a RedisError
        report["events_redis"] = f"error: {exc}"
    report["redis_roles"] = roles_report(client, events)
    problems = [part for part in ("database", "redis", "events_redis") if report[part] != "ok"]
    if report["redis_roles"]["events"].get("evicting"):
        problems.append(
            f"the events Redis evicts (maxmemory-policy "
            f"{report['redis_roles']['events']['maxmemory_policy']}): streams and marks can be lost"
        )
    if report.get("lag", 0) > settings.HEALTH_MAX_LAG:
        problems.append(f"stream lag {report['lag']} > {settings.HEALTH_MAX_LAG}")
    if report["events_redis"] == "ok" and report.get("live_consumers", 0) == 0:
        problems.append("no live stream consumer (is a worker running?)")
    report["status"] = "degraded" if problems else "ok"
    report["problems"] = problems
    return report, not problems
