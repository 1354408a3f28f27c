"""How far the stream pipeline scales: events/s with 1, 2 and 4 consumer processes on one Redis and
on a Redis Cluster (same run, same events), consumer CPU per event on each, and Redis memory per
1,000 active users' stream and cache footprint.

    BENCH_CLUSTER_NODES=127.0.0.1:7200,127.0.0.1:7201,127.0.0.1:7202 python -m bench scaling

The handler is one SET per event (decode + one cache write, DESIGN section 7's unit): the
cluster-ready feed/chat Lua handlers are issue 15 items 1-2's part, so the figures measure the
partitioned read/apply/ack path, not the handlers. Without BENCH_CLUSTER_NODES only one Redis is run.
The cluster client is the product's (`core.connections.ClusterRedis`: its pipelines are per-node
`Batch`es), not a bare `RedisCluster`, whose `ClusterPipeline` the consumer never uses. The last
column is the target of issue 15 item 6: the cluster's CPU per event over one Redis's, same number
of processes. BENCH_SCALING_EVENTS (40,000) and BENCH_SCALING_REPEATS (3, best of) size the run.
"""

import multiprocessing
import os
import time

from bench.harness import per_second, table

EVENTS = int(os.environ.get("BENCH_SCALING_EVENTS", "40000"))
# Each figure is the best of this many runs (the highest events/s, the lowest CPU per event): on a
# machine shared with other work, one run's CPU per event varies by a third.
REPEATS = int(os.environ.get("BENCH_SCALING_REPEATS", "3"))
PARTITIONS = 8
PROCESSES = (1, 2, 4)


def _client(target: str):
    import redis
    from redis.cluster import ClusterNode

    from core.connections import ClusterRedis, stream_client

    if target == "standalone":
        return stream_client()
    nodes = [ClusterNode(*part.split(":")) for part in os.environ["BENCH_CLUSTER_NODES"].split(",")]
    # The product's cluster client (core.connections): its pipelines are our per-node batches.
    return ClusterRedis(
        startup_nodes=nodes, socket_timeout=5.0, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 1)
    )


def _handlers():
    from core.events import EventHandler, HandlerRegistry

    class ProbeHandler(EventHandler):
        event_types = ("probe.set",)
        app_label = "bench"

        def apply(self, pipe, event) -> None:
            pipe.set(f"bench:{{probe:{event.data['entity']}}}", event.data["value"], ex=300)

    handlers = HandlerRegistry()
    handlers.register(ProbeHandler())
    return handlers


def _fill(client, streams: list[str]) -> None:
    from core.events import Event
    from core.events.streams import EVENT_FIELD, partition_of

    for stream in streams:
        client.delete(stream)
    per_stream: dict[str, list[bytes]] = {stream: [] for stream in streams}
    for entity in range(EVENTS):
        event = Event("probe.set", 1, {"entity": entity % 5000, "value": "x" * 200})
        per_stream[streams[partition_of(entity % 5000, len(streams))]].append(event.encode())
    for stream, payloads in per_stream.items():
        for start in range(0, len(payloads), 1000):
            pipe = client.pipeline(transaction=False)
            for payload in payloads[start : start + 1000]:
                pipe.xadd(stream, {EVENT_FIELD: payload})
            pipe.execute()


def _consume(target: str, index: int, done, go, cpu) -> None:
    from django.conf import settings

    from core.events.streams import domain_streams
    from workers.consumer import StreamConsumer

    settings.EVENTS_STREAM_PARTITIONS = PARTITIONS
    settings.EVENTS_BLOCK_MS = 20
    client = _client(target)
    consumer = StreamConsumer(
        name=f"scaling-{index}", client=client, handlers=_handlers(), streams=domain_streams("feed")
    )
    go.wait()
    started = time.process_time()
    while done.value < EVENTS:
        entries = consumer.read(pending=False)
        if entries:
            consumer.process(entries)
            with done.get_lock():
                done.value += len(entries)
    cpu[index] = time.process_time() - started


