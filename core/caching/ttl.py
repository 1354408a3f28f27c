"""Every cache key has a TTL: seconds to the milliseconds Redis takes, refusing "forever"."""


def ttl_ms(seconds: float) -> int:
    """`seconds` as milliseconds. Raises ValueError for zero or less: no key may live forever."""
    if seconds <= 0:
        raise ValueError("Every cache key needs a positive TTL")
    return int(seconds * 1000)
