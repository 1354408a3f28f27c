"""Two Redis roles: the evictable cache (REDIS_URL) and the events server (EVENTS_REDIS_URL) with
the durable state. Real redis-server processes of this test's own, configured the way a
deployment runs them (docker-compose.yml), or wrongly."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from core.caching import CacheManager, GuardedRedis, NamespaceKeys, epoch_key, epochs
from core.events import outbox_backlog, stream_name
from core.events.outbox import sent_key
from core.events.recovery import recovery
from core.redis_roles import check_redis_roles, describe
from feed.cache import PostDetailCache
from tests.factories import make_post
from tests.subprocesses import PrivateRedis, database_url, free_port
from workers.consumer import StreamConsumer

pytestmark = pytest.mark.standalone_only(
    reason="the events role runs on private standalone redis-servers (both roles share the cluster there)"
)

ROOT = Path(__file__).resolve().parent.parent
details = PostDetailCache()


@pytest.fixture
def events_server(tmp_path):
    server = PrivateRedis(free_port(), tmp_path, aof=True, policy="noeviction")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def evicting_server(tmp_path):
    server = PrivateRedis(free_port(), tmp_path, maxmemory="20mb", policy="allkeys-lru")
    server.start()
    yield server
    server.stop()


# --- the start-up check --------------------------------------------------------------------


def test_an_evicting_events_redis_refuses_the_start(settings, evicting_server):
    settings.EVENTS_REDIS_URL = evicting_server.url
    with pytest.raises(ImproperlyConfigured, match="EVENTS_REDIS_ALLOW_EVICTION") as refused:
        check_redis_roles("web")
    assert "allkeys-lru" in str(refused.value)


def test_the_override_starts_with_a_loud_warning(settings, evicting_server, caplog):
    settings.EVENTS_REDIS_URL = evicting_server.url
    settings.EVENTS_REDIS_ALLOW_EVICTION = True
    with caplog.at_level(logging.WARNING, logger="core.redis_roles"):
        report = check_redis_roles("web")
    assert report["events"]["evicting"] is True
    assert any("EVENTS_REDIS_ALLOW_EVICTION=true" in r.getMessage() for r in caplog.records)


def test_a_noeviction_events_redis_starts_and_an_unbounded_cache_warns(settings, events_server, caplog):
    settings.EVENTS_REDIS_URL = events_server.url
    with caplog.at_level(logging.WARNING, logger="core.redis_roles"):
        report = check_redis_roles("worker")
    assert report["shared"] is False
    assert report["events"]["maxmemory_policy"] == "noeviction"
    assert report["cache"]["unbounded"] is True  # the test Redis runs without maxmemory
    assert any("no maxmemory" in r.getMessage() for r in caplog.records)


def test_an_unreachable_events_redis_only_warns(settings, unused_port, caplog):
    settings.EVENTS_REDIS_URL = f"redis://127.0.0.1:{unused_port}/0"
    with caplog.at_level(logging.WARNING, logger="core.redis_roles"):
        report = check_redis_roles("web")  # degrade, don't fail: start while Redis is away
    assert report["events"]["reachable"] is False
    assert any("unreachable at start" in r.getMessage() for r in caplog.records)


def test_with_config_disabled_the_policy_is_read_from_info(tmp_path):
    server = PrivateRedis(
        free_port(), tmp_path, extra=("--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", '""')
    )
    server.start()
    try:
        with pytest.raises(redis.ResponseError):
            server.client().config_get("maxmemory")
        found = describe(server.client())
    finally:
        server.stop()
    assert found["maxmemory_policy"] == "allkeys-lru"
    assert found["source"] == "info (CONFIG disabled)"


def test_a_worker_refuses_to_start_with_an_evicting_events_redis(transactional_db, evicting_server):
    import os

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "themoon.settings_test", "DATABASE_URL": database_url()}
    env["EVENTS_REDIS_URL"] = evicting_server.url
    worker = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "themoon", "worker", "--pool", "solo", "--loglevel", "INFO"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = worker.stdout + worker.stderr
    assert worker.returncode != 0, output[-2000:]
    assert "EVENTS_REDIS_ALLOW_EVICTION" in output, output[-2000:]


# --- two servers at work -------------------------------------------------------------------


def test_events_go_to_the_events_server_and_effects_to_the_cache(
    transactional_db, settings, events_server, redis_client
):
    settings.EVENTS_REDIS_URL = events_server.url
    settings.EVENTS_APPLY_ON_COMMIT = True
    post = make_post(body="v1")
    events = events_server.client()
    assert events.xlen(stream_name("feed")) == 1
    assert redis_client.exists(stream_name("feed")) == 0, "no stream on the cache server"
    assert outbox_backlog() == 0, "the sent mark is on the events server"
    assert events.exists(sent_key(stream_name("feed"))) == 1
    assert redis_client.exists(sent_key(stream_name("feed"))) == 0

    assert details.get_post(post.pk, lambda: {"id": post.pk, "body": "v1", "version": 1})["body"] == "v1"
    post.body = "v2"
    post.save()
    consumer = StreamConsumer(name="split")
    consumer.ensure_groups()
    consumer.process(consumer.read(pending=False))
    assert details.get(details.detail_key(post.pk))["body"] == "v2"
    assert events.xpending(stream_name("feed"), "cache")["pending"] == 0, "acknowledged on the events server"
    assert redis_client.exists(stream_name("feed")) == 0


def test_namespace_epochs_live_on_the_events_server_and_survive_the_cache_evicting(
    settings, events_server, redis_client
):
    """An epoch evicted from the cache would read as 0 and revive every key its bumps voided: the
    epochs are durable state, so they live on the events server."""
    settings.EVENTS_REDIS_URL = events_server.url
    keys = NamespaceKeys("things", 1, GuardedRedis())
    old_key = keys.build("item", 1)
    redis_client.set(old_key, b"before the bump", ex=60)
    assert CacheManager().bump_namespace("things") == 1
    assert events_server.client().get(epoch_key("things")) == b"1"
    assert not redis_client.exists(epoch_key("things")), "nothing of it on the evictable cache"
    redis_client.flushdb()  # the cache loses everything it holds (eviction at its worst)
    redis_client.set(old_key, b"before the bump", ex=60)  # a bumped-away key outliving it
    epochs.forget()  # another process, or this one after its copy aged out
    assert keys.epoch() == 1
    assert keys.build("item", 1) != old_key


def test_a_cache_failure_does_not_unsend_the_events(
    transactional_db, settings, events_server, redis_client, monkeypatch, unused_port
):
    import core.events.roundtrip as roundtrip

    settings.EVENTS_REDIS_URL = events_server.url
    settings.EVENTS_APPLY_ON_COMMIT = True
    dead = redis.Redis(port=unused_port, socket_connect_timeout=0.05, socket_timeout=0.05)
    monkeypatch.setattr(roundtrip, "cache_client", lambda: dead)
    make_post(body="sent though the cache was away")
    assert events_server.client().xlen(stream_name("feed")) == 1
    assert outbox_backlog() == 0
    assert recovery.recovering, "its effects are missing: this process reads from the database for now"


def test_health_reports_both_roles(transactional_db, settings, events_server):
    settings.EVENTS_REDIS_URL = events_server.url
    body = Client().get("/api/health").json()
    roles = body["redis_roles"]
    assert body["redis"] == "ok"
    assert body["events_redis"] == "ok"
    assert roles["shared"] is False
    assert roles["events"]["url"] == f"127.0.0.1:{events_server.port}/0"
    assert roles["events"]["maxmemory_policy"] == "noeviction"
    assert roles["events"]["evicting"] is False
    assert roles["cache"]["reachable"] is True


def test_health_flags_an_evicting_events_redis(transactional_db, settings, evicting_server):
    settings.EVENTS_REDIS_URL = evicting_server.url
    response = Client().get("/api/health")
    assert response.status_code == 503
    assert any("events Redis evicts" in problem for problem in response.json()["problems"])


def test_health_reports_an_unreachable_events_redis(transactional_db, settings, unused_port):
    settings.EVENTS_REDIS_URL = f"redis://127.0.0.1:{unused_port}/0"
    response = Client().get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["redis"] == "ok"
    assert body["events_redis"].startswith("error")
    assert body["redis_roles"]["events"]["reachable"] is False
