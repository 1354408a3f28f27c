"""The event pipeline end to end: signals -> outbox -> streams -> a real Celery worker -> cache.

Apply-on-commit is switched off here (unless a test says otherwise), so every cache effect seen
in these tests was made by the worker consuming the stream.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.db import connection, transaction

from core.events import (
    FINAL_VERSION,
    Event,
    EventHandler,
    HandlerRegistry,
    apply,
    dead_letter_stream,
    outbox_backlog,
    publish,
    relay_outbox,
    stream_name,
)
from core.events.streams import EVENT_FIELD, domain_streams, trim_streams
from core.models import OutboxEvent
from feed import events as feed_events
from feed import queries
from feed.cache import PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.models import Follow, Post, Reaction
from feed.payloads import post_stats
from tests.factories import make_post, make_user
from tests.polling import eventually
from tests.subprocesses import database_url
from workers.consumer import StreamConsumer

ROOT = Path(__file__).resolve().parent.parent
details = PostDetailCache()
counts = ReactionCountsCache()
feeds = UserFeedCache()


@pytest.fixture
def pipeline_settings(settings):
    settings.EVENTS_APPLY_ON_COMMIT = False
    settings.EVENTS_BLOCK_MS = 100
    settings.EVENTS_CLAIM_IDLE_MS = 300
    settings.EVENTS_MAX_DELIVERIES = 3
    return settings


def cached_detail(post_id: int):
    return details.get(details.detail_key(post_id))


def read_detail(post_id: int):
    """A reader's GET: the cached detail, or the database's, filled (events never create one)."""
    return details.get_post(post_id, lambda: queries.post_detail_or_none(post_id))


def author_stamp(post):
    """The author's feed stamp, which every post.* event renews: with apply-on-commit off it
    appears once the worker applied one (a detail nobody read is not created by its event)."""
    return feeds.client.get(feeds.stamp_key(post.author_id))


def stream_events(client, domain: str = "feed") -> list[Event]:
    return [Event.decode(fields[EVENT_FIELD]) for _, fields in client.xrange(stream_name(domain))]


def group_idle(client) -> bool:
    groups = client.xinfo_groups(stream_name("feed"))
    return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0


# --- publishing ----------------------------------------------------------------------------


def test_save_publishes_one_versioned_event_after_commit(transactional_db, pipeline_settings, redis_client):
    with transaction.atomic():
        make_post(body="one")
        assert redis_client.xlen(stream_name("feed")) == 0, "published before commit"
        assert OutboxEvent.objects.count() == 1, "the outbox row shares the transaction"
    events = stream_events(redis_client)
    assert [(e.type, e.version) for e in events] == [(feed_events.POST_CREATED, 1)]
    assert events[0].data["post"]["body"] == "one"
    assert outbox_backlog() == 0, "the commit's round trip marked it sent"
    assert relay_outbox(min_age_seconds=0) == 0, "the relay only sweeps what was sent"
    assert OutboxEvent.objects.count() == 0


def test_rolled_back_save_publishes_nothing(transactional_db, pipeline_settings, redis_client):
    author = make_user()
    before = redis_client.xlen(stream_name("feed"))
    with pytest.raises(RuntimeError), transaction.atomic():
        Post.objects.create(author=author, body="never")
        raise RuntimeError("roll back")
    assert redis_client.xlen(stream_name("feed")) == before
    assert outbox_backlog() == 0
    assert not Post.objects.exists()


def test_rolled_back_savepoint_drops_only_its_own_events(transactional_db, pipeline_settings, redis_client):
    author = make_user()
    with transaction.atomic():
        kept = Post.objects.create(author=author, body="kept")
        with pytest.raises(RuntimeError), transaction.atomic():
            Post.objects.create(author=author, body="savepoint rolled back")
            raise RuntimeError("roll back the savepoint")
        also_kept = Post.objects.create(author=author, body="after the savepoint")
    bodies = [e.data["post"]["body"] for e in stream_events(redis_client)]
    assert bodies == ["kept", "after the savepoint"]
    assert {kept.pk, also_kept.pk} == set(Post.objects.values_list("pk", flat=True))


def test_one_commit_sends_all_its_events_in_one_round_trip(
    transactional_db, pipeline_settings, redis_client, monkeypatch
):
    """Counts the round trips the publisher makes on a real client (wrapped, not replaced)."""
    import core.events.roundtrip as roundtrip

    trips: list[list[str]] = []
    real_pipeline, real_command = redis_client.pipeline, redis_client.execute_command

    def counting_pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*a, **k):
            trips.append([str(args[0]) for args, _options in pipe.commands])
            return execute(*a, **k)

        pipe.execute = counted
        return pipe

    def counting_command(*args, **kwargs):
        trips.append([str(args[0])])
        return real_command(*args, **kwargs)

    monkeypatch.setattr(redis_client, "pipeline", counting_pipeline)
    monkeypatch.setattr(redis_client, "execute_command", counting_command)
    monkeypatch.setattr(roundtrip, "events_client", lambda: redis_client)
    author = make_user()
    with transaction.atomic():
        for i in range(20):
            Post.objects.create(author=author, body=f"p{i}")
        assert trips == [], "the transaction itself never talks to Redis"
    assert len(trips) == 1, trips
    assert trips[0].count("XADD") == 20
    assert trips[0].count("SADD") == 1  # the 20 outbox rows marked sent
    monkeypatch.undo()
    assert redis_client.xlen(stream_name("feed")) == 20


def test_queryset_update_delete_and_bulk_create_publish(transactional_db, pipeline_settings, redis_client):
    author = make_user()
    posts = Post.objects.bulk_create([Post(author=author, body=f"b{i}") for i in range(3)])
    assert [e.type for e in stream_events(redis_client)] == [feed_events.POST_CREATED] * 3

    assert Post.objects.filter(author=author).update(body="bulk edit") == 3
    updated = [e for e in stream_events(redis_client) if e.type == feed_events.POST_UPDATED]
    assert sorted(e.data["post"]["id"] for e in updated) == sorted(p.pk for p in posts)
    assert {e.version for e in updated} == {2}
    assert {e.data["post"]["body"] for e in updated} == {"bulk edit"}
    assert set(Post.objects.values_list("version", flat=True)) == {2}

    Post.objects.filter(pk=posts[0].pk).delete()
    deleted = [e for e in stream_events(redis_client) if e.type == feed_events.POST_DELETED]
    assert [(e.data["post_id"], e.version) for e in deleted] == [(posts[0].pk, FINAL_VERSION)]


def test_concurrent_saves_of_one_row_get_distinct_versions(transactional_db, pipeline_settings, redis_client):
    post = make_post(body="v1")
    for body in ("v2", "v3"):
        fresh = Post.objects.get(pk=post.pk)
        fresh.body = body
        fresh.save()
    stale = Post.objects.get(pk=post.pk)
    stale.version = 1  # an in-memory copy that is behind must not reuse a version
    stale.body = "v4"
    stale.save()
    versions = [e.version for e in stream_events(redis_client)]
    assert versions == [1, 2, 3, 4]


# --- consuming -----------------------------------------------------------------------------


def test_worker_writes_created_updated_and_deleted_posts_through(pipeline_worker, redis_client):
    post = make_post(body="hello")
    eventually(lambda: author_stamp(post), timeout=1.0)  # post.created applied: it creates no entry
    assert cached_detail(post.pk) is None
    assert read_detail(post.pk)["body"] == "hello"  # a reader fills it; events keep it current

    post.body = "edited"
    post.save()
    eventually(lambda: (cached_detail(post.pk) or {}).get("body") == "edited", timeout=1.0)
    assert cached_detail(post.pk)["version"] == 2

    post_id = post.pk
    post.delete()
    eventually(lambda: (cached_detail(post_id) or {}).get("deleted") is True, timeout=1.0)
    assert details.get_post(post_id, loader=lambda: pytest.fail("a tombstone needs no DB read")) is None


def test_reactions_and_follows_reach_the_cache(pipeline_worker, redis_client):
    author, fan = make_user(), make_user()
    post = make_post(author)
    counts.get_counts(post.pk, lambda: queries.post_stats_or_none(post.pk))  # a reader filled them
    Reaction.objects.create(user=fan, post=post, kind="love")
    stats = eventually(
        lambda: (lambda c: c if c["reactions"]["love"] else None)(counts.get(counts.counts_key(post.pk))),
        timeout=1.0,
    )
    assert stats["reactions"]["love"] == 1
    stamp_before = redis_client.get(feeds.stamp_key(fan.pk))
    Follow.objects.create(follower=fan, followee=author)
    eventually(lambda: redis_client.get(feeds.stamp_key(fan.pk)) != stamp_before, timeout=1.0)


def test_consumer_killed_mid_batch_is_reclaimed_by_another(
    pipeline_settings, transactional_db, redis_client, celery_app
):
    """A real process reads a batch and is SIGKILLed before acking; the worker reclaims it."""
    post = make_post(body="orphaned")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "themoon.settings_test"}
    env["DATABASE_URL"] = database_url()
    script = (
        "import django, sys, time; django.setup();"
        "from workers.consumer import StreamConsumer;"
        "c = StreamConsumer(name='doomed'); c.ensure_groups();"
        "entries = c.read(pending=False); print('READ', len(entries), flush=True); time.sleep(60)"
    )
    doomed = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert doomed.stdout.readline().split() == ["READ", "1"]
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    pending = redis_client.xpending(stream_name("feed"), "cache")
    assert pending["pending"] == 1
    assert pending["consumers"][0]["name"] == b"doomed"
    assert author_stamp(post) is None

    from celery.contrib.testing.worker import start_worker

    with start_worker(celery_app, pool="threads", perform_ping_check=False):
        eventually(lambda: author_stamp(post), timeout=5.0)
        eventually(lambda: redis_client.xpending(stream_name("feed"), "cache")["pending"] == 0, timeout=5.0)
    assert read_detail(post.pk)["body"] == "orphaned"


def _snapshot(client) -> dict:
    """Every cache key's value, except streams and feed stamps (random tokens)."""
    state = {}
    for key in client.scan_iter(count=1000):
        if key.startswith(b"themoon:") or key.endswith(b":stamp"):
            continue
        state[key] = client.get(key)
    return state


