"""Cache read benchmark: one cached `get` through our doors vs a raw redis-py GET of the same bytes.

    python -m bench.cache_get [--iterations 20000] [--rounds 20]

For a ~1 KB and a ~5 KB JSON value (a post detail, a feed page), stored once, each operation reads
the same key `--iterations` times in all, in `--rounds` interleaved rounds (every round runs each
operation once, in a shuffled order, so drift and noise hit them alike). Each call is timed on its
own; the table gives the median (p50) per call, calls per second over all rounds, and the p50 as a
ratio to the raw GET of the same value (the baseline, measured in the same run on the same pool):

- raw redis-py GET: `client.get(key)`, bytes back, nothing decoded;
- raw GET + orjson.loads: the decoding every door has to do, with no library code;
- BaseCacheStrategy.get: breaker check, GET, lease/corruption check, decode, hit counting;
- strategy.key() + get: the same plus building the key (namespace generation from process memory);
- CacheAsideStrategy.get_or_load, hot: the read path of every cache-aside fill;
- django caches['default'].get: django-redis with our serializer.

Redis on loopback, one connection at a time: every figure is bounded below by one round trip.
Touches only its own keys (namespace `benchget`), deleted at the end; never flushes anything.
"""

import argparse
import random
import statistics
import time
from collections.abc import Callable

from bench.harness import environment, table

ARGS = argparse.Namespace(iterations=20_000, rounds=20, seed=3)


def _post(i: int, body_chars: int) -> dict:
    return {
        "id": 1000 + i,
        "author_id": 17,
        "author": "moonwalker",
        "body": ("Lunar regolith sample notes. " * (body_chars // 29 + 1))[:body_chars],
        "created_at": "2026-11-25T06:00:00.123456Z",
        "updated_at": "2026-11-25T06:00:01.654321Z",
        "reactions": {"like": 12, "love": 3, "laugh": 0, "wow": 1, "sad": 0, "angry": 0},
        "comments": 4,
        "version": 7,
    }


def sample_values() -> dict[str, dict]:
    """A ~1 KB post detail and a ~5 KB feed page (the shapes the feed caches hold)."""
    return {
        "~1 KB": _post(0, 720),
        "~5 KB": {"user_id": 17, "page": 1, "items": [_post(i, 180) for i in range(12)], "version": 3},
    }


def _timed(fn: Callable[[], object], calls: int, sink: list[float]) -> float:
    """Run `fn` `calls` times, appending each call's seconds to `sink`; returns the batch's seconds."""
    perf = time.perf_counter
    started = batch_start = perf()
    for _ in range(calls):
        fn()
        now = perf()
        sink.append(now - started)
        started = now
    return perf() - batch_start


def _operations(key: str, parts: tuple, value: dict) -> dict[str, Callable[[], object]]:
    import orjson
    from django.core.cache import caches

    from core.caching import BaseCacheStrategy, CacheAsideStrategy
    from core.connections import cache_client

    class Plain(BaseCacheStrategy):
        namespace = "benchget"
        default_ttl = 3600

    class Aside(CacheAsideStrategy):
        namespace = "benchget"
        default_ttl = 3600

    client, plain, aside, django_cache = cache_client(), Plain(), Aside(), caches["default"]
    assert plain.key(*parts) == key

    return {
        "raw redis-py GET (baseline)": lambda: client.get(key),
        "raw GET + orjson.loads": lambda: None if (raw := client.get(key)) is None else orjson.loads(raw),
        "BaseCacheStrategy.get": lambda: plain.get(key),
        "strategy.key() + BaseCacheStrategy.get": lambda: plain.get(plain.key(*parts)),
        "CacheAsideStrategy.get_or_load (hot)": lambda: aside.get_or_load(key, lambda: value),
        "django caches['default'].get": lambda: django_cache.get(key),
    }


def measure(label: str, value: dict, args: argparse.Namespace) -> list[list[object]]:
    from core.caching import BaseCacheStrategy, CacheSerializer

    class Writer(BaseCacheStrategy):
        namespace = "benchget"
        default_ttl = 3600

    writer = Writer()
    parts = ("bench", label.strip("~ ").replace(" ", ""))
    key = writer.key(*parts)
    payload = CacheSerializer.dumps(value)
    ops = _operations(key, parts, value)
    # Every door returns the same value for the same bytes (or the benchmark compares nothing).
    writer.set(key, value)
    expected = CacheSerializer.loads(payload)
    for name, op in ops.items():
        got = op()
        assert got == (payload if name.startswith("raw redis-py") else expected), name

    per_round = max(1, args.iterations // args.rounds)
    samples: dict[str, list[float]] = {name: [] for name in ops}
    busy: dict[str, float] = dict.fromkeys(ops, 0.0)
    order = list(ops)
    rng = random.Random(args.seed)
    for op in ops.values():  # warm up connections, scripts, code paths
        _timed(op, 200, [])
    redone = 0
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            # A batch only counts if the key was there all along: another benchmark may flush the
            # shared bench database meanwhile, and timing misses would flatter every door.
            for _attempt in range(5):
                writer.set(key, value)
                kept = len(samples[name])
                seconds = _timed(ops[name], per_round, samples[name])
                if writer.client.get(key) == payload:
                    busy[name] += seconds
                    break
                del samples[name][kept:]
                redone += 1
            else:
                raise RuntimeError(f"{key} keeps disappearing: is something flushing the database?")
    writer.delete(key)
    if redone:
        print(f"note: {redone} batch(es) redone after the key vanished (a concurrent FLUSHDB?)")

    base = statistics.median(samples["raw redis-py GET (baseline)"])
    rows = []
    for name in ops:
        p50 = statistics.median(samples[name])
        calls = len(samples[name])
        rows.append([label, f"{len(payload):,} B", name, p50 * 1e6, calls / busy[name], f"{p50 / base:.2f}x"])
    return rows


def run(args: argparse.Namespace = ARGS) -> str:
    rows: list[list[object]] = []
    for label, value in sample_values().items():
        rows += measure(label, value, args)
    per_op = max(1, args.iterations // args.rounds) * args.rounds
    header = (
        f"### Cache get ({environment()}; {per_op:,} calls per operation and size, "
        f"{args.rounds} interleaved rounds)\n\n"
    )
    return header + table(["value", "bytes", "op", "µs/op p50", "ops/s", "p50 vs raw GET"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--iterations", type=int, default=ARGS.iterations, help="calls per operation and size"
    )
    parser.add_argument("--rounds", type=int, default=ARGS.rounds)
    parser.add_argument("--seed", type=int, default=ARGS.seed)
    args = parser.parse_args()
    if not 1 <= args.iterations <= 1_000_000 or not 1 <= args.rounds <= args.iterations:
        parser.error("need 1 <= rounds <= iterations <= 1,000,000")
    print(run(args))


if __name__ == "__main__":
    main()
