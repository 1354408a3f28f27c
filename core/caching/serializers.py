"""The cache's serializer: django-redis's `dumps`/`loads` interface over the one JSON codec
(`core/codec.py`); no pickle ever crosses the wire. It plugs into django-redis as its SERIALIZER, so a
value is serialized exactly once whichever door it goes through.
"""

from typing import Any

from core import codec


class CorruptCacheValue(ValueError):
    """Bytes in Redis that are not our JSON. Callers treat this as a miss."""


class CacheSerializer:
    """django-redis serializer interface (`dumps`/`loads`), usable on its own too."""

    def __init__(self, options: dict | None = None) -> None:
        pass

    @staticmethod
    def dumps(value: Any) -> bytes:
        return codec.dumps(value)

    @staticmethod
    def loads(value: bytes | str) -> Any:
        try:
            return codec.loads(value)
        except codec.DecodeError as exc:
            raise CorruptCacheValue(f"not JSON: {value[:40]!r}") from exc


serializer = CacheSerializer()
