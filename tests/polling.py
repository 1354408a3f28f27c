"""Wait for an asynchronous outcome with a deadline (never a bare sleep as an assertion)."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Call `check` until it returns a truthy value; fail with its last value after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {result!r})")
        time.sleep(interval)
