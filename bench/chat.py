"""Chat benchmark: WebSocket throughput and broadcast latency against Channels' floor, and opening
a conversation.

    python -m bench.chat [--clients 50] [--room-size 5] [--seconds 6] [--paced 20] [--rounds 3]
                         [--opens 40] [--no-big-room]

(a) --clients concurrent `websockets` clients against one uvicorn (a subprocess on loopback, the
    Procfile's web process: themoon.asgi, plus bench/chat_floor.py's baselines on /ws/floor...),
    each sending messages in a closed loop (send, wait for its own echo, repeat) for --seconds:
    messages/s accepted (saved, published, broadcast) and broadcast latency p50/p99 (send -> the
    last member of the room received it); then latency again with sends paced at --paced
    messages/s in all (below capacity, so it is not queueing). In rooms of --room-size, for the
    product and for the baselines on the same channels-redis layer: a minimal Channels consumer
    (no database) and the same with one INSERT per message, interleaved over --rounds rounds in
    a rotated order; the ratios are the median of the per-round ratios. Then the product with
    every client in one room (against its own small rooms). The load average is printed: the
    clients share the machine with the server, PostgreSQL and Redis.
(b) Opening a conversation: its last 50 messages from the warm cache vs from the database (the
    baseline), in-process; and over the WebSocket (connect -> history frame) warm vs cold cache.
Runs on the harness's throwaway databases; everything on loopback; bounded by the time limits above.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from bench.harness import (
    bench_database,
    database_url,
    environment,
    median,
    per_second,
    percentile,
    table,
    time_per_op,
)

ARGS = argparse.Namespace(clients=50, room_size=5, seconds=6.0, paced=20.0, opens=40, rounds=3, big_room=True)
ROOT = Path(__file__).resolve().parent.parent
# The Procfile's web process, on loopback, serving bench/chat_floor.py's baselines next to the product.
UVICORN = [sys.executable, "-m", "uvicorn", "bench.chat_floor:application", "--host", "127.0.0.1"]
UVICORN += ["--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--lifespan", "off"]
UVICORN += ["--log-level", "warning"]


# --- setup -----------------------------------------------------------------------------------------


def _people(count: int):
    from accounts.auth import issue_token
    from accounts.models import AppUser

    users = AppUser.objects.bulk_create(
        [AppUser(username=f"chat-bench-{i}", password="!") for i in range(count)]
    )
    return [(user, issue_token(user)) for user in users]


def _rooms(people, size: int) -> list[tuple[int, list[tuple[int, str]]]]:
    """Conversations of `size` members: (conversation id, [(user id, token), ...])."""
    from chat.testing import make_conversation

    rooms = []
    for start in range(0, len(people), size):
        members = people[start : start + size]
        conversation = make_conversation(*(user for user, _ in members))
        rooms.append((conversation.pk, [(user.pk, token) for user, token in members]))
    return rooms


class Server:
    """uvicorn on a free loopback port, terminated on exit."""

    def __enter__(self) -> "Server":
        import socket

        from django.conf import settings

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "DATABASE_URL": database_url(),
            "DATABASE_POOL": os.environ.get("DATABASE_POOL", "true"),  # as the Procfile's web process
            "WEBSOCKET_ALLOWED_ORIGINS": f"http://127.0.0.1:{self.port}",
            # Above what one flat-out client sends in a run, so every frame is counted, none refused.
            "THROTTLE_WS_MESSAGE_RATE": "6000/m",
        }
        self.process = subprocess.Popen(
            [*UVICORN, "--port", str(self.port)],
            cwd=ROOT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("uvicorn exited during startup")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("uvicorn did not listen within 20 s")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def url(self, conversation_id: int, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/{conversation_id}/?token={token}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --- (a) throughput and broadcast latency ------------------------------------------------------------

# The WebSocket endpoints of one room member: the product, and the two floors of bench/chat_floor.py.
TARGETS = ("product", "floor", "floor + INSERT")


def _url(server: Server, target: str, conversation_id: int, user_id: int, token: str) -> str:
    if target == "product":
        return server.url(conversation_id, token)
    path = "floor" if target == "floor" else "floor-insert"
    return f"ws://127.0.0.1:{server.port}/ws/{path}/{conversation_id}/?user={user_id}"


class Run(NamedTuple):
    accepted: int  # messages whose echo came back
    elapsed: float  # seconds
    latencies: list[float]  # send -> the last member received it, seconds
    lost: int  # broadcasts not seen by every member
    server_cpu: float  # CPU seconds the server process used meanwhile (every thread)
    redis_cpu: float  # CPU seconds Redis used meanwhile (channel layer, cache and streams)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_cpu_seconds() -> float:
    from core.connections import cache_client

    info = cache_client().info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _load(
    server: Server, rooms, seconds: float, rate: float | None = None, target: str = "product"
) -> Run:
    """Closed loop (each client sends, waits for its echo, sends again) or, with `rate`, paced sends
    adding up to `rate` messages/s, and what the server and Redis spent on it."""
    import random

    import orjson
    from websockets.asyncio.client import connect

    sent: dict[str, float] = {}
    arrivals: dict[str, list[float]] = {}
    room_size: dict[str, int] = {}
    echoes: dict[str, asyncio.Event] = {}

    async def read(ws, user_id: int) -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame["type"] == "message":
                body = frame["message"]["body"]
                arrivals.setdefault(body, []).append(time.perf_counter())
                if frame["message"]["sender_id"] == user_id and body in echoes:
                    echoes[body].set()

    clients = []  # (websocket, its user id, its room's size)
    for conversation_id, members in rooms:
        for user_id, token in members:
            url = _url(server, target, conversation_id, user_id, token)
            ws = await connect(url, origin=server.origin, open_timeout=30)
            history = orjson.loads(await ws.recv())
            assert history["type"] == "history", history
            clients.append((ws, user_id, len(members)))
    readers = [asyncio.create_task(read(ws, user_id)) for ws, user_id, _ in clients]
    accepted = 0
    end = time.perf_counter() + seconds

    async def talk(index: int, ws, size: int) -> None:
        nonlocal accepted
        seq = 0
        interval = len(clients) / rate if rate else 0.0
        await asyncio.sleep(random.uniform(0, interval))  # spread the paced senders out
        while time.perf_counter() < end:
            next_send = time.perf_counter() + interval
            body = f"{index}:{seq}"
            seq += 1
            echoes[body], room_size[body] = asyncio.Event(), size
            sent[body] = time.perf_counter()
            await ws.send(orjson.dumps({"type": "message", "body": body}).decode())
            await asyncio.wait_for(echoes[body].wait(), timeout=30)
            accepted += 1
            await asyncio.sleep(max(0.0, next_send - time.perf_counter()))

    cpu_before, redis_before = _cpu_seconds(server.process.pid), _redis_cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(talk(i, ws, size) for i, (ws, _, size) in enumerate(clients)))
    elapsed = time.perf_counter() - started
    server_cpu = _cpu_seconds(server.process.pid) - cpu_before
    redis_cpu = _redis_cpu_seconds() - redis_before
    grace = time.perf_counter() + 5  # let the last broadcasts land
    while time.perf_counter() < grace and any(len(arrivals.get(b, ())) < room_size[b] for b in sent):
        await asyncio.sleep(0.02)
    latencies = [max(arrivals[b]) - t for b, t in sent.items() if len(arrivals.get(b, ())) >= room_size[b]]
    for ws, _, _ in clients:
        await ws.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return Run(accepted, elapsed, latencies, len(sent) - len(latencies), server_cpu, redis_cpu)


def _ratios(values: list[float]) -> str:
    return f"{median(values):.2f}x (rounds: {', '.join(f'{v:.2f}' for v in values)})"


def throughput(server: Server, people, args: argparse.Namespace) -> list[tuple]:
    """The product against the minimal Channels consumers (bench/chat_floor.py) on the same layer,
    in rooms of --room-size: --rounds rounds, each running every target flat out then paced, in a
    rotated order (the machine's load drifts: each round's ratio compares neighbours in time). Then
    the product with every client in one room, against its own small rooms."""
    rooms = {target: _rooms(people, args.room_size) for target in TARGETS}  # each its own conversations
    rates = (None, args.paced)
    runs: dict[tuple[str, float | None], list] = {}
    loads = []
    for round_ in range(args.rounds):
        order = TARGETS[round_ % len(TARGETS) :] + TARGETS[: round_ % len(TARGETS)]
        for target in order:
            for rate in rates:
                result = asyncio.run(_load(server, rooms[target], args.seconds, rate, target))
                runs.setdefault((target, rate), []).append(result)
        loads.append(os.getloadavg()[0])
    rows: list[tuple] = []
    shape = f"{len(people)} clients, rooms of {args.room_size}"

    def rate_of(run: Run) -> float:
        return per_second(run.accepted, run.elapsed)

    def cpu_of(run: Run) -> float:  # server + Redis CPU per accepted message, seconds
        return (run.server_cpu + run.redis_cpu) / max(run.accepted, 1)

    for target in TARGETS:
        flat, paced = runs[target, None], runs[target, args.paced]
        achieved = [rate_of(r) for r in flat]
        if target == "product":
            notes = []
            for base in TARGETS[1:]:
                floors = [rate_of(r) for r in runs[base, None]]
                notes.append(f"{_ratios([p / f for p, f in zip(achieved, floors, strict=True)])} {base}")
            note = "; ".join(notes)
        else:
            note = "baseline"
        rows.append((f"{target}, {shape}, flat out: messages/s", f"{median(achieved):,.0f}/s", note))
        # Less sensitive to a busy machine than messages/s: what each message cost the server and Redis.
        server_ms = median([r.server_cpu / max(r.accepted, 1) for r in flat]) * 1000
        redis_ms = median([r.redis_cpu / max(r.accepted, 1) for r in flat]) * 1000
        cpu_note = "baseline"
        if target == "product":
            cpu_note = "; ".join(
                f"{_ratios([cpu_of(p) / cpu_of(f) for p, f in zip(flat, runs[b, None], strict=True)])} {b}"
                for b in TARGETS[1:]
            )
        rows.append(
            (
                f"{target}, flat out: CPU per message, server + Redis",
                f"{server_ms:.2f} + {redis_ms:.2f} ms",
                cpu_note,
            )
        )
        for label, group in (("flat out", flat), (f"paced at {args.paced:.0f}/s", paced)):
            latencies = [lat for r in group for lat in r.latencies]
            p50, p99 = median(latencies) * 1000, percentile(latencies, 99) * 1000
            rows.append((f"{target}, {shape}, {label}: broadcast p50 / p99", f"{p50:.1f} / {p99:.1f} ms", ""))
            lost = sum(r.lost for r in group)
            if lost:
                rows.append(
                    (f"{target}, {label}: broadcasts not seen by every member", str(lost), "should be 0")
                )
    if args.big_room:
        base = runs["product", None][-1]
        big = asyncio.run(_load(server, _rooms(people, len(people)), args.seconds))
        ratio = rate_of(big) / rate_of(base)
        rows.append(
            (
                f"product, one room of {len(people)}, flat out: messages/s",
                f"{rate_of(big):,.0f}/s",
                f"{ratio:.2f}x rooms of {args.room_size}",
            )
        )
        p50, p99 = median(big.latencies) * 1000, percentile(big.latencies, 99) * 1000
        rows.append(
            (
                f"product, one room of {len(people)}, flat out: broadcast p50 / p99",
                f"{p50:.1f} / {p99:.1f} ms",
                "",
            )
        )
    rows.append(("load average (1 min) after each round", ", ".join(f"{v:.1f}" for v in loads), ""))
    return rows


# --- (b) opening a conversation ----------------------------------------------------------------------


def open_times(server: Server, people, opens: int) -> list[tuple]:
    import orjson
    from websockets.asyncio.client import connect

    from chat.cache import ConversationMessagesCache
    from chat.models import Message
    from chat.queries import latest_messages

    (ann, ann_token), (bob, _) = people[0], people[1]
    conversation_id = _rooms(people[:2], 2)[0][0]
    Message.objects.bulk_create(
        Message(conversation_id=conversation_id, sender=ann if i % 2 else bob, body=f"history {i} " * 8)
        for i in range(80)
    )
    cache = ConversationMessagesCache()
    assert len(cache.get_messages(conversation_id)) == 50  # warm
    warm = time_per_op(lambda: cache.get_messages(conversation_id), 300)
    database = time_per_op(lambda: latest_messages(conversation_id, 50), 300)

    async def open_ws(cold: bool) -> list[float]:
        times = []
        for _ in range(opens):
            if cold:
                cache.invalidate(conversation_id)
            start = time.perf_counter()
            ws = await connect(server.url(conversation_id, ann_token), origin=server.origin)
            history = orjson.loads(await ws.recv())
            times.append(time.perf_counter() - start)
            assert len(history["messages"]) == 50
            await ws.close()
        return times

    ws_warm, ws_cold = median(asyncio.run(open_ws(False))), median(asyncio.run(open_ws(True)))
    return [
        (
            "open: last 50 messages from the database (query + payloads)",
            f"{database * 1e6:,.0f} µs",
            "baseline",
        ),
        (
            "open: last 50 messages from the warm cache (1 ZRANGEBYSCORE + decode)",
            f"{warm * 1e6:,.0f} µs",
            f"{database / warm:.1f}x faster",
        ),
        (
            "WebSocket connect -> history frame, cold cache (fill from DB)",
            f"{ws_cold * 1000:.2f} ms",
            "baseline",
        ),
        (
            "WebSocket connect -> history frame, warm cache",
            f"{ws_warm * 1000:.2f} ms",
            f"{ws_cold / ws_warm:.2f}x faster",
        ),
    ]


def run(args: argparse.Namespace = ARGS) -> str:
    # The clients share the machine with the server, PostgreSQL and Redis: say how busy it was.
    load = os.getloadavg()
    with bench_database():
        people = _people(args.clients)
        with Server() as server:
            rows = throughput(server, people, args)
            rows += open_times(server, people, args.opens)
        env = environment()
    title = f"### Chat ({env}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start)"
    return title + "\n\n" + table(["measure", "figure", "vs baseline"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=ARGS.clients)
    parser.add_argument("--room-size", type=int, default=ARGS.room_size)
    parser.add_argument("--seconds", type=float, default=ARGS.seconds)
    parser.add_argument("--paced", type=float, default=ARGS.paced, help="messages/s of the paced runs")
    parser.add_argument("--opens", type=int, default=ARGS.opens)
    parser.add_argument("--rounds", type=int, default=ARGS.rounds, help="interleaved rounds of every target")
    parser.add_argument("--no-big-room", dest="big_room", action="store_false", help="skip the one-room run")
    print(run(parser.parse_args()))


if __name__ == "__main__":
    main()
