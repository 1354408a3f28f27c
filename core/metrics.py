"""Prometheus metrics the pipeline updates as it works (per process; see ops/metrics.py for
the gauges read from Redis at scrape time)."""

from prometheus_client import Counter, Histogram

EVENTS_PUBLISHED = Counter(
    "themoon_events_published_total", "Events sent to their stream after commit", ["stream"]
)
EVENTS_OUTBOXED = Counter(
    "themoon_events_left_in_outbox_total", "Events whose commit-time send failed (the relay sends them)"
)
EVENTS_CONSUMED = Counter("themoon_events_consumed_total", "Events applied and acknowledged", ["stream"])
EVENTS_DEAD = Counter("themoon_events_dead_lettered_total", "Events moved to the dead-letter stream")
EVENTS_RETRIED = Counter("themoon_events_retried_total", "Event applications that failed and will retry")
BATCH_SECONDS = Histogram(
    "themoon_consumer_batch_seconds",
    "Time to apply one batch of events (handlers, pipeline, after_batch, ack)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENT_LAG_SECONDS = Histogram(
    "themoon_event_lag_seconds",
    "From an event's creation (in the writing transaction) to its effects applied by a consumer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
