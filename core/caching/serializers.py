"""JSON (orjson) for everything we put in Redis: no pickle ever crosses the wire.

Values are encoded the way Django's DjangoJSONEncoder does (datetimes and dates as ISO 8601, Decimals
and UUIDs as strings), so `loads(dumps(x))` equals `json.loads(json.dumps(x, cls=DjangoJSONEncoder))`
up to sub-millisecond precision, which we keep. The class plugs into django-redis as its SERIALIZER,
so a value is serialized exactly once whichever door it goes through.
"""

import datetime
import decimal
import logging
import uuid
from typing import Any

import orjson
from django.utils.duration import duration_iso_string
from django.utils.functional import Promise

logger = logging.getLogger(__name__)


class CorruptCacheValue(ValueError):
    """Bytes in Redis that are not our JSON. Callers treat this as a miss."""


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return duration_iso_string(value)
    if isinstance(value, (Promise, uuid.UUID)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Type {type(value).__name__} is not JSON serializable")


class CacheSerializer:
    """django-redis serializer interface (`dumps`/`loads`), usable on its own too."""

    def __init__(self, options: dict | None = None) -> None:
        pass

    @staticmethod
    def dumps(value: Any) -> bytes:
        return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)

    @staticmethod
    def loads(value: bytes | str) -> Any:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise CorruptCacheValue(f"not JSON: {value[:40]!r}") from exc


serializer = CacheSerializer()
