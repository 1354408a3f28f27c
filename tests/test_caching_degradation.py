"""Degrade, don't fail: with Redis refused, black-holed or dropping SYNs, the strategies answer from
the source, skip writes, log one warning per failure burst, and a failed call costs milliseconds.

The dead clients are built from settings.CACHES exactly as django-redis builds the real one (same
timeouts, same pool options), only aimed elsewhere, so the timings measure the production settings.
"""

import copy
import logging
import shutil
import socket
import statistics
import subprocess
import time

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django_redis.cache import RedisCache

from core.caching import (
    CacheAsideStrategy,
    CacheKeyBuilder,
    CacheManager,
    RedisBreaker,
    WriteThroughCacheStrategy,
)
from core.connections import UNAVAILABLE, Unreachable, cluster_enabled
from tests.subprocesses import free_port

LOGGER = "core.caching"


def settings_client(port: int) -> redis.Redis:
    """A client configured like CACHES['default'] (django-redis, same OPTIONS), at 127.0.0.1:port.
    On a cluster, a `LazyCluster` with that node as its only startup node."""
    params = copy.deepcopy(settings.CACHES["default"])
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", params)
    if cluster_enabled():
        return LazyCluster(lambda: cache.client.get_client(write=True))
    return cache.client.get_client(write=True)


class LazyCluster:
    """A cluster client built on first use, as the product's cache client is (`cache_client()`):
    while no startup node answers, every use tries the build again and raises what `Unreachable`
    raises (redis.ConnectionError). `calls` counts the uses that reached for a server."""

    def __init__(self, build) -> None:
        self.build, self.client, self.calls = build, None, 0

    def __getattr__(self, name: str):
        if self.client is None:
            self.calls += 1
            # REDIS_CLUSTER_NODES name the test cluster's nodes: this client knows only its port.
            with override_settings(REDIS_CLUSTER_NODES=[]):
                try:
                    self.client = self.build()
                except UNAVAILABLE as exc:
                    return getattr(Unreachable(exc), name)
        return getattr(self.client, name)


class Items(CacheAsideStrategy, WriteThroughCacheStrategy):
    namespace = "degraded"
    default_ttl = 60


KEYS = CacheKeyBuilder("degraded")


def strategy_at(port: int, backoff: float = 1.0) -> Items:
    return Items(client=settings_client(port), breaker_=RedisBreaker(backoff_seconds=backoff))


