"""Warm-up benchmark: hit rates of a Zipf read workload right after a Redis flush, with and without
`warm_cache`, and the warm-up's own time.

    python -m bench.warmup [--users 2000] [--posts 20000] [--reads 10000] [--top 2000,5000] [--zipf 1.1]

A read is what GET /api/posts/{id} does: the post's detail and its counts through the cache-aside
strategies (misses load from the database and fill). Post popularity ranks follow the demo data's
reactions and comments (what the warm-up's database ranking sees after a flush), and the workload
draws ranks from a Zipf distribution with exponent s.
"""

import argparse
import random
import time
from itertools import accumulate

from bench.harness import bench_database, environment, settle_namespace, table

ARGS = argparse.Namespace(users=2000, posts=20_000, reads=10_000, top="2000,5000", zipf=1.1, seed=7)


def _workload(ranked: list[int], reads: int, s: float, seed: int) -> list[int]:
    weights = list(accumulate(1.0 / (rank**s) for rank in range(1, len(ranked) + 1)))
    return random.Random(seed).choices(ranked, cum_weights=weights, k=reads)


def _replay(post_ids: list[int], checkpoints: tuple[int, ...]) -> dict[int, float]:
    """Read each post as the API does; the hit rate of cache lookups after each checkpoint."""
    from core.caching import stats
    from feed import queries
    from feed.cache import PostDetailCache, ReactionCountsCache

    details, counts = PostDetailCache(), ReactionCountsCache()
    stats.reset()
    rates = {}
    for index, post_id in enumerate(post_ids, start=1):
        details.get_post(post_id, lambda p=post_id: queries.post_detail_or_none(p))
        counts.get_counts(post_id, lambda p=post_id: queries.post_stats_or_none(p))
        if index in checkpoints:
            feed = stats.snapshot().get("feed", {"hits": 0, "misses": 0})
            rates[index] = feed["hits"] / max(1, feed["hits"] + feed["misses"])
    return rates


def run(args: argparse.Namespace = ARGS) -> str:
    from django.core.management import call_command
    from django.db.models import Count

    from core.connections import cache_client
    from feed.models import Post
    from feed.warmup import warm_posts

    with bench_database():
        call_command("seed_demo", users=args.users, posts=args.posts, seed=args.seed, verbosity=0)
        settle_namespace("feed")  # seed_demo bumped it: fills resume once every process switched
        ranked = list(
            Post.objects.annotate(score=Count("reactions", distinct=True) + Count("comments", distinct=True))
            .order_by("-score", "-id")
            .values_list("id", flat=True)
        )
        reads = _workload(ranked, args.reads, args.zipf, args.seed)
        checkpoints = (1000, args.reads)

        cache_client().flushdb()
        cold = _replay(reads, checkpoints)

        warm_runs = []
        for top in (int(k) for k in str(args.top).split(",")):
            cache_client().flushdb()
            started = time.perf_counter()
            warmed = warm_posts(top)
            seconds = time.perf_counter() - started
            warm_runs.append((top, seconds, warmed.written, _replay(reads, checkpoints)))
        env = environment()

    headers = ["measure", "no warm-up"] + [f"after warm_cache --posts {top:,}" for top, *_ in warm_runs]
    rows = [
        ["hit rate, first 1,000 reads", f"{cold[1000]:.1%}"] + [f"{r[1000]:.1%}" for *_, r in warm_runs],
        [f"hit rate, first {args.reads:,} reads", f"{cold[args.reads]:.1%}"]
        + [f"{r[args.reads]:.1%}" for *_, r in warm_runs],
        ["warm-up time", "-"] + [f"{sec:.2f} s ({keys:,} keys)" for _, sec, keys, _ in warm_runs],
    ]
    title = (
        f"### Warm-up after FLUSHDB ({env}; {args.users:,} users, {args.posts:,} posts, "
        f"Zipf s={args.zipf}, {args.reads:,} reads)"
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
