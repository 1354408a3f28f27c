"""Chaos on a real Redis Cluster (issue 15 items 4 and 5): the mixed workload of
tests/chaos_driver.py while each of the three masters is killed in turn (kill -9), its replica
promoted, and the killed node restarted as a replica; a real web process, beat and the commit-time
publisher must survive each kill and resume within a bound (README, "Scaling").

Everything runs as real processes against the test database, a private 6-node cluster (3 masters,
3 replicas, cluster-node-timeout 2000 ms; tests/clusters.py) for the cache and the events, with
EVENTS_STREAM_PARTITIONS partitions per domain, and a private standalone Redis for the Celery
broker and the channel layer (they have no cluster support): two `celery worker` processes (the
stream consumers), one `celery beat`, two workload drivers, and one uvicorn serving the product
(tests/subprocesses.py), which a probe in this process drives over HTTP (an edit of a post in the
victim's partitions, a read of a post in its slots, each followed by a scrape of that process's
/metrics, and /api/health) to see when its commit-time publisher sends again (events published,
none outboxed) and its reads hit the cache again.

The kills: first the master REDIS_URL names, then another original master holding stream
partitions (not the first one's replacement), then the last original master. Trimming is off
(its period an hour), so the streams at the end hold every entry that survived the failovers.

After draining: `check_cache_consistency` 0 mismatches; a second uvicorn answers sampled post
details, feeds and conversation histories as the database says; no event lost: every post and
message version in the database, every delete, and every event any stream ever held (a tap read
them as they were added, from masters that were then killed) is in the streams at the end (what
asynchronous replication dropped, the outbox sent again); the probe got an answer to every request
(2xx) and every beat task ran again after each promotion; no worker, beat or web process died.

CLUSTER_CHAOS_OPS sets the operations (default 800 on PostgreSQL, 400 on SQLite: about two
minutes on two cores); CLUSTER_CHAOS_OPS=20000 makes it a long run.
"""

import contextlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import redis
from django.db import connection
from django.test import override_settings
from redis.exceptions import RedisClusterException

from accounts.auth import issue_token
from accounts.models import AppUser
from core.events import Event, InvalidEvent, all_streams
from core.events.streams import EVENT_FIELD, dead_letter_stream, partition_of, stream_name
from tests.chaos import (
    Run,
    StreamIndex,
    check_cache_consistency,
    compare_http,
    drain,
    driver_progress,
    events_lost,
    read_streams,
    seed_world,
    start_drivers,
)
from tests.clusters import PrivateCluster
from tests.polling import eventually
from tests.subprocesses import PrivateRedis, Processes, database_url, free_port, uvicorn_server

