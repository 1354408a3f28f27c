"""Plain factory functions for chat tests and benchmarks (no test framework needed)."""

import itertools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from chat.models import Conversation, Message, Participant

_seq = itertools.count(1)


def make_chat_user(username: str | None = None) -> AbstractUser:
    return get_user_model().objects.create_user(
        username=username or f"chatter{next(_seq)}", password="pass-word-123"
    )


def make_conversation(*users: AbstractUser, title: str = "") -> Conversation:
    conversation = Conversation.objects.create(title=title)
    Participant.objects.bulk_create(Participant(conversation=conversation, user=user) for user in users)
    return conversation


def make_message(conversation: Conversation, sender: AbstractUser, body: str = "hi") -> Message:
    return Message.objects.create(conversation=conversation, sender=sender, body=body)
