"""Pipeline maintenance tasks, scheduled by beat (themoon/celery.py). Named, short, idempotent.
Optimisations only: without beat the consumers still relay the outbox and reclaim stuck entries."""

import logging

from celery import shared_task
from django.conf import settings

from core.connections import stream_client
from core.events import relay_outbox, trim_streams
from workers.locks import single_flight

logger = logging.getLogger("workers")


@shared_task(name="workers.relay_outbox", ignore_result=True)
def relay_outbox_task() -> int:
    """Publish outbox rows whose commit-time send did not happen (Redis was down, a crash). An
    extra: every worker's stream consumer relays too, so delivery does not depend on beat."""
    with single_flight("relay_outbox", ttl_seconds=60) as mine:
        return relay_outbox() if mine else 0


@shared_task(name="workers.trim_streams", ignore_result=True)
def trim_streams_task() -> dict:
    """Drop stream entries every consumer group has acknowledged: bounded memory, nothing lost."""
    with single_flight("trim_streams", ttl_seconds=120) as mine:
        return trim_streams(stream_client()) if mine else {}


# A consumer silent this long, with nothing pending, is gone: its name leaves the group.
FORGET_CONSUMERS_AFTER_MS = 3600 * 1000


@shared_task(name="workers.reclaim_pending", ignore_result=True)
def reclaim_pending_task() -> int:
    """Apply entries stuck with dead consumers, even when no live consumer is reclaiming, and drop
    long-gone consumers from the group."""
    from workers.consumer import StreamConsumer

    with single_flight("reclaim_pending", ttl_seconds=120) as mine:
        if not mine:
            return 0
        consumer = StreamConsumer(name=f"reclaimer-{settings.EVENTS_CONSUMER_GROUP}")
        consumer.ensure_groups()
        reclaimed = consumer.reclaim()
        consumer.forget_idle_consumers(FORGET_CONSUMERS_AFTER_MS)
        return reclaimed
