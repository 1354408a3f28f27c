"""Runs the stream consumer inside `celery -A themoon worker`: scaling workers scales consumers."""

import logging
import threading

from celery import bootsteps

logger = logging.getLogger("workers.consumer")


class StreamConsumerStep(bootsteps.StartStopStep):
    """A worker bootstep: one StreamConsumer thread in the worker's main process."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        self.consumer = None
        self.thread: threading.Thread | None = None

    def start(self, worker) -> None:
        from django.conf import settings

        from core.redis_roles import check_redis_roles
        from workers.consumer import StreamConsumer, consumer_name

        # An evicting events Redis refuses the start (ImproperlyConfigured stops the worker).
        check_redis_roles(f"worker {worker.hostname}")
        serve_worker_metrics()

        if not settings.EVENTS_CONSUMER_ENABLED:
            logger.info("stream consumer disabled (EVENTS_CONSUMER_ENABLED=false)")
            return
        # Named after the Celery node (e.g. worker1@host) so operators can tell consumers apart.
        self.consumer = StreamConsumer(name=consumer_name(worker.hostname))
        self.thread = threading.Thread(
            target=self.consumer.run, name=f"stream-consumer-{self.consumer.name}", daemon=True
        )
        self.thread.start()
        worker.stream_consumer = self.consumer

    def stop(self, worker) -> None:
        """On SIGTERM Celery stops its steps: finish the batch in hand, then return."""
        if self.consumer is None:
            return
        self.consumer.stop()
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.consumer = None

    # Warm shutdown, cold shutdown and termination all end the consumer the same way.
    shutdown = stop
    terminate = stop


def serve_worker_metrics() -> None:
    """In a worker: serve this process's metrics on WORKER_METRICS_PORT (if set)."""
    from django.conf import settings

    if settings.WORKER_METRICS_PORT:
        from prometheus_client import start_http_server

        from ops.metrics import register_collectors

        register_collectors()
        start_http_server(settings.WORKER_METRICS_PORT)
