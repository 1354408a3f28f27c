"""Stale-while-revalidate benchmark: hit rate and read latency of a Zipf read load while the hot
keys expire, with the soft TTL off (entries expire; a miss waits for the one filler) and on (past
the soft TTL an entry is served while one reader refreshes it, XFetch early refresh).

    python -m bench.swr [--posts 5000] [--zipf 1.1] [--threads 8] [--seconds 6] [--ttl 2] [--rounds 2]

A read is what GET /api/posts/{id} does: the post's detail and its counts through the cache-aside
strategies, misses loaded from the database (the real queries). Both modes use the feed's cache
classes with short TTLs so the hot keys expire many times during a run: off, TTL `--ttl` s; on,
soft TTL `--ttl` s and hard TTL 3x (an entry is served at most `--ttl` s + one refresh old in both,
as long as it is read). `--threads` readers draw post ranks from a Zipf distribution (exponent s);
the modes alternate for `--rounds` rounds, each warmed up for one TTL before it is measured.

A read is a hit when it loaded nothing from the database (waiting for another reader's fill counts
as a hit here, and shows in the latency instead). Latency is per read (detail + counts), in ms.
"""

import argparse
import os
import random
import threading
import time
from itertools import accumulate

from bench.harness import bench_database, environment, percentile, settle_namespace, table

HOT = 100  # the ranks whose hit rate is reported on its own: the keys that expire under load

ARGS = argparse.Namespace(posts=5000, users=200, zipf=1.1, threads=8, seconds=6.0, ttl=2.0, rounds=2, seed=11)


def _caches(mode: str, ttl: float):
    """The detail and counts caches of one mode (own namespaces: the modes never share an entry)."""
    from feed.cache import PostDetailCache, ReactionCountsCache

    swr = mode == "on"
    hard = ttl * 3 if swr else ttl

    class Details(PostDetailCache):
        namespace = f"benchswr{mode}"
        default_ttl = hard
        soft_ttl = ttl if swr else None

    class Counts(ReactionCountsCache):
        namespace = f"benchswr{mode}"
        default_ttl = hard
        soft_ttl = ttl if swr else None

    return Details(), Counts()


def _run_mode(mode: str, ranked: list[int], args: argparse.Namespace, seed: int) -> dict:
    from django.db import connection

    from feed import queries

    details, counts = _caches(mode, args.ttl)
    weights = list(accumulate(1.0 / (rank**args.zipf) for rank in range(1, len(ranked) + 1)))
    measuring = threading.Event()
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(args.threads)]
    loads = [0] * args.threads
    reads = [0] * args.threads
    hot_loads = [0] * args.threads
    hot_reads = [0] * args.threads
    ranks = range(len(ranked))
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        loaded = False

        def detail_loader(post_id: int):
            nonlocal loaded
            loaded = True
            return queries.post_detail_or_none(post_id)

        def counts_loader(post_id: int):
            nonlocal loaded
            loaded = True
            return queries.post_stats_or_none(post_id)

        perf = time.perf_counter
        try:
            while not stop.is_set():
                rank = rng.choices(ranks, cum_weights=weights)[0]
                post_id = ranked[rank]
                loaded = False
                started = perf()
                details.get_post(post_id, lambda p=post_id: detail_loader(p))
                counts.get_counts(post_id, lambda p=post_id: counts_loader(p))
                elapsed = perf() - started
                if measuring.is_set():
                    latencies[index].append(elapsed)
                    reads[index] += 1
                    loads[index] += loaded
                    if rank < HOT:
                        hot_reads[index] += 1
                        hot_loads[index] += loaded
        except BaseException as exc:  # reported by the run
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    time.sleep(args.ttl)  # warm: every hot entry present, and then expiring on its own
    load_before = os.getloadavg()[0]
    measuring.set()
    began = time.perf_counter()
    time.sleep(args.seconds)
    measuring.clear()
    seconds = time.perf_counter() - began
    load_after = os.getloadavg()[0]
    stop.set()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]
    return {
        "latencies": [v for per_thread in latencies for v in per_thread],
        "reads": sum(reads),
        "loads": sum(loads),
        "hot_reads": sum(hot_reads),
        "hot_loads": sum(hot_loads),
        "seconds": seconds,
        "load": (load_before + load_after) / 2,
    }


def run(args: argparse.Namespace = ARGS) -> str:
    from django.core.management import call_command

    from feed.models import Post

    results: dict[str, list[dict]] = {"off": [], "on": []}
    with bench_database():
        call_command("seed_demo", users=args.users, posts=args.posts, seed=args.seed, verbosity=0)
        settle_namespace("feed")
        ranked = list(Post.objects.order_by("?").values_list("id", flat=True))  # rank -> a random post
        for round_ in range(args.rounds):
            for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                results[mode].append(_run_mode(mode, ranked, args, seed=args.seed + round_))
        env = environment()

    rows, p99 = [], {}
    for mode, runs in results.items():
        latencies = [v for r in runs for v in r["latencies"]]
        reads, loads = sum(r["reads"] for r in runs), sum(r["loads"] for r in runs)
        seconds = sum(r["seconds"] for r in runs)
        hot_reads, hot_loads = sum(r["hot_reads"] for r in runs), sum(r["hot_loads"] for r in runs)
        p99[mode] = percentile(latencies, 99)
        rows.append(
            [
                "SWR off (baseline)" if mode == "off" else "SWR on",
                reads,
                reads / seconds,
                f"{1 - loads / max(1, reads):.2%}",
                f"{1 - hot_loads / max(1, hot_reads):.2%}",
                loads,
                percentile(latencies, 50) * 1000,
                p99[mode] * 1000,
                percentile(latencies, 99.9) * 1000,
                max(latencies) * 1000,
                f"{sum(r['load'] for r in runs) / len(runs):.2f}",
            ]
        )
    rows[1].append(f"{p99['on'] / p99['off']:.2f}x")
    rows[0].append("1.00x")
    headers = [
        "mode",
        "reads",
        "reads/s",
        "hit rate",
        f"hit rate, top {HOT} ranks",
        "DB loads",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "load avg (1 min)",
        "p99 vs off",
    ]
    title = (
        f"### Stale-while-revalidate under a Zipf read load while hot keys expire ({env}; "
        f"{args.posts:,} posts, Zipf s={args.zipf}, {args.threads} reader threads, TTL {args.ttl:g} s "
        f"(on: soft {args.ttl:g} s, hard {args.ttl * 3:g} s), {args.rounds} x {args.seconds:g} s per mode)"
    )
    return title + "\n\n" + table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, value in vars(ARGS).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    print(run(parser.parse_args()))


if __name__ == "__main__":
    main()
