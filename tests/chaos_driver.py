"""The chaos workload: a mixed random stream of reads and writes from several threads.

    python -m tests.chaos_driver --ops 10000 --threads 3 --seed 1

Run by tests/test_chaos.py in its own process, against the test database and a private Redis
(DJANGO_SETTINGS_MODULE, DATABASE_URL and REDIS_URL come from the environment). Writes go through
the same services as the API (posts, edits, deletes, reactions, comments, follows, messages);
reads go through the caches (feeds, post details with counts, conversation windows), so cache-aside
fills race the writes. Now and then a burst of transactions is rolled back on purpose. A thread
reads its own edits back, at once and on its later post reads: a read older than the edit is a
read-your-writes miss (counted, and logged as `RYW post <id> wrote v<n> read v<m>`). Prints
`PROGRESS n` as it goes and `DONE ops=... errors=... rollbacks=... ryw_misses=...` at the end.
"""

import argparse
import random
import sys
import threading

import django

django.setup()

from django.db import DatabaseError, IntegrityError, connections, transaction  # noqa: E402

from accounts.models import AppUser  # noqa: E402
from chat import services as chat_services  # noqa: E402
from chat.cache import ConversationMessagesCache  # noqa: E402
from chat.models import Message, Participant  # noqa: E402
from core.errors import ServiceError  # noqa: E402
from feed import selectors  # noqa: E402
from feed import services as feed_services  # noqa: E402
from feed.models import Comment, Post, Reaction  # noqa: E402

KINDS = Reaction.Kind.values
EXPECTED = (
    ServiceError,
    chat_services.ConversationNotFound,
    chat_services.InvalidChatInput,
    IntegrityError,
    DatabaseError,
    Post.DoesNotExist,
    Message.DoesNotExist,
    Comment.DoesNotExist,
)


class RolledBack(Exception):
    pass


