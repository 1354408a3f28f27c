"""The stream consumer: reads events with a consumer group, applies them in batches, acknowledges.

One `StreamConsumer` per worker process, a named member of group `cache` on every domain stream.
- Batches: XREADGROUP COUNT/BLOCK, one pipeline of cache effects per batch, then XACK.
- At least once: an entry is acknowledged only after its effects are in Redis. A consumer that dies
  mid-batch leaves its entries pending; after EVENTS_CLAIM_IDLE_MS another consumer takes them
  over (XAUTOCLAIM) and applies them. Handlers are idempotent, so applying twice is harmless.
- Poison: an event that cannot be decoded, has no handler, or whose handler failed
  EVENTS_MAX_DELIVERIES times goes to the dead-letter stream with its error, and is acknowledged.
- Redis trouble: retry with capped exponential backoff, never crash. `stop()` finishes the batch.
- Partitions (core.events.streams): the consumer reads every partition of every domain. On one
  Redis that is one blocking XREADGROUP over all of them. On a Redis Cluster it is one XREADGROUP
  per partition (a command may name one slot only), aimed at the slot's node by
  `workers.slots.SlotRouter`, one pipelined round trip per master, no blocking: an idle consumer
  polls every EVENTS_CLUSTER_POLL_MS at most. A dead master stalls only its partitions; the slot
  map is asked again after any failure, so the consumer resumes once a replica is promoted
  (README, "Scaling": within cluster-node-timeout + the election + this loop's backoff).
- Two Redis roles: the streams, acknowledgements, dead letters and heartbeats on the events server
  (`client`, EVENTS_REDIS_URL); the batch's cache effects on the cache (`cache`, REDIS_URL). One
  server when they are the same.
- Delivery needs no beat: the loop relays the outbox every EVENTS_RELAY_INTERVAL_SECONDS, and at
  once after its Redis came back, until the backlog is empty (EVENTS_RELAY_PASS_SECONDS per round,
  so the streams are never starved; the next round goes on). Relays of several workers share the
  rows with SKIP LOCKED.
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import redis
from django.conf import settings
from django.db import close_old_connections, connections
from redis.exceptions import ClusterError, RedisClusterException

from core import metrics
from core.connections import stream_client, worker_cache_client
from core.events import (
    Event,
    HandlerRegistry,
    InvalidEvent,
    UnknownEventType,
    all_streams,
    apply,
    dead_letter_stream,
    registry,
    relay_pass,
)
from core.events.streams import EVENT_FIELD, consumer_heartbeats, partition_count
from core.pipelines import batch
from workers.slots import SlotRouter, is_cluster

logger = logging.getLogger("workers.consumer")
# While some partitions' master is down, the others are read again this often.
PARTITION_RETRY_SECONDS = 0.2


@dataclass(slots=True)
class Entry:
    stream: str
    entry_id: str
    payload: bytes | None
    event: Event | None = None
    error: str | None = None


def consumer_name(node: str | None = None) -> str:
    """Unique per process: a restarted worker is a new consumer, and its predecessor's pending
    entries are reclaimed once idle."""
    return f"{node or socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamConsumer:
    def __init__(
        self,
        name: str | None = None,
        client: redis.Redis | None = None,
        handlers: HandlerRegistry = registry,
        streams: Sequence[str] | None = None,
        cache: redis.Redis | None = None,
    ) -> None:
        self.name = name or consumer_name()
        self.client = client or stream_client()
        # With an injected events client (tests) the effects go there too, as with one server.
        self.cache = cache or (self.client if client is not None else worker_cache_client())
        self.handlers = handlers
        self.streams = list(streams or all_streams())
        self.group = settings.EVENTS_CONSUMER_GROUP
        self.batch_size = settings.EVENTS_BATCH_SIZE
        # COUNT is per stream: with partitions, each gets its share of a batch.
        self.read_count = max(1, self.batch_size // partition_count())
        self.router = SlotRouter(self.client) if is_cluster(self.client) else None
        self._idle_wait = 0.0
        self._partitions_failed = False
        self.max_deliveries = settings.EVENTS_MAX_DELIVERIES
        # Deliveries that failed so far, per (stream, entry id): partitions can hold the same id.
        self._attempts: dict[tuple[str, str], int] = {}
        self._stopping = threading.Event()
        self._last_reclaim = 0.0
        self._last_heartbeat = 0.0
        self._next_relay = 0.0  # relay at start: rows a dead process or an outage left behind
        self._relay_min_age: float | None = None
        self.relayed = 0
        self.processed = 0
        self.dead_lettered = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to exit after the batch in hand (it wakes within EVENTS_BLOCK_MS)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def run(self) -> None:
        """Consume until stop(). Survives Redis outages (backoff) and handler errors (dead letters)."""
        logger.info("stream consumer %s starting on %s", self.name, ", ".join(self.streams))
        backoff = 0.1
        own_backlog = True  # first, whatever this name left pending (a restart with the same name)
        while not self.stopping:
            try:
                self.ensure_groups()
                while not self.stopping:
                    if own_backlog:
                        entries = self.read(pending=True)
                        own_backlog = bool(entries)
                    else:
                        entries = self.read(pending=False)
                    if entries and self.process(entries):
                        own_backlog = True  # failed entries stay pending: retry them
                        time.sleep(min(backoff, 1.0))
                    if self._partitions_failed:  # some master is down: the rest flows meanwhile
                        self._partitions_failed = False
                        own_backlog = True  # its partitions' pending entries, once it is back
                        self._stopping.wait(PARTITION_RETRY_SECONDS)  # no growing backoff: others flow
                        continue
                    self.maybe_reclaim()
                    self.maybe_relay()
                    self.heartbeat()
                    backoff = 0.1
            except (redis.ConnectionError, redis.TimeoutError, ClusterError, RedisClusterException) as exc:
                # RedisClusterException (e.g. a slot not covered mid-failover) is not a RedisError.
                logger.warning("stream consumer %s lost redis (%s); retry in %.1fs", self.name, exc, backoff)
                self._lost_redis(backoff)
                backoff = min(backoff * 2, 5.0)
                own_backlog = True
                self.relay_soon(min_age_seconds=0)  # commits failed meanwhile: send their rows now
            except redis.ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):  # stream gone: recreate groups
                    logger.exception("stream consumer %s: redis refused a command", self.name)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # A bug or an unexpected client error must not end the thread (no consumer, no
                # heartbeat): log it and go round again after the backoff.
                logger.exception("stream consumer %s: unexpected error; retry in %.1fs", self.name, backoff)
                self._lost_redis(backoff)
                backoff = min(backoff * 2, 5.0)
                own_backlog = True
        connections.close_all()  # this thread's DB connection (after_batch reads) goes with it
        logger.info("stream consumer %s stopped after %d events", self.name, self.processed)

    def _lost_redis(self, backoff: float) -> None:
        if self.router is not None:
            self.router.stale = True  # a master may have died: ask for the slot map again
        self._stopping.wait(backoff)

    # --- reading -----------------------------------------------------------------------------

    def read(self, pending: bool) -> list[Entry]:
        """Own pending entries (id 0), or new ones (id >, blocking up to EVENTS_BLOCK_MS; on a
        cluster, polling: module docstring)."""
        start = "0" if pending else ">"
        if self.router is not None:
            return self._read_slots(start)
        response = self.client.xreadgroup(
            self.group,
            self.name,
            {stream: start for stream in self.streams},
            count=self.read_count,
            block=None if pending else settings.EVENTS_BLOCK_MS,
        )
        return _entries(response)

    def _read_slots(self, start: str) -> list[Entry]:
        """One XREADGROUP per partition, pipelined per node (workers.slots). Partitions whose node
        failed are skipped this round (`_partitions_failed`); all failed: the node error."""
        commands = [
            (stream, partial(_queue_read, self.group, self.name, stream, start, self.read_count))
            for stream in self.streams
        ]
        entries: list[Entry] = []
        failures = []
        for result in self.router.execute(commands):
            if isinstance(result, Exception):
                if isinstance(result, redis.ResponseError) and str(result).startswith("NOGROUP"):
                    raise result  # the loop recreates the groups
                failures.append(result)
            else:
                entries.extend(_entries(result))
        if failures:
            if len(failures) == len(commands):
                raise failures[0] if isinstance(failures[0], redis.RedisError) else redis.ConnectionError()
            self._partitions_failed = True
            logger.warning("consumer %s: %d partitions unreadable: %s", self.name, len(failures), failures[0])
        if entries or start != ">":
            self._idle_wait = 0.0
        else:  # nothing new anywhere: wait a little longer each round, up to the poll interval
            self._idle_wait = min(max(self._idle_wait * 2, 0.001), settings.EVENTS_CLUSTER_POLL_MS / 1000)
            self._stopping.wait(self._idle_wait)
        return entries

    def heartbeat(self, every_seconds: float = 1.0) -> None:
        """Tell /api/health this consumer is alive (at most once a second; one pipelined trip)."""
        now = time.time()
        if now - self._last_heartbeat < every_seconds:
            return
        self._last_heartbeat = now
        key = consumer_heartbeats()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(key, {self.name: int(now * 1000)})
        pipe.zremrangebyscore(key, "-inf", int((now - 3600) * 1000))  # bounded: the last hour
        pipe.pexpire(key, 24 * 3600 * 1000)
        pipe.execute()

    def relay_soon(self, min_age_seconds: float | None = None) -> None:
        """Relay at the next round; `min_age_seconds=0` also takes rows younger than the usual age
        (after an outage their commits most likely failed to send; a duplicate is harmless)."""
        self._next_relay = 0.0
        self._relay_min_age = min_age_seconds

    def maybe_relay(self) -> int:
        """Relay the outbox when due: one bounded pass; due again at once while not drained."""
        now = time.monotonic()
        if now < self._next_relay:
            return 0
        try:
            sent, drained = relay_pass(
                min_age_seconds=self._relay_min_age, max_seconds=settings.EVENTS_RELAY_PASS_SECONDS
            )
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # the loop's backoff; relay_soon() once Redis answers
        except Exception:
            # The database is down, or Redis refused an XADD (e.g. OOM): the rows stay; try later.
            logger.exception("stream consumer %s: outbox relay failed", self.name)
            close_old_connections()
            self._next_relay = now + settings.EVENTS_RELAY_INTERVAL_SECONDS
            return 0
        self.relayed += sent
        if drained:
            self._relay_min_age = None
            self._next_relay = now + settings.EVENTS_RELAY_INTERVAL_SECONDS
        return sent

    def maybe_reclaim(self, force: bool = False) -> int:
        interval = settings.EVENTS_CLAIM_IDLE_MS / 1000 / 2
        now = time.monotonic()
        if not force and now - self._last_reclaim < interval:
            return 0
        self._last_reclaim = now
        return self.reclaim()

    def reclaim(self) -> int:
        """Take over entries idle past EVENTS_CLAIM_IDLE_MS (their consumer is presumed dead) and
        apply them. Entries delivered too often already are dead-lettered instead. Returns count."""
        total = 0
        for stream in self.streams:
            start = "0-0"
            while True:
                next_start, claimed, _deleted = self.client.xautoclaim(
                    stream,
                    self.group,
                    self.name,
                    min_idle_time=settings.EVENTS_CLAIM_IDLE_MS,
                    start_id=start,
                    count=self.batch_size,
                )
                entries = [
                    Entry(stream, _text(entry_id), (fields or {}).get(EVENT_FIELD))
                    for entry_id, fields in claimed
                ]
                if entries:
                    logger.info("consumer %s reclaimed %d entries from %s", self.name, len(entries), stream)
                    self._dead_letter_overdelivered(stream, entries)
                    self.process(entries)
                    total += len(entries)
                start = _text(next_start)
                if start == "0-0" or not claimed:
                    break
        return total

    def forget_idle_consumers(self, min_idle_ms: int) -> int:
        """Remove group members idle longer than `min_idle_ms` that hold nothing pending: every
        worker restart adds a consumer name, and the group should not list them forever."""
        removed = 0
        for stream in self.streams:
            try:
                consumers = self.client.xinfo_consumers(stream, self.group)
            except redis.ResponseError:
                continue
            for consumer in consumers:
                name = _text(consumer["name"])
                if name != self.name and consumer["pending"] == 0 and consumer["idle"] > min_idle_ms:
                    removed += self.client.xgroup_delconsumer(stream, self.group, name) == 0
        return removed

    def _dead_letter_overdelivered(self, stream: str, entries: list[Entry]) -> None:
        """A crash-inducing event is redelivered forever; past the limit, count it as failed."""
        ids = [entry.entry_id for entry in entries]
        details = self.client.xpending_range(stream, self.group, min=ids[0], max=ids[-1], count=len(ids) * 2)
        delivered = {_text(d["message_id"]): d["times_delivered"] for d in details}
        for entry in entries:
            self._attempts[stream, entry.entry_id] = max(
                self._attempts.get((stream, entry.entry_id), 0), delivered.get(entry.entry_id, 1) - 1
            )

    # --- processing --------------------------------------------------------------------------

    def process(self, entries: list[Entry]) -> int:
        """Apply a batch; acknowledge what succeeded and what was dead-lettered. Returns the number
        of entries that failed and stay pending for a retry."""
        close_old_connections()
        started = time.perf_counter()
        for entry in entries:
            self._decode(entry)
        self._apply([entry for entry in entries if entry.event is not None])
        ok: list[Entry] = []
        dead: list[Entry] = []
        retry: list[Entry] = []
        for entry in entries:
            if entry.error is None:
                ok.append(entry)
            elif entry.event is None:  # undecodable or unhandled: retrying cannot help
                dead.append(entry)
            else:
                attempts = self._attempts.get((entry.stream, entry.entry_id), 0) + 1
                self._attempts[entry.stream, entry.entry_id] = attempts
                (dead if attempts >= self.max_deliveries else retry).append(entry)
        self._acknowledge(ok, dead)
        for entry in ok + dead:
            self._attempts.pop((entry.stream, entry.entry_id), None)
        self.processed += len(ok)
        self._observe(ok, retry, started)
        for entry in retry:
            logger.warning(
                "event failed, will retry: event_id=%s type=%s entry=%s error=%s",
                entry.event.id,
                entry.event.type,
                entry.entry_id,
                entry.error,
                extra=_log_context(entry),
            )
        return len(retry)

    def _observe(self, ok: list[Entry], retry: list[Entry], started: float) -> None:
        now = time.time()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        per_stream: dict[str, int] = {}
        for entry in ok:
            per_stream[entry.stream] = per_stream.get(entry.stream, 0) + 1
            if entry.event is not None:
                occurred = datetime.fromisoformat(entry.event.occurred_at).timestamp()
                metrics.EVENT_LAG_SECONDS.observe(max(0.0, now - occurred))
        for stream, count in per_stream.items():
            metrics.EVENTS_CONSUMED.labels(stream).inc(count)
        if retry:
            metrics.EVENTS_RETRIED.inc(len(retry))

    def _decode(self, entry: Entry) -> None:
        if entry.payload is None:  # trimmed or deleted while pending: nothing left to apply
            return
        try:
            event = Event.decode(entry.payload)
            self.handlers.handler_for(event.type)
        except (InvalidEvent, UnknownEventType) as exc:
            entry.error = f"{type(exc).__name__}: {exc}"
            return
        entry.event = event

    def _apply(self, entries: list[Entry]) -> None:
        """Queue every event's effects in one pipeline (`core.events.apply`, the policy the commit
        path shares), run it, then each handler's after_batch. A failure marks only the events it
        belongs to (entry.error)."""
        pipe = batch(self.cache)  # ours on any client (an injected redis-py one too): per node on a cluster
        effects = apply(pipe, [entry.event for entry in entries], self.handlers)
        if len(pipe):
            effects.collect(pipe.execute(raise_on_error=False))
        for entry, error in zip(entries, effects.errors, strict=True):
            if error is not None:
                entry.error = error

        groups: dict[int, list[Entry]] = {}
        for entry in entries:
            if entry.error is None:
                groups.setdefault(id(self.handlers.handler_for(entry.event.type)), []).append(entry)
        for group in groups.values():
            handler = self.handlers.handler_for(group[0].event.type)
            try:
                handler.after_batch([entry.event for entry in group])
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:
                logger.exception("after_batch of %s failed", type(handler).__name__)
                for entry in group:
                    entry.error = f"{type(exc).__name__}: {exc}"

    def _acknowledge(self, ok: list[Entry], dead: list[Entry]) -> None:
        if not ok and not dead:
            return
        pipe = self.client.pipeline(transaction=False)
        for entry in dead:
            event = entry.event
            pipe.xadd(
                dead_letter_stream(),
                {
                    "stream": entry.stream,
                    "entry_id": entry.entry_id,
                    "event": entry.payload or b"",
                    "event_id": event.id if event else "",
                    "type": event.type if event else "",
                    "error": (entry.error or "unknown")[:2000],
                    "consumer": self.name,
                },
                maxlen=settings.EVENTS_DEAD_LETTER_MAXLEN,
                approximate=True,
            )
            logger.error(
                "event dead-lettered: event_id=%s type=%s entry=%s error=%s",
                event.id if event else "?",
                event.type if event else "?",
                entry.entry_id,
                entry.error,
                extra=_log_context(entry),
            )
        by_stream: dict[str, list[str]] = {}
        for entry in ok + dead:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        if self.router is None:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            pipe.execute()
        else:
            if dead:
                pipe.execute()  # the dead letters first: an entry is acknowledged once it is kept
            commands = [
                (stream, partial(_queue_ack, stream, self.group, ids)) for stream, ids in by_stream.items()
            ]
            failed = next((r for r in self.router.execute(commands) if isinstance(r, Exception)), None)
            if failed is not None:  # unacknowledged entries stay pending: applied again, harmless
                raise failed if isinstance(failed, redis.RedisError) else redis.ConnectionError(str(failed))
        self.dead_lettered += len(dead)
        if dead:
            metrics.EVENTS_DEAD.inc(len(dead))


def _log_context(entry: Entry) -> dict[str, str]:
    """Structured fields for a log line about one entry (see core/logs.py)."""
    return {
        "event_id": entry.event.id if entry.event else "",
        "event_type": entry.event.type if entry.event else "",
        "stream": entry.stream,
        "entry_id": entry.entry_id,
    }


def _queue_read(group: str, name: str, stream: str, start: str, count: int, pipe) -> None:
    pipe.xreadgroup(group, name, {stream: start}, count=count)


def _queue_ack(stream: str, group: str, ids: list[str], pipe) -> None:
    pipe.xack(stream, group, *ids)


def _entries(response) -> list[Entry]:
    entries = []
    for stream, items in response or []:
        stream_name = stream.decode() if isinstance(stream, bytes) else stream
        for entry_id, fields in items:
            payload = (fields or {}).get(EVENT_FIELD)
            entries.append(Entry(stream_name, _text(entry_id), payload))
    return entries


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
