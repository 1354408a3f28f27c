"""What the chaos tests share (tests/test_chaos.py, tests/test_chaos_redis.py,
tests/test_chaos_cluster.py): the world they seed, a tap on the event streams, freezing a worker
while it holds delivered, unacknowledged entries, the run's bookkeeping (`Run`) and the end-state
checks after draining: `check_cache_consistency`, the HTTP API against the database, no event lost."""

import contextlib
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import redis
from django.db.models import Count, Q

from accounts.auth import issue_token
from accounts.models import AppUser
from chat.models import Conversation, Message, Participant
from core.events import Event, InvalidEvent
from core.events.streams import EVENT_FIELD
from core.models import OutboxEvent
from feed.models import Comment, Follow, Post, Reaction
from tests.polling import eventually
from tests.subprocesses import ROOT, Processes, free_port

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


_PROGRESS = re.compile(r"PROGRESS (\d+)")


def driver_progress(processes, ops: int) -> int:
    """Operations done by all drivers (a finished driver counts as all of its share)."""
    total = 0
    for i in range(DRIVERS):
        lines = processes.log(f"driver-{i}").splitlines()
        if any(line.startswith("DONE") for line in lines):
            total += ops // DRIVERS
            continue
        # Whole lines only: a line another process's log write tore is skipped (a 1,000,000-op soak
        # died on "PROGRESS 319000" run into a log line's timestamp).
        counts = [int(m.group(1)) for m in map(_PROGRESS.fullmatch, lines) if m]
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


class StreamIndex:
    """Which (entity, version) and which deletes reached a stream, and when each entity's latest
    event did: the proof that no committed change lost its event."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], set[int]] = {}
        self.deleted: set[tuple[str, int]] = set()
        self.changed_at: dict[tuple[str, int], float] = {}  # when its latest event reached a stream
        self.entries = 0

    def _index(self, stream: str, entry_id: bytes, payload: bytes) -> None:
        self.entries += 1
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


def read_streams(client, streams) -> StreamIndex:
    """What `streams` hold now, indexed (XRANGE, one stream at a time: a cluster client works).
    After a failover this is what survived, unlike a tap, which also saw what the dead master lost."""
    index = StreamIndex()
    for stream in streams:
        start = "-"
        while True:
            items = client.xrange(stream, start, "+", count=1000)
            for entry_id, fields in items:
                index._index(stream, entry_id, fields.get(EVENT_FIELD, b""))
            if len(items) < 1000:
                break
            start = "(" + items[-1][0].decode()
    return index


class StreamTap(StreamIndex):
    """Reads the streams as they grow (XREAD, no group) and keeps the latest payloads, so they can
    be delivered again even after the trim task removed them, and indexes them (`StreamIndex`).
    Survives Redis restarts (entry ids are times, so a restarted server's new entries still sort
    after the last one read)."""

    def __init__(self, port: int, keep: int = 300) -> None:
        super().__init__()
        self.port, self.keep = port, keep
        self.seen: dict[str, list[bytes]] = {stream: [] for stream in STREAMS}
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
        self.seen[stream] = [*self.seen[stream][-self.keep + 1 :], payload]
        super()._index(stream, entry_id, payload)

    def recent(self) -> dict[str, list[bytes]]:
        return {stream: list(payloads) for stream, payloads in self.seen.items()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- the run and the end-state checks ----------------------------------------------------------

CACHE_TAG = re.compile(r"\{(post|conversation|user):(\d+)\}")


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
        self.tap: StreamIndex | None = None
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


def drain(client: redis.Redis, run: Run, streams=STREAMS) -> bool:
    """Outbox empty, every entry of `streams` delivered and acknowledged (twice, around the last
    fan-outs). `client` may be a cluster client (one single-key command at a time)."""

    def state() -> str:
        waiting = OutboxEvent.objects.count()
        behind = []
        for stream in streams:
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


def events_lost(tap: "StreamIndex", run: Run) -> list[str]:
    """Every post and message version in the database, and every delete of an entity the streams
    saw created, reached a stream (as the tap read them while they were added, or as the streams
    hold them at the end: `read_streams`)."""
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


def check_cache_consistency(env: dict, run: Run) -> dict:
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
            tags = {(kind, int(pk)) for kind, pk in CACHE_TAG.findall(key)}
            described.append(f"cache vs DB: {line[:400]} [suspects: {run.suspects(*tags)}]")
        run.fail(f"check_cache_consistency: {total}\n  " + "\n  ".join(described))
    return {"checked": checked, "mismatches": mismatches}


def db_counts(post_ids: list[int]) -> dict[int, dict]:
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


def post_view(item: dict) -> tuple:
    counts = item.get("counts") or {}
    reactions = {k: v for k, v in (counts.get("reactions") or {}).items() if v}
    return item["id"], item["author_id"], item["body"], item["version"], reactions, counts.get("comments")


def compare_http(env: dict, tmp_path, run: Run, seed: int = 5) -> list[str]:
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
        counts = db_counts(list(rows))
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
            served = post_view(body) if status == 200 else (status,)
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
                page_counts = db_counts([p.pk for p in posts])
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
                if page > 1 and not cursor:  # page 1 said there is no next page
                    status, served = 200, []
                else:
                    status, body = get(f"/api/feed?size=20{cursor}", user_id)
                    served = (
                        [(*post_view(item), item["my_reaction"]) for item in body["items"]]
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
                        f"(served {status}: ids {[s[0] for s in served if isinstance(s, tuple)][:20]}; "
                        f"database ids {[e[0] for e in expected][:20]}) [suspects: {run.suspects(*tags)}]"
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
