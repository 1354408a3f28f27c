"""The consistency checker's frame: each app registers checks comparing its caches with the DB.

A check reads cache entries (by SCAN, never KEYS), recomputes each from the database, and reports
the keys whose served value differs. Entries that can never be served (a lease in flight, a feed
page of an old generation) are not mismatches. Run it after the pipeline has drained:
`python manage.py check_cache_consistency`.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class CheckResult:
    name: str
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)

    def mismatch(self, key: str, cached: object, expected: object) -> None:
        self.mismatches.append(f"{key}: cached {cached!r} != database {expected!r}")


class CacheCheck:
    """One kind of cache entry. `sample` bounds how many entries an expensive check looks at."""

    name: str = ""

    def run(self, sample: int | None = None) -> CheckResult:
        raise NotImplementedError


def sampled(entries: Iterable[T], result: CheckResult, sample: int | None) -> Iterator[T]:
    """`entries` until `result` has checked `sample` of them (all of them with None): every check's
    loop bound."""
    for entry in entries:
        if sample is not None and result.checked >= sample:
            return
        yield entry


_checks: list[CacheCheck] = []


def register(check: CacheCheck) -> CacheCheck:
    if all(type(existing) is not type(check) for existing in _checks):
        _checks.append(check)
    return check


def run_checks(sample: int | None = None) -> list[CheckResult]:
    return [check.run(sample) for check in _checks]
