"""Prometheus at /metrics: this process's counters plus pipeline gauges read from Redis at scrape.

Counters and histograms are per process (web: cache hits/misses, events published; a worker serves
its own on WORKER_METRICS_PORT, see workers/bootsteps.py: events consumed, dead-lettered, batch
time, lag). The gauges below
are the shared truth from Redis and the database, the same from any process.
"""

import redis
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from core.caching import stats
from core.connections import UNAVAILABLE, events_client
from core.events import all_streams, dead_letter_stream, outbox_backlog
from ops.access import ops_only


class CacheCollector:
    """Hits and misses per cache namespace, as counted by this process's strategies."""

    def collect(self):
        family = CounterMetricFamily(
            "themoon_cache_requests", "Cache reads by namespace and result", labels=["namespace", "result"]
        )
        for namespace, counts in stats.snapshot().items():
            family.add_metric([namespace, "hit"], counts["hits"])
            family.add_metric([namespace, "miss"], counts["misses"])
        yield family


class PipelineCollector:
    """Stream length, consumer lag, pending entries, consumers, dead letters, outbox backlog."""

    def collect(self):
        length = GaugeMetricFamily("themoon_stream_length", "Entries in the stream", labels=["stream"])
        lag = GaugeMetricFamily("themoon_stream_lag", "Entries not yet delivered", labels=["stream", "group"])
        pending = GaugeMetricFamily(
            "themoon_stream_pending", "Delivered, not yet acknowledged", labels=["stream", "group"]
        )
        consumers = GaugeMetricFamily("themoon_stream_consumers", "Consumers", labels=["stream", "group"])
        dead = GaugeMetricFamily("themoon_dead_letters", "Entries in the dead-letter stream")
        outbox = GaugeMetricFamily("themoon_outbox_backlog", "Outbox events not yet in their streams")
        client = events_client()  # the streams live on the events server
        try:
            for stream in all_streams():
                length.add_metric([stream], client.xlen(stream))
                try:
                    groups = client.xinfo_groups(stream)
                except redis.ResponseError:
                    continue
                for group in groups:
                    name = group["name"].decode()
                    lag.add_metric([stream, name], group.get("lag") or 0)
                    pending.add_metric([stream, name], group["pending"])
                    consumers.add_metric([stream, name], group["consumers"])
            dead.add_metric([], client.xlen(dead_letter_stream()))
        except (redis.RedisError, *UNAVAILABLE):  # a cluster that lost every node: not a RedisError
            pass  # Redis down: the gauges are absent; /api/health says why
        outbox.add_metric([], outbox_backlog())
        yield from (length, lag, pending, consumers, dead, outbox)


_registered = False


def register_collectors() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(CacheCollector())
        REGISTRY.register(PipelineCollector())
        _registered = True


@ops_only
def metrics_view(request: HttpRequest) -> HttpResponse:
    register_collectors()
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
