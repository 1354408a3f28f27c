"""Stream names and the trimming that keeps them bounded without dropping unread entries."""

import logging

import redis
from django.conf import settings

logger = logging.getLogger("core.events")

# The stream entry field that carries the encoded event.
EVENT_FIELD = b"event"
# One stream per domain, in registration order; apps register theirs in AppConfig.ready().
_domains: list[str] = []


def register_domain(domain: str) -> None:
    """Give `domain` its own stream (idempotent). Apps call this from their AppConfig.ready()."""
    if ":" in domain or not domain:
        raise ValueError(f"bad event domain {domain!r}")
    if domain not in _domains:
        _domains.append(domain)


def domains() -> tuple[str, ...]:
    return tuple(_domains)


def stream_name(domain: str) -> str:
    if domain not in _domains:
        raise ValueError(f"unknown event domain {domain!r}; known: {tuple(_domains)}")
    return f"{settings.EVENTS_STREAM_PREFIX}:{domain}"


def all_streams() -> list[str]:
    return [stream_name(domain) for domain in _domains]


def dead_letter_stream() -> str:
    return f"{settings.EVENTS_STREAM_PREFIX}:dead"


def consumer_heartbeats() -> str:
    """A sorted set: consumer name -> when it last went round its loop (ms). Redis lists a consumer
    in XINFO only once it has been delivered an entry, so liveness needs its own signal."""
    return f"{settings.EVENTS_STREAM_PREFIX}:consumers"


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def safe_trim_id(client: redis.Redis, stream: str) -> str | None:
    """The oldest entry id some consumer group may still need, or None if nothing can be trimmed.

    That is the smallest of each group's oldest pending entry and the entry after its last
    delivered one. Everything before it has been delivered and acknowledged by every group.
    """
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream
        return None
    if not groups:
        return None
    floor: tuple[int, int] | None = None
    for group in groups:
        candidates = [_id_tuple(group["last-delivered-id"])]
        candidates[0] = (candidates[0][0], candidates[0][1] + 1)
        if group["pending"]:
            oldest = client.xpending(stream, group["name"])["min"]
            candidates.append(_id_tuple(oldest))
        low = min(candidates)
        floor = low if floor is None else min(floor, low)
    return f"{floor[0]}-{floor[1]}" if floor else None


def trim_streams(client: redis.Redis) -> dict[str, int]:
    """XTRIM MINID every stream up to what all groups have acknowledged. Returns entries removed."""
    removed = {}
    for stream in all_streams():
        minid = safe_trim_id(client, stream)
        if minid is None:
            removed[stream] = 0
            continue
        removed[stream] = client.xtrim(stream, minid=minid, approximate=False)
    client.xtrim(dead_letter_stream(), maxlen=settings.EVENTS_DEAD_LETTER_MAXLEN, approximate=True)
    return removed
