"""Chat writes: each validates, writes in one transaction, and lets the model's signals publish.

Raises `ConversationNotFound` (a `core.errors.NotFound`) for a conversation that does not exist or
that the user is not in (answered 404 either way, so its existence is not revealed) and
`InvalidChatInput` (an `InvalidInput`, 400) for input a client must fix.
"""

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from chat import broadcast, selectors
from chat.models import Conversation, Message, Participant
from chat.payloads import message_payload
from core.errors import Forbidden, InvalidInput, NotFound
from core.validation import storable_text

MAX_PARTICIPANTS = 100


class ConversationNotFound(NotFound):
    """No such conversation or message, or not the caller's (404 either way: existence stays hidden)."""


class InvalidChatInput(InvalidInput):
    """Input a client must fix (400)."""


class ConversationForbidden(Forbidden):
    """Something a participant may not do in their conversation (403)."""


def validate_body(body: object) -> str:
    if not isinstance(body, str) or not body.strip():
        raise InvalidChatInput("a message needs a non-empty body")
    if len(body) > settings.CHAT_MESSAGE_MAX_LENGTH:
        raise InvalidChatInput(f"a message body is at most {settings.CHAT_MESSAGE_MAX_LENGTH} characters")
    try:
        return storable_text(body)  # the rule every HTTP text field has (NUL, lone surrogates)
    except ValueError as exc:
        raise InvalidChatInput(str(exc)) from None


def _membership(conversation_id: int, user_id: int) -> Participant:
    try:
        return Participant.objects.get(conversation_id=conversation_id, user_id=user_id)
    except Participant.DoesNotExist:
        raise ConversationNotFound(f"conversation {conversation_id} not found") from None


def create_conversation(creator, participant_ids: Iterable[int], title: str = "") -> Conversation:
    """A conversation between `creator` and the given users (who must exist and be active)."""
    others = {int(uid) for uid in participant_ids} - {creator.pk}
    if not others:
        raise InvalidChatInput("a conversation needs at least one other participant")
    if len(others) + 1 > MAX_PARTICIPANTS:
        raise InvalidChatInput(f"a conversation has at most {MAX_PARTICIPANTS} participants")
    found = set(get_user_model().objects.filter(pk__in=others, is_active=True).values_list("pk", flat=True))
    missing = sorted(others - found)
    if missing:
        raise InvalidChatInput(f"unknown users: {missing}")
    with transaction.atomic():
        conversation = Conversation.objects.create(title=title)
        Participant.objects.bulk_create(
            Participant(conversation=conversation, user_id=uid) for uid in sorted({creator.pk, *others})
        )
    return conversation


def send_message(sender, conversation_id: int, body: object) -> Message:
    """Save a message from a participant; its event updates the cache once the transaction commits."""
    body = validate_body(body)
    # Membership from the cached member set (no SELECT; a removed participant's "yes" ends at the
    # removal's commit: chat/cache.py has the bounds). The check and the insert share no
    # transaction: a participant who leaves meanwhile may land one last message, which is no more
    # than they could have sent a moment earlier. (Unread counts never include one's own
    # messages, so the sender's read marker stays put.)
    if not selectors.is_participant(conversation_id, sender.pk):
        raise ConversationNotFound(f"conversation {conversation_id} not found")
    # No transaction.atomic() here: the create is atomic on its own (one statement on PostgreSQL,
    # one round trip, or the model's own atomic save), and the broadcast's on_commit then runs right
    # after it (or at the caller's commit, inside a caller's transaction).
    message = Message.objects.create(conversation_id=conversation_id, sender=sender, body=body)
    broadcast.message_created(message_payload(message))
    return message


def remove_participant(actor, conversation_id: int, user_id: int) -> None:
    """Take `user_id` out of the conversation. Only participants may leave, themselves: there is no
    owner role (a conversation records no creator), so nobody removes somebody else. Their open
    sockets on it close (participant.removed, 4403); the conversation and its messages stay.
    Raises ConversationNotFound (not in it, or someone else) and leaves others' existence hidden."""
    if user_id != actor.pk:
        _membership(conversation_id, actor.pk)  # 404 for a stranger; 403 for a fellow participant
        raise ConversationForbidden("a participant can only remove themself")
    with transaction.atomic():
        deleted, _ = Participant.objects.filter(conversation_id=conversation_id, user_id=user_id).delete()
    if not deleted:
        raise ConversationNotFound(f"conversation {conversation_id} not found")


def _own_message(user, message_id: int, conversation_id: int | None) -> Message:
    messages = Message.objects.select_related("sender").filter(pk=message_id, sender=user)
    if conversation_id is not None:
        messages = messages.filter(conversation_id=conversation_id)
    message = messages.select_for_update(of=("self",)).first()
    if message is None:
        raise ConversationNotFound(f"message {message_id} not found")
    return message


def edit_message(editor, message_id: int, body: object, conversation_id: int | None = None) -> Message:
    """Change a message's body (its sender only; in `conversation_id` when given); message.updated
    replaces it in the cache, and the room's sockets get an `edited` frame after commit."""
    body = validate_body(body)
    with transaction.atomic():
        message = _own_message(editor, message_id, conversation_id)
        message.body, message.edited_at = body, timezone.now()
        message.save(update_fields=["body", "edited_at"])
        broadcast.message_edited(message_payload(message))
    return message


def delete_message(user, message_id: int, conversation_id: int | None = None) -> None:
    """Delete a message (its sender only; in `conversation_id` when given); message.deleted removes
    it from the cache for good, and the room's sockets get a `deleted` frame after commit."""
    with transaction.atomic():
        message = _own_message(user, message_id, conversation_id)
        message.delete()
        broadcast.message_deleted(message.conversation_id, message_id)


def mark_read(user, conversation_id: int, message_id: int | None = None) -> int:
    """Move the user's read marker forward to `message_id` (default: the latest message); never back.
    Returns the marker."""
    with transaction.atomic():
        membership = _membership(conversation_id, user.pk)
        if message_id is None:
            message_id = (
                Message.objects.filter(conversation_id=conversation_id).aggregate(m=Max("id"))["m"] or 0
            )
        elif not Message.objects.filter(pk=message_id, conversation_id=conversation_id).exists():
            raise InvalidChatInput(f"message {message_id} is not in this conversation")
        Participant.objects.filter(pk=membership.pk, last_read_message_id__lt=message_id).update(
            last_read_message_id=message_id
        )
    return max(membership.last_read_message_id, message_id)
