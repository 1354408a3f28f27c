"""CacheSerializer: orjson, encoded like DjangoJSONEncoder, plugged into django-redis; corrupt = miss."""

import datetime
import json
import logging
import uuid
from decimal import Decimal

import pytest
from django.core.cache import caches
from django.core.serializers.json import DjangoJSONEncoder

from core.caching import BaseCacheStrategy, CacheAsideStrategy, CacheSerializer, CorruptCacheValue

UTC = datetime.UTC
PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))


def django_round_trip(value):
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def ours_round_trip(value):
    return CacheSerializer.loads(CacheSerializer.dumps(value))


# Values without a fraction of a second: ours and Django's encoder give exactly the same result.
SAME_AS_DJANGO = [
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=PLUS_TWO),
    datetime.datetime(2026, 1, 2, 3, 4, 5),  # naive
    datetime.date(2026, 2, 28),
    datetime.timedelta(days=1, seconds=5),
    Decimal("12.340"),
    Decimal("-0.000001"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {"id": 5, "author": {"id": 9, "username": "ann"}, "tags": ["a", "b"], "score": 1.5, "ok": True},
    {
        "id": 1,
        "created_at": datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        "price": Decimal("9.99"),
        "ref": uuid.UUID(int=1),
        "day": datetime.date(2026, 3, 4),
        "children": [{"id": 2, "at": datetime.datetime(2026, 3, 4, tzinfo=UTC), "deleted": None}],
    },
    None,
    [],
    "snow ❄ and naïve text",
]


@pytest.mark.parametrize("value", SAME_AS_DJANGO, ids=lambda v: type(v).__name__)
def test_round_trip_equals_djangos_json_encoder(value):
    assert ours_round_trip(value) == django_round_trip(value)


def test_aware_utc_datetime_is_iso_with_z():
    assert (
        CacheSerializer.dumps(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == b'"2026-01-02T03:04:05Z"'
    )


SUBSECOND = [
    datetime.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    datetime.datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
    datetime.datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=PLUS_TWO),
    datetime.datetime(2026, 1, 2, 3, 4, 5, 999999),
]


@pytest.mark.parametrize("moment", SUBSECOND, ids=str)
def test_fractions_of_a_second_keep_microseconds_where_django_truncates_to_milliseconds(moment):
    """What differs from DjangoJSONEncoder, and only this: a datetime with a fraction of a second
    is written with all six digits ("05.123456Z", also "05.123000Z"), where Django writes three
    ("05.123Z", cutting the microseconds). Both parse back to the same instant at millisecond
    precision; ours parses back exactly."""
    ours, django = ours_round_trip(moment), django_round_trip(moment)
    assert ours != django
    assert datetime.datetime.fromisoformat(ours) == moment
    truncated = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert datetime.datetime.fromisoformat(django) == truncated
    assert ours[:23] == django[:23]  # same text up to the milliseconds
    assert ours.endswith(django[23:])  # same zone suffix

    nested = {"id": 1, "at": moment, "items": [{"at": moment, "n": Decimal("2.50")}]}
    assert ours_round_trip(nested) == {"id": 1, "at": ours, "items": [{"at": ours, "n": "2.50"}]}


def test_sets_and_tuples_become_lists():
    assert ours_round_trip((1, 2)) == [1, 2]
    assert ours_round_trip({"ids": frozenset([3])}) == {"ids": [3]}


def test_integer_dict_keys_become_strings_like_json():
    assert ours_round_trip({1: "a", 2: "b"}) == django_round_trip({1: "a", 2: "b"}) == {"1": "a", "2": "b"}


def test_unserializable_value_raises_type_error():
    with pytest.raises(TypeError):
        CacheSerializer.dumps(object())


def test_output_is_json_bytes():
    encoded = CacheSerializer.dumps({"a": 1})
    assert isinstance(encoded, bytes)
    assert json.loads(encoded) == {"a": 1}


@pytest.mark.parametrize(
    "raw", [b"", b"\x80\x04\x95", b"{not json", b'{"a": 1', b"\xff\xfe", b"\x00lease-ish", "{oops"]
)
def test_corrupt_bytes_raise_corrupt_cache_value(raw):
    with pytest.raises(CorruptCacheValue):
        CacheSerializer.loads(raw)


def test_corrupt_cache_value_is_a_value_error():
    assert issubclass(CorruptCacheValue, ValueError)


class Corruptible(CacheAsideStrategy):
    namespace = "corrupt"
    default_ttl = 60


def test_corrupt_bytes_in_redis_read_as_a_logged_miss_through_a_strategy(redis_client, caplog):
    strategy = Corruptible()
    key = strategy.key("item", 1)
    redis_client.set(key, b"\x80\x04\x95 pickled?", ex=60)
    with caplog.at_level(logging.WARNING, logger="core.caching"):
        assert strategy.get(key, "fallback") == "fallback"
        assert strategy.get_many([key]) == {}
    warnings = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 2
    assert key in warnings[0].getMessage()


def test_corrupt_bytes_in_a_cache_aside_key_are_replaced_by_the_loaded_value(redis_client, caplog):
    """A corrupt entry is a miss: the loader runs at once (not after waiting for a lease that will
    never come) and its value replaces the garbage, so the next read is a hit."""
    import time

    strategy = Corruptible()
    key = strategy.key("item", 2)
    redis_client.set(key, b"garbage", ex=60)
    loads = []
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="core.caching"):
        assert strategy.get_or_load(key, lambda: loads.append(1) or {"v": 1}) == {"v": 1}
    assert time.monotonic() - started < 0.5
    assert strategy.get_or_load(key, lambda: loads.append(1) or {"v": 2}) == {"v": 1}
    assert loads == [1]
    assert CacheSerializer.loads(redis_client.get(key)) == {"v": 1}
    assert redis_client.pttl(key) > 0


def test_django_cache_uses_our_serializer_and_stores_json_not_pickle(redis_client):
    cache = caches["default"]
    value = {"id": 1, "at": datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "n": Decimal("1.5")}
    expected = {"id": 1, "at": "2026-01-02T03:04:05.678000Z", "n": "1.5"}
    cache.set("plain:v1:django-door", value, 30)
    assert cache.get("plain:v1:django-door") == expected

    raw = redis_client.get("plain:v1:django-door")  # KEY_FUNCTION adds no prefix
    assert raw is not None
    assert not raw.startswith(b"\x80")  # a pickle protocol 2+ header
    assert json.loads(raw) == expected
    assert 0 < redis_client.ttl("plain:v1:django-door") <= 30


def test_django_cache_and_strategy_read_each_others_values(redis_client):
    """One serializer for both doors: nothing is serialized twice."""
    strategy = BaseCacheStrategy()
    key = strategy.key("shared")
    caches["default"].set(key, {"a": [1, 2]}, 30)
    assert strategy.get(key) == {"a": [1, 2]}
    strategy.set(key, {"b": "c"})
    assert caches["default"].get(key) == {"b": "c"}