def _run(target: str, processes: int) -> tuple[float, float]:
    """(events/s, consumer CPU µs per event) for `processes` consumer processes."""
    from django.conf import settings

    from core.events.streams import domain_streams

    settings.EVENTS_STREAM_PARTITIONS = PARTITIONS
    client = _client(target)
    streams = domain_streams("feed")
    _fill(client, streams)
    for stream in streams:
        client.xgroup_create(stream, settings.EVENTS_CONSUMER_GROUP, id="0")
    context = multiprocessing.get_context("fork")
    done, go, cpu = context.Value("q", 0), context.Event(), context.Array("d", processes)
    workers = [context.Process(target=_consume, args=(target, i, done, go, cpu)) for i in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # imports and connections outside the measurement
    start = time.perf_counter()
    go.set()
    while done.value < EVENTS:
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    for worker in workers:
        worker.join(timeout=30)
    for stream in streams:
        client.delete(stream)
    return per_second(EVENTS, seconds), sum(cpu) / EVENTS * 1e6


def _memory_per_thousand_users(client) -> str:
    """Bytes the events server holds per 1,000 active users who each wrote one event (a stream
    entry of a typical post event + its sent mark) and the cache holds for them (a 20-post feed
    page of ~5 KB, an online key, a token resolution): measured with MEMORY USAGE, synthetic
    values of the real sizes."""
    from core.events import Event
    from core.events.streams import EVENT_FIELD

    stream, marks = "bench:{memory}:stream", "bench:{memory}:marks"
    client.delete(stream, marks)
    post = {"id": 1, "author_id": 1, "author": "someone", "body": "b" * 280, "version": 3}
    pipe = client.pipeline(transaction=False)
    for user in range(1000):
        pipe.xadd(stream, {EVENT_FIELD: Event("post.created", 1, {"post": post}).encode()})
        pipe.sadd(marks, user + 10**9)
        pipe.set(f"bench:{{user:{user}}}:feed", b"p" * 5000, ex=300)
        pipe.set(f"bench:{{user:{user}}}:online", b"1", ex=60)
        pipe.set(f"bench:{{user:{user}}}:token", b"t" * 120, ex=300)
    pipe.execute()
    events = (client.memory_usage(stream) or 0) + (client.memory_usage(marks) or 0)
    cache = sum(
        client.memory_usage(f"bench:{{user:{user}}}:{kind}") or 0
        for user in range(1000)
        for kind in ("feed", "online", "token")
    )
    client.delete(
        stream, marks, *[f"bench:{{user:{u}}}:{k}" for u in range(1000) for k in ("feed", "online", "token")]
    )
    return f"events {events / 1e6:.2f} MB + cache {cache / 1e6:.2f} MB"


def run() -> str:
    targets = ["standalone"] + (["cluster"] if os.environ.get("BENCH_CLUSTER_NODES") else [])
    figures: dict[tuple[str, int], tuple[float, float]] = {}
    for _ in range(REPEATS):
        for processes in PROCESSES:  # the targets alternate, so a load change on the machine hits both
            for target in targets:
                rate, cpu = _run(target, processes)
                best_rate, best_cpu = figures.get((target, processes), (0.0, float("inf")))
                figures[target, processes] = (max(rate, best_rate), min(cpu, best_cpu))
    base_rate = figures["standalone", 1][0]
    rows = []
    for target in targets:
        for processes in PROCESSES:
            rate, cpu = figures[target, processes]
            one_redis_cpu = figures["standalone", processes][1]
            rows.append(
                (
                    f"{target}, {processes} consumer process(es), {PARTITIONS} partitions",
                    f"{rate:,.0f} events/s",
                    f"{rate / base_rate:.2f}x",
                    f"{cpu:.1f} µs CPU/event",
                    f"{cpu / one_redis_cpu:.2f}x",
                )
            )
    rows.append(
        ("Redis memory per 1,000 active users", _memory_per_thousand_users(_client("standalone")), "", "", "")
    )
    return table(
        (
            "setup",
            "throughput",
            "vs one Redis, 1 process",
            "consumer CPU",
            "CPU vs one Redis, same processes (target: cluster <= 1.3x)",
        ),
        rows,
    )


if __name__ == "__main__":
    import bench.harness  # noqa: F401

    print(run())
