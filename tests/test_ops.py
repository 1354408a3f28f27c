"""The operational endpoints (ops/): /api/health, /api/health/live and /metrics."""

import redis
from django.test import Client

from feed.cache import PostDetailCache
from tests.factories import make_post
from tests.polling import eventually


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
    import ops.health

    dead = redis.Redis(port=unused_port, socket_connect_timeout=0.05)
    monkeypatch.setattr(ops.health, "cache_client", lambda: dead)
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
