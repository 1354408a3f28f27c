"""CacheKeyBuilder: the one place keys are formatted, `{namespace}:v{version}:{parts}`."""

import pytest

from core.caching import CacheKeyBuilder, HashTag


def test_key_is_namespace_version_and_parts_joined_by_colons():
    assert (
        CacheKeyBuilder("chat").build("conversation", 123, "messages") == "chat:v1:conversation:123:messages"
    )


def test_version_is_part_of_every_key():
    assert CacheKeyBuilder("feed", 7).build("post", 1) == "feed:v7:post:1"
    assert CacheKeyBuilder("feed", "1.3").build("post", 1) == "feed:v1.3:post:1"


def test_hash_tag_renders_in_braces_so_one_entity_shares_a_cluster_slot():
    builder = CacheKeyBuilder("feed")
    assert builder.build(HashTag("post", 123)) == "feed:v1:{post:123}"
    assert builder.build(HashTag("post", 123), "reactions") == "feed:v1:{post:123}:reactions"


def test_pattern_matches_only_this_namespace_and_version():
    assert CacheKeyBuilder("feed", 2).pattern() == "feed:v2:*"


def test_allowed_punctuation_passes():
    assert CacheKeyBuilder("a_b").build("x-y", "1.5", "Z_9") == "a_b:v1:x-y:1.5:Z_9"


@pytest.mark.parametrize(
    "part",
    ["", "a:b", "{post", "post}", "a b", " ", "line\nbreak", "tab\t", "café", "снег", "\x00", "*", "a?"],
)
def test_part_that_would_break_the_key_format_is_rejected_with_a_clear_message(part):
    with pytest.raises(ValueError, match="Invalid cache key part") as excinfo:
        CacheKeyBuilder("ns").build("ok", part)
    assert repr(part) in str(excinfo.value)  # the message names the offending part


@pytest.mark.parametrize("part", ["", "a:b", "{x}", "a b", "é"])
def test_bad_hash_tag_parts_are_rejected(part):
    with pytest.raises(ValueError, match="Invalid cache key part"):
        CacheKeyBuilder("ns").build(HashTag("post", part))
    with pytest.raises(ValueError, match="Invalid cache key part"):
        CacheKeyBuilder("ns").build(HashTag(part, 1))


@pytest.mark.parametrize("namespace", ["", "a:b", "a b", "{a}", "ñ"])
def test_bad_namespace_is_rejected(namespace):
    with pytest.raises(ValueError, match="Invalid cache key part"):
        CacheKeyBuilder(namespace)


@pytest.mark.parametrize("version", ["", "1:2", "v 1"])
def test_bad_version_is_rejected(version):
    with pytest.raises(ValueError, match="Invalid cache key part"):
        CacheKeyBuilder("ns", version)


def test_a_key_needs_at_least_one_part():
    with pytest.raises(ValueError, match="at least one part"):
        CacheKeyBuilder("ns").build()
