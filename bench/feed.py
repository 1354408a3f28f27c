"""Feed read benchmark, on PostgreSQL (or SQLite) at DATABASE_URL's server, seeded by seed_demo:

    python -m bench.feed [--users 10000] [--posts 200000] [--seconds 10] [--sample 200]

Runs in a throwaway database next to DATABASE_URL's and on the bench Redis databases (see
bench/harness.py; BENCH_REDIS_URL overrides), and measures in the same run:
- feed page 1 read through UserFeedCache, hot, vs the uncached database query that fills it;
- the same hot read vs a raw redis-py GET of the same bytes (what our layers add);
- feed page + counts (the API's selector) hot vs its database equivalent;
- HTTP requests/s for GET /api/feed, hot, through uvicorn (1 worker) as ASGI (as deployed) and as
  WSGI, driven by wrk (or a threaded http.client loop when wrk is not installed) on loopback;
- followers' freshness: from `Post.objects.create` returning to a follower's first read that shows
  the post (p50/p99), with the worker's fan-out alone (FEED_INLINE_FANOUT_MAX=0, the baseline) and
  with the commit-time invalidation from the author's cached follower set, a real stream consumer
  running in another process in both; and what that costs the write (create time, both ways).
Prints a markdown table; `run()` returns it for `python -m bench`. `--freshness-only` runs the
last part alone (no seed, no HTTP).
"""

import argparse
import multiprocessing
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.client import HTTPConnection
from pathlib import Path
from typing import NamedTuple

from bench.harness import (
    bench_database,
    database_url,
    environment,
    median,
    percentile,
    settle_namespace,
    table,
    time_per_op,
)

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = 20
ARGS = argparse.Namespace(
    users=10_000,
    posts=200_000,
    seconds=10.0,
    sample=200,
    seed=1,
    writes=300,
    followers=20,
    freshness_only=False,
)


def _interleaved(workloads: dict[str, tuple[Callable[[], object], int]], rounds: int) -> dict[str, float]:
    """Seconds per call of each workload: the best of `rounds` rounds, the workloads taking turns
    within each round, so that a burst of load from elsewhere on this shared machine hits them alike
    and the best-of keeps the undisturbed rounds."""
    best = dict.fromkeys(workloads, float("inf"))
    for _ in range(rounds):
        for name, (fn, calls) in workloads.items():
            best[name] = min(best[name], time_per_op(fn, calls, repeats=1))
    return best


def _round_robin(fns: list[Callable[[], object]]) -> Callable[[], object]:
    state = {"i": 0}

    def call():
        state["i"] = (state["i"] + 1) % len(fns)
        return fns[state["i"]]()

    return call


def seed(users: int, posts: int, seed: int) -> tuple[int, int, int, float]:
    from django.core.management import call_command

    from accounts.models import AppUser
    from feed.models import Follow, Post

    started = time.perf_counter()
    call_command("seed_demo", users=users, posts=posts, seed=seed, verbosity=0)
    settle_namespace("feed")  # seed_demo bumped it: no fill is stored until every process switched
    elapsed = time.perf_counter() - started
    return AppUser.objects.count(), Post.objects.count(), Follow.objects.count(), elapsed


def sample_users(count: int, seed: int = 1) -> list[int]:
    """Random users who follow someone (a feed with content), reproducibly."""
    from feed.models import Follow

    ids = sorted(set(Follow.objects.values_list("follower_id", flat=True).distinct()))
    return random.Random(seed).sample(ids, min(count, len(ids)))