OPS = int(os.environ.get("CLUSTER_CHAOS_OPS", 800 if connection.vendor == "postgresql" else 400))
PARTITIONS = 8
# Beat's tasks and their periods here (seconds): each must run again within its period of a promotion.
BEAT_TASKS = {
    "workers.relay_outbox": 1,
    "workers.reclaim_pending": 2,
    "feed.warm_popular_posts": 3,
    "feed.warm_active_feeds": 3,
}
# How long the probe waits for the web process to resume after a kill before it fails the run: a
# liveness limit, not the bound (README, "Scaling", measured here and printed in the summary).
RESUME_TIMEOUT = 60.0
WARM_POSTS = 24  # the probe's posts: several of them in each master's slots, for keys and partitions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(int(os.environ.get("CHAOS_TIMEOUT", 900 + OPS // 20))),
    pytest.mark.standalone_only(reason="starts its own cluster; make test-cluster runs on another"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = PrivateCluster(tmp_path_factory.mktemp("chaos-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def _streams() -> list[str]:
    with override_settings(EVENTS_STREAM_PARTITIONS=PARTITIONS):
        return all_streams()


class ClusterTap(StreamIndex):
    """Reads every partition as it grows (one XREAD per stream: one slot per command) and keeps
    each entry's event id: what a stream held at some moment, even on a master killed later."""

    def __init__(self, cluster: PrivateCluster, streams: list[str]) -> None:
        super().__init__()
        self.cluster, self.streams = cluster, streams
        self.held: dict[tuple[str, bytes], str] = {}  # (stream, entry id) -> event id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = dict.fromkeys(self.streams, "0-0")
        client = self.cluster.client()
        while not self._stop.is_set():
            read = 0
            for stream in self.streams:
                try:
                    answer = client.xread({stream: last[stream]}, count=500)
                except (redis.RedisError, RedisClusterException):
                    continue  # its master is down: the others go on; it is read once promoted
                for _, items in answer or []:
                    for entry_id, fields in items:
                        last[stream] = entry_id
                        read += 1
                        self._index(stream, entry_id, fields.get(EVENT_FIELD, b""))
            if not read:
                self._stop.wait(0.05)

    def _index(self, stream: str, entry_id: bytes, payload: bytes) -> None:
        super()._index(stream, entry_id, payload)
        with contextlib.suppress(InvalidEvent, KeyError, TypeError):
            self.held[stream, entry_id] = Event.decode(payload).id

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- the web probe --------------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str  # "write" | "read"
    started: float  # time.monotonic()
    ended: float
    status: int  # HTTP status, 0 for no answer
    good: bool  # write: published at commit (nothing outboxed); read: a cache hit


_METRIC = re.compile(r"^(themoon_[a-z_]+)(\{.*\})? ([0-9.e+-]+)$", re.M)  # label values hold braces


class WebProbe:
    """One thread, one user, one web process, round after round: edit one of its posts (PATCH),
    scrape /metrics, read one of its warm posts, scrape /metrics, ask /api/health (200 or 503 are
    answers; a 500 is not). `aim` points the edits at posts whose stream partition the next victim
    serves and the reads at posts whose cache keys it serves. The process's counters then say of
    each request whether the commit-time publisher sent its event (published +1, outboxed +0) or
    the read hit the cache (the feed namespace: post details and counts; token resolution, in
    `accounts`, does not count)."""

    def __init__(self, port: int, token: str, warm: list[int]) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token, self.warm = token, warm
        self.writes, self.reads = warm, warm
        self.samples: list[Sample] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError as error:
            return 0, str(error).encode()

    def counters(self) -> dict[str, float]:
        status, text = self.request("GET", "/metrics")
        if status != 200:
            self.failures.append(f"GET /metrics answered {status}: {text[:300]!r}")
            return {}
        found = {"published": 0.0, "outboxed": 0.0, "hits": 0.0}
        for name, labels, value in _METRIC.findall(text.decode()):
            if name == "themoon_events_published_total":
                found["published"] += float(value)
            elif name == "themoon_events_left_in_outbox_total":
                found["outboxed"] += float(value)
            elif name == "themoon_cache_requests_total" and labels == '{namespace="feed",result="hit"}':
                found["hits"] += float(value)
        return found

    def aim(self, writes: list[int] | None = None, reads: list[int] | None = None) -> None:
        """Edit the posts `writes`, read the posts `reads` (all warm posts when None or empty)."""
        self.writes, self.reads = writes or self.warm, reads or self.warm

    def start(self) -> "WebProbe":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        before = self.counters()
        i = 0
        while not self._stop.is_set():
            i += 1
            started = time.monotonic()
            writes, reads = self.writes, self.reads
            path = f"/api/posts/{writes[i % len(writes)]}"
            status, body = self.request("PATCH", path, b'{"body": "probe edit %d"}' % i)
            after = self.counters()
            good = bool(before and after) and (
                after["published"] > before["published"] and after["outboxed"] == before["outboxed"]
            )
            self._sample("write", started, status, 200, body, good)
            before, started = after, time.monotonic()
            status, body = self.request("GET", f"/api/posts/{reads[i % len(reads)]}")
            after = self.counters()
            self._sample(
                "read", started, status, 200, body, bool(before and after) and after["hits"] > before["hits"]
            )
            before = after
            status, body = self.request("GET", "/api/health")  # degraded (503) is an answer, 500 is not
            if status not in (200, 503):
                self.failures.append(f"GET /api/health answered {status}: {body[:300]!r}")
            self._stop.wait(0.05)

    def _sample(self, kind: str, started: float, status: int, expected: int, body: bytes, good: bool) -> None:
        self.samples.append(Sample(kind, started, time.monotonic(), status, good))
        if status != expected:
            self.failures.append(f"probe {kind} answered {status} (expected {expected}): {body[:300]!r}")

    def resumed(self, kind: str, killed: float, promoted: float, settle: int = 5) -> float | None:
        """Seconds from the kill (`killed`, monotonic) to the answer of the first `kind` request
        of the good run that follows the last bad one (a request that reached the dead master may
        wait for the promotion and then succeed: its answer is when it resumed); None until
        `settle` good ones started after the promotion (`promoted`, monotonic): luck before it,
        requests that missed the dead master's slots, does not count."""
        after = [s for s in list(self.samples) if s.kind == kind and s.started >= killed]
        bad = [i for i, s in enumerate(after) if not s.good or s.status not in (200, 201)]
        good = after[(bad[-1] if bad else -1) + 1 :]
        if sum(1 for s in good if s.started >= promoted) < settle:
            return None
        return good[0].ended - killed


# --- beat, from the worker logs -------------------------------------------------------------------

_TASK_DONE = re.compile(
    r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}).*Task ([\w.]+)\[[^\]]+\] succeeded", re.M
)


