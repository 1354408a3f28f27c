"""Shapes every app's API shares: the error body and the text every stored string must be."""

from ninja import Schema


class ErrorOut(Schema):
    """The body of every 4xx answer: `{"detail": "..."}`."""

    detail: str


def storable_text(text: str) -> str:
    """Refuse what PostgreSQL text can't hold (NUL) and what UTF-8 can't encode (lone surrogates).

    A pydantic AfterValidator: raises ValueError, answered 422.
    """
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text must be valid Unicode") from exc
    return text
