"""Database reads about users for the API: lookup by username, search by username prefix."""

from typing import Any

from django.db.models import Q
from django.db.models.functions import Lower

from accounts.models import AppUser

PUBLIC_FIELDS = ("id", "username", "bio", "date_joined")


def user_by_username(username: str) -> dict[str, Any] | None:
    """An active user's public fields by exact username, or None."""
    return AppUser.objects.filter(username=username, is_active=True).values(*PUBLIC_FIELDS).first()


def search_by_prefix(prefix: str, after: tuple[str, int] | None, limit: int) -> list[dict[str, Any]]:
    """Active users whose username starts with `prefix`, case-insensitively, in (lowercase name, id)
    order after the keyset position `after`.

    LOWER(username) LIKE 'abc%' on PostgreSQL runs on the text_pattern_ops functional index of
    feed/migrations/0004 (the position is a range on the same index, never an OFFSET).
    """
    rows = (
        AppUser.objects.annotate(name=Lower("username"))
        .filter(name__startswith=prefix.lower(), is_active=True)
        .order_by("name", "id")
    )
    if after is not None:
        name, user_id = after
        rows = rows.filter(Q(name__gt=name) | Q(name=name, id__gt=user_id))
    return list(rows.values("name", *PUBLIC_FIELDS)[:limit])
