"""`manage.py seed_demo --users N --posts M [--seed S] [--append]`: demo data with a realistic shape.

The follow graph is power-law: followee popularity is Zipf-distributed, so a few authors have
thousands of followers and most have a handful; out-degrees are log-normal (most users follow a few
dozen). Posts are skewed towards popular authors, and reactions and comments towards their posts.
"""

import math
import random
from collections.abc import Iterator, Sequence
from itertools import accumulate

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction
from tqdm import tqdm

from feed.models import Comment, Follow, Post, Reaction

DEMO_PASSWORD = "demo-password"
WORDS = (  # noqa: SIM905 (a word list reads better as one text)
    "moon orbit crater tide rover lander regolith apollo artemis eclipse phase crescent "
    "gibbous waxing waning perigee apogee dust footprint flag module capsule launch countdown "
    "telescope night sky silver light shadow sea tranquility basalt highland rille lunar "
    "landing mission astronaut gravity vacuum earthrise photo today again finally look wow "
    "amazing clear cloudy"
).split()
AppUser = get_user_model()
KINDS = [(Reaction.Kind.LIKE, 60), (Reaction.Kind.LOVE, 18), (Reaction.Kind.LAUGH, 8)]
KINDS += [(Reaction.Kind.WOW, 8), (Reaction.Kind.SAD, 4), (Reaction.Kind.ANGRY, 2)]


def _bulk_insert(model: type[models.Model], objs: Sequence[models.Model], batch: int) -> list:
    """Insert without publishing events: the base QuerySet.bulk_create, not the publishing one."""
    return models.QuerySet.bulk_create(model.objects.all(), objs, batch_size=batch)