def _beat_runs(processes: Processes, workers: list[str]) -> dict[str, list[float]]:
    """Every successful run of a beat task, by task name: wall-clock times from the workers' logs."""
    runs: dict[str, list[float]] = {}
    for name in workers:
        for stamp, task in _TASK_DONE.findall(processes.log(name)):
            at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            runs.setdefault(task, []).append(at)
    return runs


@dataclass
class Kill:
    port: int
    why: str
    killed_at: float = 0.0  # monotonic
    promoted_after: float = 0.0
    promoted_wall: float = 0.0
    publisher: float | None = None
    reads: float | None = None
    beat: dict[str, float] = field(default_factory=dict)  # task -> first success after promotion (s)


def test_cluster_masters_killed_under_the_mixed_workload(transactional_db, tmp_path, cluster):
    run = Run()
    seed_world()
    streams = _streams()
    standalone = PrivateRedis(free_port(), tmp_path)  # the broker and the channel layer
    standalone.start()
    roles = {
        **cluster.env(),
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{standalone.port}/1",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{standalone.port}/1",
        "CHANNEL_LAYER_REDIS_URL": f"redis://127.0.0.1:{standalone.port}/2",
        "EVENTS_STREAM_PARTITIONS": str(PARTITIONS),
        "EVENTS_BLOCK_MS": "200",
        "EVENTS_CLAIM_IDLE_MS": "2000",
        "BEAT_OUTBOX_RELAY_SECONDS": str(BEAT_TASKS["workers.relay_outbox"]),
        "BEAT_RECLAIM_SECONDS": str(BEAT_TASKS["workers.reclaim_pending"]),
        "BEAT_WARM_POSTS_SECONDS": str(BEAT_TASKS["feed.warm_popular_posts"]),
        "BEAT_WARM_FEEDS_SECONDS": str(BEAT_TASKS["feed.warm_active_feeds"]),
        "BEAT_STREAM_TRIM_SECONDS": "3600",  # keep every entry: the streams at the end are the proof
        "EVENTS_OUTBOX_RELAY_AGE_SECONDS": "1",
        "FEED_FANOUT_CHUNK": "10",
        "LOG_LEVEL": "INFO",
    }
    env = {k: v for k, v in os.environ.items() if k != "EVENTS_REDIS_URL"}
    env.update(roles, DJANGO_SETTINGS_MODULE="themoon.settings_test", DATABASE_URL=database_url())
    procs = Processes(env, tmp_path)
    client = cluster.client()
    tap = ClusterTap(cluster, streams)
    run.tap = tap
    kills: list[Kill] = []
    probe: WebProbe | None = None
    checker: dict = {"checked": 0, "mismatches": []}
    http_diffs: list[str] = []
    lost: list[str] = []
    try:
        procs.worker("worker-a")
        procs.worker("worker-b")
        procs.start("beat", "-m", "celery", "-A", "themoon", "beat", "--schedule", str(tmp_path / "beat"))
        web_env = {k: v for k, v in env.items() if k in roles or k == "DATABASE_URL"}
        with uvicorn_server(log=tmp_path / "web.log", **web_env) as port:
            probe = _warm_probe(port)
            drivers = start_drivers(procs, OPS)

            def reach(fraction: float) -> None:
                eventually(
                    lambda: (
                        driver_progress(procs, OPS) >= OPS * fraction
                        or all(d.poll() is not None for d in drivers)
                    ),
                    timeout=1800,
                    interval=0.3,
                )

            originals = cluster.masters()
            assert cluster.base in originals, "REDIS_URL names a master at the start"
            for fraction, why in ((0.15, "REDIS_URL"), (0.45, "partition"), (0.75, "last")):
                reach(fraction)
                victim = _victim(cluster, why, originals, kills, streams)
                kills.append(_kill_and_promote(run, cluster, probe, victim, why))

            for i, driver in enumerate(drivers):
                assert driver.wait(timeout=1800) == 0, procs.log(f"driver-{i}")[-3000:]
            probe.stop()
        _write_timeline(tmp_path / "probe.tsv", probe, kills)
        for kill in kills:
            kill.beat = _beat_after(procs, kill)
        drain(client, run, streams)
        time.sleep(1.0)  # the tap reads the last entries
        tap.stop()
        lost = _lost(client, streams, tap, run)
        checker = check_cache_consistency(env, run)
        http_diffs = compare_http(env, tmp_path, run)
        _check_processes(run, procs, probe, kills)
    finally:
        _summary(run, kills, probe, checker, http_diffs, lost, procs)
        tap.stop()
        if probe is not None:
            probe.stop()
        procs.stop_all()
        standalone.stop()
    assert not run.failures, "\n".join(run.failures)


