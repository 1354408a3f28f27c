"""Chaos: a mixed workload while workers are killed, Redis restarts, deliveries are duplicated and
reordered, poison is injected and transactions roll back; then the cache must match the database.

Everything runs as real processes against the test database and a private Redis server (so a
Redis restart disturbs nothing else): two `celery worker` processes (the stream consumers), one
`celery beat` (outbox relay, reclaim, trim), and two workload drivers (tests/chaos_driver.py).
CHAOS_OPS sets the number of operations (default 20,000 on PostgreSQL; 2,000 on SQLite, whose
single writer makes a larger run slow).
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from django.db import connection

from core.events import Event
from core.events.streams import EVENT_FIELD
from feed import events
from tests.chaos import StreamTap, driver_progress, freeze_mid_batch, seed_world, start_drivers
from tests.polling import eventually
from tests.subprocesses import ROOT, PrivateRedis, Processes, database_url

# 20,000 operations take a few minutes on two cores: more than the suite's default per-test timeout.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.standalone_only(reason="kills and restarts its own standalone redis-server as the cache"),
]


def _poison() -> list[bytes]:
    return [
        b"{definitely not json",
        Event("post.exploded", 1, {"post_id": 1}).encode(),
        Event(events.POST_UPDATED, 7, {"no": "post payload"}).encode(),
    ]


def test_mixed_workload_under_faults_converges_to_zero_mismatches(transactional_db, tmp_path, unused_port):
    ops = int(os.environ.get("CHAOS_OPS", 20_000 if connection.vendor == "postgresql" else 2_000))
    seed_world()
    private = PrivateRedis(unused_port, tmp_path)
    private.start()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "themoon.settings_test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": f"redis://127.0.0.1:{unused_port}/0",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{unused_port}/1",
        "EVENTS_BLOCK_MS": "200",
        "EVENTS_CLAIM_IDLE_MS": "2000",
        "EVENTS_MAX_DELIVERIES": "3",
        "BEAT_OUTBOX_RELAY_SECONDS": "1",
        "BEAT_RECLAIM_SECONDS": "2",
        "BEAT_STREAM_TRIM_SECONDS": "5",
        "BEAT_WARM_POSTS_SECONDS": "3",
        "BEAT_WARM_FEEDS_SECONDS": "3",
        "EVENTS_OUTBOX_RELAY_AGE_SECONDS": "1",
        "FEED_FANOUT_CHUNK": "10",  # so big audiences go through Celery tasks too
        "LOG_LEVEL": "INFO",
    }
    procs = Processes(env, tmp_path)
    client = private.client()
    tap = StreamTap(private.port)
    poisoned: list[bytes] = []
    faults: list[str] = []
    try:
        procs.worker("worker-a")
        procs.worker("worker-b")
        procs.start("beat", "-m", "celery", "-A", "themoon", "beat", "--schedule", str(tmp_path / "beat"))
        drivers = start_drivers(procs, ops)

        def progress() -> int:
            return driver_progress(procs, ops)

        # 1. kill -9 a worker while it holds unacknowledged entries (mid-batch), then replace it.
        eventually(lambda: progress() >= ops * 0.15, timeout=600, interval=0.5)

        caught_mid_batch = freeze_mid_batch(procs.running["worker-a"], client, b"worker-a")
        procs.running["worker-a"].send_signal(signal.SIGKILL)
        faults.append(f"kill -9 worker-a ({caught_mid_batch} entries delivered, not acknowledged)")
        procs.worker("worker-c")

        # 2. duplicate and reorder: re-deliver recently seen entries of each stream, reversed.
        eventually(lambda: progress() >= ops * 0.35, timeout=600, interval=0.5)
        for stream, payloads in tap.recent().items():
            for payload in reversed(payloads):
                client.xadd(stream, {EVENT_FIELD: payload})
            faults.append(f"{len(payloads)} entries of {stream} re-delivered in reverse order")
        assert sum(len(p) for p in tap.recent().values()) > 0, "the tap saw no events"

        # 3. restart Redis: streams, cache and broker all lost at once.
        eventually(lambda: progress() >= ops * 0.55, timeout=600, interval=0.5)
        private.restart()
        client = private.client()
        faults.append("redis restarted (SIGKILL, 1 s down)")

        # 4. poison, after the restart (so it stays in the dead-letter stream to be counted).
        eventually(lambda: progress() >= ops * 0.7, timeout=600, interval=0.5)
        for payload in _poison():
            client.xadd("themoon:events:feed", {EVENT_FIELD: payload})
            poisoned.append(payload)
        faults.append(f"{len(poisoned)} poison events")

        for driver in drivers:
            assert driver.wait(timeout=900) == 0, procs.log("driver-0")[-3000:]
        done_lines = [
            line for i in range(2) for line in procs.log(f"driver-{i}").splitlines() if "DONE" in line
        ]
        assert len(done_lines) == 2, done_lines

        # Drain: outbox empty, nothing undelivered or unacknowledged.
        from core.models import OutboxEvent

        def drained() -> bool:
            if OutboxEvent.objects.exists():
                return False
            for stream in ("themoon:events:feed", "themoon:events:chat"):
                try:
                    groups = client.xinfo_groups(stream)
                except redis.ResponseError:
                    continue
                if any(g["pending"] or g["lag"] for g in groups):
                    return False
            return True

        eventually(drained, timeout=120, interval=0.5)
        time.sleep(2)  # the fan-out tasks the last events queued
        eventually(drained, timeout=60, interval=0.5)

        check = subprocess.run(
            [sys.executable, "manage.py", "check_cache_consistency", "--sample", "2000"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        report = check.stdout + check.stderr
        print("\n".join([f"operations: {ops}", *[f"fault: {f}" for f in faults], report]))
        assert check.returncode == 0, report
        total = next(line for line in report.splitlines() if line.startswith("total:"))
        checked = int(total.split()[1])
        assert checked >= 100, f"too little was cached to prove anything: {total}"
        assert total.endswith(" 0 mismatches"), total

        dead = client.xrange("themoon:events:dead")
        assert sorted(fields[b"event"] for _, fields in dead) == sorted(poisoned)
        assert all(procs.running[w].poll() is None for w in ("worker-b", "worker-c")), "a worker died"
    finally:
        tap.stop()
        procs.stop_all()
        private.stop()