def warnings_in(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def median_seconds(fn, calls: int = 50) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- Redis refusing connections (a closed port) --------------------------------------------------


def test_every_operation_degrades_without_raising(unused_port):
    items = strategy_at(unused_port)
    key = items.key("a")  # the epoch lookup fails too, quietly: epoch 0
    assert key == "degraded:v1:a"
    assert items.get(key, "dflt") == "dflt"
    assert items.set(key, {"v": 1}) is False
    assert items.delete(key) == 0
    assert items.get_many([key, items.key("b")]) == {}
    assert items.set_many({key: 1}) is False
    assert items.get_or_set(key, lambda: "computed") == "computed"
    assert items.get_or_load(key, lambda: {"from": "db"}) == {"from": "db"}
    assert items.update_if_newer(key, {"version": 1}) == 0
    assert items.ttl(key) == -2


def test_reads_come_from_the_loader_on_every_call(unused_port):
    items = strategy_at(unused_port, backoff=0)
    calls = []
    for i in range(5):
        assert items.get_or_load(KEYS.build("k"), lambda i=i: calls.append(i) or i) == i
    assert calls == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("operation", ["get", "set", "get_or_load", "get_many"])
def test_a_failed_call_costs_under_50_ms(unused_port, operation):
    """Measured without the breaker's help (backoff 0): every call really tries the socket."""
    items = strategy_at(unused_port, backoff=0)
    key = KEYS.build("timed")
    calls = {
        "get": lambda: items.get(key),
        "set": lambda: items.set(key, {"v": 1}),
        "get_or_load": lambda: items.get_or_load(key, lambda: 1),
        "get_many": lambda: items.get_many([key, key + "2"]),
    }
    assert median_seconds(calls[operation]) < 0.050


def test_one_warning_per_failure_burst(unused_port, caplog):
    items = strategy_at(unused_port, backoff=0)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(50):
            items.get(KEYS.build("k"))
            items.set(KEYS.build("k"), 1)
    assert len(warnings_in(caplog)) == 1
    assert "redis unavailable" in warnings_in(caplog)[0].getMessage()


def test_breaker_skips_redis_during_its_backoff(unused_port):
    dead = settings_client(unused_port)
    client = dead if cluster_enabled() else CountingRedis(connection_pool=dead.connection_pool)
    items = Items(client=client, breaker_=RedisBreaker(backoff_seconds=0.3))
    key = KEYS.build("k")
    assert items.get(key, "dflt") == "dflt"
    assert client.calls == 1
    skipped = median_seconds(lambda: items.get(key, "dflt"))
    assert client.calls == 1  # 50 more reads, not one reached the socket
    assert skipped < 0.001
    time.sleep(0.35)
    items.get(key)
    assert client.calls == 2  # backoff over: Redis is tried again


class CountingRedis(redis.Redis):
    calls = 0

    def execute_command(self, *args, **options):
        self.calls += 1
        return super().execute_command(*args, **options)


def test_recovery_logs_once_and_a_new_outage_warns_again(caplog, tmp_path):
    port = free_port()
    items = strategy_at(port, backoff=0.05)
    key = KEYS.build("k")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(10):
            assert items.set(key, "v") is False
        server = start_redis_server(port, tmp_path)
        try:
            time.sleep(0.06)
            assert items.set(key, "v") is True
            for _ in range(10):
                assert items.get(key) == "v"
            recoveries = [r for r in caplog.records if "answers again" in r.getMessage()]
            assert len(recoveries) == 1
            assert recoveries[0].levelno == logging.INFO
        finally:
            server.terminate()
            server.wait(5)
        time.sleep(0.06)
        for _ in range(10):
            assert items.get(key, "down again") == "down again"
    assert len(warnings_in(caplog)) == 2  # one per outage, not one per call


def start_redis_server(port: int, workdir) -> subprocess.Popen:
    """A redis-server on `port`; on a cluster run, a one-node cluster holding every slot."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server must be on PATH (it is in CI and in the quickstart)"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if cluster_enabled():
        bus = ["--cluster-port", str(free_port())]  # port + 10000, its default, may be past 65535
        args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf", *bus]
    server = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL)
    probe = redis.Redis(port=port, socket_connect_timeout=0.05, retry=None)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if probe.ping():
                if cluster_enabled():
                    probe.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
                    while b"cluster_state:ok" not in probe.execute_command("CLUSTER", "INFO"):
                        assert time.monotonic() < deadline, "the one-node cluster never became ok"
                        time.sleep(0.02)
                return server
        except redis.ConnectionError:
            time.sleep(0.02)
    server.kill()
    raise AssertionError("redis-server did not start")


def test_health_check_is_false_at_a_closed_port_and_never_raises(unused_port, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert CacheManager(client=settings_client(unused_port)).health_check() is False
    assert CacheManager().health_check() is True


# --- Redis that accepts the connection and never answers (black hole) -----------------------------


@pytest.fixture
def black_hole():
    """A loopback port whose kernel completes the TCP handshake but no one ever reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield listener.getsockname()[1]


def test_black_holed_redis_costs_one_socket_timeout_per_burst(black_hole, caplog):
    items = strategy_at(black_hole)
    limit = settings.REDIS_SOCKET_TIMEOUT + 0.15
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        started = time.perf_counter()
        key = items.key("post", 1)  # what a request does: build the key, then read it
        value = items.get_or_load(key, lambda: "from db")
        first = time.perf_counter() - started
        assert value == "from db"
        assert first < limit, f"first failed request took {first * 1000:.0f} ms"
        later = median_seconds(lambda: items.get_or_load(items.key("post", 1), lambda: "from db"))
    assert later < 0.005  # the breaker is open: no more timeouts in this burst
    assert len(warnings_in(caplog)) == 1


def test_black_holed_redis_single_call_is_bounded_by_the_socket_timeout(black_hole):
    items = strategy_at(black_hole, backoff=0)
    key = KEYS.build("k")
    started = time.perf_counter()
    assert items.get(key, "dflt") == "dflt"
    elapsed = time.perf_counter() - started
    assert settings.REDIS_SOCKET_TIMEOUT * 0.8 <= elapsed < settings.REDIS_SOCKET_TIMEOUT + 0.15


@pytest.fixture
def syn_dropping_port():
    """A port whose accept queue is full: the kernel drops new SYNs, so connect() hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def test_unreachable_redis_costs_one_connect_timeout(syn_dropping_port):
    items = strategy_at(syn_dropping_port)
    limit = settings.REDIS_SOCKET_CONNECT_TIMEOUT + 0.05
    started = time.perf_counter()
    key = items.key("post", 1)
    assert items.get_or_load(key, lambda: "from db") == "from db"
    elapsed = time.perf_counter() - started
    assert elapsed < limit, f"first failed request took {elapsed * 1000:.0f} ms"
    assert median_seconds(lambda: items.get(key)) < 0.005


# --- namespace epochs across an outage ------------------------------------------------------


def test_a_bumped_namespace_stays_bumped_while_the_breaker_is_open(redis_client):
    """Keys built during an outage must not fall back to epoch 0: once the breaker closes,
    a read of such a key would serve a value the bump invalidated, and a queued (pipelined)
    write would land where nobody reads."""
    items = Items(client=redis_client, breaker_=RedisBreaker(backoff_seconds=0.05))
    items.set(items.key("post", 1), "before the bump")
    CacheManager().bump_namespace("degraded")
    bumped = items.key("post", 1)
    assert bumped == "degraded:v1.1:post:1"

    items.breaker.failure(redis.ConnectionError("injected"), "get")  # a blip opens the breaker
    key_during_outage = items.key("post", 1)
    time.sleep(0.06)  # the breaker closes

    assert key_during_outage == bumped
    assert items.get(key_during_outage, "miss") == "miss"


def test_a_cluster_of_which_no_node_answers_degrades_like_a_redis_down(
    transactional_db, unused_port, monkeypatch, settings
):
    """RedisCluster's constructor raises RedisClusterException when no startup node answers: the
    product's builder says ConnectionError, and the cache client stands in as unreachable, so a
    cache-aside read answers from its loader (the breaker opens) instead of raising."""
    import core.connections as connections
    from core.caching import breaker

    settings.REDIS_CLUSTER_NODES = []  # on a cluster run they name live nodes: none answers here
    with pytest.raises(redis.ConnectionError):
        connections.cluster_client(f"redis://127.0.0.1:{unused_port}", socket_connect_timeout=0.05)

    def no_node_answers():
        return connections.cluster_client(f"redis://127.0.0.1:{unused_port}", socket_connect_timeout=0.05)

    monkeypatch.setattr(connections, "_cache_client", no_node_answers)  # the fault: a dead cluster
    items = Items()
    assert items.get_or_load(items.key("cold"), lambda: {"from": "db"}) == {"from": "db"}
    assert not breaker.available()
    monkeypatch.undo()
    connections.forget_unreachable()  # the backoff would keep answering "unreachable" for a second
