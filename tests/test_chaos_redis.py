"""Chaos under the ways Redis really fails (issue 11): the mixed workload of tests/chaos_driver.py
while, on a schedule, for real:

- freeze: a worker is SIGSTOPped holding delivered, unacknowledged entries, another consumer
  reclaims them (EVENTS_CLAIM_IDLE_MS is lowered), then the frozen one is resumed: a zombie that
  finishes its stale batch;
- late: copies of old entries are XADDed again after their entities' keys were made to expire
  (PEXPIRE): a relay duplicate, a replayed dead letter, a delivery after expiry or eviction;
- evict: the cache Redis runs with a small `maxmemory` and `allkeys-lru`; junk keys push it over;
- kill9: the events Redis (AOF, `appendfsync everysec`) is killed with kill -9 and restarted from
  its AOF;
- bump: `CacheManager().bump_namespace('feed')` while writes go on;
- partition: the drivers (the web side) reach Redis through TCP proxies the test cuts for a while;
- outages: several Redis outages in a row (the cache server, which comes back empty, and the
  events server);
- no beat: beat runs only in the last quarter of each cycle; before it starts, the outbox must
  have drained without it.

Two Redis roles when the settings know EVENTS_REDIS_URL (cache: small maxmemory, allkeys-lru;
events, broker included: noeviction + AOF); otherwise one server plays both (maxmemory,
allkeys-lru and AOF), which is how a single evicting Redis fails.

The end state after draining: `check_cache_consistency` reports 0 mismatches; a real uvicorn
serving the same database and Redis answers post details (200 with the row's body, version and
counts, 404 for deleted posts), feeds and conversation histories exactly as the database says;
no committed change lost its event (every post and message version in the database, and every
delete, reached a stream), the outbox is empty and nothing is pending; the writers never read
older than their own write. Every failure names the check, the entity and the faults that
touched it. A summary table is printed either way.

CHAOS_OPS sets the operations (default 6,000 on PostgreSQL, 1,500 on SQLite); CHAOS_CYCLE_OPS
repeats the fault schedule every that many operations (default: one cycle). `make soak` runs
1,000,000 operations (SOAK_OPS) with a cycle every 20,000.
"""

import os
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import redis
from django.conf import settings
from django.db import connection

from core.events import Event, InvalidEvent
from core.events.streams import EVENT_FIELD
from core.models import OutboxEvent
from tests.chaos import (
    CACHE_TAG,
    Run,
    StreamTap,
    check_cache_consistency,
    compare_http,
    drain,
    driver_progress,
    entity,
    events_lost,
    freeze_mid_batch,
    held_entries,
    seed_world,
    start_drivers,
)
from tests.polling import eventually
from tests.subprocesses import ROOT, PrivateRedis, Processes, database_url, free_port
from tests.tcp_proxy import TcpProxy

