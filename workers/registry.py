"""The handler registry: apps register what an event type does to the cache; workers dispatch.

An app subclasses `EventHandler` in its own handlers.py and registers an instance in its
AppConfig.ready(). The worker never imports app internals; it asks the registry.
"""

import logging
from collections.abc import Iterable, Sequence

import redis

from core.events import Event

logger = logging.getLogger("workers")


class EventHandler:
    """What a family of events does to the cache.

    `apply` queues the event's direct cache effects on a pipeline: Redis commands only, no database,
    idempotent (twice = once) and version-aware (an older event never overwrites a newer state),
    because delivery is at least once and in no guaranteed order. It runs in the worker and, right
    after commit, in the writing process too (read-your-writes).
    `after_batch` runs in the worker only, once per batch, for effects that need the database or
    more work than one pipeline should carry (e.g. fanning a post out to many followers' feeds).
    Raising from either fails the events: they are retried, then dead-lettered.
    """

    event_types: tuple[str, ...] = ()

    def apply(self, pipe: redis.client.Pipeline, event: Event) -> None:
        raise NotImplementedError

    def after_batch(self, events: Sequence[Event]) -> None:
        return None


class UnknownEventType(LookupError):
    pass


class HandlerRegistry:
    def __init__(self) -> None:
        self._by_type: dict[str, EventHandler] = {}

    def register(self, handler: EventHandler) -> EventHandler:
        for event_type in handler.event_types:
            existing = self._by_type.get(event_type)
            if existing is not None and type(existing) is not type(handler):
                raise ValueError(f"{event_type} already handled by {type(existing).__name__}")
            self._by_type[event_type] = handler
        return handler

    def handler_for(self, event_type: str) -> EventHandler:
        try:
            return self._by_type[event_type]
        except KeyError:
            raise UnknownEventType(f"no handler registered for {event_type!r}") from None

    def event_types(self) -> list[str]:
        return sorted(self._by_type)

    def queue_effects(self, pipe: redis.client.Pipeline, events: Iterable[Event]) -> None:
        """Queue each known event's direct effects (the post-commit, read-your-writes path)."""
        for event in events:
            handler = self._by_type.get(event.type)
            if handler is not None:
                handler.apply(pipe, event)


registry = HandlerRegistry()
