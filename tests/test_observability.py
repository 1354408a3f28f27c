"""Health, metrics and structured logs: what an operator sees at 3 a.m."""

import logging

import orjson
import redis
from django.test import Client

from core.events import Event, stream_name
from core.events.streams import EVENT_FIELD
from core.logs import JsonFormatter
from feed.cache import PostDetailCache
from tests.factories import make_post
from tests.polling import eventually
from workers.consumer import StreamConsumer


def test_health_is_ok_with_a_live_consumer(pipeline_worker):
    # No event yet: Redis lists no consumer in the group, the heartbeat still shows it alive.
    eventually(lambda: Client().get("/api/health").status_code == 200)
    make_post()
    body = Client().get("/api/health").json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["redis"] == "ok"
    assert body["live_consumers"] >= 1


def test_health_is_503_without_consumers_and_says_why(transactional_db):
    response = Client().get("/api/health")
    assert response.status_code == 503
    assert any("no live stream consumer" in problem for problem in response.json()["problems"])
    assert Client().get("/api/health/live").status_code == 200


def test_health_is_503_when_redis_is_down(transactional_db, monkeypatch, unused_port):
    import workers.health

    dead = redis.Redis(port=unused_port, socket_connect_timeout=0.05)
    monkeypatch.setattr(workers.health, "cache_client", lambda: dead)
    response = Client().get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["redis"].startswith("error")


def test_metrics_expose_cache_and_pipeline_figures(transactional_db, redis_client):
    post = make_post()
    cache = PostDetailCache()
    cache.get_post(post.pk, lambda: {"id": post.pk, "version": 1})
    cache.get_post(post.pk, lambda: {"id": post.pk, "version": 1})
    response = Client().get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'themoon_cache_requests_total{namespace="feed",result="hit"}' in text
    assert 'themoon_events_published_total{stream="themoon:events:feed"}' in text
    assert 'themoon_stream_length{stream="themoon:events:feed"} 1.0' in text
    assert "themoon_outbox_backlog 0.0" in text


def test_dead_letter_log_line_carries_the_event_id_as_a_field(transactional_db, redis_client, caplog):
    event = Event("post.updated", 2, {"no": "post"})
    redis_client.xadd(stream_name("feed"), {EVENT_FIELD: event.encode()})
    consumer = StreamConsumer(name="logger")
    consumer.max_deliveries = 1
    consumer.ensure_groups()
    with caplog.at_level(logging.ERROR, logger="workers.consumer"):
        consumer.process(consumer.read(pending=False))
    record = next(r for r in caplog.records if "dead-lettered" in r.getMessage())
    line = orjson.loads(JsonFormatter().format(record))
    assert line["event_id"] == event.id
    assert line["event_type"] == "post.updated"
    assert line["level"] == "ERROR"
