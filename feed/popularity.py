"""Popularity with time decay: which posts are hot and which users are active, bounded in memory.

Scores live in one sorted set per time bucket (POPULARITY_BUCKET_SECONDS), kept for
POPULARITY_BUCKETS buckets and capped at POPULARITY_MAX_MEMBERS members each. A post's score is the
sum over buckets of its points there, each bucket weighted 0.5 ** (age / half-life). All keys share
the hash tag {popular}, so the weighted union runs as one command on Redis Cluster too.

Recording adds no round trip to a read: points are counted in process and sent in one pipeline
when POPULARITY_FLUSH_EVERY points have accumulated or a second has passed. Losing a few points
in a crash or a Redis outage is acceptable: popularity is a hint for pre-warming, not data.
"""

import logging
import threading
import time
from collections import Counter

import redis
from django.conf import settings

from core.caching import GuardedRedis, HashTag, NamespaceKeys, ttl_ms

logger = logging.getLogger("feed.popularity")

# Points per signal: a reaction or a comment says more than a view.
VIEW, REACTION, COMMENT = 1.0, 3.0, 5.0
POSTS, USERS = "posts", "users"


class PopularityTracker:
    """Scores in the feed namespace, written and read through a guarded client: best effort."""

    namespace = "feed"
    schema = 1

    def __init__(self, client: redis.Redis | None = None) -> None:
        self.guard = GuardedRedis(client)
        self.keys = NamespaceKeys(self.namespace, self.schema, self.guard)
        self._pending: dict[str, Counter[int]] = {POSTS: Counter(), USERS: Counter()}
        self._pending_points = 0
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.Redis:
        return self.guard.client

    def bucket_ttl_ms(self) -> int:  # a bucket lives as long as it counts
        return ttl_ms(settings.POPULARITY_BUCKET_SECONDS * settings.POPULARITY_BUCKETS)

    # --- keys --------------------------------------------------------------------------------

    def bucket(self, now: float | None = None) -> int:
        return int((time.time() if now is None else now) // settings.POPULARITY_BUCKET_SECONDS)

    def bucket_key(self, kind: str, bucket: int) -> str:
        return self.keys.build(HashTag("popular", kind), bucket)

    def ranking_key(self, kind: str) -> str:
        return self.keys.build(HashTag("popular", kind), "ranking")

    # --- recording ---------------------------------------------------------------------------

    def record_post(self, post_id: int, points: float = VIEW) -> None:
        self._record(POSTS, post_id, points)

    def record_user(self, user_id: int, points: float = 1.0) -> None:
        self._record(USERS, user_id, points)

    def _record(self, kind: str, member: int, points: float) -> None:
        with self._lock:
            self._pending[kind][member] += points
            self._pending_points += 1
            due = (
                self._pending_points >= settings.POPULARITY_FLUSH_EVERY
                or time.monotonic() - self._last_flush >= 1.0
            )
        if due:
            self.flush()

    def flush(self, now: float | None = None) -> None:
        """Send the points counted so far in one pipelined round trip (best effort)."""
        with self._lock:
            pending = {kind: counts for kind, counts in self._pending.items() if counts}
            self._pending = {POSTS: Counter(), USERS: Counter()}
            self._pending_points = 0
            self._last_flush = time.monotonic()
        if not pending:
            return
        bucket = self.bucket(now)
        cap, bucket_ms = settings.POPULARITY_MAX_MEMBERS, self.bucket_ttl_ms()

        def send() -> None:
            pipe = self.client.pipeline(transaction=False)
            for kind, counts in pending.items():
                key = self.bucket_key(kind, bucket)
                for member, points in counts.items():
                    pipe.zincrby(key, points, member)
                pipe.zremrangebyrank(key, 0, -(cap + 1))  # keep the top `cap`: bounded
                pipe.pexpire(key, bucket_ms)
            pipe.execute()

        self.guard.call("popularity", "flush", send, None)

    # --- ranking -----------------------------------------------------------------------------

    def top(self, kind: str, k: int, now: float | None = None) -> list[int]:
        """The `k` highest decayed scores, best first (empty when Redis has no data or is down)."""
        self.flush(now)
        current = self.bucket(now)
        half_life = settings.POPULARITY_HALF_LIFE_BUCKETS
        weights = {
            self.bucket_key(kind, current - age): 0.5 ** (age / half_life)
            for age in range(settings.POPULARITY_BUCKETS)
        }
        ranking = self.ranking_key(kind)

        def rank() -> list[bytes]:
            pipe = self.client.pipeline(transaction=False)
            pipe.zunionstore(ranking, weights, aggregate="SUM")
            pipe.zrevrange(ranking, 0, k - 1)
            pipe.pexpire(ranking, 60_000)
            return pipe.execute()[1]

        return [int(member) for member in self.guard.call("popularity", ranking, rank, [])]

    def top_posts(self, k: int, now: float | None = None) -> list[int]:
        return self.top(POSTS, k, now)

    def active_users(self, k: int, now: float | None = None) -> list[int]:
        return self.top(USERS, k, now)


tracker = PopularityTracker()
