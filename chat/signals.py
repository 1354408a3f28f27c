"""Receivers at the edge: each turns one message change into one event, in the change's transaction.

Connected in ChatConfig.ready(). Receivers bump the conversation's version (the model layer's
`Conversation.objects.message_changed`, one statement), build (chat/events.py) and publish; what an
event does to the cache lives in chat/handlers.py.
"""

from django.db.models.signals import post_delete, post_save

from chat import broadcast, events
from chat.models import Conversation, Message, Participant
from chat.payloads import message_payload
from core.events import publish
from core.models import one_statement_receiver


@one_statement_receiver
def message_saved(*, instance: Message, created: bool, using: str, **kwargs) -> None:
    change = Conversation.objects.using(using).message_changed(instance.conversation_id, instance.sender_id)
    payload = message_payload(instance)
    if change.sender is not None:
        payload["sender"] = change.sender  # as committed, not as this process last loaded it
    build = events.message_created if created else events.message_updated
    publish(build(payload, change.version), events.DOMAIN, using)


def message_deleted(*, instance: Message, using: str, **kwargs) -> None:
    change = Conversation.objects.using(using).message_changed(instance.conversation_id)
    version = None if change is None else change.version  # None: the conversation goes too
    event = events.message_deleted(instance.pk, instance.conversation_id, version)
    publish(event, events.DOMAIN, using)


def participant_deleted(*, instance: Participant, using: str, **kwargs) -> None:
    publish(events.participant_removed(instance.conversation_id, instance.user_id), events.DOMAIN, using)
    broadcast.participant_removed(instance.conversation_id, instance.user_id, using)


RECEIVERS = [
    (post_save, Message, message_saved),
    (post_delete, Message, message_deleted),
    (post_delete, Participant, participant_deleted),
]


def connect() -> None:
    for signal, sender, receiver in RECEIVERS:
        signal.connect(receiver, sender=sender, dispatch_uid=f"chat.{receiver.__name__}")
