"""CacheManager: health, statistics, SCAN+UNLINK namespace clearing, O(1) namespace bumps."""

import logging

import pytest

from core.caching import BaseCacheStrategy, CacheManager
from core.connections import primaries
from tests.test_caching_strategies import recorder_for


class Alpha(BaseCacheStrategy):
    namespace = "alpha"
    default_ttl = 120


class AlphaBet(BaseCacheStrategy):
    namespace = "alphabet"  # shares the prefix "alpha" but is another namespace
    default_ttl = 120


class Beta(BaseCacheStrategy):
    namespace = "beta"
    default_ttl = 120


def fill(strategy: BaseCacheStrategy, count: int, *prefix) -> list[str]:
    keys = [strategy.key(*prefix, "item", i) for i in range(count)]
    for start in range(0, count, 500):
        assert strategy.set_many({key: {"i": i} for i, key in enumerate(keys[start : start + 500])})
    return keys


def test_health_check_is_true_on_a_live_redis():
    assert CacheManager().health_check() is True


def test_get_stats_reports_memory_keys_and_this_processs_hits_and_misses(redis_client):
    alpha, beta = Alpha(), Beta()
    fill(alpha, 30)
    fill(beta, 5)
    alpha.get(alpha.key("item", 0))  # hit
    alpha.get(alpha.key("item", 1))  # hit
    alpha.get(alpha.key("missing"))  # miss
    alpha.get_many([alpha.key("item", 2), alpha.key("nope")])  # 1 hit, 1 miss
    beta.get(beta.key("nope"))  # miss

    stats = CacheManager().get_stats()

    assert isinstance(stats["used_memory"], int)
    assert stats["used_memory"] > 0
    assert stats["total_keys"] == 35 == sum(node.dbsize() for node in primaries(redis_client))
    assert stats["keys_per_namespace"] == {"alpha": 30, "beta": 5}
    assert stats["requests_per_namespace"] == {
        "alpha": {"hits": 3, "misses": 2},
        "beta": {"hits": 0, "misses": 1},
    }


def test_get_stats_counts_keys_across_scan_pages(redis_client):
    fill(Alpha(), 2500)
    stats = CacheManager().get_stats()
    assert stats["keys_per_namespace"]["alpha"] == 2500
    assert stats["total_keys"] == 2500


def test_clear_namespace_unlinks_only_that_namespace_by_scan(redis_client):
    alpha, alphabet, beta = Alpha(), AlphaBet(), Beta()
    doomed = fill(alpha, 2500)
    CacheManager().bump_namespace("alpha")  # keys of an older epoch go too
    doomed += fill(alpha, 300, "after-bump")
    kept = fill(alphabet, 40) + fill(beta, 60)
    recorder = recorder_for(redis_client)

    removed = CacheManager(client=recorder).clear_namespace("alpha")

    assert removed == 2800
    assert redis_client.exists(*doomed[:1000]) == 0
    assert redis_client.exists(*doomed[1000:2000]) == 0
    assert redis_client.exists(*doomed[2000:]) == 0
    assert redis_client.exists(*kept) == len(kept)
    names = [args[0].upper() for args in recorder.commands]
    assert names.count("SCAN") > 1  # paged through the keyspace
    assert "UNLINK" in names
    assert not {"KEYS", "DEL", "FLUSHDB", "FLUSHALL"} & set(names)
    # Every UNLINK is bounded: no single command carries more than a SCAN page's worth of keys.
    assert max(len(args) - 1 for args in recorder.commands if args[0].upper() == "UNLINK") <= 1000


def test_clear_namespace_of_an_empty_namespace_removes_nothing():
    fill(Beta(), 3)
    assert CacheManager().clear_namespace("alpha") == 0


def test_clear_namespace_logs_what_it_did(caplog):
    fill(Alpha(), 3)
    with caplog.at_level(logging.INFO, logger="core.caching"):
        CacheManager().clear_namespace("alpha")
    assert any("alpha" in r.getMessage() and "3" in r.getMessage() for r in caplog.records)


def test_bump_namespace_returns_increasing_epochs_and_moves_the_keys():
    manager, alpha = CacheManager(), Alpha()
    key = alpha.key("item", 0)
    alpha.set(key, "old")
    epochs = [manager.bump_namespace("alpha") for _ in range(3)]
    assert epochs == [1, 2, 3]
    assert alpha.key("item", 0) == "alpha:v1.3:item:0"
    assert alpha.get(alpha.key("item", 0)) is None
    assert manager.bump_namespace("beta") == 1  # each namespace counts on its own


def test_bump_namespace_epoch_key_has_a_ttl(redis_client):
    CacheManager().bump_namespace("alpha")
    keys = sorted(redis_client.scan_iter(match="themoon:*"))
    assert keys == [b"themoon:v1:namespace:alpha:bumped_at", b"themoon:v1:namespace:alpha:generation"]
    for key in keys:
        assert redis_client.ttl(key) > 0


def test_stats_count_both_epochs_of_a_bumped_namespace(redis_client):
    fill(Alpha(), 10)
    CacheManager().bump_namespace("alpha")
    fill(Alpha(), 10)
    per_namespace = CacheManager().get_stats()["keys_per_namespace"]
    assert per_namespace["alpha"] == 20  # both epochs, until the old one expires
    assert per_namespace["themoon"] == 2  # the epoch counter itself and its bump time


def test_clear_namespace_refuses_a_glob():
    with pytest.raises(ValueError, match="Invalid cache key part"):
        CacheManager().clear_namespace("*")