def measure_reads(user_ids: list[int], calls: int) -> dict[str, float]:
    import orjson
    import redis
    from django.conf import settings

    from feed import queries, selectors
    from feed.cache import UserFeedCache

    feeds = UserFeedCache()
    for user_id in user_ids:  # warm the caches
        feeds.invalidate(user_id)
        selectors.feed(user_id, 1, PAGE_SIZE)

    missed = []

    def hot(user_id: int) -> Callable[[], object]:
        def read():
            return feeds.get_feed(user_id, 1, PAGE_SIZE, lambda: missed.append(user_id) or [])

        return read

    raw_client = redis.Redis.from_url(settings.REDIS_URL)
    page_keys = [feeds.page_key(user_id, 1, PAGE_SIZE) for user_id in user_ids]
    assert all(raw_client.exists(key) for key in page_keys), "feed pages are not cached"

    def db_with_counts(user_id: int) -> Callable[[], object]:
        def read():
            items = queries.feed_page(user_id, 1, PAGE_SIZE)
            stats = queries.post_stats_many([item["id"] for item in items])
            return [{**item, "counts": stats[item["id"]]} for item in items]

        return read

    workloads = {
        "db": (_round_robin([lambda u=u: queries.feed_page(u, 1, PAGE_SIZE) for u in user_ids]), 40),
        "hot": (_round_robin([hot(u) for u in user_ids]), calls),
        "raw": (_round_robin([lambda k=k: raw_client.get(k) for k in page_keys]), calls),
        "raw_loads": (_round_robin([lambda k=k: orjson.loads(raw_client.get(k)) for k in page_keys]), calls),
        "db_counts": (_round_robin([db_with_counts(u) for u in user_ids]), 40),
        "hot_counts": (
            _round_robin([lambda u=u: selectors.feed(u, 1, PAGE_SIZE) for u in user_ids]),
            calls // 2,
        ),
    }
    results = _interleaved(workloads, rounds=9)
    results["page_bytes"] = statistics.median(len(raw_client.get(k)) for k in page_keys)
    if missed:
        raise RuntimeError(f"hot reads missed the cache {len(missed)} times")
    return results


# --- HTTP ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("uvicorn exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("uvicorn did not start")