def test_duplicate_and_reordered_delivery_give_the_same_cache(
    transactional_db, pipeline_settings, redis_client
):
    author, fans = make_user(), [make_user() for _ in range(3)]
    post = make_post(author, body="v1")
    for body in ("v2", "v3"):
        post.body = body
        post.save()
    for fan, kind in zip(fans, ("like", "love", "wow"), strict=True):
        Reaction.objects.create(user=fan, post=post, kind=kind)
    Reaction.objects.filter(user=fans[0]).delete()
    doomed = make_post(author, body="to delete")
    doomed_id = doomed.pk
    doomed.delete()
    raw = [fields[EVENT_FIELD] for _, fields in redis_client.xrange(stream_name("feed"))]

    first = {Event.decode(p).data["post"]["id"]: Event.decode(p).data["post"] for p in raw[:1]}
    first[doomed_id] = next(
        e.data["post"] for e in map(Event.decode, raw) if e.data.get("post", {}).get("id") == doomed_id
    )

    def apply(payloads: list[bytes]) -> dict:
        for key in redis_client.scan_iter(match="feed:*"):
            redis_client.delete(key)
        # What readers had filled before the events came: events update present entries only.
        for post_id, detail in first.items():
            details.set(details.detail_key(post_id), detail)
            counts.set(counts.counts_key(post_id), post_stats(post_id, 0))
        consumer = StreamConsumer(name="replayer")
        pipe = redis_client.pipeline(transaction=False)
        for payload in payloads:
            event = Event.decode(payload)
            consumer.handlers.handler_for(event.type).apply(pipe, event)
        pipe.execute()
        return _snapshot(redis_client)

    in_order = apply(raw)
    assert in_order, "the events produced cache entries"
    assert apply([p for p in raw for _ in range(2)]) == in_order
    assert apply(list(reversed(raw))) == in_order
    assert apply(raw + list(reversed(raw))) == in_order
    final = details.get(details.detail_key(post.pk))
    assert final["body"] == "v3"
    assert counts.get(counts.counts_key(post.pk))["reactions"] == {
        "like": 0,
        "love": 1,
        "laugh": 0,
        "wow": 1,
        "sad": 0,
        "angry": 0,
    }
    assert details.get(details.detail_key(doomed_id))["deleted"] is True


