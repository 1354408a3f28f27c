"""JSON (orjson): the one codec for everything themoon puts in Redis, cache values and events alike.

Values are encoded the way Django's DjangoJSONEncoder does (datetimes and dates as ISO 8601, Decimals
and UUIDs as strings), so `loads(dumps(x))` equals `json.loads(json.dumps(x, cls=DjangoJSONEncoder))`
up to sub-millisecond precision, which we keep. A value written from an event and one filled from the
database are byte-for-byte alike because both go through `dumps`.
"""

import datetime
import decimal
import uuid
from typing import Any

import orjson
from django.utils.duration import duration_iso_string
from django.utils.functional import Promise


class DecodeError(ValueError):
    """Bytes that are not JSON."""


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


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)


def loads(value: bytes | str) -> Any:
    """Raises DecodeError for anything that is not JSON."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(str(exc)) from exc


def iso(value: datetime.datetime | None) -> str | None:
    """A datetime as `dumps` writes it (ISO 8601, UTC as `Z`): for payloads that must be JSON-ready
    before they are encoded (e.g. to cross the channel layer) yet match what `dumps` stores."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")
