"""Chat over HTTP: my conversations, history pages, sending, marking read.

A conversation the caller is not in answers 404, exactly like one that does not exist.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError

from chat import selectors, services
from chat.cache import CAP
from chat.payloads import message_payload
from core.validation import StorableText
from feed.auth import api_auth

router = Router(tags=["chat"], auth=api_auth)

# Ids are positive 64-bit integers: anything else is a 422, never a database error.
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
ConversationId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class Member(Schema):
    id: int
    username: str


class MessageOut(Schema):
    id: int
    conversation_id: int
    sender_id: int
    sender: str
    body: str
    created_at: str
    edited_at: str | None
    version: int


class ConversationOut(Schema):
    id: int
    title: str
    created_at: datetime
    participants: list[Member]
    last_message: MessageOut | None
    unread: int


class ConversationIn(Schema):
    participant_ids: list[Id] = Field(min_length=1)
    title: StorableText = Field("", max_length=120)


class MessageIn(Schema):
    body: StorableText


class ReadIn(Schema):
    message_id: Id | None = None


class ReadOut(Schema):
    last_read_message_id: int


class MessagePage(Schema):
    messages: list[MessageOut]
    next_before: int | None


class Error(Schema):
    detail: str


def _not_found(conversation_id: int) -> HttpError:
    return HttpError(404, f"conversation {conversation_id} not found")


@contextmanager
def _service_errors(conversation_id: int) -> Iterator[None]:
    """A service's refusal as the API answers it: unknown or not ours -> 404, bad input -> 400."""
    try:
        yield
    except services.ConversationNotFound:
        raise _not_found(conversation_id) from None
    except services.InvalidChatInput as exc:
        raise HttpError(400, str(exc)) from None


@router.get("/conversations", response=list[ConversationOut])
def list_conversations(request: HttpRequest):
    return selectors.conversations_for(request.auth.pk)


@router.post("/conversations", response={201: ConversationOut, 400: Error})
def create_conversation(request: HttpRequest, data: ConversationIn):
    try:
        conversation = services.create_conversation(request.auth, data.participant_ids, data.title)
    except services.InvalidChatInput as exc:
        raise HttpError(400, str(exc)) from None
    mine = selectors.conversations_for(request.auth.pk)
    return Status(201, next(c for c in mine if c["id"] == conversation.pk))


@router.get("/conversations/{conversation_id}/messages", response={200: MessagePage, 400: Error, 404: Error})
def list_messages(
    request: HttpRequest,
    conversation_id: ConversationId,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: int | None = None,
):
    """The newest page comes from the cache; pass `before` (a page's `next_before`) for older ones."""
    limit = min(CAP, settings.API_PAGE_SIZE_MAX) if limit is None else limit
    if not 1 <= limit <= settings.API_PAGE_SIZE_MAX:
        raise HttpError(400, f"limit must be between 1 and {settings.API_PAGE_SIZE_MAX}")
    if not selectors.is_participant(conversation_id, request.auth.pk):
        raise _not_found(conversation_id)
    return selectors.message_page(conversation_id, before, limit)


@router.post("/conversations/{conversation_id}/messages", response={201: MessageOut, 400: Error, 404: Error})
def send_message(request: HttpRequest, conversation_id: ConversationId, data: MessageIn):
    with _service_errors(conversation_id):
        message = services.send_message(request.auth, conversation_id, data.body)
    return Status(201, message_payload(message))


@router.post("/conversations/{conversation_id}/read", response={200: ReadOut, 400: Error, 404: Error})
def mark_read(request: HttpRequest, conversation_id: ConversationId, data: ReadIn):
    with _service_errors(conversation_id):
        marker = services.mark_read(request.auth, conversation_id, data.message_id)
    return {"last_read_message_id": marker}
