"""`python manage.py check_cache_consistency [--sample N]`: compare the caches with the database."""

from django.core.management.base import BaseCommand, CommandError

from core.consistency import run_checks


class Command(BaseCommand):
    help = (
        "Compare cached post details, reaction counts, conversation lists and (sampled) feed pages "
        "with the database. Prints the number checked and every mismatch with its key; exits 1 on "
        "any mismatch. Run it once the pipeline has drained (python manage.py streams: lag 0)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--sample", type=int, default=200, help="feed pages to check at most (default 200)"
        )

    def handle(self, *args, sample: int, **options) -> None:
        results = run_checks(sample=sample)
        total = sum(result.checked for result in results)
        mismatches = [m for result in results for m in result.mismatches]
        for result in results:
            self.stdout.write(f"{result.name}: {result.checked} checked, {len(result.mismatches)} mismatches")
            for line in result.mismatches[:50]:
                self.stdout.write(f"  {line}")
        self.stdout.write(f"total: {total} checked, {len(mismatches)} mismatches")
        if mismatches:
            raise CommandError(f"{len(mismatches)} cache entries differ from the database", returncode=1)
