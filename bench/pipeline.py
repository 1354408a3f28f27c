"""Pipeline benchmark: consumer throughput, commit -> cache lag, and the cost of publishing.

    python -m bench.pipeline [--events 30000] [--rate 1000] [--seconds 10] [--creates 3000]
                             [--create-rounds 6]

(a) events/s through one StreamConsumer with the real handlers, vs a raw XREADGROUP + XACK loop
    with no handler over the same number of entries (the baseline, same run); the process's heap
    frozen first, as a `celery worker`'s is (themoon/heap.py);
(b) commit -> cache-updated lag p50/p99 with writers paced at --rate saves/s and the consumer in
    its own process (apply-on-commit off, so the worker is what updates the cache);
(c) Post and Message creates per second with the pipeline on vs off (a plain Django save with no
    receivers), step by step: the ORM path, the one-statement path (PostgreSQL), + the Redis round
    trip, + apply-on-commit; interleaved over --create-rounds rounds, each ratio the median of the
    per-round ratios. The load average is printed with the figures.
"""

import argparse
import multiprocessing
import os
import random
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from bench.harness import bench_database, environment, per_second, percentile, table

PLOT = Path(__file__).resolve().parent / "lag.png"
ARGS = argparse.Namespace(events=30_000, rate=1000, seconds=10.0, creates=3000, create_rounds=6, writers=4)


def _users(count: int):
    from accounts.models import AppUser

    return AppUser.objects.bulk_create([AppUser(username=f"bench{i}", password="!") for i in range(count)])


def _sample_events(count: int, authors, posts) -> list[bytes]:
    """A realistic mix of feed events (and chat ones when chat handlers are registered)."""
    from chat import events as chat_events
    from core.events import registry
    from feed import events as feed_events

    kinds = ["like", "love", "laugh", "wow", "sad", "angry"]
    has_chat = registry.handles(chat_events.MESSAGE_CREATED)
    events = []
    for i in range(count):
        roll = i % 10
        post = posts[i % len(posts)]
        if roll < 4:
            detail = {
                "id": post.pk,
                "author_id": post.author_id,
                "author": "bench",
                "body": f"body {i}",
                "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
                "version": i + 2,
            }
            events.append(feed_events.post_updated(detail))
        elif roll < 7:
            stats = {
                "post_id": post.pk,
                "reactions": {k: random.randint(0, 50) for k in kinds},
                "comments": 3,
                "version": i + 1,
            }
            events.append(feed_events.reaction_added(post.pk, 1, "like", stats))
        elif roll < 9 or not has_chat:
            follower, followee = random.sample(authors, 2)
            events.append(feed_events.follow_created(follower.pk, followee.pk))
        else:
            message = {
                "id": i + 1,
                "conversation_id": 1 + i % 50,
                "sender_id": 1,
                "sender": "bench",
                "body": f"message {i}",
                "created_at": "2026-01-01T00:00:00Z",
                "edited_at": None,
                "version": 1,
            }
            events.append(chat_events.message_created(message, i + 1))
    return [event.encode() for event in events]


def _fill(client, stream: str, payloads: list[bytes]) -> None:
    from core.events.streams import EVENT_FIELD

    for start in range(0, len(payloads), 1000):
        pipe = client.pipeline(transaction=False)
        for payload in payloads[start : start + 1000]:
            pipe.xadd(stream, {EVENT_FIELD: payload})
        pipe.execute()


