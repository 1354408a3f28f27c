"""What the chaos tests share: the world they seed, a tap on the event streams, and freezing a worker
while it holds delivered, unacknowledged entries (tests/test_chaos.py, tests/test_chaos_redis.py)."""

import contextlib
import random
import signal
import subprocess
import threading
import time

import redis

from accounts.models import AppUser
from chat.models import Conversation, Participant
from core.events import Event, InvalidEvent
from core.events.streams import EVENT_FIELD
from feed.models import Follow

STREAMS = ("themoon:events:feed", "themoon:events:chat")


def seed_world(users: int = 40, conversations: int = 12) -> None:
    people = AppUser.objects.bulk_create([AppUser(username=f"chaos{i}", password="!") for i in range(users)])
    follows = [Follow(follower=a, followee=b) for a in people for b in people[:8] if a.pk != b.pk]
    Follow.objects.bulk_create(follows)
    for i in range(conversations):
        conversation = Conversation.objects.create(title=f"room {i}")
        members = people[i : i + 2 + i % 4]
        Participant.objects.bulk_create([Participant(conversation=conversation, user=u) for u in members])


DRIVERS = 2


def start_drivers(processes, ops: int, threads: int = 3) -> list[subprocess.Popen]:
    """The workload (tests/chaos_driver.py): DRIVERS processes sharing `ops`, seeds 1..DRIVERS."""
    return [
        processes.start(
            f"driver-{i}",
            "-m",
            "tests.chaos_driver",
            "--ops",
            str(ops // DRIVERS),
            "--threads",
            str(threads),
            "--seed",
            str(i + 1),
        )
        for i in range(DRIVERS)
    ]


def driver_progress(processes, ops: int) -> int:
    """Operations done by all drivers (a finished driver counts as all of its share)."""
    total = 0
    for i in range(DRIVERS):
        lines = processes.log(f"driver-{i}").splitlines()
        if any(line.startswith("DONE") for line in lines):
            total += ops // DRIVERS
            continue
        counts = [int(line.split()[1]) for line in lines if line.startswith("PROGRESS")]
        total += counts[-1] if counts else 0
    return total


def held_entries(client: redis.Redis, name: bytes) -> list[tuple[str, bytes]]:
    """(stream, entry id) of every entry delivered to a consumer whose name contains `name` and not
    acknowledged yet."""
    held = []
    for stream in STREAMS:
        with contextlib.suppress(redis.ResponseError):
            for consumer in client.xinfo_consumers(stream, "cache"):
                if name in consumer["name"] and consumer["pending"]:
                    pending = client.xpending_range(stream, "cache", "-", "+", 10_000, consumer["name"])
                    held += [(stream, p["message_id"]) for p in pending]
    return held


def freeze_mid_batch(process: subprocess.Popen, client: redis.Redis, name: bytes, tries: int = 2000) -> int:
    """SIGSTOP the worker at random moments until it is frozen holding delivered, unacknowledged
    entries (mid-batch); return how many (0 if it never was: it is then left running). The caller
    kills it, or lets another consumer reclaim them and resumes it (SIGCONT): a zombie."""
    rng = random.Random(7)
    for _ in range(tries):
        process.send_signal(signal.SIGSTOP)
        held = 0
        for stream in STREAMS:
            with contextlib.suppress(redis.ResponseError):
                held += sum(
                    c["pending"] for c in client.xinfo_consumers(stream, "cache") if name in c["name"]
                )
        if held:
            return held
        process.send_signal(signal.SIGCONT)
        time.sleep(rng.uniform(0.001, 0.02))
    return 0


def entity(event: Event) -> tuple[str, int] | None:
    """("post", id) or ("message", id) for the events that carry a row version; None for others."""
    data = event.data
    if event.type in ("post.created", "post.updated"):
        return "post", data["post"]["id"]
    if event.type == "post.deleted":
        return "post", data["post_id"]
    if event.type in ("message.created", "message.updated"):
        return "message", data["message"]["id"]
    if event.type == "message.deleted":
        return "message", data["message_id"]
    return None


class StreamTap:
    """Reads the streams as they grow (XREAD, no group) and keeps the latest payloads, so they can
    be delivered again even after the trim task removed them, and an index of which (entity,
    version) and which deletes ever reached a stream: the proof that no committed change lost its
    event. Survives Redis restarts (entry ids are times, so a restarted server's new entries still
    sort after the last one read)."""

    def __init__(self, port: int, keep: int = 300) -> None:
        self.port, self.keep = port, keep
        self.seen: dict[str, list[bytes]] = {stream: [] for stream in STREAMS}
        self.versions: dict[tuple[str, int], set[int]] = {}
        self.deleted: set[tuple[str, int]] = set()
        self.changed_at: dict[tuple[str, int], float] = {}  # when its latest event reached a stream
        self.entries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = dict.fromkeys(self.seen, "0-0")
        while not self._stop.is_set():
            try:
                client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2)
                while not self._stop.is_set():
                    for stream, items in client.xread(last, count=500, block=200) or []:
                        name = stream.decode()
                        for entry_id, fields in items:
                            last[name] = entry_id
                            self._index(name, entry_id, fields.get(EVENT_FIELD, b""))
            except redis.RedisError:
                time.sleep(0.2)

    def _index(self, stream: str, entry_id: bytes, payload: bytes) -> None:
        self.entries += 1
        self.seen[stream] = [*self.seen[stream][-self.keep + 1 :], payload]
        try:
            event = Event.decode(payload)
            key = entity(event)
        except (InvalidEvent, KeyError, TypeError):
            return  # poison, or an event without a versioned entity
        if key is None:
            return
        self.changed_at[key] = int(entry_id.split(b"-")[0]) / 1000  # an entry id is its time in ms
        if event.type.endswith(".deleted"):
            self.deleted.add(key)
        else:
            self.versions.setdefault(key, set()).add(event.version)

    def recent(self) -> dict[str, list[bytes]]:
        return {stream: list(payloads) for stream, payloads in self.seen.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
