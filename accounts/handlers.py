"""What access events do: drop the cached token -> user resolution, close the affected sockets.

`apply` (commit time in the writing process, then the worker) deletes the Redis entries and this
process's copies: idempotent, and order does not matter (each event only removes). `after_batch`
(worker only) tells the sockets: a revoked token's sockets, or all of a user's, close with 4401.
"""

from collections.abc import Sequence

import redis

from accounts import credentials, events, sockets
from core.events import Event, EventHandler, registry

_REASONS = {
    events.TOKEN_REVOKED: "token revoked",
    events.USER_DEACTIVATED: "account deactivated",
    events.USER_PASSWORD_CHANGED: "password changed",
}


class AccessHandler(EventHandler):
    event_types = events.ACCESS_TYPES

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        cache = credentials.auth_cache
        if event.type == events.TOKEN_REVOKED:
            digest = event.data["digest"]
            cache.queue_delete(pipe, cache.token_key(digest))
            credentials.forget(digest=digest)
        else:
            user_id = event.data["user_id"]
            cache.queue_delete(pipe, cache.user_key(user_id))
            credentials.forget(user_id=user_id)

    def after_batch(self, batch: Sequence[Event]) -> None:
        groups: dict[str, str] = {}
        for event in batch:
            if event.type == events.TOKEN_REVOKED:
                groups[sockets.token_group(event.data["token_id"])] = _REASONS[event.type]
            elif event.type in _REASONS:
                groups[sockets.user_group(event.data["user_id"])] = _REASONS[event.type]
        sockets.end_access(groups)


def register() -> None:
    registry.register(AccessHandler())