def test_poison_events_are_dead_lettered_and_the_rest_flows(pipeline_worker, redis_client):
    feed = stream_name("feed")
    redis_client.xadd(feed, {EVENT_FIELD: b"{not json"})
    redis_client.xadd(feed, {EVENT_FIELD: Event("post.exploded", 1, {}).encode()})
    # Decodes, has a handler, but its payload breaks the handler every time.
    redis_client.xadd(feed, {EVENT_FIELD: Event(feed_events.POST_UPDATED, 2, {"oops": 1}).encode()})
    post = make_post(body="after the poison")
    eventually(lambda: author_stamp(post), timeout=5.0)  # its post.created was applied
    assert read_detail(post.pk)["body"] == "after the poison"
    dead = eventually(
        lambda: (lambda d: d if len(d) == 3 else None)(redis_client.xrange(dead_letter_stream())), timeout=5.0
    )
    errors = [fields[b"error"].decode() for _, fields in dead]
    assert errors[0].startswith("InvalidEvent")
    assert errors[1].startswith("UnknownEventType")
    assert errors[2].startswith("KeyError")
    eventually(lambda: redis_client.xpending(feed, "cache")["pending"] == 0, timeout=5.0)


def test_replay_dead_requeues_dead_letters(transactional_db, pipeline_settings, redis_client):
    from django.core.management import call_command

    redis_client.xadd(
        dead_letter_stream(), {"stream": stream_name("feed"), "event": b"payload", "error": "x"}
    )
    call_command("streams", "--replay-dead")
    assert redis_client.xlen(dead_letter_stream()) == 0
    assert redis_client.xrange(stream_name("feed"))[0][1][EVENT_FIELD] == b"payload"


