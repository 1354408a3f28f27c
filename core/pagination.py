"""The API's one pagination convention: keyset pages behind an opaque cursor.

A page answers `{"items": [...], "next": <cursor> | null}`; the client passes `next` back as
`?cursor=` for the following page. A cursor is base64url (unpadded) of a small JSON object holding
the last row's sort key, so a deep page costs one indexed range scan, never an OFFSET. Clients must
not build or parse cursors: the shape inside may change. A cursor that does not decode, or that
carries other fields than the route expects, is a 400 (`InvalidCursor`), never a 500.
"""

import base64
import binascii
from typing import Any

import orjson
from django.conf import settings
from ninja import Query, Schema

from core.errors import InvalidInput

# A cursor is a few ids or names: anything longer is not one of ours.
MAX_CURSOR_LENGTH = 512

CursorParam = Query(None, max_length=MAX_CURSOR_LENGTH, description="`next` of the previous page")
SizeParam = Query(20, ge=1, description="page size, capped at API_PAGE_SIZE_MAX")


class InvalidCursor(InvalidInput):
    """A cursor this API did not hand out (400)."""


class PageOut(Schema):
    """What every paginated route adds to its items: the cursor of the next page, or null."""

    next: str | None


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str | None, **fields: type) -> dict[str, Any] | None:
    """The position inside `cursor` (None for the first page), checked against `fields` (name ->
    type, e.g. `id=int`). Raises InvalidCursor for anything else."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = orjson.loads(raw)
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidCursor("invalid cursor: pass back a page's `next` unchanged") from None
    if not isinstance(position, dict) or set(position) != set(fields):
        raise InvalidCursor("invalid cursor: pass back a page's `next` unchanged")
    for name, kind in fields.items():
        value = position[name]
        if type(value) is not kind or (kind is int and not 0 <= value < 2**63):
            raise InvalidCursor("invalid cursor: pass back a page's `next` unchanged")
    return position


def page_size(size: int) -> int:
    return min(size, settings.API_PAGE_SIZE_MAX)


def page(items: list[Any], size: int, position_of) -> dict[str, Any]:
    """A page from `items` fetched with one row too many (`size + 1`): the first `size` items, and
    the cursor of the next page (built from the last item by `position_of`) when there are more."""
    more = len(items) > size
    items = items[:size]
    return {"items": items, "next": encode_cursor(position_of(items[-1])) if more and items else None}
