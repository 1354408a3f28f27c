"""The Celery app: config from Django settings (CELERY_*), tasks autodiscovered, the beat schedule,
and the stream consumer bootstep that makes every worker a consumer of the event streams."""

import os

from celery import Celery, signals

from workers.bootsteps import StreamConsumerStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "themoon.settings")

app = Celery("themoon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.steps["worker"].add(StreamConsumerStep)


# (name, setting holding its period in seconds, task). Periods and sizes are settings (env overrides).
BEAT_SCHEDULE = [
    ("relay-outbox", "BEAT_OUTBOX_RELAY_SECONDS", "workers.relay_outbox"),
    ("trim-streams", "BEAT_STREAM_TRIM_SECONDS", "workers.trim_streams"),
    ("reclaim-pending", "BEAT_RECLAIM_SECONDS", "workers.reclaim_pending"),
    ("warm-popular-posts", "BEAT_WARM_POSTS_SECONDS", "feed.warm_popular_posts"),
    ("warm-active-feeds", "BEAT_WARM_FEEDS_SECONDS", "feed.warm_active_feeds"),
]


@app.on_after_configure.connect
def schedule_periodic_tasks(sender: Celery, **kwargs) -> None:
    """Read the periods once Django settings are loaded (not at import: settings import us)."""
    from django.conf import settings

    for name, setting, task in BEAT_SCHEDULE:
        seconds = float(getattr(settings, setting))
        # A run that could not start within its own period is dropped, not piled up.
        sender.add_periodic_task(seconds, sender.signature(task), name=name, expires=max(seconds * 0.9, 1.0))


@signals.celeryd_after_setup.connect
def freeze_worker_heap(sender, **kwargs) -> None:
    """`celery worker` only (not an embedded test worker): the heap it started with, frozen before
    the pool forks and the stream consumer starts (themoon/heap.py)."""
    from themoon.heap import freeze_startup_heap

    freeze_startup_heap(urlconf=False)
