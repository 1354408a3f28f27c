"""seed_demo: the shape of the demo data, no events, refusal and --append."""

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, F

from accounts.models import AppUser
from core.events import stream_name
from feed import queries
from feed.models import Follow, Post, Reaction

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_seed_demo_builds_a_skewed_graph_without_publishing(redis_client):
    call_command("seed_demo", users=300, posts=3000, seed=7, verbosity=0)

    assert AppUser.objects.count() == 300
    assert Post.objects.count() == 3000
    assert Reaction.objects.exists()
    followers = sorted(
        Follow.objects.values("followee").annotate(n=Count("id")).values_list("n", flat=True), reverse=True
    )
    median = followers[len(followers) // 2]
    assert followers[0] >= 10 * median  # a few authors with many followers, most with few
    assert not Follow.objects.filter(follower=F("followee")).exists()
    assert redis_client.xlen(stream_name("feed")) == 0  # seeding bypasses the event pipeline
    user = AppUser.objects.annotate(n=Count("following")).order_by("-n").first()
    assert queries.feed_page(user.pk, 1, 20)
    assert user.check_password("demo-password")


def test_seed_demo_refuses_a_populated_database_unless_appending():
    call_command("seed_demo", users=20, posts=50, verbosity=0)
    with pytest.raises(CommandError, match="--append"):
        call_command("seed_demo", users=20, posts=50, verbosity=0)
    call_command("seed_demo", users=20, posts=50, append=True, verbosity=0)
    assert AppUser.objects.count() == 40
    assert Post.objects.count() == 100
