"""Receivers at the edge: each turns one message change into one event, in the change's transaction.

Connected in ChatConfig.ready(). What an event does to the cache lives in chat/handlers.py.
"""

from django.db.models.signals import post_delete, post_save

from chat.models import Message
from chat.payloads import message_payload
from core.caching import FINAL_VERSION
from core.events import Event, publish

DOMAIN = "chat"


def message_saved(*, instance: Message, created: bool, using: str, **kwargs) -> None:
    event_type = "message.created" if created else "message.updated"
    publish(Event(event_type, instance.version, {"message": message_payload(instance)}), DOMAIN, using)


def message_deleted(*, instance: Message, using: str, **kwargs) -> None:
    data = {"message_id": instance.pk, "conversation_id": instance.conversation_id}
    publish(Event("message.deleted", FINAL_VERSION, data), DOMAIN, using)


RECEIVERS = [
    (post_save, Message, message_saved),
    (post_delete, Message, message_deleted),
]


def connect() -> None:
    for signal, sender, receiver in RECEIVERS:
        signal.connect(receiver, sender=sender, dispatch_uid=f"chat.{receiver.__name__}")
