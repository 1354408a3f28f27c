"""Request and response shapes of the auth routes (validated by pydantic, documented in OpenAPI)."""

from typing import Annotated

from ninja import Schema
from pydantic import AfterValidator, StringConstraints

from core.schemas import storable_text

Username = Annotated[str, StringConstraints(min_length=1, max_length=150), AfterValidator(storable_text)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(storable_text)]


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