# --- faults at commit ----------------------------------------------------------------------


def test_redis_down_at_commit_keeps_the_event_in_the_outbox_until_relayed(
    pipeline_worker, redis_client, monkeypatch, unused_port
):
    import core.events.roundtrip as roundtrip

    dead_redis = redis.Redis(port=unused_port, socket_connect_timeout=0.05, socket_timeout=0.05)
    monkeypatch.setattr(roundtrip, "events_client", lambda: dead_redis)
    post = make_post(body="written while redis was away")  # the save itself succeeds
    assert Post.objects.filter(pk=post.pk).exists()
    assert outbox_backlog() == 1
    monkeypatch.undo()
    from core.caching.breaker import breaker

    breaker.reset()
    time.sleep(0.01)
    assert relay_outbox(min_age_seconds=0) == 1
    assert outbox_backlog() == 0
    eventually(lambda: author_stamp(post), timeout=2.0)  # the relayed event was applied
    assert read_detail(post.pk)["body"] == "written while redis was away"


def test_next_successful_commit_drains_the_outbox_after_an_outage(
    transactional_db, pipeline_settings, redis_client, monkeypatch, unused_port
):
    import core.events.roundtrip as roundtrip
    from core.caching.breaker import breaker

    dead_redis = redis.Redis(port=unused_port, socket_connect_timeout=0.05, socket_timeout=0.05)
    monkeypatch.setattr(roundtrip, "events_client", lambda: dead_redis)
    stranded = make_post(body="stranded")
    monkeypatch.undo()
    breaker.reset()
    make_post(body="after recovery")
    bodies = sorted(e.data["post"]["body"] for e in stream_events(redis_client))
    assert bodies == ["after recovery", "stranded"]
    assert outbox_backlog() == 0
    assert stranded.pk


