"""What operators ask of the streams: their state, and replaying dead letters."""

import time
from typing import Any

import redis
from django.conf import settings

from core.events import all_streams, dead_letter_stream
from core.events.streams import EVENT_FIELD, consumer_heartbeats, domain_of


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def consumer_liveness(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Every consumer that sent a heartbeat in the last hour: whether it is live (a heartbeat
    within HEALTH_CONSUMER_IDLE_MS, the rule /api/health uses) and how long ago it was seen."""
    now_ms = int(time.time() * 1000)
    beats = client.zrange(consumer_heartbeats(), 0, -1, withscores=True)
    return {
        _text(name): {
            "live": now_ms - int(seen) <= settings.HEALTH_CONSUMER_IDLE_MS,
            "seen_ms_ago": max(now_ms - int(seen), 0),
        }
        for name, seen in beats
    }


def stream_report(client: redis.Redis) -> list[dict[str, Any]]:
    """Per stream partition: its domain and partition, length, and per group: consumers (each live
    or dead by its heartbeat; one without any is dead), pending, lag, last delivered id."""
    liveness = consumer_liveness(client)
    report = []
    for stream in all_streams():
        domain, partition = domain_of(stream) or (None, None)
        entry: dict[str, Any] = {
            "stream": stream,
            "domain": domain,
            "partition": partition,
            "length": client.xlen(stream),
            "groups": [],
        }
        try:
            groups = client.xinfo_groups(stream)
        except redis.ResponseError:
            groups = []
        for group in groups:
            name = _text(group["name"])
            consumers = client.xinfo_consumers(stream, name)
            entry["groups"].append(
                {
                    "name": name,
                    "consumers": [
                        {
                            "name": _text(c["name"]),
                            "pending": c["pending"],
                            "idle_ms": c["idle"],
                            "live": liveness.get(_text(c["name"]), {}).get("live", False),
                        }
                        for c in consumers
                    ],
                    "pending": group["pending"],
                    "lag": group.get("lag"),
                    "last_delivered_id": _text(group["last-delivered-id"]),
                }
            )
        report.append(entry)
    return report


def dead_letter_count(client: redis.Redis) -> int:
    return client.xlen(dead_letter_stream())


def replay_dead_letters(client: redis.Redis, limit: int = 10_000) -> int:
    """Put dead-lettered events back on their streams (after the handler bug is fixed). Each is
    removed from the dead-letter stream once requeued. Returns how many were requeued."""
    replayed = 0
    dead = dead_letter_stream()
    known = set(all_streams())
    for entry_id, fields in client.xrange(dead, count=limit):
        stream = _text(fields.get(b"stream", b""))
        payload = fields.get(EVENT_FIELD)
        if stream not in known or not payload:
            continue
        pipe = client.pipeline(transaction=False)
        pipe.xadd(stream, {EVENT_FIELD: payload}, maxlen=settings.EVENTS_STREAM_MAXLEN, approximate=True)
        pipe.xdel(dead, entry_id)
        pipe.execute()
        replayed += 1
    return replayed
