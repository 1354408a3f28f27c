"""The outbox: an event's durable copy, written in its change's transaction, until it is in its stream.

The rows live in the database; the sent marks on the events server (`EVENTS_REDIS_URL`, never
evicted: a lost mark would only cost a duplicate send, but the set must not vanish under memory
pressure with the streams). Each stream partition has its own set of marks in the partition's
cluster slot (`sent_key`), queued after the XADDs on the same connection: a replica promoted after
losing an XADD has lost its mark too (replication is in order), so the relay sends it again. The
commit-time send needs no more: it deletes nothing.

The relay deletes rows, so on a Redis that has replicas (a cluster; one Redis when INFO replication
reports connected replicas) it first makes sure a replica has what vouches for them: after its
XADDs (and marks) it writes a fence key in each of the batch's partitions' slots (`fence_key`: a
write, so the node's WAIT covers everything that node had before it, the commit-time marks too) and
ends each node's pipeline with `WAIT 1 EVENTS_REPLICA_WAIT_MS`. Rows of a partition whose node
reported no replica stay (marked, so the next pass only confirms again, no second XADD): an
asynchronous replica promoted within the replication lag, or a master cut off by a partition (it
accepts writes until cluster-node-timeout; its replica is on the other side), costs no event.

This module owns the outbox's whole life: `record` (the row, in the transaction), `mark_sent` (the
commit-time send queues a Redis mark that the event is in its stream), `relay_outbox` (the sweep:
delete marked rows, publish the unmarked ones) and `outbox_backlog` (what is still unsent). The
publisher buffers events and calls these; nothing here knows about the publisher.
"""

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from redis.cluster import RedisCluster

from core.connections import UNAVAILABLE, events_client
from core.events.event import Event, InvalidEvent
from core.events.roundtrip import deliver
from core.events.streams import same_slot_key

logger = logging.getLogger("core.events")
SENT_MARK_TTL_SECONDS = 24 * 3600


def record(stream: str, payload: bytes, using: str = DEFAULT_DB_ALIAS) -> int:
    """Write the event's outbox row in the current transaction; returns its id."""
    from core.models import OutboxEvent  # core.models imports nothing from here: apps must load first

    return OutboxEvent.record(stream, payload, using)


def sent_key(stream: str) -> str:
    """The set of outbox ids whose events are in `stream`: in the stream's own slot."""
    return same_slot_key(stream, "outbox-sent")


def fence_key(stream: str) -> str:
    """What the relay writes in `stream`'s slot before its WAIT (module docstring)."""
    return same_slot_key(stream, "outbox-fence")


def replica_wait_ms(client: redis.Redis) -> int:
    """The WAIT timeout the relay confirms its deletions with; 0: none. On a cluster always
    (EVENTS_REPLICA_WAIT_MS, 0 turns it off), on one Redis only while it has replicas connected.
    At most half of REDIS_SOCKET_TIMEOUT: the node's answer must come back before the socket's
    read gives up (a timed-out WAIT would read as the node failing)."""
    timeout = min(settings.EVENTS_REPLICA_WAIT_MS, int(settings.REDIS_SOCKET_TIMEOUT * 500))
    if not timeout or isinstance(client, RedisCluster):
        return timeout
    try:
        replicas = int(client.info("replication").get("connected_slaves") or 0)
    except redis.ResponseError:  # INFO renamed away (some managed Redis): cannot tell, as before
        return 0
    return timeout if replicas else 0