def throughput(count: int) -> list[tuple]:
    """(a): the real consumer vs a raw read+ack loop, same entries, same batch size."""
    from django.conf import settings
    from django.db import models

    from core.connections import stream_client
    from core.events import stream_name
    from feed.models import Post
    from themoon.heap import freeze_startup_heap
    from workers.consumer import StreamConsumer

    freeze_startup_heap(urlconf=False)  # as `celery worker` does before its consumer starts
    client = stream_client()
    authors = _users(200)
    # Setup rows without events (the base bulk_create): the stream holds exactly the sample.
    posts = models.QuerySet.bulk_create(Post.objects.all(), [Post(author=a, body="seed") for a in authors])
    payloads = _sample_events(count, authors, posts)
    batch = settings.EVENTS_BATCH_SIZE

    raw_stream = f"{settings.EVENTS_STREAM_PREFIX}:rawbench"
    _fill(client, raw_stream, payloads)
    client.xgroup_create(raw_stream, "raw", id="0")
    start = time.perf_counter()
    done = 0
    while done < count:
        response = client.xreadgroup("raw", "raw-1", {raw_stream: ">"}, count=batch)
        ids = [entry_id for _, items in response for entry_id, _ in items]
        client.xack(raw_stream, "raw", *ids)
        done += len(ids)
    raw_seconds = time.perf_counter() - start
    client.delete(raw_stream)

    _fill(client, stream_name("feed"), payloads)
    consumer = StreamConsumer(name="bench-consumer", streams=[stream_name("feed")])
    consumer.ensure_groups()
    start = time.perf_counter()
    while consumer.processed + consumer.dead_lettered < count:
        entries = consumer.read(pending=False)
        consumer.process(entries)
    real_seconds = time.perf_counter() - start
    assert consumer.dead_lettered == 0, "benchmark events must all apply"
    raw_rate, real_rate = per_second(count, raw_seconds), per_second(count, real_seconds)
    return [
        ("raw XREADGROUP + XACK, no handler (baseline)", f"{raw_rate:,.0f} events/s", "1.00x"),
        (
            "StreamConsumer, real handlers (decode + pipelined Lua/SET + fan-out query)",
            f"{real_rate:,.0f} events/s",
            f"{raw_rate / real_rate:.2f}x slower",
        ),
    ]


def _consume_and_record_lag(stop_at: float, lag_key: str) -> None:
    """Runs in a child process: a real consumer that records, per post.updated event, when it was
    applied and how long after its creation (in the writing transaction, just before commit)."""
    from core.connections import cache_client
    from feed import events as feed_events
    from workers.consumer import StreamConsumer

    class LagRecordingConsumer(StreamConsumer):
        def process(self, entries):
            failed = super().process(entries)
            now = time.time()
            samples = [
                f"{now:.6f}:{now - datetime.fromisoformat(e.event.occurred_at).timestamp():.6f}"
                for e in entries
                if e.event and e.event.type == feed_events.POST_UPDATED
            ]
            if samples:
                cache_client().rpush(lag_key, *samples)
            return failed

    consumer = LagRecordingConsumer(name="lag-consumer")
    consumer.ensure_groups()
    while time.time() < stop_at:
        consumer.process(consumer.read(pending=False))


def _write_paced(post_ids: list[int], per_second: float, seconds: float, done) -> None:
    """Runs in a child process: saves one of `post_ids` every 1/per_second s for `seconds`."""
    from feed.models import Post

    posts = list(Post.objects.filter(pk__in=post_ids))
    interval = 1 / per_second
    next_at = time.perf_counter()
    end = next_at + seconds
    i = 0
    while time.perf_counter() < end:
        post = posts[i % len(posts)]
        post.body = f"update {i}"
        post.save(update_fields=["body", "updated_at"])
        i += 1
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    done.value = i


