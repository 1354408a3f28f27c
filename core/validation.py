"""Text the API and the WebSocket accept: one validator for every text field of every route and frame.

PostgreSQL text can't hold NUL and UTF-8 can't encode a lone surrogate (JSON's `"\\ud800"` decodes
to one): either reached the database as a 500. Usernames are held to a small ASCII charset so that
two different accounts can never look alike (`demo1` and `d\\u0435mo1`, whose second letter is Cyrillic).
"""

import re
from typing import Annotated, Any

from django.core.exceptions import ValidationError
from pydantic import AfterValidator, StringConstraints


def storable_text(text: str) -> str:
    """`text` unchanged, or ValueError (a 422 in a schema) with a message a client can act on."""
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    return text


def text_field(**constraints: Any) -> Any:
    """A storable text type with pydantic's StringConstraints (length, strip_whitespace...) applied first."""
    return Annotated[str, StringConstraints(**constraints), AfterValidator(storable_text)]


# The type every schema's text field uses (or `text_field(...)` where it has length limits).
StorableText = text_field()

# ASCII letters, digits and `_ . -`: no mixed scripts, no confusables, nothing NFKC would fold.
_USERNAME = re.compile(r"[A-Za-z0-9_.-]+")
USERNAME_RULE = "a username may contain only ASCII letters, digits and _ . -"


def validate_new_username(username: str) -> None:
    """Raise ValidationError unless `username` may be registered (existing accounts keep theirs)."""
    if not _USERNAME.fullmatch(username):
        raise ValidationError(USERNAME_RULE, code="invalid_username")
