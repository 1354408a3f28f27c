"""Chat over HTTP: my conversations, history pages, sending, marking read.

A conversation the caller is not in answers 404, exactly like one that does not exist. Services'
refusals (core.errors.ServiceError) are answered by the API's one exception handler.
"""

from django.http import HttpRequest
from ninja import Query, Router, Status
from ninja.errors import HttpError

from accounts.auth import api_auth
from chat import queries, selectors, services
from chat.cache import CAP
from chat.payloads import message_payload
from chat.schemas import (
    ConversationId,
    ConversationIn,
    ConversationOut,
    MessageId,
    MessageIn,
    MessageOut,
    MessagePage,
    ReadIn,
    ReadOut,
    UserId,
)
from core.pagination import CursorParam, decode_cursor, encode_cursor, page_size
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
    cursor: str | None = CursorParam,
    size: int = Query(CAP, ge=1, description="page size, capped at API_PAGE_SIZE_MAX"),
):
    """Newest page first (from the cache), oldest message first within a page; pass `next` back
    as `cursor` for the next older page (from the database by keyset)."""
    size, position = page_size(size), decode_cursor(cursor, before=int)
    if not selectors.is_participant(conversation_id, request.auth.pk):
        raise HttpError(404, f"conversation {conversation_id} not found")
    page = selectors.message_page(conversation_id, None if position is None else position["before"], size)
    before = page["next_before"]
    return {"items": page["messages"], "next": None if before is None else encode_cursor({"before": before})}


@router.post(
    "/conversations/{conversation_id}/messages", response={201: MessageOut, 400: ErrorOut, 404: ErrorOut}
)
def send_message(request: HttpRequest, conversation_id: ConversationId, data: MessageIn):
    """Send a message: the conversation's connected sockets get it as a `message` frame."""
    message = services.send_message(request.auth, conversation_id, data.body)
    return Status(201, message_payload(message))


@router.delete(
    "/conversations/{conversation_id}/participants/{user_id}",
    response={204: None, 403: ErrorOut, 404: ErrorOut},
)
def remove_participant(request: HttpRequest, conversation_id: ConversationId, user_id: UserId):
    """Leave a conversation (`user_id` is your own id; nobody removes somebody else). Your open
    sockets on it close with 4403 once the worker handles the event."""
    services.remove_participant(request.auth, conversation_id, user_id)
    return Status(204, None)


@router.patch(
    "/conversations/{conversation_id}/messages/{message_id}",
    response={200: MessageOut, 400: ErrorOut, 404: ErrorOut},
)
def edit_message(
    request: HttpRequest, conversation_id: ConversationId, message_id: MessageId, data: MessageIn
):
    """Edit one of your messages: the conversation's sockets get an `edited` frame."""
    message = services.edit_message(request.auth, message_id, data.body, conversation_id)
    return message_payload(message)


@router.delete(
    "/conversations/{conversation_id}/messages/{message_id}",
    response={204: None, 400: ErrorOut, 404: ErrorOut},
)
def delete_message(request: HttpRequest, conversation_id: ConversationId, message_id: MessageId):
    """Delete one of your messages: the conversation's sockets get a `deleted` frame."""
    services.delete_message(request.auth, message_id, conversation_id)
    return Status(204, None)


@router.post("/conversations/{conversation_id}/read", response={200: ReadOut, 400: ErrorOut, 404: ErrorOut})
def mark_read(request: HttpRequest, conversation_id: ConversationId, data: ReadIn):
    marker = services.mark_read(request.auth, conversation_id, data.message_id)
    return {"last_read_message_id": marker}
