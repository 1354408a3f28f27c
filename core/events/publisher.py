"""Publishing: events are buffered per transaction and sent after commit, durably.

`publish(event, domain)` must run inside the transaction that makes the change (our models' saves
are atomic). It records the event in the outbox in that transaction (`core.events.outbox`) and
buffers it. When the transaction commits, every event that survived (a rolled-back savepoint drops
its own) goes to its stream in one pipelined round trip, which also marks the outbox rows sent and
carries the events' direct cache effects (`core.events.registry.apply`, read-your-writes). The commit
path never goes back to the database: the relay (`relay_outbox`, beat) deletes sent rows in bulk and
publishes the unsent ones. So if Redis is down, or the process dies after the commit, the rows stay
unsent and the relay publishes them later. A rolled-back transaction leaves neither a row nor an event.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

import core.events.outbox as outbox
from core import metrics
from core.caching.breaker import breaker
from core.connections import cache_client
from core.events.event import Event
from core.events.registry import apply, registry
from core.events.streams import EVENT_FIELD, stream_name

logger = logging.getLogger("core.events")

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


def publish(event: Event, domain: str, using: str = DEFAULT_DB_ALIAS) -> None:
    """Record `event` in the outbox now; send it to the `domain` stream once the transaction commits."""
    stream = stream_name(domain)
    payload = event.encode()
    connection = connections[using]
    outbox_id = outbox.record(stream, payload, using)
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
    Django's `run_on_commit` entries being `(savepoint_ids, func, robust)`: the system check
    core.E001 (core/checks.py) fails on a Django version this was not tested on.
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
    """XADD `items` and mark their outbox rows sent, in one pipelined round trip that also carries
    their direct cache effects (EVENTS_APPLY_ON_COMMIT). Returns how many were sent. Never raises for
    Redis trouble: unsent items stay in the outbox for the relay. An effect that fails is only logged:
    the worker applies every event again."""
    global _relay_needed
    if not breaker.available():
        _relay_needed = True
        metrics.EVENTS_OUTBOXED.inc(len(items))
        return 0
    client = cache_client()
    pipe = client.pipeline(transaction=False)
    effects = None
    if settings.EVENTS_APPLY_ON_COMMIT:
        effects = apply(pipe, [item.event for item in items if registry.handles(item.event.type)])
    first = len(pipe)
    for item in items:
        pipe.xadd(
            item.stream,
            {EVENT_FIELD: item.payload},
            maxlen=settings.EVENTS_STREAM_MAXLEN,
            approximate=True,
        )
    outbox.mark_sent(pipe, [item.outbox_id for item in items])
    try:
        results = pipe.execute(raise_on_error=False)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        breaker.failure(exc, "xadd", items[0].stream)
        _relay_needed = True
        metrics.EVENTS_OUTBOXED.inc(len(items))
        return 0
    breaker.success()
    xadds = results[first : first + len(items)]
    refused = [item for item, result in zip(items, xadds, strict=True) if isinstance(result, Exception)]
    for item, result in zip(items, xadds, strict=True):
        if not isinstance(result, Exception):
            metrics.EVENTS_PUBLISHED.labels(item.stream).inc()
    if refused:
        logger.error(
            "xadd refused, left in the outbox for the relay: %s",
            next(r for r in xadds if isinstance(r, Exception)),
        )
        outbox.unmark_sent(client, [item.outbox_id for item in refused])  # marked in the same pipeline
    if effects is not None:
        effects.collect(results)
        for event, error in effects.failed():
            logger.warning(
                "apply-on-commit effect failed (the worker will retry): event_id=%s type=%s error=%s",
                event.id,
                event.type,
                error,
            )
    if _relay_needed and not refused:
        _drain_after_outage(using)
    return len(items) - len(refused)


def _drain_after_outage(using: str) -> None:
    global _relay_needed
    _relay_needed = False
    try:
        # One batch, not the whole backlog: this runs on some request's commit. Beat does the rest.
        relayed = outbox.relay_outbox(min_age_seconds=0, using=using, max_batches=1)
    except Exception:
        _relay_needed = True
        logger.exception("outbox drain after a Redis outage failed; the beat relay will retry")
        return
    if relayed:
        logger.info("redis is back: relayed %d outbox events", relayed)
