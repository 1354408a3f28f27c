"""Request and response shapes of the chat HTTP API (validated by pydantic, documented in OpenAPI)."""

from datetime import datetime
from typing import Annotated

from ninja import Field, Path, Schema

from core.pagination import PageOut
from core.validation import StorableText

# Ids are positive 64-bit integers: anything else is a 422, never a database error.
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
ConversationId = Annotated[int, Path(ge=1, le=MAX_ID)]
MessageId = Annotated[int, Path(ge=1, le=MAX_ID)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


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


class MessagePage(PageOut):
    items: list[MessageOut]
