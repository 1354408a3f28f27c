"""Chat over HTTP: my conversations, history pages, sending, marking read.

A conversation the caller is not in answers 404, exactly like one that does not exist. Services'
refusals (core.errors.ServiceError) are answered by the API's one exception handler.
"""

from typing import Annotated

from django.conf import settings
from django.http import HttpRequest
from ninja import Path, Query, Router, Status
from ninja.errors import HttpError

from accounts.auth import api_auth
from chat import queries, selectors, services
from chat.cache import CAP
from chat.payloads import message_payload
from chat.schemas import (
    MAX_ID,
    ConversationId,
    ConversationIn,
    ConversationOut,
    MessageIn,
    MessageOut,
    MessagePage,
    ReadIn,
    ReadOut,
)
from core.schemas import ErrorOut

router = Router(tags=["chat"], auth=api_auth)


@router.get("/conversations", response=list[ConversationOut])
def list_conversations(request: HttpRequest):
    return queries.conversations_for(request.auth.pk)


@router.post("/conversations", response={201: ConversationOut, 400: ErrorOut})
def create_conversation(request: HttpRequest, data: ConversationIn):
    conversation = services.create_conversation(request.auth, data.participant_ids, data.title)
    mine = queries.conversations_for(request.auth.pk)
    return Status(201, next(c for c in mine if c["id"] == conversation.pk))


@router.get(
    "/conversations/{conversation_id}/messages", response={200: MessagePage, 400: ErrorOut, 404: ErrorOut}
)
def list_messages(
    request: HttpRequest,
    conversation_id: ConversationId,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: int | None = None,
):
    """The newest page comes from the cache; pass `before` (a page's `next_before`) for older ones."""
    limit = min(CAP, settings.API_PAGE_SIZE_MAX) if limit is None else limit
    if not 1 <= limit <= settings.API_PAGE_SIZE_MAX:
        raise HttpError(400, f"limit must be between 1 and {settings.API_PAGE_SIZE_MAX}")
    if not queries.is_participant(conversation_id, request.auth.pk):
        raise HttpError(404, f"conversation {conversation_id} not found")
    return selectors.message_page(conversation_id, before, limit)


@router.post(
    "/conversations/{conversation_id}/messages", response={201: MessageOut, 400: ErrorOut, 404: ErrorOut}
)
def send_message(request: HttpRequest, conversation_id: ConversationId, data: MessageIn):
    message = services.send_message(request.auth, conversation_id, data.body)
    return Status(201, message_payload(message))


@router.delete(
    "/conversations/{conversation_id}/participants/{user_id}",
    response={204: None, 403: ErrorOut, 404: ErrorOut},
)
def remove_participant(
    request: HttpRequest, conversation_id: ConversationId, user_id: Annotated[int, Path(ge=1, le=MAX_ID)]
):
    """Leave a conversation (`user_id` is your own id; nobody removes somebody else). Your open
    sockets on it close with 4403 once the worker handles the event."""
    services.remove_participant(request.auth, conversation_id, user_id)
    return Status(204, None)


@router.post("/conversations/{conversation_id}/read", response={200: ReadOut, 400: ErrorOut, 404: ErrorOut})
def mark_read(request: HttpRequest, conversation_id: ConversationId, data: ReadIn):
    marker = services.mark_read(request.auth, conversation_id, data.message_id)
    return {"last_read_message_id": marker}