class Workload:
    def __init__(self, seed: int) -> None:
        # The users seed_world made (chaos*): a test's own users (e.g. its HTTP probe) are not acted as.
        self.users = {user.pk: user for user in AppUser.objects.filter(username__startswith="chaos")}
        self.user_ids = list(self.users)
        self.members: dict[int, list[int]] = {}
        for conversation_id, user_id in Participant.objects.values_list("conversation_id", "user_id"):
            self.members.setdefault(conversation_id, []).append(user_id)
        self.conversations = list(self.members)
        self.messages = ConversationMessagesCache()
        self.seed = seed
        self.lock = threading.Lock()
        self.local = threading.local()
        self.done = self.errors = self.rollbacks = self.ryw_misses = 0

    # --- picking ---------------------------------------------------------------------------

    def user(self, rng: random.Random) -> AppUser:
        return self.users[rng.choice(self.user_ids)]

    def recent_post_id(self, rng: random.Random, author_id: int | None = None) -> int | None:
        posts = Post.objects.all() if author_id is None else Post.objects.filter(author_id=author_id)
        ids = list(posts.order_by("-id").values_list("id", flat=True)[:30])
        return rng.choice(ids) if ids else None

    def conversation(self, rng: random.Random) -> tuple[int, AppUser]:
        conversation_id = rng.choice(self.conversations)
        return conversation_id, self.users[rng.choice(self.members[conversation_id])]

    # --- operations ------------------------------------------------------------------------

    def read_feed(self, rng):
        selectors.feed(self.user(rng).pk, rng.choice((1, 1, 1, 2)), 20)

    def read_post(self, rng):
        own = getattr(self.local, "edits", None)
        if own and rng.random() < 0.5:  # the same client's next read of what it wrote
            post_id, version = rng.choice(own)
            self.read_own_write(post_id, version)
            return
        post_id = self.recent_post_id(rng)
        if post_id:
            selectors.post(post_id)

    def read_own_write(self, post_id: int, version: int) -> None:
        served = selectors.post(post_id)
        # Older than what this thread committed: the writer does not see its own write.
        if served is not None and served["version"] < version:
            with self.lock:
                self.ryw_misses += 1
            print(f"RYW post {post_id} wrote v{version} read v{served['version']}", flush=True)

    def read_messages(self, rng):
        self.messages.get_messages(self.conversation(rng)[0])

    def create_post(self, rng):
        feed_services.create_post(self.user(rng), f"post {rng.random():.6f}")

    def edit_post(self, rng):
        user = self.user(rng)
        post_id = self.recent_post_id(rng, user.pk)
        if post_id:
            post = feed_services.update_post(user, post_id, f"edited {rng.random():.6f}")
            if transaction.get_connection().in_atomic_block:
                return  # inside a rollback burst: the edit never happens
            self.local.edits = [*getattr(self.local, "edits", [])[-19:], (post_id, post.version)]
            self.read_own_write(post_id, post.version)

    def delete_post(self, rng):
        user = self.user(rng)
        post_id = self.recent_post_id(rng, user.pk)
        if post_id:
            feed_services.delete_post(user, post_id)

    def react(self, rng):
        post_id = self.recent_post_id(rng)
        if post_id:
            feed_services.react(self.user(rng), post_id, rng.choice(KINDS))

    def unreact(self, rng):
        post_id = self.recent_post_id(rng)
        if post_id:
            feed_services.unreact(self.user(rng), post_id)

    def comment(self, rng):
        post_id = self.recent_post_id(rng)
        if post_id:
            feed_services.add_comment(self.user(rng), post_id, f"comment {rng.random():.4f}")

    def delete_comment(self, rng):
        ids = list(Comment.objects.order_by("-id").values_list("id", flat=True)[:30])
        if ids:
            Comment.objects.filter(pk=rng.choice(ids)).delete()

    def follow(self, rng):
        user, target = self.user(rng), self.user(rng)
        if user.pk != target.pk:
            feed_services.follow(user, target.pk)

    def unfollow(self, rng):
        user, target = self.user(rng), self.user(rng)
        if user.pk != target.pk:
            feed_services.unfollow(user, target.pk)

    def send_message(self, rng):
        conversation_id, sender = self.conversation(rng)
        chat_services.send_message(sender, conversation_id, f"message {rng.random():.6f}")

    def edit_message(self, rng):
        conversation_id, sender = self.conversation(rng)
        mine = Message.objects.filter(conversation_id=conversation_id, sender=sender).order_by("-id").first()
        if mine:
            chat_services.edit_message(sender, mine.pk, f"edited {rng.random():.6f}")

    def delete_message(self, rng):
        conversation_id, sender = self.conversation(rng)
        mine = Message.objects.filter(conversation_id=conversation_id, sender=sender).order_by("-id").first()
        if mine:
            chat_services.delete_message(sender, mine.pk)

    def rollback_burst(self, rng):
        """Writes that are rolled back on purpose: none of them may ever reach the cache."""
        for _ in range(5):
            try:
                with transaction.atomic():
                    for _ in range(3):
                        rng.choice(self.WRITES)(self, rng)
                    raise RolledBack
            except RolledBack:
                with self.lock:
                    self.rollbacks += 1
            except EXPECTED:
                pass

    WRITES = (create_post, edit_post, react, comment, follow, send_message, edit_message)
    MIX = (
        (read_feed, 14),
        (read_post, 14),
        (read_messages, 8),
        (create_post, 12),
        (edit_post, 8),
        (delete_post, 3),
        (react, 12),
        (unreact, 4),
        (comment, 6),
        (delete_comment, 2),
        (follow, 5),
        (unfollow, 3),
        (send_message, 8),
        (edit_message, 2),
        (delete_message, 1),
        (rollback_burst, 1),
    )

    # --- running ---------------------------------------------------------------------------

    def run_thread(self, index: int, ops: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        operations = [op for op, _ in self.MIX]
        weights = [weight for _, weight in self.MIX]
        try:
            for _ in range(ops):
                operation = rng.choices(operations, weights)[0]
                try:
                    operation(self, rng)
                except EXPECTED:
                    with self.lock:
                        self.errors += 1
                with self.lock:
                    self.done += 1
                    if self.done % 500 == 0:
                        # One write per line: the log's other writers share the file.
                        sys.stdout.write(f"PROGRESS {self.done}\n")
                        sys.stdout.flush()
        finally:
            connections.close_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workload = Workload(args.seed)
    per_thread = args.ops // args.threads
    threads = [
        threading.Thread(target=workload.run_thread, args=(i, per_thread)) for i in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        f"DONE ops={workload.done} errors={workload.errors} rollbacks={workload.rollbacks} "
        f"ryw_misses={workload.ryw_misses}",
        flush=True,
    )
    sys.exit(0 if workload.done == per_thread * args.threads else 1)


if __name__ == "__main__":
    main()