def _warm_probe(port: int) -> WebProbe:
    """A probe user with WARM_POSTS posts (spread over the masters' slots), each read until cached."""
    user = AppUser.objects.create(username="probe", password="!")
    probe = WebProbe(port, issue_token(user), [])
    for i in range(WARM_POSTS):
        status, body = probe.request("POST", "/api/posts", b'{"body": "warm %d"}' % i)
        assert status == 201, body
        probe.warm.append(json.loads(body)["id"])
    for post_id in probe.warm:
        eventually(lambda post_id=post_id: _read_hits(probe, post_id), timeout=30, interval=0.1)
    return probe.start()


def _read_hits(probe: WebProbe, post_id: int) -> bool:
    before = probe.counters()
    status, _ = probe.request("GET", f"/api/posts/{post_id}")
    after = probe.counters()
    return status == 200 and bool(before and after) and after["hits"] > before["hits"]


def _victim(cluster: PrivateCluster, why: str, originals: list[int], kills: list[Kill], streams) -> int:
    """The next master to kill: the one REDIS_URL names; then the master of a stream partition
    other than the replacement of the first; then the last original master still a master."""
    masters = cluster.masters()
    if why == "REDIS_URL":
        return cluster.base
    candidates = [port for port in originals if port in masters and port not in {k.port for k in kills}]
    if why == "partition":
        holders = {cluster.master_of(stream) for stream in streams}
        candidates = [port for port in candidates if port in holders]
    assert candidates, f"no master left to kill for {why}: masters {masters}, originals {originals}"
    return candidates[0]


def _kill_and_promote(run: Run, cluster: PrivateCluster, probe: WebProbe, port: int, why: str) -> Kill:
    kill = Kill(port, why)
    with override_settings(EVENTS_STREAM_PARTITIONS=PARTITIONS):
        partitions = {post: stream_name("feed", partition_of(post)) for post in probe.warm}
    probe.aim(
        writes=[post for post, stream in partitions.items() if cluster.master_of(stream) == port],
        reads=[post for post in probe.warm if cluster.master_of(f"{{post:{post}}}") == port],
    )
    time.sleep(1.0)  # a few requests aimed at the victim while it lives
    fault = run.fault("kill -9", f"master :{port} ({why})")
    killed = cluster.kill(port)
    kill.killed_at = killed.at
    kill.promoted_after = cluster.wait_promoted(killed)
    kill.promoted_wall = time.time() - (time.monotonic() - killed.at - kill.promoted_after)
    run.fault("promoted", f"a replica of :{port} serves its slots {kill.promoted_after:.1f} s after the kill")
    promoted = killed.at + kill.promoted_after

    def resumed() -> bool:
        kill.publisher = probe.resumed("write", killed.at, promoted)
        kill.reads = probe.resumed("read", killed.at, promoted)
        return kill.publisher is not None and kill.reads is not None

    try:
        eventually(resumed, timeout=RESUME_TIMEOUT, interval=0.2)
    except AssertionError:
        run.fail(f"kill of :{port}: the web process did not resume within {RESUME_TIMEOUT:.0f} s")
    probe.aim()
    cluster.restart(killed)
    fault.ended = time.time()
    run.fault("restarted", f":{port} back as a replica, in sync")
    return kill


def _write_timeline(path, probe: WebProbe, kills: list[Kill]) -> None:
    """The probe's requests, with times relative to the first kill (to read after a failure)."""
    zero = kills[0].killed_at if kills else 0.0
    marks = [f"# kill :{k.port} at {k.killed_at - zero:.2f}, promoted +{k.promoted_after:.2f}" for k in kills]
    rows = [
        f"{s.started - zero:.2f}\t{s.ended - zero:.2f}\t{s.kind}\t{s.status}\t{int(s.good)}"
        for s in probe.samples
    ]
    path.write_text("\n".join([*marks, *rows]) + "\n")


