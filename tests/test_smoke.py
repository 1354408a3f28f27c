import time

from core.events import stream_name
from feed.cache import PostDetailCache
from tests.factories import make_post


def test_post_save_publishes_and_writes_through(transactional_db, redis_client):
    post = make_post(body="first")
    assert redis_client.xlen(stream_name("feed")) == 1
    cached = PostDetailCache().get(PostDetailCache().detail_key(post.pk))
    assert cached["body"] == "first"


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
