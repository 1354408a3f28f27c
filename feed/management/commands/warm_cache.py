"""`python manage.py warm_cache [--posts K] [--feeds K]`: pre-warm after a deploy or a Redis flush."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from feed.warmup import warm_once


class Command(BaseCommand):
    help = (
        "Fill the caches of the K most popular posts (details, counts) and page 1 of the K most "
        "active users' feeds. Only missing or older entries are written (version-checked). Popularity "
        "comes from Redis, or from the database when Redis has none. Same work as the beat tasks, "
        "under the same locks."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--posts", type=int, default=settings.WARM_POSTS_TOP_K, help="top-K posts")
        parser.add_argument("--feeds", type=int, default=settings.WARM_FEEDS_TOP_K, help="top-K feeds")

    def handle(self, *args, posts: int, feeds: int, **options) -> None:
        if posts < 0 or feeds < 0:
            raise CommandError("--posts and --feeds must be >= 0")
        for name, k in (("posts", posts), ("feeds", feeds)):
            if k == 0:
                continue
            with tqdm(total=k, desc=f"warming {name}", unit=name[:-1], file=self.stderr) as bar:
                result = warm_once(name, k, progress=bar.update)
            self.stdout.write(
                f"{name}: another warm-up is running, skipped" if result is None else str(result)
            )
