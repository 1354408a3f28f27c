"""Plain factory functions for chat tests and benchmarks (no test framework needed)."""

import itertools

from chat.models import Conversation, Message, Participant
from feed.models import AppUser

_seq = itertools.count(1)


def make_chat_user(username: str | None = None) -> AppUser:
    return AppUser.objects.create_user(username=username or f"chatter{next(_seq)}", password="pass-word-123")


def make_conversation(*users: AppUser, title: str = "") -> Conversation:
    conversation = Conversation.objects.create(title=title)
    Participant.objects.bulk_create(Participant(conversation=conversation, user=user) for user in users)
    return conversation


def make_message(conversation: Conversation, sender: AppUser, body: str = "hi") -> Message:
    return Message.objects.create(conversation=conversation, sender=sender, body=body)