def _beat_after(procs: Processes, kill: Kill) -> dict[str, float]:
    """For each beat task, seconds from the promotion to its first successful run after it."""
    runs = _beat_runs(procs, ["worker-a", "worker-b"])
    return {
        task: min(
            (at - kill.promoted_wall for at in runs.get(task, ()) if at >= kill.promoted_wall), default=-1.0
        )
        for task in BEAT_TASKS
    }


def _lost(client, streams: list[str], tap: ClusterTap, run: Run) -> list[str]:
    """Events lost: a database version or delete absent from the streams as they are now, or an
    event some stream held (the tap saw it) that none holds any more. Entries the tap saw that
    are gone (trimming is off: a failover dropped them) must have been sent again (new entries)."""
    final = read_streams(client, streams)
    lost = events_lost(final, run)
    held: dict[tuple[str, bytes], str] = {}
    for stream in streams:
        for entry_id, fields in client.xrange(stream, "-", "+"):
            with contextlib.suppress(InvalidEvent, KeyError, TypeError):
                held[stream, entry_id] = Event.decode(fields.get(EVENT_FIELD, b"")).id
    events_held = set(held.values())
    dropped = {key: event_id for key, event_id in tap.held.items() if key not in held}
    vanished = sorted({event_id for event_id in dropped.values() if event_id not in events_held})
    run.fault(
        "streams",
        f"{final.entries} entries at the end; the tap saw {tap.entries}; {len(dropped)} of those were "
        f"dropped by a failover, {len(dropped) - len(vanished)} of them sent again by the outbox",
    )
    if vanished:
        run.fail(f"events lost: {len(vanished)} events a stream held are in none now: {vanished[:20]}")
    dead = client.xlen(dead_letter_stream())
    if dead:
        run.fail(f"{dead} legitimate events were dead-lettered (no poison was injected)")
    return lost + vanished


def _check_processes(run: Run, procs: Processes, probe: WebProbe, kills: list[Kill]) -> None:
    for name in ("worker-a", "worker-b", "beat"):
        if procs.running[name].poll() is not None:
            run.fail(f"{name} died: {procs.log(name)[-2000:]}")
    if probe.failures:
        run.fail(
            f"the web process failed {len(probe.failures)} probe requests: " + "; ".join(probe.failures[:10])
        )
    for kill in kills:
        late = {task: at for task, at in kill.beat.items() if at < 0}
        if late:
            run.fail(f"kill of :{kill.port}: beat tasks never ran again after the promotion: {sorted(late)}")


def _summary(run, kills, probe, checker, http_diffs, lost, procs) -> None:
    def seconds(value) -> str:
        return "-" if value is None else f"{value:.1f} s"

    rows = [("operations", str(OPS)), ("partitions per domain", str(PARTITIONS))]
    for kill in kills:
        beat = max(kill.beat.values(), default=None)
        rows.append(
            (
                f"kill -9 :{kill.port} ({kill.why})",
                f"promoted {seconds(kill.promoted_after)}; web publishes at commit again "
                f"{seconds(kill.publisher)}, reads hit {seconds(kill.reads)} after the kill; "
                f"every beat task ran {seconds(beat)} after the promotion",
            )
        )
    if probe is not None:
        rows.append(("probe requests (failed)", f"{len(probe.samples)} ({len(probe.failures)})"))
    ryw = 0
    for i in range(2):
        log = procs.logs / f"driver-{i}.log"
        for line in log.read_text().splitlines() if log.exists() else ():
            if line.startswith("DONE") and "ryw_misses=" in line:
                ryw += int(line.rsplit("ryw_misses=", 1)[1])
    rows += [
        ("checked by check_cache_consistency", str(checker["checked"])),
        ("mismatches (cache vs DB)", str(len(checker["mismatches"]))),
        ("differences (HTTP vs DB)", str(len(http_diffs))),
        ("events lost", str(len(lost))),
        ("read-your-writes misses (drivers)", str(ryw)),
        ("failures", str(len(run.failures))),
        ("wall time", f"{time.monotonic() - run.started:.0f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(
        "\n".join(["", "chaos (cluster) summary", *(f"  {name:<{width}}  {value}" for name, value in rows)])
    )
