"""WebSocket tickets: a short-lived, single-use stand-in for a credential in a socket's URL.

POST /api/auth/ws-ticket (session or token) returns a ticket; the client opens
`/ws/chat/<id>/?ticket=<ticket>` within AUTH_WS_TICKET_SECONDS. The ticket is consumed on connect
(GETDEL: one use, atomically, even with two sockets racing), so a ticket read back from a log is
already spent. Redis holds it under its SHA-256, with the user id and, when a token asked for it,
that token's digest: the socket then belongs to the token (revoking the token closes it).
Tickets are state, not cache: with Redis down none can be issued (503) or redeemed.
"""

import hashlib
import secrets
from typing import NamedTuple

import redis
from django.conf import settings

from core import codec
from core.caching import CacheKeyBuilder, ttl_ms
from core.connections import cache_client
from core.errors import ServiceError

_keys = CacheKeyBuilder("accounts")
MAX_TICKET_LENGTH = 100


class TicketsUnavailable(ServiceError):
    """Redis could not store the ticket (503: try again)."""

    status = 503


class Ticket(NamedTuple):
    user_id: int
    token_digest: str | None


def _key(ticket: str) -> str:
    return _keys.build("ws_ticket", hashlib.sha256(ticket.encode()).hexdigest())


def issue_ticket(user_id: int, token_digest: str | None) -> str:
    """A new single-use ticket for the user (and token). Raises TicketsUnavailable."""
    ticket = secrets.token_urlsafe(24)
    value = codec.dumps({"user_id": user_id, "token_digest": token_digest})
    try:
        cache_client().set(_key(ticket), value, px=ttl_ms(settings.AUTH_WS_TICKET_SECONDS))
    except redis.RedisError as exc:
        raise TicketsUnavailable("tickets are unavailable right now; try again") from exc
    return ticket


def redeem_ticket(ticket: str | None) -> Ticket | None:
    """The ticket's owner, consuming it; None if unknown, spent, expired, or Redis is down."""
    if not ticket or len(ticket) > MAX_TICKET_LENGTH:
        return None
    try:
        raw = cache_client().getdel(_key(ticket))
    except redis.RedisError:
        return None
    if raw is None:
        return None
    fields = codec.loads(raw)
    return Ticket(int(fields["user_id"]), fields.get("token_digest"))