def lag(rate: int, seconds: float, writers: int) -> list[tuple]:
    """(b): saves paced at `rate`/s by `writers` processes; lag measured by a consumer process."""
    from django.conf import settings
    from django.db import connections, models

    from accounts.models import AppUser
    from core.connections import cache_client
    from feed.models import Post

    settings.EVENTS_APPLY_ON_COMMIT = False  # so the worker is what updates the cache
    settings.EVENTS_BLOCK_MS = 50
    author = AppUser.objects.create(username="lag-author")
    posts = models.QuerySet.bulk_create(
        Post.objects.all(), [Post(author=author, body="x") for _ in range(writers * 10)]
    )
    lag_key = "bench:lag"
    started = time.time()
    connections.close_all()  # forked children open their own
    fork = multiprocessing.get_context("fork")
    consumer = fork.Process(target=_consume_and_record_lag, args=(started + seconds + 3, lag_key))
    consumer.start()
    time.sleep(0.5)
    counts = [fork.Value("i", 0) for _ in range(writers)]
    procs = [
        fork.Process(
            target=_write_paced,
            args=([p.pk for p in posts[i * 10 : i * 10 + 10]], rate / writers, seconds, n),
        )
        for i, n in enumerate(counts)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    consumer.join(timeout=seconds + 10)
    samples = [tuple(map(float, v.split(b":"))) for v in cache_client().lrange(lag_key, 0, -1)]
    settings.EVENTS_APPLY_ON_COMMIT = True
    written = sum(n.value for n in counts)
    lags_ms = [lag * 1000 for _, lag in samples]
    _plot_lag([(at - started, lag * 1000) for at, lag in samples], rate)
    return [
        ("writes/s achieved (target rate)", f"{written / seconds:,.0f} ({rate:,})", ""),
        ("events applied by the worker", f"{len(lags_ms):,} of {written:,}", ""),
        ("commit -> cache lag p50", f"{percentile(lags_ms, 50):.2f} ms", ""),
        ("commit -> cache lag p99", f"{percentile(lags_ms, 99):.2f} ms", ""),
        ("commit -> cache lag max", f"{max(lags_ms, default=float('nan')):.2f} ms", ""),
    ]


def _plot_lag(points: list[tuple[float, float]], rate: int) -> None:
    """bench/lag.png: each event's commit -> cache lag against when it was applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5), dpi=110)
    axes.scatter([t for t, _ in points], [ms for _, ms in points], s=2, alpha=0.5)
    axes.set_yscale("log")
    axes.set_xlabel("seconds into the run")
    axes.set_ylabel("commit -> cache lag (ms, log)")
    axes.set_title(f"themoon pipeline: lag per event at {rate:,} writes/s target")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(PLOT)
    plt.close(figure)


def create_rate(count: int, rounds: int) -> list[tuple]:
    """(c): Post and Message creates per second, pipeline on vs off (a plain save, receivers
    disconnected), and the steps in between, so the overhead can be attributed: the ORM path
    (atomic save + outbox INSERT), the one-statement path (PostgreSQL: row, conversation bump and
    outbox row in one statement), + the Redis round trip after commit, + apply-on-commit.

    Interleaved: `rounds` rounds of count/rounds creates per step, the steps in a rotated order
    each round, so a slow spell of the machine, the table's growth or an autovacuum hits every step
    alike (in blocks, the plain save ran first on the emptiest table). Rates are over all rounds;
    a ratio is the median of the per-round ratios to the plain save of the same round."""
    from django.conf import settings
    from django.db import connection, models

    import core.events.publisher as publisher
    from accounts.models import AppUser
    from chat import signals as chat_signals
    from chat.models import Conversation, Message, Participant
    from feed import signals as feed_signals
    from feed.models import Post

    author = AppUser.objects.create(username="create-author")
    other = AppUser.objects.create(username="create-other")
    conversation = Conversation.objects.create()
    Participant.objects.bulk_create(Participant(conversation=conversation, user=u) for u in (author, other))
    kinds = {
        "Post": (Post, feed_signals, lambda i: Post(author=author, body=f"post {i}")),
        "Message": (
            Message,
            chat_signals,
            lambda i: Message(conversation=conversation, sender=author, body=f"message {i}"),
        ),
    }
    per_round = max(1, count // rounds)

    def steps_of(model, signals, build) -> dict[str, Callable[[], AbstractContextManager]]:
        """Each step's setup, entered around its block: yields the create to time."""

        def plain(i: int) -> None:
            models.Model.save(build(i))

        def piped(i: int) -> None:
            build(i).save(force_insert=True)  # what model.objects.create() does

        @contextmanager
        def off():
            receivers = [r for r in signals.RECEIVERS if r[1] is model]
            for signal, sender, receiver in receivers:
                uid = f"{signals.__name__.split('.')[0]}.{receiver.__name__}"
                signal.disconnect(receiver, sender=sender, dispatch_uid=uid)
            try:
                yield plain
            finally:
                signals.connect()

        @contextmanager
        def nothing_sent(one_statement: bool):
            real_send = publisher.send
            publisher.send = lambda items, using=None: 0  # measurement only: events stay in the outbox
            settings.EVENTS_ONE_STATEMENT_CREATE = one_statement
            try:
                yield piped
            finally:
                publisher.send = real_send
                settings.EVENTS_ONE_STATEMENT_CREATE = True

        @contextmanager
        def sent(apply_on_commit: bool):
            settings.EVENTS_APPLY_ON_COMMIT = apply_on_commit
            try:
                yield piped
            finally:
                settings.EVENTS_APPLY_ON_COMMIT = True

        steps = {"off": off, "orm": lambda: nothing_sent(False)}
        if connection.vendor == "postgresql":
            steps["one"] = lambda: nothing_sent(True)
        return {**steps, "xadd": lambda: sent(False), "on": lambda: sent(True)}

    def measure(steps) -> tuple[dict[str, float], dict[str, list[float]]]:
        """(rate of each step over all rounds, per-round ratios of each step to the plain save)."""
        seconds = dict.fromkeys(steps, 0.0)
        ratios: dict[str, list[float]] = {name: [] for name in steps}
        names, made = list(steps), 0
        for r in range(rounds):
            took = {}
            for name in names[r % len(names) :] + names[: r % len(names)]:
                with steps[name]() as create:
                    for _ in range(10):  # warm: connections and statement caches
                        create(made := made + 1)
                    start = time.perf_counter()
                    for _ in range(per_round):
                        create(made := made + 1)
                    took[name] = time.perf_counter() - start
                    seconds[name] += took[name]
            for name in names:
                ratios[name].append(took[name] / took["off"])
        return {name: per_second(per_round * rounds, seconds[name]) for name in names}, ratios

    labels = {
        "orm": "ORM path: atomic save + event + outbox INSERT (nothing sent)",
        "one": "one statement: row + outbox row (nothing sent)",
    }
    path = "one statement" if connection.vendor == "postgresql" else "ORM path"
    labels["xadd"] = f"{path} + XADD and sent mark after commit (one Redis round trip)"
    labels["on"] = f"{path} + apply-on-commit in that round trip: pipeline on, as shipped"
    rows = []
    for name, (model, signals, build) in kinds.items():
        rates, ratios = measure(steps_of(model, signals, build))
        rows.append((f"{name} create, pipeline off (plain Django save)", f"{rates['off']:,.0f}/s", "1.00x"))
        for step in [step for step in labels if step in rates]:
            spread = ", ".join(f"{ratio:.2f}" for ratio in ratios[step])
            ratio = f"{statistics.median(ratios[step]):.2f}x the time (rounds: {spread})"
            rows.append((f"{name} create, {labels[step]}", f"{rates[step]:,.0f}/s", ratio))
    return rows


def run(args: argparse.Namespace = ARGS) -> str:
    with bench_database():
        rows = []
        rows += throughput(args.events)
        rows += lag(args.rate, args.seconds, args.writers)
        rows += create_rate(args.creates, args.create_rounds)
        env = f"{environment()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    figures = table(["measure", "figure", "vs baseline"], rows)
    return f"### Pipeline ({env})\n\n{figures}\n\n![commit to cache lag over time](lag.png)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=ARGS.events)
    parser.add_argument("--rate", type=int, default=ARGS.rate)
    parser.add_argument("--seconds", type=float, default=ARGS.seconds)
    parser.add_argument("--creates", type=int, default=ARGS.creates)
    parser.add_argument("--create-rounds", type=int, default=ARGS.create_rounds, help="rounds of (c)")
    parser.add_argument("--writers", type=int, default=ARGS.writers)
    print(run(parser.parse_args()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
