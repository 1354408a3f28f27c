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

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q

from accounts.auth import issue_token
from accounts.models import AppUser
from chat.models import Conversation, Message, Participant
from core.events import Event, InvalidEvent
from core.events.streams import EVENT_FIELD
from core.models import OutboxEvent
from feed.models import Comment, Follow, Post, Reaction
from tests.chaos import (
    STREAMS,
    StreamTap,
    driver_progress,
    entity,
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
_TAG = re.compile(r"\{(post|conversation|user):(\d+)\}")


@dataclass
class Fault:
    kind: str
    detail: str
    started: float
    ended: float = 0.0
    entities: set = field(default_factory=set)  # ("post", id) / ("message", id) / ("conversation", id)


class Run:
    """The run's bookkeeping: faults injected (with what they touched) and failures found."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.tap: StreamTap | None = None
        self.failures: list[str] = []
        self.started = time.monotonic()

    def fault(self, kind: str, detail: str = "", entities=()) -> Fault:
        fault = Fault(kind, detail, time.time(), time.time(), set(entities))
        self.faults.append(fault)
        print(f"[chaos +{time.monotonic() - self.started:6.1f}s] {kind}: {detail}", flush=True)
        return fault

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"[chaos] FAILED {message}", flush=True)

    def suspects(self, *keys: tuple[str, int]) -> str:
        """The faults that touched these entities, or that ran within 10 s of their last change
        (the time its latest event reached a stream)."""
        names = [f"{f.kind}#{i}" for i, f in enumerate(self.faults) if f.entities & set(keys)]
        for at in filter(None, (self.tap.changed_at.get(key) for key in keys) if self.tap else ()):
            names += [
                f"{f.kind}#{i}(near)"
                for i, f in enumerate(self.faults)
                if f.started - 10 <= at <= f.ended + 10 and f"{f.kind}#{i}" not in names
            ]
        return ", ".join(dict.fromkeys(names)) or "no fault touched it"


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
                match = _TAG.search(key.decode(errors="replace"))
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

        _drain(events.client(), run)
        time.sleep(1.0)  # the tap reads the last entries
        lost = _events_lost(tap, run)
        checker = _check_cache_consistency(direct, run)
        http_diffs = _compare_http(direct, tmp_path, run)
        for name in ("worker-a", "worker-b"):
            if workers.running[name].poll() is not None:
                run.fail(f"worker {name} died: {workers.log(name)[-2000:]}")
        dead = events.client().xlen("themoon:events:dead")
        if dead:
            run.fail(f"{dead} legitimate events were dead-lettered (no poison was injected)")
    finally:
        _summary(run, ops, cycles if "cycles" in locals() else 0, faults, checker, http_diffs, lost, ryw)
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


def _drain(client: redis.Redis, run: Run) -> bool:
    """Outbox empty, every entry delivered and acknowledged (twice, around the last fan-outs)."""

    def state() -> str:
        waiting = OutboxEvent.objects.count()
        behind = []
        for stream in STREAMS:
            try:
                groups = client.xinfo_groups(stream)
                last = client.xinfo_stream(stream)["last-generated-id"]
            except redis.ResponseError:
                continue
            # Delivered = the group's last-delivered-id is the stream's last id. Not XINFO's `lag`:
            # Redis derives it from entries-added/entries-read counters, which a kill -9 and AOF
            # reload can leave apart (a positive lag that never moves, with nothing left to read).
            behind += [
                f"{stream}: pending {g['pending']}, last delivered {g['last-delivered-id']} of {last}"
                for g in groups
                if g["pending"] or g["last-delivered-id"] != last
            ]
        return "" if not waiting and not behind else f"outbox {waiting}; " + "; ".join(behind)

    for _ in range(2):
        try:
            eventually(lambda: not state(), timeout=180, interval=0.5)
        except AssertionError:
            run.fail(f"drain: the pipeline did not drain within 180 s: {state()}")
            return False
        time.sleep(2)  # the fan-out tasks the last events queued
    return True


def _events_lost(tap: StreamTap, run: Run) -> list[str]:
    """Every post and message version in the database, and every delete of an entity the streams
    saw created, reached a stream (read by the tap as it was added)."""
    lost = []
    for kind, model in (("post", Post), ("message", Message)):
        rows = dict(model.objects.values_list("id", "version"))
        for pk, version in rows.items():
            if version not in tap.versions.get((kind, pk), ()):
                lost.append(f"{kind} {pk} v{version} (database) never reached a stream")
        for seen_kind, pk in list(tap.versions):
            if seen_kind == kind and pk not in rows and (kind, pk) not in tap.deleted:
                lost.append(f"{kind} {pk} was deleted but no {kind}.deleted reached a stream")
    if lost:
        run.fail(f"events lost: {len(lost)}: " + "; ".join(lost[:20]))
    return lost


def _check_cache_consistency(env: dict, run: Run) -> dict:
    check = subprocess.run(
        [sys.executable, "manage.py", "check_cache_consistency", "--sample", "2000"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = check.stdout + check.stderr
    total = next((line for line in report.splitlines() if line.startswith("total:")), "")
    if not total:
        run.fail(f"check_cache_consistency did not run: {report[-3000:]}")
        return {"checked": 0, "mismatches": []}
    checked = int(total.split()[1])
    mismatches = [line.strip() for line in report.splitlines() if line.startswith("  ")]
    if checked < 100:
        run.fail(f"check_cache_consistency: too little was cached to prove anything: {total}")
    if check.returncode or mismatches:
        described = []
        for line in mismatches[:30]:
            key = line.split(": cached", 1)[0]
            tags = {(kind, int(pk)) for kind, pk in _TAG.findall(key)}
            described.append(f"cache vs DB: {line[:400]} [suspects: {run.suspects(*tags)}]")
        run.fail(f"check_cache_consistency: {total}\n  " + "\n  ".join(described))
    return {"checked": checked, "mismatches": mismatches}


def _counts(post_ids: list[int]) -> dict[int, dict]:
    reactions: dict[int, dict] = {pk: {} for pk in post_ids}
    for pk, kind, n in (
        Reaction.objects.filter(post_id__in=post_ids)
        .values_list("post_id", "kind")
        .annotate(n=Count("id"))
        .order_by()
    ):
        reactions[pk][kind] = n
    comments = dict(
        Comment.objects.filter(post_id__in=post_ids).values_list("post_id").annotate(n=Count("id")).order_by()
    )
    return {pk: {"reactions": reactions[pk], "comments": comments.get(pk, 0)} for pk in post_ids}


def _post_view(item: dict) -> tuple:
    counts = item.get("counts") or {}
    reactions = {k: v for k, v in (counts.get("reactions") or {}).items() if v}
    return item["id"], item["author_id"], item["body"], item["version"], reactions, counts.get("comments")


def _compare_http(env: dict, tmp_path, run: Run, seed: int = 5) -> list[str]:
    """A real uvicorn on the same database and Redis; what it serves must be what the database says."""
    port = free_port()
    web = Processes(env, tmp_path)
    web.start(
        "web",
        "-m",
        "uvicorn",
        "themoon.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    )
    diffs: list[str] = []
    rng = random.Random(seed)
    tokens: dict[int, str] = {}

    def get(path: str, user_id: int) -> tuple[int, object]:
        if user_id not in tokens:
            tokens[user_id] = issue_token(AppUser.objects.get(pk=user_id))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {tokens[user_id]}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/live", timeout=2):
                return True
        except OSError:
            return False

    try:
        eventually(answers, timeout=60, interval=0.3)
        reader = AppUser.objects.order_by("id").values_list("id", flat=True).first()
        # Post details: live ones (200, the row) and deleted ones (404).
        live = list(Post.objects.values_list("id", flat=True))
        top = max(live, default=0)
        candidates = rng.sample(range(1, top + 1), min(400, top)) if top else []
        rows = {p.pk: p for p in Post.objects.filter(pk__in=candidates)}
        counts = _counts(list(rows))
        for pk in candidates:
            status, body = get(f"/api/posts/{pk}", reader)
            post = rows.get(pk)
            if post is None:
                if status != 404:
                    diffs.append(
                        f"HTTP vs DB: GET /api/posts/{pk} answered {status} {body!r:.200}; it is deleted "
                        f"[suspects: {run.suspects(('post', pk))}]"
                    )
                continue
            expected = (
                pk,
                post.author_id,
                post.body,
                post.version,
                counts[pk]["reactions"],
                counts[pk]["comments"],
            )
            served = _post_view(body) if status == 200 else (status,)
            if served != expected:
                diffs.append(
                    f"HTTP vs DB: GET /api/posts/{pk}: served {served} != database {expected} "
                    f"[suspects: {run.suspects(('post', pk))}]"
                )
        # Feeds (pages 1 and 2) of a sample of users.
        users = list(AppUser.objects.values_list("id", flat=True))
        for user_id in rng.sample(users, min(15, len(users))):
            authors = [
                *Follow.objects.filter(follower_id=user_id).values_list("followee_id", flat=True),
                user_id,
            ]
            cursor = ""
            for page in (1, 2):
                posts = list(
                    Post.objects.filter(Q(author_id__in=authors)).order_by("-id")[(page - 1) * 20 : page * 20]
                )
                page_counts = _counts([p.pk for p in posts])
                mine = dict(
                    Reaction.objects.filter(user_id=user_id, post_id__in=[p.pk for p in posts]).values_list(
                        "post_id", "kind"
                    )
                )
                expected = [
                    (
                        p.pk,
                        p.author_id,
                        p.body,
                        p.version,
                        page_counts[p.pk]["reactions"],
                        page_counts[p.pk]["comments"],
                        mine.get(p.pk),
                    )
                    for p in posts
                ]
                status, body = get(f"/api/feed?size=20{cursor}", user_id)
                served = (
                    [(*_post_view(item), item["my_reaction"]) for item in body["items"]]
                    if status == 200
                    else [status]
                )
                cursor = f"&cursor={body['next']}" if status == 200 and body["next"] else ""
                if served != expected:
                    wrong = [s for s in served if s not in expected] + [
                        e for e in expected if e not in served
                    ]
                    tags = {("post", w[0]) for w in wrong if isinstance(w, tuple)}
                    diffs.append(
                        f"HTTP vs DB: feed of user {user_id} page {page}: differs at {wrong[:6]} "
                        f"[suspects: {run.suspects(*tags)}]"
                    )
        # Conversation histories, as a participant.
        for conversation_id in Conversation.objects.values_list("id", flat=True):
            member = Participant.objects.filter(conversation_id=conversation_id).values_list(
                "user_id", flat=True
            )[0]
            rows = list(Message.objects.filter(conversation_id=conversation_id).order_by("-id")[:20])[::-1]
            expected = [(m.pk, m.sender_id, m.body, m.version) for m in rows]
            status, body = get(f"/api/conversations/{conversation_id}/messages?size=20", member)
            served = (
                [(m["id"], m["sender_id"], m["body"], m["version"]) for m in body["items"]]
                if status == 200
                else [status]
            )
            if served != expected:
                wrong = [s for s in served if s not in expected] + [e for e in expected if e not in served]
                tags = {("message", w[0]) for w in wrong if isinstance(w, tuple)} | {
                    ("conversation", conversation_id)
                }
                diffs.append(
                    f"HTTP vs DB: GET /api/conversations/{conversation_id}/messages differs at {wrong[:6]} "
                    f"[suspects: {run.suspects(*tags)}]"
                )
    finally:
        web.stop_all()
    if diffs:
        run.fail(f"HTTP API vs database: {len(diffs)} differences\n  " + "\n  ".join(diffs[:30]))
    return diffs


def _summary(
    run: Run, ops: int, cycles: int, faults: RedisFaults, checker: dict, http_diffs, lost, ryw
) -> None:
    kinds = Counter(f.kind for f in run.faults)
    rows = [
        ("operations", f"{ops} ({cycles} fault cycles)"),
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
