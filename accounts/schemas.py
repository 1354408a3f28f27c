"""Request and response shapes of the auth routes (validated by pydantic, documented in OpenAPI)."""

from datetime import datetime

from ninja import Schema

from core.pagination import PageOut
from core.validation import text_field

Username = text_field(min_length=1, max_length=150)
Password = text_field(min_length=1, max_length=256)


class Credentials(Schema):
    username: Username
    password: Password


class UserOut(Schema):
    id: int
    username: str


class TokenOut(Schema):
    token: str
    token_type: str = "bearer"
    user: UserOut


class PasswordChange(Schema):
    current_password: Password
    new_password: Password


class TokenInfo(Schema):
    """A token as its owner sees it in the list: never the secret."""

    id: int
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    current: bool


class TicketOut(Schema):
    ticket: str
    expires_in: int


class PublicUserOut(Schema):
    """What anyone signed in may see of a user (GET /api/me, lookup, search)."""

    id: int
    username: str
    bio: str
    date_joined: datetime


class UserSearchPage(PageOut):
    items: list[PublicUserOut]