def _wrk(port: int, tokens: list[str], seconds: float, connections: int) -> tuple[float, str]:
    script = "\n".join(
        [
            "local tokens = {" + ",".join(f'"{t}"' for t in tokens) + "}",
            "local i = 0",
            "request = function()",
            "  i = i % #tokens + 1",
            '  return wrk.format("GET", "/api/feed", {["Authorization"] = "Bearer " .. tokens[i]})',
            "end",
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "--latency",
                "-s",
                handle.name,
                f"http://127.0.0.1:{port}/api/feed",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    # The latency distribution lines only ("  50%  84.51ms"), not a stats line ending in "72.50%".
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)
    return rate, f"wrk -t2 -c{connections}, p50 {p50}, p99 {p99}"


def _threaded_client(port: int, tokens: list[str], seconds: float, connections: int) -> tuple[float, str]:
    done = []
    failures = []
    deadline = time.monotonic() + seconds

    def loop(token: str) -> None:
        conn = HTTPConnection("127.0.0.1", port, timeout=10)
        count = 0
        while time.monotonic() < deadline:
            conn.request("GET", "/api/feed", headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
            count += 1
        done.append(count)

    threads = [threading.Thread(target=loop, args=(tokens[i % len(tokens)],)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} error responses, e.g. {failures[0]}")
    return sum(done) / seconds, f"threaded http.client, {connections} connections"


def measure_http(
    user_ids: list[int], seconds: float, interface: str, connections: int = 16
) -> tuple[float, str]:
    """GET /api/feed through uvicorn (1 worker) with `interface` "asgi" (themoon.asgi, as deployed)
    or "wsgi" (themoon.wsgi through uvicorn's WSGI adapter: a pool of 10 reused threads).

    Under ASGI, Django runs each request's sync code in a fresh thread, so persistent database
    connections (CONN_MAX_AGE > 0) would pile up one per request: the ASGI run uses the connection
    pool the Procfile turns on for web (DATABASE_POOL=true). The WSGI run keeps per-thread ones.
    """
    from accounts.auth import issue_token
    from accounts.models import AppUser
    from feed import selectors

    users = list(AppUser.objects.filter(pk__in=user_ids[:20]))
    tokens = [issue_token(user) for user in users]
    for user in users:
        selectors.feed(user.pk, 1, PAGE_SIZE)  # hot
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_DEBUG": "false", "LOG_LEVEL": "WARNING"}
    if interface == "asgi":
        env["DATABASE_POOL"] = "true"
        app = ["themoon.asgi:application", "--interface", "asgi3", "--lifespan", "off"]
    else:
        app = ["themoon.wsgi:application", "--interface", "wsgi"]
    command = [sys.executable, "-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--loop", "uvloop", "--http", "httptools",
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        _wait_for(port, proc)
        # Warm up: connections, the thread pool, and a first request per token.
        for token in tokens:
            conn = HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/feed", headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /api/feed answered {response.status}")
        driver = _wrk if shutil.which("wrk") else _threaded_client
        return driver(port, tokens, seconds, connections)
    finally:
        proc.terminate()
        proc.wait(10)


# --- followers' freshness -----------------------------------------------------------------------


def _consume(stop_at: float) -> None:
    """Runs in a child process: a real stream consumer (the worker's, with the real handlers and
    their fan-out) until `stop_at`."""
    from workers.consumer import StreamConsumer

    consumer = StreamConsumer(name="freshness-consumer")
    consumer.ensure_groups()
    while time.time() < stop_at:
        consumer.process(consumer.read(pending=False))


def _wait_consumed(timeout: float = 10.0) -> None:
    """Until the consumer has applied (and acknowledged) every feed event written so far."""
    from core.connections import events_client
    from core.events import stream_name

    client, stream = events_client(), stream_name("feed")
    deadline = time.monotonic() + timeout
    while not all(g["pending"] == 0 and g["lag"] == 0 for g in client.xinfo_groups(stream)):
        if time.monotonic() > deadline:
            raise RuntimeError("the consumer did not catch up")
        time.sleep(0.001)


class Freshness(NamedTuple):
    """One write, from its return: to the fresh read's end, to its start (0 when the first read
    after the write was fresh), the fresh read's own time (a miss: the database), stale reads."""

    total: float
    until_read: float
    read: float
    stale_reads: int


def _time_to_fresh(author, follower_ids: list[int], writes: int, rng: random.Random) -> list[Freshness]:
    """Per write: seconds from `Post.objects.create` returning to a follower's first feed read
    (the first page, through the selector GET /api/feed uses) that shows the new post. Before
    each write the consumer has caught up and the follower's page is hot (a stale read is
    possible)."""
    from feed import selectors
    from feed.cache import UserFeedCache
    from feed.models import Post

    feeds = UserFeedCache()
    delays = []
    for i in range(writes):
        follower_id = rng.choice(follower_ids)
        _wait_consumed()
        selectors.feed_page(follower_id, None, PAGE_SIZE)  # GET /api/feed's first page
        if not feeds.client.exists(feeds.page_key(follower_id, 1, PAGE_SIZE)):
            raise RuntimeError("feed pages are not cached (is the namespace settled?)")
        post = Post.objects.create(author=author, body=f"fresh {i}")
        returned = time.perf_counter()
        deadline, stale = returned + 5, 0
        while True:
            started = time.perf_counter()
            items, _ = selectors.feed_page(follower_id, None, PAGE_SIZE)
            if items and items[0]["id"] == post.pk:
                break
            stale += 1
            if started > deadline:
                raise RuntimeError(f"follower {follower_id} never saw post {post.pk}")
        done = time.perf_counter()
        delays.append(Freshness(done - returned, started - returned, done - started, stale))
    return delays


def _create_times(author, writes: int, inline_max: int) -> tuple[list[float], list[float]]:
    """Create times with the inline fan-out off and on, alternating (the same load hits both)."""
    from django.conf import settings

    from feed.models import Post

    off, on = [], []
    for i in range(writes):
        for inline, samples in ((0, off), (inline_max, on)):
            settings.FEED_INLINE_FANOUT_MAX = inline
            started = time.perf_counter()
            Post.objects.create(author=author, body=f"cost {i}")
            samples.append(time.perf_counter() - started)
    settings.FEED_INLINE_FANOUT_MAX = inline_max
    return off, on


def measure_freshness(writes: int, followers: int) -> dict[str, list]:
    """The worker-only baseline, then the inline path, with a consumer process running throughout."""
    from django.conf import settings
    from django.db import connections

    from accounts.models import AppUser
    from feed.cache import FollowerSetCache
    from feed.fanout import invalidate_followers
    from feed.models import Follow

    settle_namespace("feed")  # fills are stored only once the namespace's epoch is settled
    inline_max = settings.FEED_INLINE_FANOUT_MAX
    stamp = int(time.time() * 1000)
    author = AppUser.objects.create(username=f"fresh-author-{stamp}")
    fans = AppUser.objects.bulk_create([AppUser(username=f"fresh-fan-{stamp}-{i}") for i in range(followers)])
    Follow.objects.bulk_create([Follow(follower=fan, followee=author) for fan in fans])  # no events
    follower_ids = [fan.pk for fan in fans]
    sets = FollowerSetCache()
    rng = random.Random(1)

    connections.close_all()  # the forked consumer opens its own
    stop_at = time.time() + 3600
    consumer = multiprocessing.get_context("fork").Process(target=_consume, args=(stop_at,), daemon=True)
    consumer.start()
    try:
        time.sleep(0.5)
        settings.FEED_INLINE_FANOUT_MAX = 0  # the writer: the worker alone (the consumer still fills)
        sets.client.delete(sets.set_key(author.pk))
        before = _time_to_fresh(author, follower_ids, writes, rng)
        settings.FEED_INLINE_FANOUT_MAX = inline_max
        invalidate_followers([author.pk], chunk=settings.FEED_FANOUT_CHUNK)  # the set, as a fan-out fills it
        if author.pk not in sets.audiences([author.pk]):
            raise RuntimeError("the author's follower set was not filled")
        after = _time_to_fresh(author, follower_ids, writes, rng)
        cost_off, cost_on = _create_times(author, writes, inline_max)
        set_read = []
        for _ in range(writes):
            started = time.perf_counter()
            sets.audiences([author.pk])
            set_read.append(time.perf_counter() - started)
    finally:
        consumer.terminate()
        consumer.join(10)
        settings.FEED_INLINE_FANOUT_MAX = inline_max
    return {"before": before, "after": after, "cost_off": cost_off, "cost_on": cost_on, "set_read": set_read}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def freshness_rows(fresh: dict[str, list], followers: int) -> list[tuple]:
    rows = []
    for mode, label in (
        ("before", "worker fan-out only (baseline)"),
        ("after", "inline from the follower set"),
    ):
        totals = [f.total for f in fresh[mode]]
        waits = [f.until_read for f in fresh[mode]]
        first = sum(1 for f in fresh[mode] if f.stale_reads == 0) / len(fresh[mode])
        rows += [
            (f"write returns -> follower's fresh read, {label}: p50 / p99",
             f"{_ms(percentile(totals, 50))} / {_ms(percentile(totals, 99))}", "", "",
             "p50 <= 5 ms" if mode == "after" else ""),
            ("  of which waiting for the invalidation (until the fresh read starts): p50 / p99",
             f"{_ms(percentile(waits, 50))} / {_ms(percentile(waits, 99))}", "", "", ""),
            ("  the fresh read itself (a miss: feed query + counts): p50",
             _ms(percentile([f.read for f in fresh[mode]], 50)), "", "", ""),
            ("  writes whose first read after returning was already fresh", f"{first:.0%}", "", "",
             "100%" if mode == "after" else ""),
        ]  # fmt: skip
    before = percentile([f.total for f in fresh["before"]], 50)
    after = percentile([f.total for f in fresh["after"]], 50)
    off, on = median(fresh["cost_off"]), median(fresh["cost_on"])
    rows += [
        ("fresh read p50, inline vs worker only", "", "worker only", f"{before / after:.1f}x sooner", ""),
        ("`Post.objects.create`, inline fan-out off (median)", _ms(off), "", "", ""),
        (f"`Post.objects.create`, inline fan-out on, {followers} followers (median)", _ms(on), "off",
         f"{on / off:.2f}x the time (+{(on - off) * 1e6:,.0f} µs)", ""),
        ("  the follower-set read on its own round trip (`FollowerSetCache.audiences`: a cluster's path; "
         "one Redis reads it in the commit's pipeline), median",
         _ms(median(fresh["set_read"])), "", "", ""),
    ]  # fmt: skip
    return rows


def freshness_report(fresh: dict[str, list], followers: int, writes: int) -> str:
    return "\n".join(
        [
            f"### Followers' freshness ({environment()})",
            "",
            f"{writes} posts per mode by one author with {followers} followers, a real stream consumer "
            "in another process throughout; before each post the consumer has caught up and a random "
            "follower's feed page 1 is hot; after it returns, that follower reads page 1 (the API's "
            "selector) until it shows the post. The fresh read is a cache miss (a database read), so "
            "the time to it includes one feed query: under load that query is most of it. "
            f"Load average at the end {os.getloadavg()[0]:.1f} (1, 5, 15 min: "
            f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}).",
            "",
            table(["measurement", "time", "baseline", "ratio", "target"], freshness_rows(fresh, followers)),
        ]
    )


# --- the report ---------------------------------------------------------------------------------


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def run(args: argparse.Namespace = ARGS) -> str:
    if args.freshness_only:
        with bench_database():
            fresh = measure_freshness(args.writes, args.followers)
        return freshness_report(fresh, args.followers, args.writes)
    with bench_database():
        n_users, n_posts, n_follows, seeded = seed(args.users, args.posts, args.seed)
        user_ids = sample_users(args.sample, args.seed)
        reads = measure_reads(user_ids, calls=1000)
        asgi_rate, asgi_how = measure_http(user_ids, args.seconds, "asgi")
        wsgi_rate, wsgi_how = measure_http(user_ids, args.seconds, "wsgi")
        fresh = measure_freshness(args.writes, args.followers)
    rows = [
        ("feed page 1, uncached DB query (`queries.feed_page`)", _us(reads["db"]), "", "", ""),
        ("feed page 1 via `UserFeedCache.get_feed`, hot", _us(reads["hot"]), "DB query",
         f"{reads['db'] / reads['hot']:.1f}x faster", ">= 30x"),
        (f"raw redis-py GET of the same bytes ({reads['page_bytes'] / 1024:.1f} KB)",
         _us(reads["raw"]), "", "", ""),
        ("hot `get_feed` vs raw GET", "", "raw GET",
         f"{reads['hot'] / reads['raw']:.2f}x the time", "<= 1.5x"),
        ("raw GET + `orjson.loads` (the decode get_feed must do too)", _us(reads["raw_loads"]), "", "", ""),
        ("hot `get_feed` vs raw GET + decode", "", "raw GET + loads",
         f"{reads['hot'] / reads['raw_loads']:.2f}x the time", ""),
        ("page + counts, DB (`feed_page` + `post_stats_many`)", _us(reads["db_counts"]), "", "", ""),
        ("page + counts via `selectors.feed`, hot (2 round trips)", _us(reads["hot_counts"]), "DB",
         f"{reads['db_counts'] / reads['hot_counts']:.1f}x faster", ""),
        ("HTTP GET /api/feed hot: uvicorn ASGI (as deployed), 1 worker, DB connection pool",
         f"{asgi_rate:,.0f} req/s", "", asgi_how, ""),
        ("HTTP GET /api/feed hot: same app as WSGI in uvicorn (10 threads, persistent DB conns)",
         f"{wsgi_rate:,.0f} req/s", "", wsgi_how, ""),
    ]  # fmt: skip
    return "\n".join(
        [
            f"### Feed reads ({environment()})",
            "",
            f"{n_users:,} users, {n_posts:,} posts, {n_follows:,} follows (seed_demo in {seeded:.0f} s); "
            f"{len(user_ids)} random users who follow someone, page size {PAGE_SIZE}; per-call times "
            "are the best of 9 interleaved rounds, reads round-robin over those users; "
            f"load average at the end {os.getloadavg()[0]:.1f} (a shared machine: ratios are "
            "only comparable at a low load).",
            "",
            table(["measurement", "time / rate", "baseline", "ratio", "target"], rows),
            "",
            freshness_report(fresh, args.followers, args.writes),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=ARGS.users)
    parser.add_argument("--posts", type=int, default=ARGS.posts)
    parser.add_argument("--seconds", type=float, default=ARGS.seconds, help="HTTP load per server")
    parser.add_argument("--sample", type=int, default=ARGS.sample, help="users whose feeds are read")
    parser.add_argument("--seed", type=int, default=ARGS.seed)
    parser.add_argument("--writes", type=int, default=ARGS.writes, help="posts per freshness mode")
    parser.add_argument("--followers", type=int, default=ARGS.followers, help="the freshness author's")
    parser.add_argument("--freshness-only", action="store_true", help="only the followers' freshness")
    print(run(parser.parse_args()))


if __name__ == "__main__":
    main()
