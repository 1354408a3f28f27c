"""Stream names, their partitions, and the trimming that keeps them bounded without dropping unread
entries.

Each domain's stream is split into EVENTS_STREAM_PARTITIONS partitions. With one (the default) the
stream keeps its historical name (`themoon:events:feed`); with more, partition `i` is
`themoon:events:{feed:i}`: its own hash tag, so on a Redis Cluster the partitions spread over the
masters. An event goes to the partition of its entity (the domain's declared `partition_key`: a
post id, a conversation id, a user id), so one entity's events stay in order in one stream.
Changing the number of partitions re-routes entities: do it with the pipeline drained (lag 0).
"""

import logging
import zlib
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger("core.events")

# The stream entry field that carries the encoded event.
EVENT_FIELD = b"event"
# One stream (or set of partitions) per domain, in registration order; apps register theirs in
# AppConfig.ready(), each with the function that names an event's entity.
PartitionKey = Callable[[Any], object]
_domains: list[str] = []
_partition_keys: dict[str, PartitionKey | None] = {}


def register_domain(domain: str, partition_key: PartitionKey | None = None) -> None:
    """Give `domain` its own stream (idempotent). Apps call this from their AppConfig.ready().
    `partition_key(event)` names the entity whose events must stay in order (None: partition 0)."""
    if ":" in domain or "{" in domain or "}" in domain or not domain:
        raise ValueError(f"bad event domain {domain!r}")
    if domain not in _domains:
        _domains.append(domain)
    if partition_key is not None or domain not in _partition_keys:
        _partition_keys[domain] = partition_key


def domains() -> tuple[str, ...]:
    return tuple(_domains)


def partition_count() -> int:
    return max(1, int(settings.EVENTS_STREAM_PARTITIONS))


def stream_name(domain: str, partition: int = 0) -> str:
    """The stream of `domain`'s partition `partition` (the only one with one partition)."""
    if domain not in _domains:
        raise ValueError(f"unknown event domain {domain!r}; known: {tuple(_domains)}")
    count = partition_count()
    if count == 1:
        return f"{settings.EVENTS_STREAM_PREFIX}:{domain}"
    if not 0 <= partition < count:
        raise ValueError(f"partition {partition} out of range 0..{count - 1}")
    return f"{settings.EVENTS_STREAM_PREFIX}:{{{domain}:{partition}}}"


def domain_streams(domain: str) -> list[str]:
    """Every partition of `domain`, in partition order."""
    return [stream_name(domain, partition) for partition in range(partition_count())]


def partition_of(key: object, count: int | None = None) -> int:
    """A stable partition for an entity key (the same in every process: CRC-32, not hash())."""
    count = count or partition_count()
    if count == 1:
        return 0
    return zlib.crc32(str(key).encode()) % count


def stream_for(domain: str, event: Any) -> str:
    """The partition `event` belongs to: its entity's, by the domain's partition key. An event the
    key function cannot name an entity for goes to partition 0 (logged): order is kept, spread lost."""
    count = partition_count()
    if count == 1:
        return stream_name(domain)
    key_of = _partition_keys.get(domain)
    if key_of is None:
        return stream_name(domain, 0)
    try:
        key = key_of(event)
    except (KeyError, TypeError, AttributeError) as exc:
        logger.warning("no partition key for event %s (%s): partition 0", getattr(event, "type", "?"), exc)
        return stream_name(domain, 0)
    return stream_name(domain, partition_of(key, count))


def domain_of(stream: str) -> tuple[str, int] | None:
    """(domain, partition) of one of our stream names, or None."""
    prefix = f"{settings.EVENTS_STREAM_PREFIX}:"
    if not stream.startswith(prefix):
        return None
    rest = stream[len(prefix) :]
    if rest.startswith("{") and rest.endswith("}"):
        domain, _, partition = rest[1:-1].partition(":")
        return (domain, int(partition)) if partition.isdigit() and domain in _domains else None
    return (rest, 0) if rest in _domains else None


def all_streams() -> list[str]:
    """Every partition of every domain."""
    return [stream for domain in _domains for stream in domain_streams(domain)]


def same_slot_key(stream: str, suffix: str) -> str:
    """A key in `stream`'s cluster slot, under the stream prefix: `<stream>:<suffix>` when the
    stream has a hash tag, else `<prefix>:<suffix>:{<stream>}` (a whole key and the same text as a
    tag hash alike). What vouches for a stream's entries (the outbox sent marks) lives here, so it
    fails over with them."""
    start = stream.find("{")
    end = stream.find("}", start + 1) if start != -1 else -1
    if end > start + 1:
        return f"{stream}:{suffix}"
    return f"{settings.EVENTS_STREAM_PREFIX}:{suffix}:{{{stream}}}"


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
    """XTRIM MINID every partition up to what all groups have acknowledged (one single-key command
    at a time, so each goes to its partition's node). Returns entries removed per partition."""
    removed = {}
    for stream in all_streams():
        minid = safe_trim_id(client, stream)
        if minid is None:
            removed[stream] = 0
            continue
        removed[stream] = client.xtrim(stream, minid=minid, approximate=False)
    client.xtrim(dead_letter_stream(), maxlen=settings.EVENTS_DEAD_LETTER_MAXLEN, approximate=True)
    return removed
