import time

from core.events import stream_name
from feed import queries
from feed.cache import PostDetailCache
from tests.factories import make_post


def test_post_save_publishes_and_writes_through(transactional_db, redis_client):
    post = make_post(body="first")
    assert redis_client.xlen(stream_name("feed")) == 1
    details = PostDetailCache()
    details.get_post(post.pk, lambda: queries.post_detail_or_none(post.pk))  # a reader fills it
    post.body = "second"
    post.save()  # its event updates the cached entry (events never create one)
    cached = details.get(details.detail_key(post.pk))
    assert cached["body"] == "second"


def test_worker_consumes(pipeline_worker, redis_client):
    post = make_post(body="x")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        groups = redis_client.xinfo_groups(stream_name("feed"))
        if groups and groups[0]["pending"] == 0 and groups[0]["last-delivered-id"] != b"0-0":
            break
        time.sleep(0.05)
    assert groups[0]["last-delivered-id"] != b"0-0"
    assert post.pk
