"""Private conversations and their messages."""

from typing import NamedTuple

from django.conf import settings
from django.db import connections, models

from core.models import VersionedModel, pending_statement


class MessageChange(NamedTuple):
    """What a message change's transaction learnt under the conversation's row lock."""

    version: int  # the conversation's version after this change
    sender: str | None  # the sender's username as committed (None: not asked for, or no such user)


class ConversationQuerySet(models.QuerySet):
    def message_changed(self, conversation_id: int, sender_id: int | None = None) -> MessageChange | None:
        """Bump the conversation's version for one message change, in the change's transaction;
        None if the conversation is gone (deleted in this transaction).

        One `UPDATE ... RETURNING`: the row lock it takes is held until commit, so the changes of
        one conversation get versions in commit order (a later version never commits first). With
        `sender_id` it also reads the sender's username under FOR SHARE (PostgreSQL): a concurrent
        rename either committed before (we read the new name) or waits for this commit (its
        `user.updated` then invalidates what this change wrote), so no event carries a name older
        than the last rename's event. (SQLite runs one writer at a time: a plain read is enough.)
        Inside a one-statement create the values are placeholders, filled when its statement runs.
        """
        connection = connections[self.db]
        quote = connection.ops.quote_name
        conversations = quote(Conversation._meta.db_table)
        users = quote(Message._meta.get_field("sender").related_model._meta.db_table)
        plan = pending_statement(self.db)
        if plan is not None:
            # A one-statement create (PostgreSQL): the same bump and read, folded into the message's
            # INSERT statement; the values are placeholders until it runs (core/one_statement.py).
            bump = f"UPDATE {conversations} SET version = version + 1 WHERE id = %s"  # noqa: S608
            version = plan.fold(f"{bump} RETURNING version::text AS value", [conversation_id])
            if sender_id is None:
                return MessageChange(version, None)
            sender = plan.fold(
                f"SELECT to_json(username)::text AS value FROM {users} WHERE id = %s FOR SHARE",  # noqa: S608
                [sender_id],
            )
            return MessageChange(version, sender)
        if sender_id is None:
            sql = f"UPDATE {conversations} SET version = version + 1 WHERE id = %s RETURNING version, NULL"  # noqa: S608
            params: list = [conversation_id]
        elif connection.vendor == "postgresql":
            sql = (
                f"WITH sender AS (SELECT username FROM {users} WHERE id = %s FOR SHARE) "  # noqa: S608
                f"UPDATE {conversations} SET version = version + 1 WHERE id = %s "
                "RETURNING version, (SELECT username FROM sender)"
            )
            params = [sender_id, conversation_id]
        else:
            sql = (
                f"UPDATE {conversations} SET version = version + 1 WHERE id = %s "  # noqa: S608
                f"RETURNING version, (SELECT username FROM {users} WHERE id = %s)"
            )
            params = [conversation_id, sender_id]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return None if row is None else MessageChange(row[0], row[1])


class Conversation(models.Model):
    """A conversation; `version` counts its message changes (see `message_changed`): a window of
    its messages filled from one snapshot knows which message events it already reflects."""

    participants = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Participant", related_name="conversations"
    )
    title = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    version = models.PositiveBigIntegerField(default=0, editable=False)

    objects = ConversationQuerySet.as_manager()

    def __str__(self) -> str:
        return f"conversation {self.pk}"


class Participant(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    # The newest message this participant has read: unread = messages with a higher id.
    last_read_message_id = models.BigIntegerField(default=0)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "user"], name="participant_once")]
        # "my conversations"
        indexes = [models.Index(fields=["user", "conversation"], name="participant_user_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.conversation_id}"


class Message(VersionedModel):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # A conversation's latest messages, and older pages by id cursor.
        indexes = [models.Index(fields=["conversation", "-id"], name="message_conv_recent_idx")]

    def __str__(self) -> str:
        return f"message {self.pk} in {self.conversation_id}"