_OPS = os.environ.get("CHAOS_OPS")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(int(os.environ.get("CHAOS_TIMEOUT", 1200 + int(_OPS or 0) // 50))),
    # Its faults are a standalone server's (kill -9 and AOF reload, maxmemory eviction) on private
    # redis-servers it starts; the cluster's chaos test kills a master instead.
    pytest.mark.standalone_only(reason="kills, evicts and reloads its own standalone redis-servers"),
]

CACHE_MAXMEMORY = "8mb"
CLAIM_IDLE_MS = 1500
OUTBOX_STALE_SECONDS = 15  # without beat, nothing may wait in the outbox longer than this


def _entities_of(payload: bytes) -> set:
    """What an event touches: its versioned entity and its conversation (for chat windows)."""
    try:
        event = Event.decode(payload)
        found = {entity(event)} - {None}
    except (InvalidEvent, KeyError, TypeError):
        return set()
    message = event.data.get("message") or {}
    conversation_id = message.get("conversation_id") or event.data.get("conversation_id")
    if conversation_id:
        found.add(("conversation", conversation_id))
    return found


class RedisFaults:
    """The fault injectors, each for real on the servers, proxies and processes of the run."""

    def __init__(self, run, cache, events, proxies, workers: Processes, tap: StreamTap, env: dict) -> None:
        self.run, self.cache, self.events, self.proxies = run, cache, events, proxies
        self.workers, self.tap, self.env = workers, tap, env
        self.rng = random.Random(11)
        self.evicted = 0
        self.zombies = 0

    def events_client(self) -> redis.Redis:
        return self.events.client()

    def freeze_and_reclaim(self, name: str) -> None:
        """SIGSTOP `name` holding entries, wait until another consumer took them all, SIGCONT."""
        client = self.events_client()
        held = freeze_mid_batch(self.workers.running[name], client, name.encode())
        if not held:
            self.run.fail(f"freeze: {name} was never caught holding unacknowledged entries")
            return
        touched = set()
        for stream, entry_id in held_entries(client, name.encode()):
            for _, fields in client.xrange(stream, entry_id, entry_id):
                touched |= _entities_of(fields.get(EVENT_FIELD, b""))
        fault = self.run.fault("freeze", f"{name} frozen holding {held} entries", touched)
        try:
            eventually(
                lambda: not held_entries(self.events_client(), name.encode()), timeout=60, interval=0.2
            )
        except AssertionError:
            self.run.fail(f"freeze: the {held} entries {name} held were not reclaimed within 60 s")
        time.sleep(1.0)  # newer events for the same entities apply meanwhile: the zombie's are stale
        self.workers.resume(name)
        self.zombies += 1
        fault.ended = time.time()

    def late_redelivery(self, count: int = 200) -> None:
        """Expire the keys of a sample of old events' entities, then deliver those events again."""
        payloads = [(s, p) for s, items in self.tap.recent().items() for p in items]
        sample = self.rng.sample(payloads, min(count, len(payloads)))
        touched = set().union(*(_entities_of(p) for _, p in sample)) if sample else set()
        tags = {f"{kind}:{i}" for kind, i in touched if kind != "message"}
        cache = self.cache.client()
        expired = 0
        with cache.pipeline(transaction=False) as pipe:
            for key in cache.scan_iter(count=1000):
                match = CACHE_TAG.search(key.decode(errors="replace"))
                if match and f"{match.group(1)}:{match.group(2)}" in tags:
                    pipe.pexpire(key, 1)
                    expired += 1
            pipe.execute()
        time.sleep(0.01)
        client = self.events_client()
        with client.pipeline(transaction=False) as pipe:
            for stream, payload in sample:
                pipe.xadd(stream, {EVENT_FIELD: payload})
            pipe.execute()
        self.run.fault("late", f"{expired} keys expired, {len(sample)} old entries delivered again", touched)

    def memory_pressure(self, megabytes: int = 24) -> None:
        """Junk keys (with a TTL, in a database of their own) until the cache server evicts."""
        client = self.cache.client()
        before = int(client.info("stats")["evicted_keys"])
        junk = redis.Redis(port=self.cache.port, db=3, socket_timeout=5)
        value = os.urandom(4096)
        with junk.pipeline(transaction=False) as pipe:
            for i in range(megabytes * 256):
                pipe.set(f"chaos:junk:{self.rng.random()}:{i}", value, ex=600)
                if i % 500 == 499:
                    pipe.execute()
            pipe.execute()
        evicted = int(client.info("stats")["evicted_keys"]) - before
        self.evicted += evicted
        self.run.fault("evict", f"{megabytes} MB of junk, {evicted} keys evicted")

    def kill_events_redis(self) -> None:
        self.events.stop()
        time.sleep(1.0)
        self.events.start()
        self.run.fault("kill9", f"events redis :{self.events.port} kill -9, 1 s down, restarted from its AOF")

    def bump_namespace(self) -> None:
        code = "import django; django.setup(); from core.caching import CacheManager; "
        code += "print(CacheManager().bump_namespace('feed'))"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60
        )
        if result.returncode:
            self.run.fail(f"bump: bump_namespace('feed') failed: {result.stderr[-2000:]}")
        self.run.fault("bump", f"bump_namespace('feed') -> epoch {result.stdout.strip()}")

    def partition(self, seconds: float = 3.0) -> None:
        fault = self.run.fault("partition", f"drivers cut from Redis for {seconds:.0f} s")
        for proxy in self.proxies:
            proxy.partition()
        time.sleep(seconds)
        for proxy in self.proxies:
            proxy.heal()
        fault.ended = time.time()

    def outages_in_a_row(self, times: int = 3) -> None:
        fault = self.run.fault("outages", f"{times} Redis outages in a row (cache, events, cache)")
        for i in range(times):
            server = self.cache if i % 2 == 0 else self.events
            server.stop()
            time.sleep(1.5)
            server.start()
            time.sleep(2.0)
        fault.ended = time.time()


def test_redis_faults_leave_nothing_stale_nothing_lost(transactional_db, tmp_path):
    ops = int(_OPS or (6_000 if connection.vendor == "postgresql" else 1_500))
    cycle_ops = int(os.environ.get("CHAOS_CYCLE_OPS") or ops)
    run = Run()
    seed_world()
    two_roles = hasattr(settings, "EVENTS_REDIS_URL")
    if two_roles:
        events = PrivateRedis(free_port(), tmp_path, aof=True, policy="noeviction")
        cache = PrivateRedis(free_port(), tmp_path, maxmemory=CACHE_MAXMEMORY, policy="allkeys-lru")
        cache.start()
    else:  # one server for both roles, as main runs today: evicting, with AOF
        events = cache = PrivateRedis(
            free_port(), tmp_path, aof=True, maxmemory=CACHE_MAXMEMORY, policy="allkeys-lru"
        )
    events.start()
    cache_proxy = TcpProxy(("127.0.0.1", cache.port)).start()
    events_proxy = TcpProxy(("127.0.0.1", events.port)).start() if two_roles else cache_proxy
    proxies = [cache_proxy, events_proxy] if two_roles else [cache_proxy]

    def urls(cache_port: int, events_port: int) -> dict:
        roles = {
            "REDIS_URL": f"redis://127.0.0.1:{cache_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{events_port}/1",
            "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{events_port}/1",
        }
        if two_roles:
            roles["EVENTS_REDIS_URL"] = f"redis://127.0.0.1:{events_port}/0"
        return roles

    base = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "themoon.settings_test",
        "DATABASE_URL": database_url(),
        "EVENTS_BLOCK_MS": "200",
        "EVENTS_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
        "BEAT_OUTBOX_RELAY_SECONDS": "1",
        "BEAT_RECLAIM_SECONDS": "2",
        "BEAT_STREAM_TRIM_SECONDS": "5",
        "BEAT_WARM_POSTS_SECONDS": "3",
        "BEAT_WARM_FEEDS_SECONDS": "3",
        "EVENTS_OUTBOX_RELAY_AGE_SECONDS": "1",
        "FEED_FANOUT_CHUNK": "10",
        "LOG_LEVEL": "INFO",
    }
    direct = {**base, **urls(cache.port, events.port)}
    through_proxies = {**base, **urls(cache_proxy.port, events_proxy.port)}
    workers = Processes(direct, tmp_path)
    drivers = Processes(through_proxies, tmp_path)
    tap = run.tap = StreamTap(events.port, keep=1000)
    faults = RedisFaults(run, cache, events, proxies, workers, tap, direct)
    http_diffs: list[str] = []
    checker = {"checked": 0, "mismatches": []}
    lost: list[str] = []
    ryw = 0
    try:
        workers.worker("worker-a")
        workers.worker("worker-b")
        driver_procs = start_drivers(drivers, ops)

        def progress() -> int:
            return driver_progress(drivers, ops)

        def reach(target: float) -> None:
            eventually(
                lambda: progress() >= target or all(p.poll() is not None for p in driver_procs),
                timeout=3600,
                interval=0.3,
            )

        schedule = (
            (0.08, lambda c: faults.freeze_and_reclaim(("worker-a", "worker-b")[c % 2])),
            (0.18, lambda c: faults.late_redelivery()),
            (0.28, lambda c: faults.memory_pressure()),
            (0.38, lambda c: faults.kill_events_redis()),
            (0.48, lambda c: faults.bump_namespace()),
            (0.58, lambda c: faults.partition()),
            (0.66, lambda c: faults.outages_in_a_row()),
        )
        cycles = max(1, ops // cycle_ops)
        for c in range(cycles):
            start = c * cycle_ops
            if "beat" in workers.running:
                workers.stop("beat")
            run.fault("no beat", f"cycle {c + 1}/{cycles}: beat stopped")
            for at, inject in schedule:
                reach(start + at * cycle_ops)
                inject(c)
            reach(start + 0.75 * cycle_ops)
            _outbox_drains_without_beat(run, c + 1)
            workers.start(
                "beat", "-m", "celery", "-A", "themoon", "beat", "--schedule", str(tmp_path / "beat")
            )
            run.fault("beat", f"cycle {c + 1}/{cycles}: beat started for the last quarter")

        for i, driver in enumerate(driver_procs):
            assert driver.wait(timeout=3600) == 0, drivers.log(f"driver-{i}")[-3000:]
        done = [line for i in range(2) for line in drivers.log(f"driver-{i}").splitlines() if "DONE" in line]
        ryw = sum(int(line.rsplit("ryw_misses=", 1)[1]) for line in done if "ryw_misses=" in line)
        if ryw:
            misses = [
                line for i in range(2) for line in drivers.log(f"driver-{i}").splitlines() if "RYW" in line
            ]
            run.fail(f"read-your-writes: {ryw} edits read back older than written, e.g. {misses[:5]}")

        drain(events.client(), run)
        time.sleep(1.0)  # the tap reads the last entries
        lost = events_lost(tap, run)
        checker = check_cache_consistency(direct, run)
        http_diffs = compare_http(direct, tmp_path, run)
        for name in ("worker-a", "worker-b"):
            if workers.running[name].poll() is not None:
                run.fail(f"worker {name} died: {workers.log(name)[-2000:]}")
        dead = events.client().xlen("themoon:events:dead")
        if dead:
            run.fail(f"{dead} legitimate events were dead-lettered (no poison was injected)")
    finally:
        done_ops = driver_progress(drivers, ops)
        _summary(
            run, done_ops, ops, cycles if "cycles" in locals() else 0, faults, checker, http_diffs, lost, ryw
        )
        tap.stop()
        drivers.stop_all()
        workers.stop_all()
        for proxy in {id(p): p for p in (cache_proxy, events_proxy)}.values():
            proxy.close()
        cache.stop()
        events.stop()
    assert not run.failures, "\n".join(run.failures)


# --- the end-state checks -------------------------------------------------------------------------


def _outbox_drains_without_beat(run: Run, cycle: int) -> None:
    """Before beat starts: nothing waits in the outbox longer than OUTBOX_STALE_SECONDS, however
    many outages this cycle had (the workers relay; beat is only an optimisation)."""
    from django.utils import timezone

    def stale() -> int:
        cutoff = timezone.now().timestamp() - OUTBOX_STALE_SECONDS
        return OutboxEvent.objects.filter(created_at__lt=datetime.fromtimestamp(cutoff, UTC)).count()

    try:
        eventually(lambda: stale() == 0, timeout=60, interval=1.0)
    except AssertionError:
        run.fail(
            f"no beat (cycle {cycle}): {stale()} outbox rows older than {OUTBOX_STALE_SECONDS} s still "
            "unsent after 60 s more: delivery depends on beat"
        )


def _summary(
    run: Run, done: int, ops: int, cycles: int, faults: RedisFaults, checker: dict, http_diffs, lost, ryw
) -> None:
    """What the run did (operations and fault cycles actually reached, not the ones planned)."""
    kinds = Counter(f.kind for f in run.faults)
    rows = [
        ("operations", f"{done} of {ops} ({kinds['no beat']} of {cycles} fault cycles)"),
        *((f"faults: {kind}", str(n)) for kind, n in sorted(kinds.items())),
        ("keys evicted", str(faults.evicted)),
        ("zombies resumed", str(faults.zombies)),
        ("checked by check_cache_consistency", str(checker["checked"])),
        ("mismatches (cache vs DB)", str(len(checker["mismatches"]))),
        ("differences (HTTP vs DB)", str(len(http_diffs))),
        ("events lost", str(len(lost))),
        ("read-your-writes misses", str(ryw)),
        ("failures", str(len(run.failures))),
        ("wall time", f"{time.monotonic() - run.started:.0f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(
        "\n".join(
            ["", "chaos (redis faults) summary", *(f"  {name:<{width}}  {value}" for name, value in rows)]
        )
    )
