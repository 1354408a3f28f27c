"""Streams split into hash-tagged partitions (EVENTS_STREAM_PARTITIONS), on one Redis: names, the
entity routing that keeps per-entity order, sent marks in their partition's slot, and a worker that
consumes, trims and replays dead letters across partitions."""

import pytest
from redis.crc import key_slot

from core.events import Event, dead_letter_stream, outbox_backlog, relay_outbox, stream_name, trim_streams
from core.events.outbox import sent_key
from core.events.streams import EVENT_FIELD, all_streams, domain_of, domain_streams, partition_of, stream_for
from feed import events as feed_events
from feed.models import Reaction
from tests.factories import make_post, make_user
from tests.polling import eventually
from workers.streams_admin import replay_dead_letters, stream_report

PARTITIONS = 4


@pytest.fixture
def partitioned(settings):
    settings.EVENTS_STREAM_PARTITIONS = PARTITIONS
    settings.EVENTS_BLOCK_MS = 200
    return settings


@pytest.fixture
def pipeline_settings(partitioned):
    return partitioned


def _feed_events(client) -> dict[str, list[Event]]:
    return {
        stream: [Event.decode(fields[EVENT_FIELD]) for _, fields in client.xrange(stream)]
        for stream in domain_streams(feed_events.DOMAIN)
    }


def test_one_partition_keeps_the_historical_stream_names(settings):
    settings.EVENTS_STREAM_PARTITIONS = 1
    assert stream_name("feed") == f"{settings.EVENTS_STREAM_PREFIX}:feed"
    assert domain_streams("feed") == [stream_name("feed")]
    assert key_slot(sent_key(stream_name("feed")).encode()) == key_slot(stream_name("feed").encode())


def test_partitions_are_hash_tagged_and_their_marks_share_the_slot(partitioned):
    streams = domain_streams("feed")
    assert streams == [f"{partitioned.EVENTS_STREAM_PREFIX}:{{feed:{i}}}" for i in range(PARTITIONS)]
    assert len({key_slot(s.encode()) for s in streams}) == PARTITIONS, "one slot per partition"
    for stream in streams:
        assert key_slot(sent_key(stream).encode()) == key_slot(stream.encode())
        assert domain_of(stream) == ("feed", streams.index(stream))
    assert len(all_streams()) == PARTITIONS * 3  # accounts, chat, feed
    assert partition_of(12345) == partition_of(12345) < PARTITIONS


def test_an_entitys_events_stay_in_order_in_one_partition(transactional_db, partitioned, redis_client):
    author, fans = make_user(), [make_user() for _ in range(3)]
    posts = [make_post(author, body=f"p{i}") for i in range(12)]
    target = posts[0]
    for body in ("v2", "v3"):
        target.body = body
        target.save()
    for fan in fans:
        Reaction.objects.create(user=fan, post=target, kind="like")

    by_stream = _feed_events(redis_client)
    assert sum(1 for events in by_stream.values() if events) > 1, "posts spread over partitions"
    home = stream_for("feed", feed_events.post_deleted(target.pk, author.pk))
    for stream, events in by_stream.items():
        mine = [e for e in events if feed_events.partition_key(e) == target.pk]
        assert (stream == home) == bool(mine), "all of one post's events in its own partition"
    ordered = [e for e in by_stream[home] if feed_events.partition_key(e) == target.pk]
    post_versions = [e.version for e in ordered if e.type in feed_events.POST_TYPES]
    reaction_versions = [e.version for e in ordered if e.type in feed_events.STATS_TYPES]
    assert post_versions == sorted(post_versions)
    assert len(post_versions) == 3
    assert reaction_versions == sorted(reaction_versions)
    assert len(reaction_versions) == 3


def test_marks_per_partition_tell_the_relay_what_to_send(transactional_db, partitioned, redis_client):
    author = make_user()
    for i in range(10):
        make_post(author, body=f"p{i}")
    assert outbox_backlog() == 0, "every mark found in its partition's set"
    by_stream = _feed_events(redis_client)
    lost = next(stream for stream, events in by_stream.items() if events)
    redis_client.delete(sent_key(lost))  # that partition's marks did not survive (a failover)
    assert outbox_backlog() == len(by_stream[lost])
    assert relay_outbox(min_age_seconds=0) == len(by_stream[lost]), "only the unmarked rows are sent again"
    assert outbox_backlog() == 0
    assert redis_client.xlen(lost) == 2 * len(by_stream[lost])


def test_a_worker_consumes_and_trims_every_partition(pipeline_worker, redis_client):
    author = make_user()
    for i in range(16):
        make_post(author, body=f"p{i}")
    used = [s for s, events in _feed_events(redis_client).items() if events]

    def drained():
        for stream in used:
            group = redis_client.xinfo_groups(stream)[0]
            if group["pending"] or group["lag"]:
                return False
        return True

    eventually(drained, timeout=10.0)
    removed = trim_streams(redis_client)
    assert sum(removed[s] for s in used) == 16
    assert {entry["stream"] for entry in stream_report(redis_client)} == set(all_streams())


def test_dead_letters_replay_to_their_partition(transactional_db, partitioned, redis_client):
    target = domain_streams("feed")[2]
    redis_client.xadd(dead_letter_stream(), {"stream": target, "event": b"payload", "error": "x"})
    assert replay_dead_letters(redis_client) == 1
    assert redis_client.xrange(target)[0][1][EVENT_FIELD] == b"payload"
