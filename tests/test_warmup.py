"""Popularity tracking, the warm-up (tasks and command), and the beat schedule."""

import threading
import time

import pytest
from django.core.management import call_command

from core.caching import FINAL_VERSION
from feed import queries
from feed.cache import PostDetailCache, ReactionCountsCache, UserFeedCache
from feed.models import Follow, Reaction
from feed.popularity import COMMENT, REACTION, PopularityTracker
from feed.tasks import warm_active_feeds, warm_popular_posts
from feed.warmup import warm_feeds, warm_posts
from tests.factories import make_post, make_user

details, counts, feeds = PostDetailCache(), ReactionCountsCache(), UserFeedCache()


@pytest.fixture
def tracker(monkeypatch):
    """The process-wide tracker, emptied (its buffer is process state)."""
    import feed.popularity
    import feed.warmup

    fresh = PopularityTracker()
    monkeypatch.setattr(feed.popularity, "tracker", fresh)
    monkeypatch.setattr(feed.warmup, "tracker", fresh)
    return fresh


def cached_posts(ids) -> set[int]:
    return {i for i in ids if details.get(details.detail_key(i)) is not None}


def test_popularity_ranks_what_was_viewed_and_reacted_to_most(redis_client, tracker):
    for _ in range(10):
        tracker.record_post(1)
    for _ in range(3):
        tracker.record_post(2)
    tracker.record_post(2, REACTION)
    tracker.record_post(2, REACTION)  # 3 views + 2 reactions = 9 points
    tracker.record_post(3, COMMENT)
    assert tracker.top_posts(3) == [1, 2, 3]
    assert tracker.top_posts(1) == [1]


def test_older_activity_counts_less(redis_client, tracker, settings):
    now = time.time()
    hours_ago = now - 12 * settings.POPULARITY_BUCKET_SECONDS
    for _ in range(10):
        tracker.record_post(1)
    tracker.flush(now=hours_ago)  # ten views, twelve hours ago (two half-lives: worth 2.5)
    for _ in range(4):
        tracker.record_post(2)
    tracker.flush(now=now)  # four views now
    assert tracker.top_posts(2, now=now) == [2, 1]


def test_popularity_stays_bounded(redis_client, tracker, settings):
    settings.POPULARITY_MAX_MEMBERS = 50
    for post_id in range(200):
        tracker.record_post(post_id)
    tracker.flush()
    key = tracker.bucket_key("posts", tracker.bucket())
    assert redis_client.zcard(key) == 50
    assert 0 < redis_client.ttl(key) <= settings.POPULARITY_BUCKET_SECONDS * settings.POPULARITY_BUCKETS


def test_recording_buffers_instead_of_a_round_trip_per_view(redis_client, settings):
    from tests.test_caching_strategies import recorder_for

    settings.POPULARITY_FLUSH_EVERY = 50
    client = recorder_for(redis_client)
    tracker = PopularityTracker(client=client)
    for _ in range(49):
        tracker.record_post(7)
    assert client.commands == [], "49 views, no round trip"
    tracker.record_post(7)  # the 50th point flushes, in one pipeline
    assert [c[0] for c in client.commands if c[0] != "GET"] == ["ZINCRBY", "ZREMRANGEBYRANK", "PEXPIRE"]
    assert redis_client.zscore(tracker.bucket_key("posts", tracker.bucket()), 7) == 50


def test_warm_up_fills_exactly_the_top_k_posts(transactional_db, redis_client, tracker, settings):
    settings.EVENTS_APPLY_ON_COMMIT = False  # start from an empty cache
    posts = [make_post(body=f"p{i}") for i in range(6)]
    for rank, post in enumerate(posts):
        for _ in range(10 - rank):
            tracker.record_post(post.pk)
    result = warm_posts(3)
    top = {p.pk for p in posts[:3]}
    assert cached_posts(p.pk for p in posts) == top
    assert {i for i in top if counts.get(counts.counts_key(i)) is not None} == top
    assert result.written == 6  # three details, three counts
    again = warm_posts(3)
    assert (again.written, again.skipped) == (0, 3), "what is current is not written again"


