"""Publishing: events are buffered per transaction and sent after commit, durably.

`publish(event, domain)` must run inside the transaction that makes the change (our models' saves
are atomic). It writes an outbox row in that transaction and buffers the event. When the transaction
commits, every event that survived (a rolled-back savepoint drops its own) goes to its stream in one
pipelined round trip, which also marks the outbox rows sent (a Redis set of their ids) and carries
the events' direct cache effects. The commit path never goes back to the database: the relay
(`relay_outbox`, beat) deletes sent rows in bulk and publishes the unsent ones. So if Redis is down,
or the process dies after the commit, the rows stay unsent and the relay publishes them later.
A rolled-back transaction leaves neither an outbox row nor an event.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from core import metrics
from core.caching.breaker import breaker
from core.connections import cache_client
from core.events.event import Event
from core.events.streams import EVENT_FIELD, stream_name

logger = logging.getLogger("core.events")

# Called with (pipeline, events) to queue more commands into the post-commit round trip.
CommitListener = Callable[[redis.client.Pipeline, Sequence[Event]], None]
_commit_listeners: list[CommitListener] = []
SENT_MARK_TTL_SECONDS = 24 * 3600
# Set when a send failed in this process: the next successful send drains the outbox too.
_relay_needed = False


@dataclass(slots=True)
class Outgoing:
    outbox_id: int
    stream: str
    payload: bytes
    event: Event


@dataclass
class _TransactionBuffer:
    committed: list[Outgoing] = field(default_factory=list)
    flush_entry: tuple | None = None


def add_commit_listener(listener: CommitListener) -> None:
    """Let another part queue commands (e.g. direct cache effects) into the post-commit pipeline."""
    if listener not in _commit_listeners:
        _commit_listeners.append(listener)


def publish(event: Event, domain: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Record `event` in the outbox now; send it to the `domain` stream once the transaction commits."""
    from core.models import OutboxEvent

    stream = stream_name(domain)
    payload = event.encode()
    connection = connections[using]
    outbox_id = OutboxEvent.record(stream, payload, using)
    item = Outgoing(outbox_id, stream, payload, event)
    if not connection.in_atomic_block:
        # Autocommit: the change (and the outbox row) are committed already.
        logger.debug("publish outside a transaction: event=%s", event.id)
        send([item], using)
        return
    buffer = _buffer(connection)
    # Django drops this callback if an enclosing savepoint rolls back: that is how a rolled-back
    # savepoint's events never leave.
    transaction.on_commit(partial(buffer.committed.append, item), using=using)
    _keep_flush_last(connection, buffer, using)


def _buffer(connection) -> _TransactionBuffer:
    buffer = getattr(connection, "_themoon_events", None)
    if buffer is None:
        buffer = connection._themoon_events = _TransactionBuffer()
    return buffer


def _keep_flush_last(connection, buffer: _TransactionBuffer, using: str) -> None:
    """Keep one flush callback at the end of the commit hooks, after every event's own callback.

    It is registered with no savepoint ids so that no savepoint rollback can drop it. This relies on
    Django's `run_on_commit` entries being `(savepoint_ids, func, robust)` (Django 4.2 to 5.2).
    """
    hooks = connection.run_on_commit
    entry = buffer.flush_entry
    if entry is not None:
        if len(hooks) >= 2 and hooks[-2] is entry:
            hooks.pop(-2)
        elif entry in hooks:
            hooks.remove(entry)
    entry = (set(), partial(_flush, connection, using), True)
    hooks.append(entry)
    buffer.flush_entry = entry


def _flush(connection, using: str) -> None:
    buffer = _buffer(connection)
    items, buffer.committed, buffer.flush_entry = buffer.committed, [], None
    if items:
        send(items, using)


def send(items: Sequence[Outgoing], using: str = DEFAULT_DB_ALIAS) -> int:
    """XADD `items` and mark their outbox rows sent, in one pipelined round trip. Returns how many
    were sent. Never raises for Redis trouble: unsent items stay in the outbox for the relay."""
    global _relay_needed
    if not breaker.available():
        _relay_needed = True
        metrics.EVENTS_OUTBOXED.inc(len(items))
        return 0
    client = cache_client()
    pipe = client.pipeline(transaction=False)
    for item in items:
        pipe.xadd(
            item.stream,
            {EVENT_FIELD: item.payload},
            maxlen=settings.EVENTS_STREAM_MAXLEN,
            approximate=True,
        )
    mark_sent(pipe, [item.outbox_id for item in items])
    if settings.EVENTS_APPLY_ON_COMMIT:
        events = [item.event for item in items]
        for listener in _commit_listeners:
            try:
                listener(pipe, events)
            except Exception:
                logger.exception("commit listener failed; the worker will apply these events")
    try:
        results = pipe.execute(raise_on_error=False)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        breaker.failure(exc, "xadd", items[0].stream)
        _relay_needed = True
        metrics.EVENTS_OUTBOXED.inc(len(items))
        return 0
    breaker.success()
    xadds = results[: len(items)]
    sent = [i.outbox_id for i, r in zip(items, xadds, strict=True) if not isinstance(r, Exception)]
    for item, result in zip(items, xadds, strict=True):
        if not isinstance(result, Exception):
            metrics.EVENTS_PUBLISHED.labels(item.stream).inc()
    if len(sent) < len(items):
        refused = [i.outbox_id for i, r in zip(items, xadds, strict=True) if isinstance(r, Exception)]
        logger.error(
            "xadd refused, left in the outbox for the relay: %s",
            next(r for r in xadds if isinstance(r, Exception)),
        )
        client.srem(sent_key(), *refused)  # marked in the same pipeline: unmark
    for result in results[len(items) + 2 :]:
        if isinstance(result, Exception):
            logger.warning("apply-on-commit effect failed (the worker will retry): %s", result)
    if _relay_needed and len(sent) == len(items):
        _drain_after_outage(using)
    return len(sent)


def _drain_after_outage(using: str) -> None:
    global _relay_needed
    from core.events.outbox import relay_outbox

    _relay_needed = False
    try:
        # One batch, not the whole backlog: this runs on some request's commit. Beat does the rest.
        relayed = relay_outbox(min_age_seconds=0, using=using, max_batches=1)
    except Exception:
        _relay_needed = True
        logger.exception("outbox drain after a Redis outage failed; the beat relay will retry")
        return
    if relayed:
        logger.info("redis is back: relayed %d outbox events", relayed)


def sent_key() -> str:
    return f"{settings.EVENTS_STREAM_PREFIX}:outbox-sent"


def mark_sent(pipe: redis.client.Pipeline, outbox_ids: Sequence[int]) -> None:
    """Queue the marks (2 commands) that tell the relay these rows' events are in their streams.

    The relay deletes marked rows and publishes unmarked ones; it removes the marks it consumed.
    The expiry only bounds a set no relay ever empties (no beat running).
    """
    pipe.sadd(sent_key(), *outbox_ids)
    pipe.expire(sent_key(), SENT_MARK_TTL_SECONDS)
