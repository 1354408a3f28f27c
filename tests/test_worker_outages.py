"""A Celery worker, and the stream consumer in it, survives any number of Redis outages.

A real `celery -A themoon worker` runs against a private redis-server (cache, streams, results and,
in one case, the broker) while a writer keeps creating and editing posts. Redis goes away four
times in a row, by SHUTDOWN NOSAVE (what SIGTERM does) and by kill -9, a few seconds each, and comes
back empty. Then: the worker process is still alive, a task sent after the last outage runs, and
the posts written during the last outage (outboxed, relayed by that task) and after it reach the
cache with their latest body, so the consumer consumes again. Run with the Redis broker and with
RabbitMQ (a vhost of our own; skipped where no RabbitMQ answers on 127.0.0.1:5672).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest
from celery import Celery

from accounts.models import AppUser
from feed.models import Follow
from tests.polling import eventually
from tests.subprocesses import ROOT, PrivateRedis, Processes, database_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

OUTAGES = ("shutdown", "kill", "shutdown", "kill")
OUTAGE_SECONDS = 3.0
RABBITMQ = ("127.0.0.1", 5672)

# Runs in its own process (Django set up against the private Redis): creates and then edits posts
# until the stop file appears, printing each post's id. Redis down: the writes still commit and
# their events wait in the outbox.
WRITER = """
import os, sys, time
import django
django.setup()
from accounts.models import AppUser
from feed.models import Post
author = AppUser.objects.get(username="outage-author")
n = 0
while not os.path.exists(sys.argv[1]):
    post = Post.objects.create(author=author, body=f"post {n}")
    post.body = f"post {n}, edited"
    post.save()
    print("POST", post.pk, flush=True)
    n += 1
    time.sleep(0.5)
"""

# Prints {post id: whether the cache serves the post's current body} for the ids given.
CACHED = """
import json, sys
import django
django.setup()
from feed.cache import PostDetailCache
from feed.models import Post
class Miss(Exception):
    pass
def miss():
    raise Miss
details = PostDetailCache()
served = {}
for post in Post.objects.filter(pk__in=[int(i) for i in sys.argv[1:]]):
    try:
        served[post.pk] = (details.get_post(post.pk, miss) or {}).get("body") == post.body
    except Miss:
        served[post.pk] = False
print(json.dumps(served))
"""


def _rabbitmq_answers() -> bool:
    try:
        socket.create_connection(RABBITMQ, timeout=0.5).close()
    except OSError:
        return False
    return shutil.which("rabbitmqctl") is not None


@pytest.fixture
def rabbitmq_vhost():
    """A vhost of this run's own on the local RabbitMQ, deleted afterwards (others use the server)."""
    if not _rabbitmq_answers():
        pytest.skip("no RabbitMQ (and rabbitmqctl) on 127.0.0.1:5672")
    vhost = f"themoon-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield vhost
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture(params=["redis", "amqp"])
def broker_url(request, unused_port):
    """The broker the worker uses: the private Redis itself (database 1), or RabbitMQ."""
    if request.param == "redis":
        return f"redis://127.0.0.1:{unused_port}/1"
    vhost = request.getfixturevalue("rabbitmq_vhost")
    return f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/{vhost}"


