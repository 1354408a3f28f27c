"""A short partition between the app and Redis, for real: a TCP proxy (tests/tcp_proxy.py) sits
between the processes and Redis and the test cuts it. Real uvicorn web processes (the Procfile's
command) and a real `celery worker`; NO beat process anywhere.

- Read-your-writes: an edit made during the partition is served by the next GET after healing,
  though the cache still held the previous body and no relay, worker or beat ran.
- A process that only saw its reads fail is in the same position: it reads from the database
  until the outbox it could not see is drained.
- Delivery needs no beat: a backlog of several relay batches, written while Redis was away,
  reaches the cache and leaves the outbox empty, drained by the writer itself, or by a worker
  when the writer died.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from core.models import OutboxEvent
from feed.cache import PostDetailCache
from feed.models import Post
from tests.polling import eventually
from tests.subprocesses import database_url
from tests.tcp_proxy import TcpProxy
from tests.test_security_server import free_port, listening, procfile_web_command, stop

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    # A cluster client connects to the addresses CLUSTER SLOTS announces, not to the proxy it was
    # given: one proxy cannot stand between a process and a cluster (tests/test_cluster_failover.py
    # cuts a master instead).
    pytest.mark.standalone_only(reason="cuts one standalone Redis off through a TCP proxy"),
]
details = PostDetailCache()
BATCH = 10


def redis_target() -> tuple[str, int, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(settings.REDIS_URL)
    return parts.hostname, parts.port or 6379, int((parts.path or "/0").lstrip("/") or 0)


@pytest.fixture
def proxy():
    host, port, _ = redis_target()
    line = TcpProxy((host, port)).start()
    yield line
    line.close()


def app_env(proxy: TcpProxy, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "UVICORN_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="themoon.settings_test",  # its password hasher made the test user
        DJANGO_SECRET_KEY="a-real-secret-for-this-test-0123456789",
        DATABASE_URL=database_url(),
        REDIS_URL=proxy.url(redis_target()[2]),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        EVENTS_OUTBOX_RELAY_BATCH=str(BATCH),
        PYTHONUNBUFFERED="1",
    )
    env.pop("EVENTS_REDIS_URL", None)
    env.update(overrides)
    return env


class Web:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            procfile_web_command(self.port),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            assert self.process.poll() is None, stop(self.process)
            return listening(self.port)

        eventually(up, timeout=60, interval=0.1)
        self.token = ""

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {self.token}"} if self.token else {}),
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def login(self, username: str, password: str = "pass-word-123") -> None:
        status, body = self.call("POST", "/api/auth/token", {"username": username, "password": password})
        assert status == 201, body
        self.token = body["token"]

    def close(self) -> str:
        return stop(self.process)


@pytest.fixture
def webs():
    started: list[Web] = []

    def start(env: dict[str, str]) -> Web:
        web = Web(env)
        started.append(web)
        return web

    yield start
    for web in started:
        web.close()


def cached_body(post_id: int):
    entry = details.get(details.detail_key(post_id))
    return None if entry is None else entry.get("body")


def posted(web: Web, body: str) -> int:
    status, created = web.call("POST", "/api/posts", {"body": body})
    assert status == 201, created
    return created["id"]


def cached_through(web: Web, post_id: int, body: str) -> None:
    """GET until the cache holds `body` (a cache-aside fill, or the commit's write-through)."""
    assert web.call("GET", f"/api/posts/{post_id}")[1]["body"] == body
    eventually(lambda: web.call("GET", f"/api/posts/{post_id}") and cached_body(post_id) == body, timeout=5)


def test_an_edit_during_a_partition_is_read_back_after_healing(transactional_db, proxy, webs):
    from tests.factories import make_user

    host, port, _ = redis_target()
    reader_line = TcpProxy((host, port)).start()  # the reader's own line to Redis
    try:
        author = make_user()
        writer, reader = webs(app_env(proxy)), webs(app_env(reader_line))
        writer.login(author.username)
        reader.login(author.username)
        post_id = posted(writer, "before")
        cached_through(writer, post_id, "before")

        proxy.partition()
        reader_line.partition()
        status, edited = writer.call("PATCH", f"/api/posts/{post_id}", {"body": "after"})
        assert status == 200, edited  # the write succeeds
        assert edited["body"] == "after"
        assert reader.call("GET", f"/api/posts/{post_id}")[1]["body"] == "after"  # its cache read failed
        assert OutboxEvent.objects.exists(), "the edit's event waits in the outbox"
        assert cached_body(post_id) == "before", "the cache still holds the previous body"

        # The reader's line heals first, the writer's not yet. The reader saw its Redis calls fail,
        # so it reads from the database until the outbox it could not see is drained; another
        # relay holds the rows meanwhile (this test's lock: SKIP LOCKED hides them from the web).
        with transaction.atomic():
            assert list(OutboxEvent.objects.select_for_update())
            reader_line.heal()
            time.sleep(1.5)  # past the breaker's own backoff: only recovery keeps the cache unread
            assert cached_body(post_id) == "before"
            assert reader.call("GET", f"/api/posts/{post_id}")[1]["body"] == "after"
        # Lock gone: the reader relays the row with its effect (no worker, no beat).
        eventually(lambda: not OutboxEvent.objects.exists(), timeout=15)
        eventually(lambda: cached_body(post_id) == "after", timeout=15)

        proxy.heal()
        assert writer.call("GET", f"/api/posts/{post_id}")[1]["body"] == "after"
        for web in (writer, reader):
            for _ in range(5):
                assert web.call("GET", f"/api/posts/{post_id}")[1]["body"] == "after"
    finally:
        reader_line.close()


def test_the_writer_reads_its_edit_back_at_once_when_its_line_heals(transactional_db, proxy, webs):
    from tests.factories import make_user

    author = make_user()
    writer = webs(app_env(proxy))
    writer.login(author.username)
    post_id = posted(writer, "before")
    cached_through(writer, post_id, "before")
    proxy.partition()
    assert writer.call("PATCH", f"/api/posts/{post_id}", {"body": "after"})[1]["body"] == "after"
    with transaction.atomic():
        assert list(OutboxEvent.objects.select_for_update())  # held by another relay
        proxy.heal()
        time.sleep(1.5)
        assert writer.call("GET", f"/api/posts/{post_id}")[1]["body"] == "after"
    eventually(lambda: not OutboxEvent.objects.exists(), timeout=15)
    eventually(lambda: cached_body(post_id) == "after", timeout=15)
    assert writer.call("GET", f"/api/posts/{post_id}")[1]["body"] == "after"


def _edit_backlog(web: Web, post_ids: list[int], rounds: int) -> None:
    for round_ in range(rounds):
        for post_id in post_ids:
            status, body = web.call("PATCH", f"/api/posts/{post_id}", {"body": f"r{round_}-{post_id}"})
            assert status == 200, body


def _cache_matches_database(post_ids: list[int]) -> bool:
    rows = {post.pk: post for post in Post.objects.filter(pk__in=post_ids)}
    for post_id in post_ids:
        entry = details.get(details.detail_key(post_id))
        if entry is not None and (entry.get("version"), entry.get("body")) != (
            rows[post_id].version,
            rows[post_id].body,
        ):
            return False
    return True


def test_a_backlog_of_several_batches_is_drained_by_the_writer_without_beat(transactional_db, proxy, webs):
    from tests.factories import make_user

    author = make_user()
    web = webs(app_env(proxy))
    web.login(author.username)
    post_ids = [posted(web, f"p{i}") for i in range(5)]
    for post_id in post_ids:
        cached_through(web, post_id, f"p{post_ids.index(post_id)}")

    proxy.partition()
    _edit_backlog(web, post_ids, rounds=7)  # 35 events: more than three relay batches of 10
    assert OutboxEvent.objects.count() >= 3 * BATCH
    proxy.heal()

    eventually(lambda: not OutboxEvent.objects.exists(), timeout=30)
    eventually(lambda: _cache_matches_database(post_ids), timeout=10)
    assert all(cached_body(post_id) is not None for post_id in post_ids), "the entries were updated, not lost"


def test_a_worker_relays_a_dead_writers_backlog_without_beat(transactional_db, proxy, webs, tmp_path):
    from tests.factories import make_user

    author = make_user()
    web = webs(app_env(proxy))
    web.login(author.username)
    post_ids = [posted(web, f"p{i}") for i in range(5)]
    for post_id in post_ids:
        cached_through(web, post_id, f"p{post_ids.index(post_id)}")

    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "themoon", "worker", "--pool", "solo", "--loglevel", "INFO"],
        cwd=ROOT,
        env=app_env(proxy, EVENTS_BLOCK_MS="100", EVENTS_RELAY_INTERVAL_SECONDS="0.5"),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(lambda: "stream consumer" in log.read_text(), timeout=60, interval=0.2)
        proxy.partition()  # Redis is gone for the web and the worker alike
        _edit_backlog(web, post_ids, rounds=7)
        web.process.send_signal(signal.SIGKILL)  # the writer dies before it could drain
        web.process.wait(timeout=10)
        assert OutboxEvent.objects.count() >= 3 * BATCH
        proxy.heal()

        eventually(lambda: not OutboxEvent.objects.exists(), timeout=60, interval=0.2)
        eventually(lambda: _cache_matches_database(post_ids), timeout=30, interval=0.2)
        assert all(cached_body(post_id) is not None for post_id in post_ids)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert "outbox relay sent" in log.read_text(), log.read_text()[-3000:]