def test_warm_up_never_overwrites_a_newer_entry(transactional_db, redis_client, tracker, settings):
    settings.EVENTS_APPLY_ON_COMMIT = False
    post = make_post(body="in the database")
    newer = {**queries.post_detail_or_none(post.pk), "body": "newer than the db", "version": 99}
    details.set(details.detail_key(post.pk), newer)
    tracker.record_post(post.pk)
    warm_posts(1)
    assert details.get(details.detail_key(post.pk))["body"] == "newer than the db"
    tombstoned = make_post(body="deleted meanwhile")
    details.set(details.detail_key(tombstoned.pk), {"deleted": True, "version": FINAL_VERSION})
    tracker.record_post(tombstoned.pk, REACTION)
    warm_posts(2)
    assert details.get(details.detail_key(tombstoned.pk))["deleted"] is True


def test_warm_up_fills_the_feeds_of_active_users(transactional_db, redis_client, tracker, settings):
    author, reader, idle = make_user(), make_user(), make_user()
    Follow.objects.create(follower=reader, followee=author)
    make_post(author, body="for the reader")
    tracker.record_user(reader.pk)
    result = warm_feeds(5, size=20)
    assert result.written == 1
    served = feeds.get_feed(reader.pk, 1, 20, lambda: pytest.fail("a warmed page needs no DB read"))
    assert [item["body"] for item in served] == ["for the reader"]
    assert redis_client.get(feeds.page_key(idle.pk, 1, 20)) is None
    assert warm_feeds(5, size=20).skipped == 1


def test_without_popularity_data_the_database_ranks(transactional_db, redis_client, tracker, settings):
    settings.EVENTS_APPLY_ON_COMMIT = False
    quiet, loved = make_post(body="quiet"), make_post(body="loved")
    for _ in range(3):
        Reaction.objects.create(user=make_user(), post=loved)
    warm_posts(1)
    assert cached_posts([quiet.pk, loved.pk]) == {loved.pk}


def test_two_concurrent_warm_ups_do_the_work_once(transactional_db, redis_client, tracker, settings):
    settings.EVENTS_APPLY_ON_COMMIT = False
    posts = [make_post() for _ in range(30)]
    for post in posts:
        tracker.record_post(post.pk)
    import feed.warmup

    original = feed.warmup.warm_posts
    gate = threading.Event()

    def slow_warm(k, progress=None):
        gate.wait(5)
        return original(k, progress)

    results = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("feed.warmup.warm_posts", slow_warm)
        threads = [threading.Thread(target=lambda: results.append(warm_popular_posts(30))) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        gate.set()
        for thread in threads:
            thread.join()
    done = [r for r in results if "written" in r]
    assert len(done) == 1, results
    assert done[0]["written"] == 60
    assert any(r.get("skipped") == "another warm-up holds the lock" for r in results)


def test_warm_cache_command_reports_a_summary(transactional_db, redis_client, tracker, capsys):
    make_post()
    call_command("warm_cache", "--posts", "5", "--feeds", "5")
    out = capsys.readouterr().out
    assert "posts: 1 candidates" in out
    assert "keys written" in out
    call_command("warm_cache", "--posts", "5", "--feeds", "0")
    assert "1 posts skipped (already current)" in capsys.readouterr().out  # posts, not keys
    assert warm_active_feeds(5)["candidates"] == 1


def test_beat_schedule_names_tasks_that_exist():
    from themoon.celery import app

    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    expected = {"relay-outbox", "trim-streams", "reclaim-pending", "warm-popular-posts", "warm-active-feeds"}
    assert expected <= set(schedule)
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"{name} schedules unknown task {entry['task']}"
        assert entry["options"]["expires"] <= entry["schedule"], f"{name} could pile up"