def test_a_refused_xadd_whose_sent_mark_cannot_be_taken_back_never_raises_out_of_the_commit(
    transactional_db, pipeline_settings, redis_client
):
    """Not a connection error: the stream and the sent-mark set are of the wrong type, so the XADD is
    refused and taking back its mark (SREM) fails too. The commit still returns normally (Django's
    robust on-commit handler must be able to log our callback) and the row waits for the relay."""
    from core.events.outbox import sent_key

    redis_client.set(stream_name("feed"), b"not a stream")
    redis_client.set(sent_key(stream_name("feed")), b"not a set")
    with transaction.atomic():
        post = make_post(body="refused")
    assert Post.objects.filter(pk=post.pk).exists()
    assert OutboxEvent.objects.count() == 1
    assert outbox_backlog() == 1


def test_publish_outside_a_transaction_still_goes_through_the_outbox(
    transactional_db, pipeline_settings, redis_client
):
    assert not connection.in_atomic_block
    publish(feed_events.follow_created(1, 2), feed_events.DOMAIN)
    assert [e.type for e in stream_events(redis_client)] == [feed_events.FOLLOW_CREATED]
    assert outbox_backlog() == 0


# --- consumer resilience and maintenance ---------------------------------------------------


def test_consumer_survives_losing_redis_and_stops_cleanly(transactional_db, pipeline_settings, unused_port):
    import threading

    dead_redis = redis.Redis(port=unused_port, socket_connect_timeout=0.05, socket_timeout=0.2)
    consumer = StreamConsumer(name="lonely", client=dead_redis)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "a Redis outage must not kill the consumer"
    consumer.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_trim_never_drops_unacknowledged_entries(transactional_db, pipeline_settings, redis_client):
    consumer = StreamConsumer(name="trimmer")
    consumer.ensure_groups()
    for i in range(5):
        make_post(body=f"t{i}")
    entries = consumer.read(pending=False)
    assert len(entries) == 5
    consumer.process(entries[:3])  # acks three, two stay pending
    trim_streams(redis_client)
    remaining = [_id.decode() for _id, _ in redis_client.xrange(stream_name("feed"))]
    assert remaining == [e.entry_id for e in entries[3:]]
    make_post(body="unread")
    trim_streams(redis_client)
    assert redis_client.xlen(stream_name("feed")) == 3, "pending and undelivered entries are kept"


