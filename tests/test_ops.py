"""The operational endpoints (ops/): /api/health, /api/health/live and /metrics."""

import os
import signal
import subprocess

import pytest
import redis
from django.test import Client
from redis.exceptions import RedisClusterException

from feed.cache import PostDetailCache
from tests.clusters import free_port_bases
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


def _lost_cluster_client(tmp_path, port: int):
    """A cluster client of a one-node Redis Cluster that was then killed: its calls raise redis-py's
    RedisClusterException ("cannot be connected"), which is not a redis.RedisError."""
    from redis.cluster import ClusterNode

    from core.connections import ClusterRedis

    pidfile = tmp_path / "node.pid"
    subprocess.run(
        ["redis-server", "--port", str(port), "--cluster-enabled", "yes", "--daemonize", "yes",
         "--cluster-config-file", str(tmp_path / "nodes.conf"), "--dir", str(tmp_path),
         "--pidfile", str(pidfile), "--save", "", "--appendonly", "no"],
        check=True,
    )  # fmt: skip
    node = redis.Redis(port=port, socket_connect_timeout=0.5)
    eventually(lambda: _answers(node), timeout=30)
    node.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
    eventually(lambda: node.cluster("info")["cluster_state"] == "ok")
    client = ClusterRedis(
        startup_nodes=[ClusterNode("127.0.0.1", port)], socket_timeout=0.25, socket_connect_timeout=0.05
    )
    assert client.ping()
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    eventually(lambda: not _answers(node))
    return client


def _answers(node: redis.Redis) -> bool:
    try:
        return node.ping()
    except redis.ConnectionError:
        return False


def test_health_and_metrics_answer_when_a_cluster_lost_every_node(transactional_db, monkeypatch, tmp_path):
    import core.events.outbox
    import ops.health
    import ops.metrics

    # A port whose cluster bus port (+10000) is free and valid: an ephemeral port may be above 55535.
    lost = _lost_cluster_client(tmp_path, next(free_port_bases(count=1)))
    with pytest.raises(RedisClusterException):  # what the endpoints must absorb
        lost.xlen("x")
    for module in (ops.health, ops.metrics, core.events.outbox):
        monkeypatch.setattr(module, "events_client", lambda: lost)
    response = Client().get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["events_redis"].startswith("error")
    assert body["redis_roles"]["events"]["reachable"] is False
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert "themoon_outbox_backlog" in response.content.decode()
