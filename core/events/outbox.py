"""The outbox relay: publishes events whose commit-time send did not happen (Redis down, crash)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from core.connections import cache_client
from core.events.streams import EVENT_FIELD

logger = logging.getLogger("core.events")


def relay_outbox(
    min_age_seconds: float | None = None, batch: int | None = None, using: str = DEFAULT_DB_ALIAS
) -> int:
    """Send outbox rows older than `min_age_seconds` to their streams, oldest first; delete them.

    Rows younger than the age are normally being sent by their own commit. Each batch runs in one
    transaction and locks its rows with SKIP LOCKED (PostgreSQL), so concurrent relays never send a
    row twice; if Redis fails mid-batch the transaction rolls back and the rows stay. Duplicates
    with a commit-time send are possible and harmless: delivery is at least once, handlers idempotent.
    Returns the number of events sent. Raises redis errors (the caller retries later).
    """
    from core.models import OutboxEvent

    age = settings.EVENTS_OUTBOX_RELAY_AGE_SECONDS if min_age_seconds is None else min_age_seconds
    size = batch or settings.EVENTS_OUTBOX_RELAY_BATCH
    client = cache_client()
    total = 0
    while True:
        cutoff = timezone.now() - timedelta(seconds=age)
        with transaction.atomic(using=using):
            rows = list(
                OutboxEvent.objects.using(using)
                .select_for_update(skip_locked=True)
                .filter(created_at__lte=cutoff)
                .order_by("id")[:size]
            )
            if not rows:
                return total
            pipe = client.pipeline(transaction=False)
            for row in rows:
                pipe.xadd(
                    row.stream,
                    {EVENT_FIELD: bytes(row.payload)},
                    maxlen=settings.EVENTS_STREAM_MAXLEN,
                    approximate=True,
                )
            pipe.execute()
            OutboxEvent.objects.using(using).filter(pk__in=[row.pk for row in rows]).delete()
        total += len(rows)
        logger.info("outbox relay sent %d events", len(rows))
        if len(rows) < size:
            return total


def outbox_size(using: str = DEFAULT_DB_ALIAS) -> int:
    from core.models import OutboxEvent

    return OutboxEvent.objects.using(using).count()