def test_sigterm_finishes_the_batch_and_exits_cleanly(
    transactional_db, pipeline_settings, redis_client, tmp_path
):
    """A real `celery -A themoon worker` process: consumes, then exits 0 on SIGTERM."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "themoon.settings_test", "DATABASE_URL": database_url()}
    env["EVENTS_BLOCK_MS"] = "100"
    env["EVENTS_APPLY_ON_COMMIT"] = "false"
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "themoon", "worker", "--pool", "solo", "--loglevel", "INFO"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        post = make_post(body="for the real worker")
        eventually(lambda: author_stamp(post), timeout=20.0)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    output = log.read_text()
    assert "stream consumer" in output, output[-2000:]
    assert "stopped after" in output, output[-2000:]


def test_idle_consumers_without_pending_entries_leave_the_group(
    transactional_db, pipeline_settings, redis_client
):
    gone, done = StreamConsumer(name="gone"), StreamConsumer(name="done")
    gone.ensure_groups()
    make_post(body="left pending by gone")
    assert len(gone.read(pending=False)) == 1  # never acknowledged
    make_post(body="applied by done")
    done.process(done.read(pending=False))
    time.sleep(0.05)
    removed = StreamConsumer(name="janitor").forget_idle_consumers(min_idle_ms=10)
    names = {c["name"] for c in redis_client.xinfo_consumers(stream_name("feed"), "cache")}
    assert names == {b"gone"}, "only a consumer holding a pending entry stays"
    assert removed == 1


def test_update_refuses_to_set_a_version_by_hand(transactional_db, pipeline_settings, redis_client):
    post = make_post()
    with pytest.raises(ValueError, match="bumped by update"):
        Post.objects.filter(pk=post.pk).update(version=1)


class _KeyHandler(EventHandler):
    """Sets one key per event; an event whose data says so queues its key, then raises."""

    event_types = ("test.key",)

    def apply(self, pipe, event: Event) -> None:
        pipe.set(event.data["key"], event.data["key"], ex=60)
        if event.data.get("fail"):
            raise RuntimeError("handler bug")


def _key_events(prefix: str) -> list[Event]:
    return [
        Event("test.key", 1, {"key": f"{prefix}:a"}),
        Event("test.key", 1, {"key": f"{prefix}:poison", "fail": True}),
        Event("test.key", 1, {"key": f"{prefix}:b"}),
    ]


def test_apply_discards_only_the_failing_events_commands(redis_client):
    handlers = HandlerRegistry()
    handlers.register(_KeyHandler())
    batch = _key_events("apply")
    pipe = redis_client.pipeline(transaction=False)
    effects = apply(pipe, batch, handlers)
    effects.collect(pipe.execute(raise_on_error=False))
    assert [error is not None for error in effects.errors] == [False, True, False]
    assert [event for event, _ in effects.failed()] == [batch[1]]
    assert redis_client.get("apply:a") == b"apply:a"
    assert redis_client.get("apply:b") == b"apply:b"
    assert redis_client.exists("apply:poison") == 0


def test_apply_refuses_a_pipeline_with_commands_already_queued(redis_client):
    pipe = redis_client.pipeline(transaction=False)
    pipe.get("something")
    with pytest.raises(ValueError, match="empty pipeline"):
        apply(pipe, [], HandlerRegistry())


def test_commit_path_applies_with_the_same_policy_as_the_consumer(
    transactional_db, settings, redis_client, monkeypatch
):
    """The post-commit effects use core.events.apply too: the failing event's own command is
    discarded, the others land, and every event is still sent to its stream."""
    import core.events.publisher as publisher

    handlers = HandlerRegistry()
    handlers.register(_KeyHandler())
    monkeypatch.setattr(publisher, "registry", handlers)  # what the commit path hands to apply()
    settings.EVENTS_APPLY_ON_COMMIT = True
    with transaction.atomic():
        for event in _key_events("commit"):
            publish(event, feed_events.DOMAIN)
    assert redis_client.get("commit:a") == b"commit:a"
    assert redis_client.get("commit:b") == b"commit:b"
    assert redis_client.exists("commit:poison") == 0
    assert [e.type for e in stream_events(redis_client)] == ["test.key"] * 3
    assert outbox_backlog() == 0


def test_consumer_fails_only_the_event_whose_handler_raised(transactional_db, redis_client):
    handlers = HandlerRegistry()
    handlers.register(_KeyHandler())
    for event in _key_events("consumer"):
        redis_client.xadd(stream_name(feed_events.DOMAIN), {EVENT_FIELD: event.encode()})
    consumer = StreamConsumer(name="policy", handlers=handlers, streams=[stream_name(feed_events.DOMAIN)])
    consumer.ensure_groups()
    assert consumer.process(consumer.read(pending=False)) == 1  # the poison stays pending, for a retry
    assert redis_client.get("consumer:a") == b"consumer:a"
    assert redis_client.get("consumer:b") == b"consumer:b"
    assert redis_client.exists("consumer:poison") == 0


def test_failed_deliveries_are_counted_per_partition_entry(transactional_db, settings, redis_client):
    """Two partitions can hold the same entry id (XADDs in one millisecond): each failing entry gets
    its own EVENTS_MAX_DELIVERIES tries, not a share of the other's."""
    settings.EVENTS_STREAM_PARTITIONS = 2
    settings.EVENTS_MAX_DELIVERIES = 2
    handlers = HandlerRegistry()
    handlers.register(_KeyHandler())
    streams = domain_streams(feed_events.DOMAIN)
    for index, stream in enumerate(streams):
        event = Event("test.key", 1, {"key": f"twin:{index}", "fail": True})
        redis_client.xadd(stream, {EVENT_FIELD: event.encode()}, id="1-1")
    consumer = StreamConsumer(name="twins", handlers=handlers, streams=streams)
    consumer.ensure_groups()
    assert consumer.process(consumer.read(pending=False)) == 2  # both retried: a first failure each
    assert redis_client.xlen(dead_letter_stream()) == 0
    assert consumer.process(consumer.read(pending=True)) == 0  # the second: both dead-lettered
    assert redis_client.xlen(dead_letter_stream()) == 2