def _django(env: dict, code: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.standalone_only(reason="its worker's Redis is a private standalone redis-server it kills")
def test_worker_and_its_consumer_survive_repeated_redis_outages(
    transactional_db, tmp_path, unused_port, broker_url, monkeypatch
):
    author = AppUser.objects.create(username="outage-author", password="!")
    # More followers than FEED_FANOUT_CHUNK: the consumer sends fan-out tasks through the broker.
    followers = AppUser.objects.bulk_create([AppUser(username=f"fan{i}", password="!") for i in range(6)])
    Follow.objects.bulk_create([Follow(follower=f, followee=author) for f in followers])

    redis_server = PrivateRedis(unused_port, tmp_path)
    redis_server.start()
    results = f"redis://127.0.0.1:{unused_port}/2"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "themoon.settings_test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": f"redis://127.0.0.1:{unused_port}/0",
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": results,
        "EVENTS_BLOCK_MS": "200",
        "EVENTS_OUTBOX_RELAY_AGE_SECONDS": "0.5",
        "FEED_FANOUT_CHUNK": "5",
        "LOG_LEVEL": "INFO",
    }
    procs = Processes(env, tmp_path)
    # Celery prefers these variables to the arguments: the suite's own would win.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_RESULT_BACKEND", raising=False)
    client = Celery("outage-test", broker=broker_url, backend=results)
    stop_writing = tmp_path / "stop-writing"
    try:
        worker = procs.worker("outage-worker", "--concurrency", "2", host="outages")
        eventually(lambda: "ready." in procs.log("outage-worker"), timeout=60, interval=0.2)
        writer = procs.start("writer", "-c", WRITER, str(stop_writing))
        eventually(lambda: _written(procs), timeout=30, interval=0.2)

        last_outage_began = 0
        for kind in OUTAGES:
            time.sleep(2.0)  # up: the worker reconnects, the consumer catches up
            last_outage_began = len(_written(procs))
            redis_server.shutdown() if kind == "shutdown" else redis_server.stop()
            time.sleep(OUTAGE_SECONDS)
            assert worker.poll() is None, (
                f"the worker died in a Redis {kind}:\n{procs.log('outage-worker')[-5000:]}"
            )
            redis_server.start()

        # After the last outage: a task runs (it relays what the outage left in the outbox)...
        relay = client.send_task("workers.relay_outbox", ignore_result=False)
        assert isinstance(relay.get(timeout=90), int)
        # ...and what is written now flows again, without the relay.
        seen = len(_written(procs))
        eventually(lambda: len(_written(procs)) >= seen + 6, timeout=30, interval=0.2)
        stop_writing.touch()
        assert writer.wait(timeout=30) == 0, procs.log("writer")[-3000:]

        from core.models import OutboxEvent

        def outbox_drained() -> bool:
            # What beat would do (this test runs none): relay what is old enough, until nothing is left.
            client.send_task("workers.relay_outbox", ignore_result=False).get(timeout=60)
            return not OutboxEvent.objects.exists()

        eventually(outbox_drained, timeout=60, interval=1.0)
        since_last_outage = _written(procs)[last_outage_began:]
        assert len(since_last_outage) >= 10, since_last_outage

        def all_served() -> dict | bool:
            served = json.loads(_django(env, CACHED, *since_last_outage))
            return all(served.values()) or {i: ok for i, ok in served.items() if not ok}

        eventually(all_served, timeout=60, interval=1.0)
        assert worker.poll() is None, procs.log("outage-worker")[-5000:]
        log = procs.log("outage-worker")
        assert "Unrecoverable error" not in log, log[-5000:]
    finally:
        stop_writing.touch()
        client.close()
        procs.stop_all()
        redis_server.stop()


def _written(procs: Processes) -> list[str]:
    return [line.split()[1] for line in procs.log("writer").splitlines() if line.startswith("POST ")]


def test_a_detached_broker_channel_fails_as_a_connection_error_not_an_attribute_error():
    """The crash the soak reproduced: kombu restores unacknowledged messages while closing a channel
    whose transport is already detached from its connection. Ours raises a connection error there,
    which Celery recovers from; kombu's own Channel raises AttributeError, which ends the worker."""
    import redis as redis_py
    from django.conf import settings
    from kombu import Connection
    from kombu.transport import redis as kombu_redis

    assert settings.CELERY_BROKER_TRANSPORT == "themoon.broker:Transport"
    with Connection(settings.CELERY_BROKER_URL, transport=settings.CELERY_BROKER_TRANSPORT) as connection:
        channel = connection.channel()
        channel._disconnect_pools()
        channel.connection.client = None  # what Connection._do_close_transport leaves behind
        with pytest.raises(redis_py.ConnectionError):
            channel._connparams()
        stock = kombu_redis.Channel._connparams
        with pytest.raises(AttributeError):
            stock(channel)
