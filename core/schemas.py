"""Shapes every app's API shares: the error body."""

from ninja import Schema


class ErrorOut(Schema):
    """The body of every 4xx answer: `{"detail": "..."}`."""

    detail: str
