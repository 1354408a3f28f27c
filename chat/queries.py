"""Database reads for chat (no cache): what the cache fills from, the API's pages and the inbox."""

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from django.db.models import Count, Exists, F, OuterRef, Subquery
from django.db.models.functions import Coalesce

from chat.models import Conversation, Message, Participant
from chat.payloads import message_payload


def latest_messages(conversation_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` messages of a conversation, oldest first (one indexed query)."""
    rows = Message.objects.filter(conversation_id=conversation_id).select_related("sender").order_by("-id")
    return [message_payload(m) for m in reversed(rows[:limit])]


class Snapshot(NamedTuple):
    """A conversation's newest messages (oldest first) and its version, as one snapshot saw them."""

    version: int
    messages: list[dict[str, Any]]


def window_snapshot(conversation_id: int, limit: int, attempts: int = 3) -> Snapshot | None:
    """The newest `limit` messages and the conversation's version, read by ONE statement (one
    snapshot: the version counts exactly the message changes the rows show). None if the
    conversation does not exist, or it kept changing between the two statements an empty
    conversation needs (the caller then serves the rows without storing them)."""
    for _ in range(attempts):
        rows = list(
            Message.objects.filter(conversation_id=conversation_id)
            .select_related("sender")
            .annotate(conversation_version=F("conversation__version"))
            .order_by("-id")[:limit]
        )
        if rows:
            return Snapshot(rows[0].conversation_version, [message_payload(m) for m in reversed(rows)])
        # No rows: the version and "still empty" from one statement, or read the rows again.
        state = (
            Conversation.objects.filter(pk=conversation_id)
            .annotate(empty=~Exists(Message.objects.filter(conversation=OuterRef("pk"))))
            .values_list("version", "empty")
            .first()
        )
        if state is None:
            return None
        if state[1]:
            return Snapshot(state[0], [])
    return None


def messages_before(conversation_id: int, before: int, limit: int) -> list[dict[str, Any]]:
    """The `limit` messages just older than message id `before`, oldest first."""
    rows = (
        Message.objects.filter(conversation_id=conversation_id, id__lt=before)
        .select_related("sender")
        .order_by("-id")
    )
    return [message_payload(m) for m in reversed(rows[:limit])]


def is_participant(conversation_id: int, user_id: int) -> bool:
    return Participant.objects.filter(conversation_id=conversation_id, user_id=user_id).exists()


def conversation_ids_of(user_ids: Iterable[int]) -> Iterator[int]:
    """The ids of the conversations any of `user_ids` is in (streamed: a user may be in many)."""
    rows = Participant.objects.filter(user_id__in=set(user_ids)).order_by("conversation_id")
    return rows.values_list("conversation_id", flat=True).distinct().iterator(chunk_size=2000)


def participant_ids(conversation_id: int) -> list[int]:
    return list(
        Participant.objects.filter(conversation_id=conversation_id)
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )


def conversations_for(user_id: int) -> list[dict[str, Any]]:
    """The user's conversations, most recently active first, each with its participants, last
    message and the number of messages from others the user has not read."""
    memberships = Participant.objects.filter(conversation=OuterRef("pk"), user_id=user_id)
    last_read = Subquery(memberships.values("last_read_message_id")[:1])
    latest_id = Subquery(Message.objects.filter(conversation=OuterRef("pk")).order_by("-id").values("id")[:1])
    unread = (
        Message.objects.filter(conversation=OuterRef("pk"), id__gt=OuterRef("last_read"))
        .exclude(sender_id=user_id)
        .order_by()
        .values("conversation")
        .annotate(n=Count("id"))
        .values("n")
    )
    conversations = list(
        Conversation.objects.filter(members__user_id=user_id)
        .annotate(last_read=last_read, latest_id=latest_id)
        .annotate(unread=Coalesce(Subquery(unread), 0))
        .order_by(F("latest_id").desc(nulls_last=True), "-id")
    )
    last_ids = [c.latest_id for c in conversations if c.latest_id]
    latest = Message.objects.filter(pk__in=last_ids).select_related("sender")
    last = {m.pk: message_payload(m) for m in latest}
    members: dict[int, list[dict[str, Any]]] = {}
    for row in (
        Participant.objects.filter(conversation__in=[c.pk for c in conversations])
        .select_related("user")
        .order_by("user_id")
    ):
        members.setdefault(row.conversation_id, []).append({"id": row.user_id, "username": row.user.username})
    return [
        {
            "id": c.pk,
            "title": c.title,
            "created_at": c.created_at,
            "participants": members.get(c.pk, []),
            "last_message": last.get(c.latest_id),
            "unread": c.unread,
        }
        for c in conversations
    ]
