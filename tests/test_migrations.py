"""The user model's move from feed to accounts changed Django's migration state, not the database.

A database migrated by the code before the move (users and tokens in feed's state, no accounts app)
must migrate forward with a plain `migrate` and keep every row; a fresh one must build the same
schema; the models and the migrations must agree.
"""

import hashlib
from io import StringIO

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.exceptions import InconsistentMigrationHistory
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from accounts.auth import user_for_token
from accounts.models import AppUser, AuthToken
from chat.models import Message
from feed.models import Post

# The leaf migrations of feed and chat before the move; the old code had no accounts app.
OLD_LEAVES = [("feed", "0002_auth_token"), ("chat", "0002_initial")]
MOVE = [("accounts", "0001_initial"), ("chat", "0003_users_moved_to_accounts")]
MOVE += [("feed", "0003_users_moved_to_accounts")]


def _migrate_back_to_the_old_code() -> None:
    """Leave the database as the old code's `migrate` left it."""
    # accounts' own migrations after the move change the tables: undo them first.
    MigrationExecutor(connection).migrate([MOVE[0]])
    MigrationExecutor(connection).migrate(OLD_LEAVES)
    # accounts.0001 is state only: unrecording it is all it takes to undo it.
    MigrationRecorder(connection).record_unapplied(*MOVE[0])


@pytest.mark.django_db(transaction=True)
def test_a_database_migrated_by_the_old_code_migrates_forward_and_keeps_its_rows():
    _migrate_back_to_the_old_code()
    old = MigrationLoader(connection).project_state(OLD_LEAVES).apps
    assert {m._meta.label for m in old.get_models()} >= {"feed.AppUser", "feed.AuthToken"}
    assert not [m for m in old.get_models() if m._meta.app_label == "accounts"]
    assert ContentType.objects.filter(app_label="feed", model="appuser").exists()

    user = old.get_model("feed", "AppUser").objects.create(
        username="old-timer", password=make_password("pass-word-123"), bio="was here first"
    )
    old.get_model("feed", "AuthToken").objects.create(
        user=user, digest=hashlib.sha256(b"old-token").hexdigest()
    )
    post = old.get_model("feed", "Post").objects.create(author=user, body="before the move")
    conversation = old.get_model("chat", "Conversation").objects.create(title="old")
    old.get_model("chat", "Participant").objects.create(conversation=conversation, user=user)
    message = old.get_model("chat", "Message").objects.create(
        conversation=conversation, sender=user, body="hi"
    )
    # Plain Django would refuse that database: admin.0001 now depends on accounts.0001.
    with pytest.raises(InconsistentMigrationHistory):
        MigrationLoader(connection).check_consistent_history(connection)

    out = StringIO()
    call_command("migrate", stdout=out)

    assert "Recorded accounts.0001_initial as applied" in out.getvalue()
    applied = MigrationRecorder(connection).applied_migrations()
    assert all(key in applied for key in MOVE)
    moved = AppUser.objects.get(pk=user.pk)
    assert (moved.username, moved.bio) == ("old-timer", "was here first")
    assert moved.check_password("pass-word-123")
    assert user_for_token("old-token") == moved
    assert AuthToken.objects.get().user_id == moved.pk
    assert Post.objects.get(pk=post.pk).author == moved
    assert Message.objects.get(pk=message.pk).sender == moved
    assert list(moved.conversations.values_list("pk", flat=True)) == [conversation.pk]
    # The content types moved with the models (same rows), so permissions still point at them.
    assert not ContentType.objects.filter(app_label="feed", model__in=["appuser", "authtoken"]).exists()
    user_type = ContentType.objects.get(app_label="accounts", model="appuser")
    assert Permission.objects.filter(content_type=user_type).count() == 4
    assert not Permission.objects.filter(codename="add_appuser").exclude(content_type=user_type).exists()
    call_command("migrate", stdout=StringIO())  # nothing left to do, nothing to adopt twice


def test_the_moved_models_keep_their_tables():
    assert AppUser._meta.db_table == "feed_appuser"
    assert AuthToken._meta.db_table == "feed_authtoken"
    assert AppUser._meta.get_field("groups").remote_field.through._meta.db_table == "feed_appuser_groups"


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())