def _by_stream(marks: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for stream, outbox_id in marks:
        grouped.setdefault(stream, []).append(outbox_id)
    return grouped


def mark_sent(pipe: redis.client.Pipeline, marks: Sequence[tuple[str, int]]) -> None:
    """Queue the marks that tell the relay these rows' events are in their streams; `marks` are
    `(stream, outbox id)`, queued after their XADDs (module docstring).

    The relay deletes marked rows and publishes unmarked ones; it removes the marks it consumed.
    The expiry only bounds a set no relay ever empties (no beat running).
    """
    for stream, ids in _by_stream(marks).items():
        pipe.sadd(sent_key(stream), *ids)
        pipe.expire(sent_key(stream), SENT_MARK_TTL_SECONDS)


def unmark_sent(client: redis.Redis, marks: Sequence[tuple[str, int]]) -> None:
    """Take back marks queued for rows whose XADD was refused: the relay must publish them."""
    pipe = client.pipeline(transaction=False)
    for stream, ids in _by_stream(marks).items():
        pipe.srem(sent_key(stream), *ids)
    pipe.execute()


def _marked(client: redis.Redis, rows: Sequence[tuple[int, str]]) -> list[bool]:
    """For `(outbox id, stream)` rows, whether each is marked sent: one SMISMEMBER per stream,
    pipelined (each in its partition's slot)."""
    grouped = _by_stream((stream, outbox_id) for outbox_id, stream in rows)
    pipe = client.pipeline(transaction=False)
    for stream, ids in grouped.items():
        pipe.smismember(sent_key(stream), ids)
    sent: set[tuple[str, int]] = set()
    for (stream, ids), answers in zip(grouped.items(), pipe.execute(), strict=True):
        sent.update((stream, outbox_id) for outbox_id, yes in zip(ids, answers, strict=True) if yes)
    return [(stream, outbox_id) in sent for outbox_id, stream in rows]


def relay_outbox(
    min_age_seconds: float | None = None,
    batch: int | None = None,
    using: str = DEFAULT_DB_ALIAS,
    max_batches: int | None = None,
    max_seconds: float | None = None,
    apply_effects: bool = False,
) -> int:
    """Sweep outbox rows older than `min_age_seconds`, oldest first, until none is left: rows their
    commit marked sent are deleted; the others are sent to their streams, then deleted. Returns the
    number of events this call sent (not counting rows that were only swept). See `relay_pass`."""
    return relay_pass(min_age_seconds, batch, using, max_batches, max_seconds, apply_effects)[0]


def relay_pass(
    min_age_seconds: float | None = None,
    batch: int | None = None,
    using: str = DEFAULT_DB_ALIAS,
    max_batches: int | None = None,
    max_seconds: float | None = None,
    apply_effects: bool = False,
) -> tuple[int, bool]:
    """The relay: `(events sent, drained)`, drained meaning no eligible row was left when it stopped
    but those waiting for a replica to confirm them (kept, marked: the next pass confirms again;
    module docstring). One pass takes each row once, in id order.

    Rows younger than the age are normally being sent by their own commit. Each batch runs in one
    transaction and locks its rows with SKIP LOCKED (PostgreSQL), so concurrent relays never send a
    row twice (rows another relay holds are not seen: "drained" is about this relay's view); if
    Redis fails mid-batch the transaction rolls back and the rows stay. Duplicates with a
    commit-time send are possible and harmless: delivery is at least once, handlers idempotent.
    `max_batches` and `max_seconds` bound one call (the consumer and the writing process's drain
    call again until drained). `apply_effects`: also apply the sent events' direct cache effects
    (the writing process's drain after an outage: read-your-writes). Raises redis errors of the
    events server (the caller retries later); a failed effect is only logged.
    """
    from core.models import OutboxEvent  # see record()

    age = settings.EVENTS_OUTBOX_RELAY_AGE_SECONDS if min_age_seconds is None else min_age_seconds
    size = batch or settings.EVENTS_OUTBOX_RELAY_BATCH
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    client = events_client()
    total = batches = 0
    wait_ms = None
    after = 0  # the last id this pass took: rows it kept are not taken again in the same pass
    while max_batches is None or batches < max_batches:
        if deadline is not None and batches and time.monotonic() >= deadline:
            return total, False
        batches += 1
        cutoff = timezone.now() - timedelta(seconds=age)
        with transaction.atomic(using=using):
            rows = list(
                OutboxEvent.objects.using(using)
                .select_for_update(skip_locked=True)
                .filter(created_at__lte=cutoff, pk__gt=after)
                .order_by("id")[:size]
            )
            if not rows:
                return total, True
            marked = _marked(client, [(row.pk, row.stream) for row in rows])
            unsent = [row for row, sent in zip(rows, marked, strict=True) if not sent]
            if wait_ms is None:
                wait_ms = replica_wait_ms(client)
            if wait_ms:
                done = _send_confirmed(rows, unsent, apply_effects, wait_ms)
            else:
                if unsent:
                    _send_rows(unsent, apply_effects)
                done = rows
            OutboxEvent.objects.using(using).filter(pk__in=[row.pk for row in done]).delete()
            after = rows[-1].pk
        unmark_sent(client, [(row.stream, row.pk) for row in done])  # the marks it consumed
        total += len(unsent)
        if unsent:
            logger.info("outbox relay sent %d events (and swept %d)", len(unsent), len(rows) - len(unsent))
        if len(done) < len(rows):
            logger.warning(
                "outbox relay: kept %d rows, no replica confirmed them within %d ms (sent again "
                "only if a promotion lost them)",
                len(rows) - len(done),
                wait_ms,
            )
        if len(rows) < size:
            return total, True
    return total, False


def _send_confirmed(rows: Sequence, unsent: Sequence, apply_effects: bool, wait_ms: int) -> list:
    """Send `unsent` (and mark them), fence every partition of `rows`, WAIT per node: the rows
    whose partition a replica confirmed (module docstring)."""
    streams = list(dict.fromkeys(row.stream for row in rows))

    def queue(pipe, marks) -> None:
        mark_sent(pipe, marks)
        for stream in streams:
            pipe.set(fence_key(stream), 1, ex=SENT_MARK_TTL_SECONDS)

    if unsent:
        replicated = _send_rows(unsent, apply_effects, queue, wait_ms)[-len(streams) :]
    else:
        pipe = events_client().pipeline(transaction=False)
        queue(pipe, ())
        pipe.confirm_replicas(1, wait_ms)
        pipe.execute()
        replicated = pipe.replicated
    confirmed = {stream for stream, yes in zip(streams, replicated, strict=True) if yes}
    return [row for row in rows if row.stream in confirmed]


def _send_rows(rows: Sequence, apply_effects: bool, queue_marks=None, confirm_ms: int = 0) -> list:
    """XADD the rows' events (and their effects): raises if Redis refused any, so that the batch's
    transaction rolls back and its rows stay for the next relay. With `queue_marks`, the rows'
    marks `(stream, id)` are queued by it after the XADDs; with `confirm_ms`, returns which of
    those commands a replica confirmed (`deliver`)."""
    events = None
    if apply_effects:
        events = []
        for row in rows:
            with contextlib.suppress(InvalidEvent):  # the consumer dead-letters it; no effect here
                events.append(Event.decode(bytes(row.payload)))
    delivery = deliver(
        [(row.stream, bytes(row.payload)) for row in rows],
        events,
        marks=[(row.stream, row.pk) for row in rows] if queue_marks is not None else (),
        queue_marks=queue_marks,
        confirm_ms=confirm_ms,
    )
    refused = delivery.refused()
    if refused:
        raise redis.ResponseError(
            f"xadd refused for {len(refused)} outbox rows: {delivery.xadds[refused[0]]}"
        )
    if delivery.effects_error is not None:
        logger.warning(
            "outbox relay: cache effects failed (the worker applies them): %s", delivery.effects_error
        )
    elif delivery.effects is not None:
        for event, error in delivery.effects.failed():
            logger.warning(
                "outbox relay: effect failed: event_id=%s type=%s error=%s", event.id, event.type, error
            )
    return delivery.marks_replicated or []


def outbox_rows_before(moment, using: str = DEFAULT_DB_ALIAS, limit: int = 1000) -> bool:
    """Are there outbox rows recorded before `moment` whose events are not marked sent (in their
    streams, their effects applied with them)? Locked rows count: a relay marks what it sent. Rows
    kept only for a replica's confirmation do not. More than `limit` rows: yes."""
    from core.models import OutboxEvent  # see record()

    rows = list(
        OutboxEvent.objects.using(using)
        .filter(created_at__lte=moment)
        .order_by("id")
        .values_list("id", "stream")[:limit]
    )
    if not rows:
        return False
    if len(rows) == limit:
        return True
    return not all(_marked(events_client(), rows))


def outbox_backlog(using: str = DEFAULT_DB_ALIAS, limit: int = 100_000) -> int:
    """Outbox rows whose events are not known to be in their streams (not marked sent): what the
    relay still has to publish. Rows sent but not yet swept do not count. All of them while Redis
    cannot be asked."""
    from core.models import OutboxEvent  # see record()

    rows = list(OutboxEvent.objects.using(using).order_by("id").values_list("id", "stream")[:limit])
    if not rows:
        return 0
    try:
        marked = _marked(events_client(), rows)
    except (redis.RedisError, *UNAVAILABLE):
        return len(rows)
    return sum(1 for sent in marked if not sent)
