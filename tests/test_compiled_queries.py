"""CompiledQuery (core/compiled_queries.py): a queryset compiled once per shape answers exactly as the
ORM does, with one query and no build per call; a shape it cannot compile runs through the ORM."""

import pytest
from django.db import connection
from django.db.models import Value
from django.test.utils import CaptureQueriesContext

from core.compiled_queries import CompiledQuery
from feed import queries
from feed.models import Follow, Post
from tests.factories import make_user

pytestmark = pytest.mark.django_db


class Counted:
    """A build that counts its calls."""

    def __init__(self, build):
        self.build, self.calls = build, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.build(*args, **kwargs)


def _posts_of(author_ids, *, limit):
    columns = ("id", "author_id", "author__username", "body", "created_at", "version")
    return Post.objects.filter(author_id__in=author_ids).order_by("-id").values_list(*columns)[:limit]


@pytest.fixture
def authors():
    people = [make_user(f"writer{i}") for i in range(3)]
    for i in range(9):
        Post.objects.create(author=people[i % 3], body=f"post {i}")
    return people


def test_rows_are_the_orms_for_every_shape_and_value(authors):
    compiled = CompiledQuery(_posts_of)
    a, b, c = (person.pk for person in authors)
    for ids, limit in [
        ([a], 5),
        ([b], 5),
        ([a, c], 5),
        ([c, b], 2),
        ([b, a, c], 9),
        ([a, a], 3),
        ([10**9], 5),
    ]:
        assert compiled(ids, limit=limit) == list(_posts_of(ids, limit=limit)), (ids, limit)
    # (1 id, 5), (2 ids, 5), (2, 2), (3, 9), (2, 3): one plan per shape, whatever the values
    assert compiled.compiled_shapes() == 5


def test_a_compiled_shape_runs_one_query_and_builds_nothing(authors):
    build = Counted(_posts_of)
    compiled = CompiledQuery(build)
    compiled([authors[0].pk], limit=3)
    assert build.calls == 1
    with CaptureQueriesContext(connection) as queries_run:
        rows = compiled([authors[1].pk], limit=3)
    assert build.calls == 1  # not built again: the SQL was reused with the new id
    assert len(queries_run) == 1
    assert [row[2] for row in rows] == ["writer1"] * 3


def test_datetimes_come_out_as_the_orm_converts_them(authors):
    compiled = CompiledQuery(_posts_of)
    ids = [person.pk for person in authors]
    compiled(ids, limit=9)  # compiled
    rows = compiled(ids, limit=9)
    expected = list(_posts_of(ids, limit=9))
    assert [row[4] for row in rows] == [row[4] for row in expected]
    assert all(row[4].tzinfo is not None for row in rows)


def test_flat_values_lists_give_values():
    bob, ann, cy = make_user("bob"), make_user("ann"), make_user("cy")
    Follow.objects.create(follower=bob, followee=ann)
    Follow.objects.create(follower=bob, followee=cy)
    compiled = CompiledQuery(
        lambda user_id: (
            Follow.objects.filter(follower_id=user_id).order_by("id").values_list("followee_id", flat=True)
        )
    )
    assert compiled(bob.pk) == [ann.pk, cy.pk]
    assert compiled(bob.pk) == [ann.pk, cy.pk]
    assert compiled(ann.pk) == []


def test_what_it_cannot_compile_runs_through_the_orm(authors):
    a = authors[0].pk
    build = Counted(_posts_of)
    compiled = CompiledQuery(build)
    assert compiled([], limit=5) == []  # an empty IN: the ORM knows it matches nothing
    assert compiled({a}, limit=5) == list(_posts_of([a], limit=5))  # not a list of ints: no stand-ins
    assert compiled.compiled_shapes() == 0

    def twice(post_id):  # the value lands in the parameters twice (once wrapped: Int4 on PostgreSQL)
        return Post.objects.filter(pk=post_id).annotate(again=Value(post_id)).values_list("id", "again")

    post = Post.objects.filter(author_id=a).first()
    repeated = CompiledQuery(twice)
    assert repeated(post.pk) == [(post.pk, post.pk)]
    assert repeated(post.pk) == [(post.pk, post.pk)]
    assert repeated.compiled_shapes() == 0

    def one_twice_one_never(post_id, unused):  # as many stand-ins come out as went in, not each once
        return Post.objects.filter(pk=post_id).filter(pk__in=[post_id]).values_list("id", "id")

    odd = CompiledQuery(one_twice_one_never)
    assert odd(post.pk, 7) == [(post.pk, post.pk)]
    assert odd(10**9, 7) == []
    assert odd.compiled_shapes() == 0

    def sliced(count):  # a parameter used as a slice is written into the SQL: never a stand-in
        return Post.objects.order_by("id").values_list("id", flat=True)[:count]

    by_slice = CompiledQuery(sliced)
    assert by_slice(2) == list(Post.objects.order_by("id").values_list("id", flat=True)[:2])
    assert by_slice(3) == list(Post.objects.order_by("id").values_list("id", flat=True)[:3])
    assert by_slice.compiled_shapes() == 0


def test_a_build_that_returns_instances_is_refused(authors):
    with pytest.raises(TypeError, match="values_list"):
        CompiledQuery(lambda author_id: Post.objects.filter(author_id=author_id))(authors[0].pk)


def test_the_plans_are_bounded(authors):
    compiled = CompiledQuery(_posts_of, max_shapes=2)
    ids = [person.pk for person in authors]
    for limit in range(1, 7):
        assert compiled(ids, limit=limit) == list(_posts_of(ids, limit=limit))
    assert compiled.compiled_shapes() <= 2


def test_the_feed_queries_answer_as_their_orm_querysets(authors):
    reader = make_user("reader")
    for person in authors[:2]:
        Follow.objects.create(follower=reader, followee=person)
    Post.objects.create(author=reader, body="mine")
    for _ in range(2):  # the second time from compiled SQL
        page = queries.feed_page(reader.pk, 1, 4)
        assert [item["body"] for item in page] == ["mine", "post 7", "post 6", "post 4"]
        assert queries.feed_before(reader.pk, page[-1]["id"], 3) == queries.feed_page(reader.pk, 2, 4)[:3]
        stats = queries.post_stats_many([item["id"] for item in page])
        assert sorted(stats) == sorted(item["id"] for item in page)
        assert stats[page[0]["id"]]["version"] == 0
