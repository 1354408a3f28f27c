"""`python manage.py check_cache_consistency [--sample N]`: compare the caches with the database
(at most N entries of each kind; 0 for all)."""

from django.core.management.base import BaseCommand, CommandError

from core.consistency import run_checks


class Command(BaseCommand):
    help = (
        "Compare cached post details, reaction counts, conversation lists and feed pages with the "
        "database: at most --sample entries of each kind (the first found by SCAN, which walks the "
        "keyspace in hash order), or all of them with --sample 0. Prints the number checked and every "
        "mismatch with its key; exits 1 on any mismatch. Run it once the pipeline has drained "
        "(python manage.py streams: lag 0)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--sample",
            type=int,
            default=200,
            help="entries of each kind to check at most (default 200; 0: every entry)",
        )

    def handle(self, *args, sample: int, **options) -> None:
        if sample < 0:
            raise CommandError("--sample must be >= 0 (0 checks every entry)")
        results = run_checks(sample=sample or None)
        total = sum(result.checked for result in results)
        mismatches = [m for result in results for m in result.mismatches]
        for result in results:
            self.stdout.write(f"{result.name}: {result.checked} checked, {len(result.mismatches)} mismatches")
            for line in result.mismatches[:50]:
                self.stdout.write(f"  {line}")
        self.stdout.write(f"total: {total} checked, {len(mismatches)} mismatches")
        if mismatches:
            raise CommandError(f"{len(mismatches)} cache entries differ from the database", returncode=1)
