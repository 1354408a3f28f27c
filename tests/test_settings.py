"""Settings we rely on: JSON everywhere (no pickle), our serializer in CACHES, the user model,
short Redis timeouts and no retries on the cache client."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches

from accounts.models import AppUser
from core.caching import CacheSerializer


def strings_in(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings_in(item)
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            yield from strings_in(item)
    else:
        yield str(value)


def test_no_pickle_anywhere_in_caches():
    assert not [s for s in strings_in(settings.CACHES) if "pickle" in s.lower()]


def test_caches_use_django_redis_with_our_serializer():
    default = settings.CACHES["default"]
    assert default["BACKEND"] == "django_redis.cache.RedisCache"
    assert default["OPTIONS"]["SERIALIZER"] == "core.caching.serializers.CacheSerializer"
    assert isinstance(caches["default"].client._serializer, CacheSerializer)


def test_celery_speaks_json_only():
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_TASK_SERIALIZER == "json"
    assert settings.CELERY_RESULT_SERIALIZER == "json"
    celery_settings = {name: getattr(settings, name) for name in dir(settings) if name.startswith("CELERY_")}
    assert not [s for s in strings_in(celery_settings) if "pickle" in s.lower()]


def test_the_running_celery_app_accepts_json_only():
    from themoon.celery import app

    assert list(app.conf.accept_content) == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert app.conf.result_accept_content in (None, ["json"])


def test_user_model_is_accounts_app_user():
    assert settings.AUTH_USER_MODEL == "accounts.AppUser"
    assert get_user_model() is AppUser


def test_redis_timeouts_are_short():
    assert 0 < settings.REDIS_SOCKET_CONNECT_TIMEOUT <= 0.1
    assert 0 < settings.REDIS_SOCKET_TIMEOUT <= 0.5
    options = settings.CACHES["default"]["OPTIONS"]
    assert options["SOCKET_CONNECT_TIMEOUT"] == settings.REDIS_SOCKET_CONNECT_TIMEOUT
    assert options["SOCKET_TIMEOUT"] == settings.REDIS_SOCKET_TIMEOUT


def test_cache_client_fails_fast_without_retrying():
    """redis-py 8's own default for a bare redis.Redis is 10 retries with backoff (seconds at a
    dead port); the cache client django-redis builds from CACHES must try once (on a cluster: the
    connections of every primary it talks to)."""
    from redis.cluster import RedisCluster

    from core.connections import cache_client, primaries

    if isinstance(cache_client(), RedisCluster):  # its own retries (each a socket timeout) come first
        assert cache_client().retry.get_retries() == 0
    for server in primaries(cache_client()):
        connection = server.connection_pool.make_connection()
        try:
            assert connection.retry.get_retries() == 0
            assert connection.socket_timeout == settings.REDIS_SOCKET_TIMEOUT
            assert connection.socket_connect_timeout == settings.REDIS_SOCKET_CONNECT_TIMEOUT
        finally:
            connection.disconnect()


@pytest.mark.parametrize("name", ["CACHE_FAILURE_BACKOFF_SECONDS", "CACHE_LEASE_SECONDS"])
def test_cache_timings_are_positive(name):
    assert getattr(settings, name) > 0


def test_key_function_adds_no_second_prefix():
    assert caches["default"].make_key("feed:v1:x") == "feed:v1:x"


@pytest.mark.parametrize(("value", "expected"), [(None, "5"), ("false", "None")])
def test_database_prepared_statements_sets_psycopgs_prepare_threshold(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_PREPARED_STATEMENTS"}
    env.update(DATABASE_URL="postgres://u@127.0.0.1:5432/db", DJANGO_SETTINGS_MODULE="themoon.settings")
    env.setdefault("DJANGO_SECRET_KEY", "settings-test-secret-key-not-used-anywhere-else")
    if value is not None:
        env["DATABASE_PREPARED_STATEMENTS"] = value
    code = (
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
