"""Publishing: events are buffered per transaction and sent after commit, durably.

`publish(event, domain)` must run inside the transaction that makes the change (our models' saves
are atomic). It records the event in the outbox in that transaction (`core.events.outbox`) and
buffers it. When the transaction commits, every event that survived (a rolled-back savepoint drops
its own) goes to its stream in one pipelined round trip, which also marks the outbox rows sent and
carries the events' direct cache effects (`core.events.registry.apply`, read-your-writes); two round
trips, events first, when the cache and the events live on two servers (`core.events.roundtrip`).
The commit path never goes back to the database: the relay (`relay_outbox`, run by every worker's
consumer) deletes sent rows in bulk and publishes the unsent ones. So if Redis is down, or the
process dies after the commit, the rows stay unsent and a relay publishes them later; a living
process that failed to send drains them itself in the background and reads from the database
meanwhile (`core.events.recovery`). A rolled-back transaction leaves neither a row nor an event.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

import core.events.outbox as outbox
from core import metrics, one_statement
from core.caching.breaker import RedisBreaker, breaker
from core.connections import UNAVAILABLE, events_client, roles_shared
from core.events.event import Event
from core.events.recovery import recovery
from core.events.registry import registry
from core.events.roundtrip import deliver
from core.events.streams import stream_for

logger = logging.getLogger("core.events")

# The events server's own breaker when it is not the cache's: a failed send skips Redis for a
# moment. Recovery holds the cache's open (for reads) while this process has unsent events.
events_breaker = RedisBreaker()


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
    """Record `event` in the outbox now; send it to its partition of the `domain` stream once the
    transaction commits."""
    stream = stream_for(domain, event)
    payload = event.encode()
    connection = connections[using]
    plan = one_statement.pending(connection)
    if plan is not None:  # a one-statement create: the outbox row goes in its statement
        plan.outbox_row(stream, payload, partial(_written, stream, payload, event, using))
        return
    outbox_id = outbox.record(stream, payload, using)
    _enqueue(Outgoing(outbox_id, stream, payload, event), using)


def _written(stream: str, encoded: bytes, event: Event, using: str, outbox_id: int, payload: bytes) -> None:
    """A one-statement create wrote the event's outbox row: `payload` is `encoded` with the values
    the statement made spliced in (the same bytes the row holds)."""
    _enqueue(
        Outgoing(outbox_id, stream, payload, event if payload == encoded else Event.decode(payload)), using
    )


def _enqueue(item: Outgoing, using: str) -> None:
    """Send `item` once its transaction commits (now, in autocommit: it has)."""
    connection = connections[using]
    event = item.event
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
    entry = (set(), _flusher(connection, using), True)
    hooks.append(entry)
    buffer.flush_entry = entry


def _flusher(connection, using: str):
    """The flush as a named function: Django's robust on-commit handler logs a failing callback by
    its `__qualname__`, which a `functools.partial` does not have (the log itself would raise)."""

    def flush_committed_events() -> None:
        _flush(connection, using)

    return flush_committed_events


def _flush(connection, using: str) -> None:
    buffer = _buffer(connection)
    items, buffer.committed, buffer.flush_entry = buffer.committed, [], None
    if items:
        send(items, using)


def send(items: Sequence[Outgoing], using: str = DEFAULT_DB_ALIAS) -> int:
    """XADD `items` and mark their outbox rows sent, with their direct cache effects
    (EVENTS_APPLY_ON_COMMIT): one pipelined round trip when the cache and the events share a
    server, two (events first) when they do not (`core.events.roundtrip`). Returns how many were
    sent. Never raises for Redis trouble: unsent items stay in the outbox, and this process enters
    recovery (`core.events.recovery`): it reads from the database until it has sent them and
    applied their effects itself. An effect that fails is only logged: the worker applies every
    event again."""
    events = [item.event for item in items]
    gate = _breaker()
    if not gate.available(ignore_hold=True):  # held = recovering: new events still go straight out
        _outboxed(items, using)
        return 0
    apply_effects = settings.EVENTS_APPLY_ON_COMMIT
    # The handlers' reads (e.g. follower sets) come before the one pipeline that carries effects.
    handlers = registry.prepared(events) if apply_effects else registry
    try:
        delivery = deliver(
            [(item.stream, item.payload) for item in items],
            events if apply_effects else None,
            [(item.stream, item.outbox_id) for item in items],
            handlers=handlers,
            queue_marks=outbox.mark_sent,
        )
    except UNAVAILABLE as exc:
        gate.failure(exc, "xadd", items[0].stream)
        _outboxed(items, using)
        return 0
    except redis.RedisError as exc:  # not a connection failure: the relay publishes them later
        logger.error("events round trip failed, left in the outbox for the relay: %s", exc)
        _outboxed(items, using)
        return 0
    gate.success()
    refused = [items[index] for index in delivery.refused()]
    for index, item in enumerate(items):
        if not isinstance(delivery.xadds[index], Exception):
            metrics.EVENTS_PUBLISHED.labels(item.stream).inc()
    if refused:
        logger.error(
            "xadd refused, left in the outbox for the relay: %s",
            next(r for r in delivery.xadds if isinstance(r, Exception)),
        )
        try:
            outbox.unmark_sent(
                events_client(), [(item.stream, item.outbox_id) for item in refused]
            )  # same pipeline
        except (redis.RedisError, *UNAVAILABLE) as exc:  # any error: never out of the commit
            logger.warning("could not take back sent marks (the relay may skip them): %s", exc)
        recovery.note_unsent([item.event for item in refused], using)
    if delivery.effects_error is not None:
        logger.warning("apply-on-commit effects failed (cache unreachable): %s", delivery.effects_error)
        recovery.note_unsent(events, using)
    elif delivery.effects is not None:
        for event, error in delivery.effects.failed():
            logger.warning(
                "apply-on-commit effect failed (the worker will retry): event_id=%s type=%s error=%s",
                event.id,
                event.type,
                error,
            )
    if not refused and recovery.recovering:
        recovery.redis_answered(using)
    return len(items) - len(refused)


def _breaker() -> RedisBreaker:
    """The cache's breaker when the events share its server (one server, one opinion), else the
    events server's own."""
    return breaker if roles_shared() else events_breaker


def _outboxed(items: Sequence[Outgoing], using: str) -> None:
    metrics.EVENTS_OUTBOXED.inc(len(items))
    recovery.note_unsent([item.event for item in items], using)