class Command(BaseCommand):
    help = (
        "Seed demo users, a power-law follow graph (Zipf popularity), posts skewed to popular "
        "authors, reactions and comments, with a progress bar. Rows are bulk-inserted through the "
        "base QuerySet.bulk_create, so NO events are published (seeding 10^5 rows through the "
        "pipeline would only invalidate caches that hold nothing yet); at the end the feed cache "
        "namespace is bumped (O(1)) so nothing cached earlier is served. Refuses to run when the "
        "database already has users, unless --append, which adds N new users (usernames demo<id>) "
        f"and M posts by them. Every demo user's password is '{DEMO_PASSWORD}'."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--users", type=int, default=200, help="users to create (default 200)")
        parser.add_argument("--posts", type=int, default=2000, help="posts to create (default 2000)")
        parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        parser.add_argument("--append", action="store_true", help="add to a database that has users")
        parser.add_argument("--batch-size", type=int, default=5000, help="rows per INSERT")
        parser.add_argument("--zipf", type=float, default=1.1, help="popularity exponent (default 1.1)")

    def handle(self, *args, users: int, posts: int, seed: int, append: bool, **options) -> None:
        if users < 2 or posts < 0:
            raise CommandError("need --users >= 2 and --posts >= 0")
        if AppUser.objects.exists() and not append:
            raise CommandError("the database already has users: pass --append to add more")
        self.rng = random.Random(seed)
        self.batch = max(100, options["batch_size"])
        n_reactions, n_comments = int(posts * 1.5), posts // 4
        total = users + posts + n_reactions + n_comments
        with tqdm(total=total, unit="row", desc="seed_demo", disable=options["verbosity"] == 0) as bar:
            self.bar = bar
            with transaction.atomic():
                user_ids = self.seed_users(users)
                weights = self.popularity(len(user_ids), options["zipf"])
                bar.total += self.estimated_follows(len(user_ids))
                n_follows = self.seed_follows(user_ids, weights)
                post_ids, post_weights = self.seed_posts(user_ids, weights, posts)
                self.seed_reactions(user_ids, post_ids, post_weights, n_reactions)
                self.seed_comments(user_ids, post_ids, post_weights, n_comments)
            bar.total = bar.n
            bar.refresh()
        self.analyze()
        self.bump_feed_cache()
        if options["verbosity"] == 0:
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"seeded {len(user_ids)} users, {n_follows} follows, {len(post_ids)} posts, "
                f"~{n_reactions} reactions, {n_comments} comments (password '{DEMO_PASSWORD}')"
            )
        )

    # --- parts ---------------------------------------------------------------------------------

    def seed_users(self, count: int) -> list[int]:
        password = make_password(DEMO_PASSWORD)
        start = (AppUser.objects.aggregate(m=models.Max("id"))["m"] or 0) + 1
        ids: list[int] = []
        for chunk in _chunks(range(start, start + count), self.batch):
            objs = [AppUser(username=f"demo{i}", password=password, bio=self.sentence(3, 12)) for i in chunk]
            ids += [user.pk for user in AppUser.objects.bulk_create(objs)]
            self.bar.update(len(objs))
        return ids

    def popularity(self, count: int, exponent: float) -> list[float]:
        """Zipf weights over a random permutation of the users: rank r gets 1 / r^exponent."""
        ranks = list(range(1, count + 1))
        self.rng.shuffle(ranks)
        return [1.0 / rank**exponent for rank in ranks]

    def out_degree(self, limit: int) -> int:
        # Log-normal: median ~12, a long tail of users who follow hundreds.
        return max(1, min(limit, int(self.rng.lognormvariate(2.5, 0.9))))

    def estimated_follows(self, users: int) -> int:
        return int(users * math.exp(2.5 + 0.9**2 / 2))

    def seed_follows(self, user_ids: list[int], weights: list[float]) -> int:
        cumulative = list(accumulate(weights))
        created = 0
        pending: list[Follow] = []
        for follower in user_ids:
            want = self.out_degree(len(user_ids) - 1)
            chosen: set[int] = set()
            for _ in range(8):  # popular users are drawn again and again: top up a few times
                for followee in self.rng.choices(user_ids, cum_weights=cumulative, k=want - len(chosen)):
                    if followee != follower:
                        chosen.add(followee)
                if len(chosen) >= want:
                    break
            pending += [Follow(follower_id=follower, followee_id=followee) for followee in chosen]
            if len(pending) >= self.batch:
                created += self.flush(Follow, pending)
        return created + self.flush(Follow, pending)

    def seed_posts(
        self, user_ids: list[int], weights: list[float], count: int
    ) -> tuple[list[int], list[float]]:
        # Popular authors post more, but everybody posts a little.
        author_weights = [0.5 / len(user_ids) + w**0.6 for w in weights]
        cumulative = list(accumulate(author_weights))
        weight_of = dict(zip(user_ids, author_weights, strict=True))
        post_ids: list[int] = []
        post_weights: list[float] = []
        for size in _sizes(count, self.batch):
            authors = self.rng.choices(user_ids, cum_weights=cumulative, k=size)
            objs = [Post(author_id=a, body=self.sentence(4, 40)) for a in authors]
            for post in _bulk_insert(Post, objs, self.batch):
                post_ids.append(post.pk)
                post_weights.append(weight_of[post.author_id])
            self.bar.update(size)
        return post_ids, post_weights

    def seed_reactions(
        self, user_ids: list[int], post_ids: list[int], weights: list[float], count: int
    ) -> None:
        if not post_ids:
            return
        cumulative = list(accumulate(weights))
        kinds, kind_weights = zip(*KINDS, strict=True)
        seen: set[tuple[int, int]] = set()
        for size in _sizes(count, self.batch):
            objs = []
            for post_id in self.rng.choices(post_ids, cum_weights=cumulative, k=size):
                user_id = self.rng.choice(user_ids)
                if (user_id, post_id) not in seen:
                    seen.add((user_id, post_id))
                    kind = self.rng.choices(kinds, weights=kind_weights)[0]
                    objs.append(Reaction(user_id=user_id, post_id=post_id, kind=kind))
            _bulk_insert(Reaction, objs, self.batch)
            self.bar.update(size)

    def seed_comments(
        self, user_ids: list[int], post_ids: list[int], weights: list[float], count: int
    ) -> None:
        if not post_ids:
            return
        cumulative = list(accumulate(weights))
        for size in _sizes(count, self.batch):
            targets = self.rng.choices(post_ids, cum_weights=cumulative, k=size)
            objs = [
                Comment(post_id=p, author_id=self.rng.choice(user_ids), body=self.sentence(2, 20))
                for p in targets
            ]
            _bulk_insert(Comment, objs, self.batch)
            self.bar.update(size)

    def flush(self, model: type[models.Model], pending: list) -> int:
        count = len(pending)
        if pending:
            _bulk_insert(model, pending, self.batch)
            self.bar.update(count)
            pending.clear()
        return count

    def sentence(self, low: int, high: int) -> str:
        words = self.rng.choices(WORDS, k=self.rng.randint(low, high))
        return " ".join(words).capitalize() + "."

    def analyze(self) -> None:
        """Fresh planner statistics: the feed query's plan depends on how much each author posts."""
        tables = [model._meta.db_table for model in (AppUser, Follow, Post, Reaction, Comment)]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"ANALYZE {', '.join(tables)}")
            else:
                cursor.execute("ANALYZE")

    def bump_feed_cache(self) -> None:
        """Best effort: with Redis down there is nothing cached to protect either."""
        import redis

        from core.caching import CacheManager

        try:
            CacheManager().bump_namespace("feed")
        except redis.RedisError as exc:
            self.stderr.write(f"could not bump the feed cache namespace ({exc}); it may serve old pages")


def _sizes(total: int, batch: int) -> Iterator[int]:
    for start in range(0, total, batch):
        yield min(batch, total - start)


def _chunks(values: range, size: int) -> Iterator[range]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
